"""Synthetic occlusions: the square taxonomy, random patterns, natural occluders, fills and sets.

Taught in notebook 02 (sections: 1 why occlusions break a regressor, 2 the square taxonomy,
3 random patterns, 4 natural occluders, 5 fills and the colour-bias argument, 6 coverage
statistics, 7 multi-occlusion sets, 8 the training-time occluder, 9 fixed evaluation sets,
10 an occlusion explorer). Paper: Sec. 1 item 3 (artificial-occlusion dataset;
"goggles, facial hair, noise" as natural occlusions), Sec. 3.2.1 (7 occluded images per
identity), Sec. 4 ("arbitrary pixel values ... without developing pixel-value bias"; 7 random
patterns per image), Sec. 4.1.1 (DSOFI / DHOFI / SHOFI squares), Sec. 4.2.2 and Table 5
(random patterns: stars, crowns, no specific shape).

Face region (used for placement *and* coverage everywhere)
    The face box of an image is (x1, y1, x2, y2) in pixel coordinates (x = column, y = row).
    From 68 landmarks it is the landmarks' bounding box with its top edge raised by
    ``FOREHEAD_FRACTION`` (0.4) of the box height, to include the forehead: by the rule of
    facial thirds the hairline sits ~0.5 box heights above the brows; 0.4 keeps the box on skin
    below a typical hairline. The *face region* is the set of pixels whose centre (c, r)
    satisfies x1 <= c <= x2 and y1 <= r <= y2 and lies inside the image, so a box at or over the
    border is clipped to the image. ``coverage = |mask & region| / |region|``.

Masks
    ``masks`` mark exactly the pixels the occluder assigned: ``images_out = where(mask, fill,
    images_in)``, bit for bit. Pixels outside the mask are never touched.

Randomness
    Everything is drawn from the caller's ``torch.Generator`` (or an int seed): per-sample kind
    choices ('mixed'), then one block of uniforms per sample for the geometry, then one seed for
    a private fill generator. Hence the geometry does not depend on ``fill`` / ``color``: the
    same seed with a different fixed colour gives the same occluder in another colour (the
    paper's occluder-colour experiment, Sec. 4.1.1, Fig. 3).
"""
from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from occ3d_lib.core.artifacts import cache_dir, load_cached, torch_load, torch_save
from occ3d_lib.core.config import config_hash
from occ3d_lib.data.context import Context
from occ3d_lib.occlusion import shapes as oc

# ---------------------------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------------------------
FOREHEAD_FRACTION = 0.4

SQUARE_KINDS: tuple[str, ...] = ("dsofi", "dhofi", "shofi")
PATTERN_TYPES: tuple[str, ...] = oc.PATTERN_TYPES
PATTERN_KINDS: tuple[str, ...] = (*oc.PATTERN_TYPES, "random_pattern")
NATURAL_KINDS: tuple[str, ...] = oc.NATURAL_TYPES
KINDS: tuple[str, ...] = ("none", *SQUARE_KINDS, "full", *PATTERN_KINDS, *NATURAL_KINDS, "natural", "mixed")
#: What 'mixed' draws from (uniformly per sample).
MIXED_KINDS: tuple[str, ...] = (*SQUARE_KINDS, "full", *PATTERN_KINDS, *NATURAL_KINDS)
#: Default partial kinds of :class:`TrainingOccluder`.
PARTIAL_KINDS: tuple[str, ...] = (*SQUARE_KINDS, *PATTERN_KINDS, *NATURAL_KINDS)
#: Default pattern pool of :func:`multi_occlusion_set` (paper Sec. 4.2.2: random patterns).
MOPI_KINDS: tuple[str, ...] = PATTERN_KINDS

_A = oc.RECT_AREA
_P, _M = oc.PATTERN_AREA, oc.MULTI_PATTERN_AREA
KIND_DESCRIPTIONS: dict[str, str] = {
    "none": "unoccluded: mask empty, image unchanged, coverage 0.",
    "dsofi": f"Double Slightly Occluded Face Image (paper Sec. 4.1.1): two axis-aligned squares, each "
             f"{_A['dsofi'][0]:.0%}-{_A['dsofi'][1]:.0%} of the face region (exact pixel areas), inside the "
             f"region, overlapping by <= {oc.MAX_SQUARE_OVERLAP:.0%} of the smaller one.",
    "dhofi": f"Double Heavily Occluded Face Image (Sec. 4.1.1): two squares, each {_A['dhofi'][0]:.0%}-"
             f"{_A['dhofi'][1]:.0%} of the face region, overlap <= {oc.MAX_SQUARE_OVERLAP:.0%} of the smaller.",
    "shofi": f"Single Heavily Occluded Face Image (Sec. 4.1.1): one square, {_A['shofi'][0]:.0%}-"
             f"{_A['shofi'][1]:.0%} of the face region.",
    "full": f"fully occluded face: one rectangle of random aspect covering {_A['full'][0]:.0%}-"
            f"{_A['full'][1]:.0%} of the face region.",
    "star": f"a star (4-7 points, inner/outer radius 0.38-0.6), random rotation, area {_P[0]:.0%}-{_P[1]:.0%} "
            "of the face region, fully inside it (Table 5 'stars').",
    "crown": f"a crown (base + 3-5 spikes), tilt within +-0.5 rad, area {_P[0]:.0%}-{_P[1]:.0%} of the face "
             "region, inside it (Table 5 'crown').",
    "ellipse": f"a circle or ellipse (axis ratio 0.35-1), area {_P[0]:.0%}-{_P[1]:.0%} of the face region.",
    "polygon": f"a random star-shaped polygon (3-8 vertices, radii 0.45-1), area {_P[0]:.0%}-{_P[1]:.0%}.",
    "scribble": f"a thick polyline through 3-6 random points whose stroke width is set so it covers "
                f"exactly {_P[0]:.0%}-{_P[1]:.0%} of the face region.",
    "random_pattern": f"1-3 random patterns (star/crown/ellipse/polygon/scribble), each {_M[0]:.0%}-{_M[1]:.0%} "
                      "of the face region, overlaps allowed (paper Sec. 4.2.2 'random patterns').",
    "sunglasses": "two dark (super)elliptic lenses centred on the eye landmarks 36-41 / 42-47, semi-axis "
                  "0.36-0.44 x the inter-eye distance, with bridge and temple arms to jaw points 0 / 16.",
    "surgical_mask": "a light-blue/white/black mask from the nose bridge (35-60% of the way from landmark 27 to "
                     "the nose tip 30) down the pushed-out jaw 0-16 past the chin, with ear loops.",
    "hand": "a skin-coloured hand (palm, 4 fingers, thumb, forearm) about one face width wide, palm over the "
            "mouth, an eye, a cheek or the chin, rotated up to +-0.9 rad.",
    "scarf": "a scarf from between the nose base 33 and lower lip 57 down past the image bottom, 10-25% of the "
             "face width wider than the jaw on each side, draped top edge.",
    "fringe": "a hair fringe from above the face box down to 0.15-0.9 x (brow-to-eye distance) below the "
              "brows 17-26, with strand tips; covers brows and forehead, never the mouth.",
    "beard": "facial hair along the pushed-out jaw: full (cheeks, chin, moustache; lips usually left open) "
             "or chin only (below the lower lip 57); always covers the chin landmark 8.",
    "microphone": "a handheld microphone: round head near the mouth/chin and a handle leaving the face.",
    "cup": "a cup (tapered body 0.35-0.5 face widths wide, ring handle) raised to the mouth/chin.",
    "natural": "one of the natural occluders at random per sample.",
    "mixed": "per sample, a kind drawn uniformly from MIXED_KINDS (squares, full, patterns, natural).",
}

# documented ranges of the *union* coverage returned per kind (checked by tests/test_occlusion.py
# on 200 samples of jittered canonical faces at 96x96); exact by construction for the squares and
# 'full', up to pixel discretisation of the analytic area for the patterns.
_RECT_COV = {
    "dsofi": ((2 - oc.MAX_SQUARE_OVERLAP) * _A["dsofi"][0], 2 * _A["dsofi"][1]),
    "dhofi": ((2 - oc.MAX_SQUARE_OVERLAP) * _A["dhofi"][0], 2 * _A["dhofi"][1]),
    "shofi": _A["shofi"], "full": _A["full"],
}
COVERAGE_RANGES: dict[str, tuple[float, float]] = {
    "none": (0.0, 0.0),
    **_RECT_COV,
    **{t: (0.9 * _P[0], 1.08 * _P[1]) for t in PATTERN_TYPES},
    "scribble": _P,
    "random_pattern": (0.9 * _M[0], 1.08 * _M[1] * oc.MULTI_PATTERN_COUNT[1]),
    # natural occluders: geometry is set by the landmarks, so these are measured ranges on
    # frontal faces (canonical layout, jitter), with margin
    # (2000 samples at 64 px measured: sunglasses 0.081-0.166, surgical_mask 0.391-0.501,
    # hand 0.161-0.559, scarf 0.139-0.443, fringe 0.352-0.429, beard 0.059-0.315,
    # microphone 0.026-0.120, cup 0.053-0.161)
    "sunglasses": (0.05, 0.25),
    "surgical_mask": (0.30, 0.60),
    "hand": (0.10, 0.65),
    "scarf": (0.10, 0.55),
    "fringe": (0.25, 0.50),
    "beard": (0.04, 0.40),
    "microphone": (0.015, 0.20),
    "cup": (0.03, 0.25),
}
COVERAGE_RANGES["natural"] = (min(COVERAGE_RANGES[k][0] for k in NATURAL_KINDS),
                              max(COVERAGE_RANGES[k][1] for k in NATURAL_KINDS))
COVERAGE_RANGES["mixed"] = (min(COVERAGE_RANGES[k][0] for k in MIXED_KINDS),
                            max(COVERAGE_RANGES[k][1] for k in MIXED_KINDS))

FILLS: tuple[str, ...] = ("natural", "solid", "uniform", "gaussian", "texture", "random")
_RANDOM_FILLS = ("solid", "uniform", "gaussian", "texture")
FILL_DESCRIPTIONS: dict[str, str] = {
    "natural": "natural occluders in their own plausible colour (palette + jitter, soft linear shading); "
               "other kinds: 'solid'. The default.",
    "solid": "one colour per sample, uniform in the RGB cube (paper Sec. 4: arbitrary pixel values).",
    "uniform": "per-pixel, per-channel uniform noise in [0, 1].",
    "gaussian": "per-pixel Gaussian noise around a random colour, sigma 0.05-0.3, clipped to [0, 1].",
    "texture": "a copy of another image of the batch (or of a `textures` bank image when given; the image "
               "itself for a batch of one) rolled by 1/4-3/4 of the image size and maybe mirrored: real "
               "image statistics without a face lined up under the occluder.",
    "random": "one of solid / uniform / gaussian / texture per sample.",
}


# ---------------------------------------------------------------------------------------------
# Result type
# ---------------------------------------------------------------------------------------------
@dataclass
class OcclusionResult:
    """Occluded images with their masks.

    images ``(B, 3, H, W)`` float in [0, 1]; masks ``(B, 1, H, W)`` bool (the assigned pixels);
    coverage ``(B,)`` float = |mask & face region| / |face region|; ``kind`` the requested kind;
    ``params`` per-sample details (``kinds``, ``fills``, ``colors (B, 3)``, ``face_boxes (B, 4)``,
    ``regions (B, 4)`` = c_lo, c_hi, r_lo, r_hi, ``geometry`` list of dicts, seeds).
    :func:`multi_occlusion_set` returns the same type with an extra variant axis:
    ``(B, V, 3, H, W)``, ``(B, V, 1, H, W)``, ``(B, V)``. Taught in notebook 02, sections 2 and 7.
    """

    images: Tensor
    masks: Tensor
    coverage: Tensor
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ---------------------------------------------------------------------------------------------
# Landmarks, boxes, regions
# ---------------------------------------------------------------------------------------------
# OpenFace's 68-point iBUG mean-face template (openface/align_dlib.py, Apache-2.0), in a unit
# frame (x right, y down); jaw spans x 0.08-0.97, brows-to-chin y 0.18-1.06.
_TEMPLATE = np.array([
    (0.0792396913815, 0.339223741112), (0.0829219487236, 0.456955367943), (0.0967927109165, 0.575648016728),
    (0.122141515615, 0.691921601066), (0.168687863544, 0.800341263616), (0.239789390707, 0.895732504778),
    (0.325662452515, 0.977068762493), (0.422318282013, 1.04329000149), (0.531777802068, 1.06080371126),
    (0.641296298053, 1.03981924107), (0.738105872266, 0.972268833998), (0.824444363295, 0.889624082279),
    (0.894792677532, 0.792494155836), (0.939395486253, 0.681546643421), (0.96111933829, 0.562238253072),
    (0.970579841181, 0.441758925744), (0.971193274221, 0.322118743967), (0.163846223133, 0.249151738053),
    (0.21780354657, 0.204255863861), (0.291299351124, 0.192367318323), (0.367460241458, 0.203582210627),
    (0.4392945113, 0.233135599851), (0.586445962425, 0.228141644834), (0.660152671635, 0.195923841854),
    (0.737466449096, 0.182360984545), (0.813236546239, 0.192828009114), (0.8707571886, 0.235293377042),
    (0.51534533827, 0.31863546193), (0.516221448289, 0.396200446263), (0.517118861835, 0.473797687758),
    (0.51816430343, 0.553157797772), (0.433701156035, 0.604054457668), (0.475501237769, 0.62076344024),
    (0.520712933176, 0.634268222208), (0.565874114041, 0.618796581487), (0.607054002672, 0.60157671656),
    (0.252418718401, 0.331052263829), (0.298663015648, 0.302646354002), (0.355749724218, 0.303020650651),
    (0.403718978315, 0.33867711083), (0.352507175597, 0.349987615384), (0.296791759886, 0.350478978225),
    (0.631326076346, 0.334136672344), (0.679073381078, 0.29645404267), (0.73597236153, 0.294721285802),
    (0.782865376271, 0.321305281656), (0.740312274764, 0.341849376713), (0.68499850091, 0.343734332172),
    (0.353167761422, 0.746189164237), (0.414587777921, 0.719053835073), (0.477677654595, 0.706835892494),
    (0.522732900812, 0.717092275768), (0.569832064287, 0.705414478982), (0.635195811927, 0.71565572516),
    (0.69951672331, 0.739419187253), (0.639447159575, 0.805236879972), (0.576410514055, 0.835436670169),
    (0.525398405766, 0.841706377792), (0.47641545769, 0.837505914975), (0.41379548902, 0.810045601727),
    (0.380084785646, 0.749979603086), (0.477955996282, 0.74513234612), (0.523389793327, 0.748924302636),
    (0.571057789237, 0.74332894691), (0.672409137852, 0.744177032192), (0.572539621444, 0.776609286626),
    (0.5240106503, 0.783370783245), (0.477561227414, 0.778476346951),
])


def canonical_landmarks(image_size: int, face_fraction: float = 0.75) -> Tensor:
    """A plausible frontal 68-point iBUG layout in pixel coordinates. -> ``(68, 2)`` float32.

    The OpenFace mean face, scaled so that its face box (landmark box + forehead, see
    :func:`face_boxes_from_landmarks`) is ``face_fraction * image_size`` tall, centred in the
    image. For tests and demos (no detector needed). Taught in notebook 02, section 1; paper
    Sec. 4 (the occlusions are placed on faces).
    """
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    if not 0 < face_fraction <= 1.5:
        raise ValueError(f"face_fraction must be in (0, 1.5], got {face_fraction!r}")
    t = _TEMPLATE
    lo, hi = t.min(0), t.max(0)
    top = lo[1] - FOREHEAD_FRACTION * (hi[1] - lo[1])
    box_h = hi[1] - top
    s = face_fraction * image_size / box_h
    centre = np.array([0.5 * (lo[0] + hi[0]), 0.5 * (top + hi[1])])
    pts = (t - centre) * s + (image_size - 1) / 2.0
    return torch.tensor(pts, dtype=torch.float32)


def face_boxes_from_landmarks(landmarks: Tensor) -> Tensor:
    """Face boxes from 68 landmarks: bounding box with the top raised by FOREHEAD_FRACTION of its height.

    ``(B, 68, 2)`` -> ``(B, 4)`` = x1, y1, x2, y2 (pixels). Taught in notebook 02, section 6;
    the face region of paper Sec. 4.1.1's "region of the face".
    """
    lm = _check_landmarks(landmarks, None)
    lo, hi = lm.amin(1), lm.amax(1)
    y1 = lo[:, 1] - FOREHEAD_FRACTION * (hi[:, 1] - lo[:, 1])
    return torch.stack([lo[:, 0], y1, hi[:, 0], hi[:, 1]], 1)


def landmarks_from_boxes(boxes: Tensor) -> Tensor:
    """The canonical template fitted into face boxes (for natural occluders when only boxes are
    known). ``(B, 4)`` -> ``(B, 68, 2)``. Taught in notebook 02, section 4."""
    bx = _check_boxes(boxes, None)
    t = torch.tensor(_TEMPLATE, dtype=torch.float32)
    tb = face_boxes_from_landmarks(t[None])[0]
    u = (t - tb[:2]) / (tb[2:] - tb[:2])
    return bx[:, None, :2] + u[None] * (bx[:, None, 2:] - bx[:, None, :2])


def _regions(boxes: Tensor, height: int, width: int) -> list[oc.Region]:
    out = []
    for i, (x1, y1, x2, y2) in enumerate(boxes.double().tolist()):
        reg = oc.Region(max(math.ceil(x1), 0), min(math.floor(x2), width - 1),
                        max(math.ceil(y1), 0), min(math.floor(y2), height - 1))
        if reg.width <= 0 or reg.height <= 0:
            raise ValueError(f"face box {i} {[round(v, 2) for v in (x1, y1, x2, y2)]} has no pixel centre inside "
                             f"the {height}x{width} image; a face region must overlap the image")
        out.append(reg)
    return out


def face_region_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """The face region: pixels whose centre lies in the face box and the image.

    boxes ``(B, 4)`` -> ``(B, 1, H, W)`` bool. Raises ValueError for a box with no pixel inside
    the image. Taught in notebook 02, section 6.
    """
    bx = _check_boxes(boxes, None)
    return _region_masks(_regions(bx, height, width), height, width, bx.device)


def _region_masks(regs: list[oc.Region], height: int, width: int, device: torch.device) -> Tensor:
    r = torch.tensor([[g.c_lo, g.c_hi, g.r_lo, g.r_hi] for g in regs], device=device)
    cols = torch.arange(width, device=device).view(1, 1, width)
    rows = torch.arange(height, device=device).view(1, height, 1)
    m = ((cols >= r[:, 0, None, None]) & (cols <= r[:, 1, None, None])
         & (rows >= r[:, 2, None, None]) & (rows <= r[:, 3, None, None]))
    return m[:, None]


def landmarks_covered(masks: Tensor, landmarks: Tensor, idx: Sequence[int]) -> Tensor:
    """Whether landmarks ``idx`` of each face lie under its mask (the pixel nearest each point).
    masks ``(B, 1, H, W)`` bool, landmarks ``(B, 68, 2)`` pixels -> ``(B, len(idx))`` bool. Notebook 02,
    section 4 checks the natural occluders' placement with it."""
    p = landmarks[:, list(idx)].round().long().clamp(0, masks.shape[-1] - 1)
    return masks[torch.arange(len(landmarks))[:, None], 0, p[..., 1], p[..., 0]]


def occlusion_coverage(masks: Tensor, boxes: Tensor) -> Tensor:
    """Fraction of each face region covered by a mask. masks ``(B, 1, H, W)`` bool, boxes
    ``(B, 4)`` -> ``(B,)`` float32. Taught in notebook 02, section 6."""
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must have shape (B, 1, H, W), got {tuple(masks.shape)}")
    region = face_region_mask(boxes, masks.shape[2], masks.shape[3]).to(masks.device)
    return ((masks.bool() & region).flatten(1).sum(1).float() / region.flatten(1).sum(1).float())


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def _as_rgb_float(images: Any) -> Tensor:
    """(B, C, H, W) float [0, 1] / uint8, C in {1, 3, 4} -> (B, 3, H, W) float."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        hint = " (for one image use images[None])" if images.ndim == 3 else ""
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}{hint}")
    b, c, h, w = images.shape
    if b < 1 or h < 8 or w < 8:
        raise ValueError(f"images must have B >= 1 and H, W >= 8, got {tuple(images.shape)}")
    if c not in (1, 3, 4):
        raise ValueError(f"images must have 1 (grayscale), 3 (RGB) or 4 (RGBA) channels, got {c}")
    if images.dtype == torch.uint8:
        full = 255
        x = images
    elif images.is_floating_point():
        full = 1.0
        x = images
        ok = bool(torch.isfinite(images).all())
        lo, hi = (images.aminmax() if ok else (None, None))
        if not ok or lo < 0 or hi > 1:
            raise ValueError("float images must be finite and in [0, 1]"
                             + ("" if not ok else f", got range [{float(lo):.4g}, {float(hi):.4g}]"))
    else:
        raise TypeError(f"images must be float in [0, 1] or uint8 in [0, 255], got dtype {images.dtype}")
    if c == 4:
        if not bool((x[:, 3] == full).all()):
            raise ValueError("RGBA images must be fully opaque (alpha == 1 / 255 everywhere): the alpha "
                             "channel is dropped, so composite transparent images onto a background first")
        x = x[:, :3]
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    return x.contiguous()


def _check_landmarks(landmarks: Any, batch: int | None) -> Tensor:
    if not isinstance(landmarks, Tensor):
        raise TypeError(f"landmarks must be a torch.Tensor (B, 68, 2), got {type(landmarks).__name__}")
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must have shape (B, 68, 2) (iBUG-68, pixel x = column, y = row), "
                         f"got {tuple(landmarks.shape)}")
    if batch is not None and landmarks.shape[0] != batch:
        raise ValueError(f"landmarks batch {landmarks.shape[0]} != images batch {batch}")
    lm = landmarks.float()
    if not bool(torch.isfinite(lm).all()):
        raise ValueError("landmarks must be finite")
    return lm


def _check_boxes(boxes: Any, batch: int | None) -> Tensor:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a torch.Tensor (B, 4), got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (B, 4) = x1, y1, x2, y2, got {tuple(boxes.shape)}")
    if batch is not None and boxes.shape[0] != batch:
        raise ValueError(f"boxes batch {boxes.shape[0]} != images batch {batch}")
    bx = boxes.float()
    if not bool(torch.isfinite(bx).all()) or not bool(((bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1])).all()):
        raise ValueError("boxes must be finite with x2 > x1 and y2 > y1")
    return bx


def _check_kinds(kind: str | Sequence[str], batch: int) -> list[str]:
    if isinstance(kind, str):
        kinds = [kind.lower()] * batch
    elif isinstance(kind, Sequence) and all(isinstance(k, str) for k in kind):
        if len(kind) != batch:
            raise ValueError(f"a per-sample kind list must have one name per image ({batch}), got {len(kind)}")
        kinds = [k.lower() for k in kind]
    else:
        raise TypeError(f"kind must be a str or a list of str, got {type(kind).__name__}")
    bad = sorted({k for k in kinds if k not in KINDS})
    if bad:
        raise ValueError(f"unknown occlusion kind(s) {bad}; valid kinds: {', '.join(KINDS)}")
    return kinds


def _as_generator(generator: torch.Generator | int) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        if generator.device.type != "cpu":
            raise ValueError("generator must be a CPU torch.Generator (draws are moved to the images' device)")
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(f"generator must be a torch.Generator or an int seed, got {type(generator).__name__}")


def _plain(obj: Any) -> Any:
    """numpy scalars / arrays -> Python types (for torch.load(weights_only=True) and JSON)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


# ---------------------------------------------------------------------------------------------
# Fills
# ---------------------------------------------------------------------------------------------
def _fill_images(x: Tensor, kinds: list[str], fills: list[str], color: Tensor | None,
                 textures: Tensor | None, blk: Tensor, fg: torch.Generator) -> tuple[Tensor, Tensor]:
    """The fill image (B, 3, H, W) and the per-sample base colours (B, 3) (nan if none).
    ``blk (B, 16)`` holds each sample's fill uniforms; noise images are drawn from ``fg``."""
    b, _, h, w = x.shape
    colors = torch.full((b, 3), float("nan"), dtype=torch.float64)
    for i in range(b):
        f = fills[i]
        if f == "fixed":
            colors[i] = color[i]
        elif f in ("solid", "gaussian"):
            colors[i] = blk[i, 1:4]
        elif f == "natural":
            pal = oc.NATURAL_PALETTES[kinds[i]]
            base = torch.tensor(pal[min(int(blk[i, 4] * len(pal)), len(pal) - 1)], dtype=torch.float64)
            colors[i] = (base + (2 * blk[i, 5:8] - 1) * oc.NATURAL_COLOR_JITTER).clamp(0, 1)
    dev, dt = x.device, x.dtype
    out = torch.nan_to_num(colors, nan=0.0).to(device=dev, dtype=dt)[:, :, None, None].expand(b, 3, h, w).clone()
    nat = [i for i in range(b) if fills[i] == "natural"]
    if nat:  # soft linear shading across the image, amplitude <= 15 %
        amp = (0.15 * blk[nat, 8]).to(dev, dt).view(-1, 1, 1, 1)
        psi = (2 * math.pi * blk[nat, 9]).to(dev, dt).view(-1, 1, 1, 1)
        xs = (torch.arange(w, device=dev, dtype=dt) - (w - 1) / 2).view(1, 1, 1, w) / (max(h, w) / 2)
        ys = (torch.arange(h, device=dev, dtype=dt) - (h - 1) / 2).view(1, 1, h, 1) / (max(h, w) / 2)
        out[nat] = (out[nat] * (1 + amp * (xs * psi.cos() + ys * psi.sin()))).clamp_(0, 1)
    uni = [i for i in range(b) if fills[i] == "uniform"]
    if uni:
        out[uni] = torch.rand(len(uni), 3, h, w, generator=fg).to(dev, dt)
    gau = [i for i in range(b) if fills[i] == "gaussian"]
    if gau:
        sigma = (0.05 + 0.25 * blk[gau, 10]).to(dev, dt).view(-1, 1, 1, 1)
        noise = torch.randn(len(gau), 3, h, w, generator=fg).to(dev, dt)
        out[gau] = (out[gau] + sigma * noise).clamp_(0, 1)
    for i in (i for i in range(b) if fills[i] == "texture"):
        if textures is not None:
            src = textures[min(int(blk[i, 11] * len(textures)), len(textures) - 1)]
        elif b > 1:
            src = x[(i + 1 + min(int(blk[i, 11] * (b - 1)), b - 2)) % b]
        else:
            src = x[i]
        # shift by a quarter to three quarters of the image, so a texture never lines up with the
        # face it covers (matters for a batch of one, which borrows from itself)
        src = torch.roll(src, (h // 4 + int(blk[i, 12] * (h // 2)), w // 4 + int(blk[i, 13] * (w // 2))), (1, 2))
        out[i] = src.flip(2) if blk[i, 14] < 0.5 else src
    return out, colors.float()


def _check_color(color: Any, batch: int) -> Tensor:
    c = torch.as_tensor(color, dtype=torch.float64)
    if c.shape == (3,):
        c = c.expand(batch, 3)
    if c.shape != (batch, 3) or not bool(torch.isfinite(c).all()) or c.min() < 0 or c.max() > 1:
        raise ValueError(f"color must be 3 RGB values in [0, 1] (or a (B, 3) tensor), got {color!r}")
    return c


def _check_textures(textures: Any, height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    t = _as_rgb_float(textures)
    if t.shape[2:] != (height, width):
        t = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return t.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------
def occlude(images: Tensor, kind: str | Sequence[str], generator: torch.Generator | int,
            landmarks: Tensor | None = None, boxes: Tensor | None = None, *,
            fill: str = "natural", color: Sequence[float] | Tensor | None = None,
            textures: Tensor | None = None,
            coverage_range: tuple[float, float] | None = None,
            position: tuple[float, float] | None = None) -> OcclusionResult:
    """Occlude a batch of faces with one kind of synthetic occlusion.

    images ``(B, C, H, W)``: float in [0, 1] or uint8 (divided by 255); C = 3 (RGB), 1 (grayscale,
    replicated to RGB) or 4 (RGBA: alpha must be fully opaque and is dropped; otherwise
    ValueError). ``kind``: a name from ``KINDS`` (see ``KIND_DESCRIPTIONS``; case-insensitive) or
    one name per image. ``generator``: a CPU ``torch.Generator`` or an int seed.
    ``landmarks (B, 68, 2)`` (pixel x = column, y = row, iBUG order) and/or ``boxes (B, 4)``
    (x1, y1, x2, y2) say where the face is: boxes define the face region when given, else it is
    :func:`face_boxes_from_landmarks`; natural occluders use the landmarks (or the canonical
    template fitted into the boxes). Options: ``fill`` in ``FILLS`` (default 'natural');
    ``color`` a fixed RGB (3,) or (B, 3) in [0, 1] for every occluder (then ``fill`` must be
    'natural' or 'solid'); ``textures (N, C, h, w)`` a bank for the 'texture' fill;
    ``coverage_range (lo, hi)`` overrides the per-shape area fraction of the squares, 'full' and
    the patterns; ``position (u, v)`` in [0, 1]^2 fixes where the (first) square / rectangle /
    pattern sits in the face region (0 = left/top-most, 1 = right/bottom-most) instead of a
    random place. Natural occluders ignore both (their geometry follows the landmarks).

    Returns :class:`OcclusionResult` with images ``(B, 3, H, W)`` (dtype of the input, float32
    for uint8), masks ``(B, 1, H, W)`` bool (exactly the assigned pixels), coverage ``(B,)``.
    Taught in notebook 02, sections 1-6; paper Sec. 1 item 3, Sec. 4, 4.1.1, 4.2.2.
    """
    x = _as_rgb_float(images)
    b, _, h, w = x.shape
    kinds = _check_kinds(kind, b)
    g = _as_generator(generator)
    col, coverage_range, position = _check_options(fill, color, coverage_range, position, b)
    tex = _check_textures(textures, h, w, x.device, x.dtype) if textures is not None else None
    lm, bx = _face_boxes(landmarks, boxes, b)
    regs = _regions(bx, h, w)

    # random draws, always in this order: 1) per-sample kinds, 2) geometry uniforms, 3) fill seed
    if "mixed" in kinds:
        pick = torch.randint(len(MIXED_KINDS), (b,), generator=g).tolist()
        kinds = [MIXED_KINDS[p] if k == "mixed" else k for k, p in zip(kinds, pick)]
    u = torch.rand(b, oc.N_UNIFORMS, generator=g, dtype=torch.float64).numpy()
    fill_seed = int(torch.randint(0, 2**62, (1,), generator=g))

    drawings = _draw_occluders(kinds, u, regs, lm, bx, coverage_range, position)
    eff_kinds = [d.info["type"] for d in drawings]
    masks = _rasterize(drawings, regs, h, w).to(x.device)

    fg = torch.Generator().manual_seed(fill_seed)
    blk = torch.rand(b, 16, generator=fg, dtype=torch.float64)
    fills = _choose_fills(eff_kinds, fill, col is not None, blk)
    if all(f == "none" for f in fills):
        out, colors = x.clone(), torch.full((b, 3), float("nan"))
    else:
        fill_img, colors = _fill_images(x, eff_kinds, fills, col, tex, blk, fg)
        out = torch.where(masks[:, None], fill_img, x)
    region = _region_masks(regs, h, w, x.device)
    coverage = (masks[:, None] & region).flatten(1).sum(1).float() / region.flatten(1).sum(1).float()
    params = {
        "requested_kind": kind if isinstance(kind, str) else list(kind),
        "kinds": eff_kinds,
        "fills": fills,
        "colors": colors,
        "face_boxes": bx.detach().cpu().clone(),
        "regions": torch.tensor([[r.c_lo, r.c_hi, r.r_lo, r.r_hi] for r in regs]),
        "geometry": _plain([d.info for d in drawings]),
        "fill_seed": fill_seed,
    }
    return OcclusionResult(images=out, masks=masks[:, None], coverage=coverage,
                           kind=kind if isinstance(kind, str) else "per-sample", params=params)


def _check_options(fill: str, color: Any, coverage_range: tuple[float, float] | None,
                   position: tuple[float, float] | None, batch: int
                   ) -> tuple[Tensor | None, tuple[float, float] | None, tuple[float, float] | None]:
    """:func:`occlude`'s options checked and normalised: (colour (B, 3) or None, coverage range, position)."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; valid fills: {', '.join(FILLS)}")
    col = None
    if color is not None:
        if fill not in ("natural", "solid"):
            raise ValueError(f"color={color!r} fixes a solid colour; it cannot be combined with fill={fill!r}")
        col = _check_color(color, batch)
    if coverage_range is not None:
        lo, hi = (float(v) for v in coverage_range)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"coverage_range must satisfy 0 < lo <= hi <= 1, got {coverage_range!r}")
        coverage_range = (lo, hi)
    if position is not None:
        try:
            pu, pv = (float(v) for v in position)
        except (TypeError, ValueError):
            raise ValueError(f"position must be two numbers (u, v) in [0, 1], got {position!r}") from None
        if not (0 <= pu <= 1 and 0 <= pv <= 1):
            raise ValueError(f"position must be two numbers (u, v) in [0, 1], got {position!r}")
        position = (pu, pv)
    return col, coverage_range, position


def _face_boxes(landmarks: Tensor | None, boxes: Tensor | None, batch: int) -> tuple[Tensor | None, Tensor]:
    """(landmarks (B, 68, 2) or None, face boxes (B, 4)): the boxes given, else those of the landmarks."""
    lm = _check_landmarks(landmarks, batch) if landmarks is not None else None
    if boxes is not None:
        return lm, _check_boxes(boxes, batch)
    if lm is not None:
        return lm, face_boxes_from_landmarks(lm)
    raise ValueError("pass landmarks (B, 68, 2) or face boxes (B, 4) so the occluder can find the face")


def _draw_occluders(kinds: list[str], u: np.ndarray, regs: list[oc.Region], lm: Tensor | None, bx: Tensor,
                    coverage_range: tuple[float, float] | None,
                    position: tuple[float, float] | None) -> list[oc.Drawing]:
    """One drawing per face from its uniforms ``u (B, N_UNIFORMS)``: squares and 'full', patterns, or a
    natural occluder placed from the landmarks (or the template fitted into the box)."""
    lm_np = None
    if any(k in NATURAL_KINDS or k == "natural" for k in kinds):
        lm_np = (lm if lm is not None else landmarks_from_boxes(bx)).double().cpu().numpy()
    drawings: list[oc.Drawing] = []
    for i, k in enumerate(kinds):
        dr = oc.Draws(u[i])
        if k == "none":
            d = oc.Drawing(info={"type": "none"})
        elif k in oc.RECT_AREA:
            d = oc.draw_rects(k, dr, regs[i], coverage_range or oc.RECT_AREA[k], position)
            d.info = {"type": k, **d.info}
        elif k in PATTERN_KINDS:
            d = oc.draw_pattern(k, dr, regs[i], coverage_range, position)
            d.info = {"type": k, **d.info}
        else:
            d = oc.draw_natural(k, dr, lm_np[i], FOREHEAD_FRACTION)
        drawings.append(d)
    return drawings


def _choose_fills(kinds: list[str], fill: str, fixed_colour: bool, blk: Tensor) -> list[str]:
    """The fill of each face: 'none', 'fixed' (a given colour), a random one ('random'), the natural
    occluders' own texture or solid for the rest ('natural'), or ``fill``."""
    fills = []
    for i, k in enumerate(kinds):
        if k == "none":
            fills.append("none")
        elif fixed_colour:
            fills.append("fixed")
        elif fill == "random":
            fills.append(_RANDOM_FILLS[min(int(blk[i, 0] * 4), 3)])
        elif fill == "natural":
            fills.append("natural" if k in NATURAL_KINDS else "solid")
        else:
            fills.append(fill)
    return fills


def _rasterize(drawings: list[oc.Drawing], regs: list[oc.Region], height: int, width: int) -> Tensor:
    edges = [oc.loops_to_edges(d.loops) for d in drawings]
    e_max = max(len(e) for e in edges)
    masks = torch.zeros(len(drawings), height, width, dtype=torch.bool)
    if e_max:
        packed = np.zeros((len(edges), e_max, 4), np.float32)
        for i, e in enumerate(edges):
            packed[i, :len(e)] = e
        masks = oc.rasterize_edges(torch.from_numpy(packed), height, width)
    scribbles = [(i, pts, frac) for i, d in enumerate(drawings) for pts, frac in d.scribbles]
    if scribbles:
        oc.rasterize_scribbles(scribbles, regs, height, width, masks)
    return masks


# ---------------------------------------------------------------------------------------------
# Multi-occlusion sets (MOPI, paper Sec. 3.2.1 / 4)
# ---------------------------------------------------------------------------------------------
def multi_occlusion_set(images: Tensor, landmarks: Tensor | None = None, n_variants: int = 7,
                        generator: torch.Generator | int = 0, *, boxes: Tensor | None = None,
                        kinds: Sequence[str] = MOPI_KINDS, fill: str = "solid",
                        **options: Any) -> OcclusionResult:
    """Seven (``n_variants``) occluded variants per identity image, for the MOPI network.

    images ``(3, H, W)`` or ``(B, 3, H, W)`` (any input :func:`occlude` accepts), landmarks
    ``(68, 2)`` / ``(B, 68, 2)`` or boxes ``(4,)`` / ``(B, 4)``. Each identity's variants take
    their kinds from a random permutation of ``kinds`` (cycled with fresh permutations when
    ``n_variants > len(kinds)``), so with the default pool of 6 random-pattern kinds the first
    6 variants have 6 different patterns; each variant has its own colour (``fill='solid'``,
    the paper's arbitrary pixel values) and its own random placement. Deterministic from the
    generator / seed. Returns :class:`OcclusionResult` with images ``(B, V, 3, H, W)``, masks
    ``(B, V, 1, H, W)``, coverage ``(B, V)``, ``params['kinds']`` a B x V list. Further keyword
    options go to :func:`occlude`. Taught in notebook 02, section 7; paper Sec. 3.2.1, Sec. 4.
    """
    if not isinstance(n_variants, int) or n_variants < 1:
        raise ValueError(f"n_variants must be a positive int, got {n_variants!r}")
    kinds = list(kinds)
    bad = [k for k in kinds if k not in KINDS or k in ("none", "mixed")]
    if not kinds or bad:
        raise ValueError(f"kinds must be a non-empty list of occluding kinds, bad: {bad}; valid kinds: {', '.join(KINDS)}")
    if isinstance(images, Tensor) and images.ndim == 3:
        images = images[None]
        landmarks = landmarks[None] if isinstance(landmarks, Tensor) and landmarks.ndim == 2 else landmarks
        boxes = boxes[None] if isinstance(boxes, Tensor) and boxes.ndim == 1 else boxes
    x = _as_rgb_float(images)
    b, _, h, w = x.shape
    g = _as_generator(generator)
    per: list[list[str]] = []
    for _ in range(b):
        seq: list[str] = []
        while len(seq) < n_variants:
            seq += [kinds[j] for j in torch.randperm(len(kinds), generator=g).tolist()]
        per.append(seq[:n_variants])
    rep = lambda t: None if t is None else t.repeat_interleave(n_variants, 0)  # noqa: E731
    res = occlude(rep(x), [k for seq in per for k in seq], g, landmarks=rep(landmarks), boxes=rep(boxes),
                  fill=fill, **options)
    params = dict(res.params)
    params["kinds"] = [params["kinds"][i * n_variants:(i + 1) * n_variants] for i in range(b)]
    params["n_variants"] = n_variants
    return OcclusionResult(images=res.images.view(b, n_variants, 3, h, w),
                           masks=res.masks.view(b, n_variants, 1, h, w),
                           coverage=res.coverage.view(b, n_variants), kind="multi", params=params)


# ---------------------------------------------------------------------------------------------
# Training-time occluder (SOPI: "partially (or fully) occluded or unoccluded", Sec. 3.1.1)
# ---------------------------------------------------------------------------------------------
#: Default training mix (paper Fig. 1a: the trainee gets "partial/fully/unoccluded face data on a
#: random basis"; the proportions are ours). A profile can override it with
#: ``profile.extra['occlusion_mix']`` (see :meth:`TrainingOccluder.from_profile`).
DEFAULT_TRAINING_MIX: dict[str, float] = {"none": 0.25, "partial": 0.5, "full": 0.25}


class TrainingOccluder:
    """Occludes training batches on the fly with a mix of unoccluded / partial / full.

    ``mix`` maps 'none', 'partial', 'full' (and/or any concrete kind name) to non-negative
    weights (normalised); a 'partial' sample gets a kind drawn uniformly from
    ``kinds_for_partial``. Owns its generator (``seed``); ``state_dict()`` /
    ``load_state_dict()`` make resumed training draw the same occlusions as an uninterrupted
    run. ``fill`` defaults to 'random' (pixel values vary so the trainee cannot learn a colour
    bias, paper Sec. 4). Call with ``(images (B, 3, H, W), landmarks=..., boxes=...)`` ->
    :class:`OcclusionResult`. Taught in notebook 02, section 8; used by the SOPI notebook;
    paper Sec. 3.1.1, Sec. 4.
    """

    def __init__(self, mix: Mapping[str, float] | None = None,
                 kinds_for_partial: Sequence[str] = PARTIAL_KINDS, seed: int = 0, fill: str = "random") -> None:
        mix = dict(mix) if mix is not None else dict(DEFAULT_TRAINING_MIX)
        valid = {"none", "partial", "full"} | set(KINDS)
        bad = sorted(set(mix) - valid)
        if bad:
            raise ValueError(f"unknown mix key(s) {bad}; use 'none', 'partial', 'full' or kinds: {', '.join(KINDS)}")
        if any((not isinstance(v, (int, float))) or v < 0 or not math.isfinite(v) for v in mix.values()) \
                or sum(mix.values()) <= 0:
            raise ValueError(f"mix weights must be finite, >= 0 and not all zero, got {mix!r}")
        kinds_for_partial = [k.lower() for k in kinds_for_partial]
        bad = [k for k in kinds_for_partial if k not in KINDS or k in ("none", "mixed")]
        if not kinds_for_partial or bad:
            raise ValueError(f"kinds_for_partial must be occluding kinds, bad: {bad}; valid kinds: {', '.join(KINDS)}")
        if fill not in FILLS:
            raise ValueError(f"unknown fill {fill!r}; valid fills: {', '.join(FILLS)}")
        total = float(sum(mix.values()))
        self.mix = {k: float(v) / total for k, v in mix.items()}
        self.kinds_for_partial = tuple(kinds_for_partial)
        self.seed = int(seed)
        self.fill = fill
        self.calls = 0
        self.generator = torch.Generator().manual_seed(self.seed)

    @classmethod
    def from_profile(cls, profile: Any, seed: int | None = None, **kwargs: Any) -> "TrainingOccluder":
        """The occluder a profile asks for: ``profile.extra['occlusion_mix']`` (else
        :data:`DEFAULT_TRAINING_MIX`), optional ``profile.extra['occlusion_partial_kinds']`` and
        ``profile.extra['occlusion_fill']``, seeded by ``seed`` (default ``profile.seed``).
        Taught in notebook 02, section 8; used by the SOPI training of notebook 03."""
        extra = dict(getattr(profile, "extra", None) or {})
        kwargs.setdefault("mix", extra.get("occlusion_mix", DEFAULT_TRAINING_MIX))
        if "occlusion_partial_kinds" in extra:
            kwargs.setdefault("kinds_for_partial", extra["occlusion_partial_kinds"])
        if "occlusion_fill" in extra:
            kwargs.setdefault("fill", extra["occlusion_fill"])
        return cls(seed=int(profile.seed if seed is None else seed), **kwargs)

    def sample_kinds(self, batch: int) -> list[str]:
        """Draw ``batch`` per-sample kinds from the mix (advances the generator)."""
        keys = list(self.mix)
        probs = torch.tensor([self.mix[k] for k in keys], dtype=torch.float64)
        cat = torch.multinomial(probs, batch, replacement=True, generator=self.generator).tolist()
        part = torch.randint(len(self.kinds_for_partial), (batch,), generator=self.generator).tolist()
        return [self.kinds_for_partial[p] if keys[c] == "partial" else keys[c] for c, p in zip(cat, part)]

    def __call__(self, images: Tensor, landmarks: Tensor | None = None, boxes: Tensor | None = None) -> OcclusionResult:
        kinds = self.sample_kinds(int(images.shape[0]))
        self.calls += 1
        return occlude(images, kinds, self.generator, landmarks=landmarks, boxes=boxes, fill=self.fill)

    def state_dict(self) -> dict[str, Any]:
        """Configuration plus generator state (a uint8 tensor) and call count."""
        return {"mix": dict(self.mix), "kinds_for_partial": list(self.kinds_for_partial), "seed": self.seed,
                "fill": self.fill, "calls": self.calls, "generator_state": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the configuration must match (ValueError otherwise)."""
        missing = {"mix", "kinds_for_partial", "fill", "generator_state"} - set(state)
        if missing:
            raise ValueError(f"not a TrainingOccluder state_dict: missing {sorted(missing)}")
        mine = (self.mix, list(self.kinds_for_partial), self.fill)
        theirs = (dict(state["mix"]), list(state["kinds_for_partial"]), state["fill"])
        if mine[1:] != theirs[1:] or set(mine[0]) != set(theirs[0]) or any(
                abs(mine[0][k] - theirs[0][k]) > 1e-12 for k in mine[0]):
            raise ValueError(f"state_dict configuration {theirs} does not match this occluder's {mine}")
        self.generator.set_state(state["generator_state"])
        self.seed = int(state.get("seed", self.seed))
        self.calls = int(state.get("calls", 0))


# ---------------------------------------------------------------------------------------------
# Fixed evaluation sets
# ---------------------------------------------------------------------------------------------
_SET_FORMAT = "occ3d.occlusion_set"


def quantise(images: Tensor) -> Tensor:
    """Round images in [0, 1] to 8-bit levels, float32 out (what a stored PNG or uint8 tensor holds). Any shape."""
    return (images.float().clamp(0, 1) * 255).round_().div_(255)


def make_eval_set(images: Tensor, landmarks: Tensor | None, kind: str | Sequence[str], seed: int, *,
                  boxes: Tensor | None = None, **options: Any) -> OcclusionResult:
    """A fixed, reproducible evaluation set: :func:`occlude` with ``torch.Generator().manual_seed(seed)``,
    images quantised to 8 bits so the in-memory set equals what :func:`save_occlusion_set`
    stores. images ``(B, C, H, W)`` -> :class:`OcclusionResult` ``(B, 3, H, W)`` float32. The
    masks still mark the occluder's pixels. Taught in notebook 02, section 9; used for the
    DSOFI/DHOFI/SHOFI and random-pattern evaluations (paper Sec. 4.2.1, 4.2.2).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    res = occlude(images, kind, torch.Generator().manual_seed(int(seed)), landmarks, boxes, **options)
    res.images = quantise(res.images)
    res.params["seed"] = int(seed)
    return res


def save_occlusion_set(path: str | Path, result: OcclusionResult) -> Path:
    """Write an occlusion set atomically (``artifacts.torch_save``): images as uint8, masks bool,
    coverage float32, kind, params. Works for single ``(B, 3, H, W)`` and multi
    ``(B, V, 3, H, W)`` sets. Taught in notebook 02, section 9."""
    if not isinstance(result, OcclusionResult):
        raise TypeError(f"result must be an OcclusionResult, got {type(result).__name__}")
    payload = {
        "format": _SET_FORMAT, "version": 1,
        "images": (result.images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8),
        "masks": result.masks.detach().cpu().bool(),
        "coverage": result.coverage.detach().cpu().float(),
        "kind": str(result.kind),
        "params": _plain({k: (v.detach().cpu() if isinstance(v, Tensor) else v) for k, v in result.params.items()}),
    }
    return torch_save(payload, path)


def load_occlusion_set(path: str | Path) -> OcclusionResult:
    """Read a set written by :func:`save_occlusion_set`; images come back float32 in [0, 1]
    (``uint8 / 255``). Raises FileNotFoundError / ValueError. Taught in notebook 02, section 9."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no occlusion set at {path}")
    d = torch_load(path, "write it again with save_occlusion_set")
    if not isinstance(d, dict) or d.get("format") != _SET_FORMAT:
        raise ValueError(f"{path} is not an occlusion set (format {_SET_FORMAT!r})")
    return OcclusionResult(images=d["images"].float() / 255.0, masks=d["masks"], coverage=d["coverage"],
                           kind=d["kind"], params=d["params"])


# ---------------------------------------------------------------------------------------------
# The fixed evaluation sets of a run (built once, cached, reused by every evaluation)
# ---------------------------------------------------------------------------------------------
#: Kinds of the fixed evaluation sets: the paper's Table 1-3 rows (unoccluded, DSOFI, DHOFI, SHOFI),
#: full occlusion, random patterns (Tables 5, 7) and natural-looking occluders (Table 4's spirit).
EVAL_KINDS: tuple[str, ...] = ("none", "dsofi", "dhofi", "shofi", "full", "random_pattern", "natural")
#: Bump when the occluder geometry or fills change, so cached evaluation sets are rebuilt.
EVAL_SET_VERSION = 1


def kind_seed(seed: int, kind: str) -> int:
    """The seed of the ``kind`` evaluation set derived from a base seed (stable across runs and
    Python versions: CRC-32 of the name, not ``hash``). Taught in notebook 02, section 9."""
    return (int(seed) * 1_000_003 + zlib.crc32(kind.encode())) % (2**63 - 1)


def eval_indices(n_total: int, n: int, seed: int) -> Tensor:
    """``n`` distinct, sorted indices out of ``n_total`` drawn with ``seed`` -> ``(n,)`` int64
    (the same test faces for every kind). Taught in notebook 02, section 9."""
    if n_total < 1 or not 1 <= n <= n_total:
        raise ValueError(f"need 1 <= n <= n_total, got n={n}, n_total={n_total}")
    g = torch.Generator().manual_seed(int(seed) + 7919)
    return torch.randperm(n_total, generator=g)[:n].sort().values


def load_or_build_eval_sets(ctx: Context, kinds: Sequence[str] = EVAL_KINDS, n: int | None = None,
                            seed: int | None = None, *, split: str = "test", fill: str = "natural",
                            root: str | Path | None = None) -> dict[str, OcclusionResult]:
    """The run's fixed occluded evaluation sets, one per kind, built once and cached.

    Takes ``n`` (default ``ctx.profile.eval_samples``, at most the split size) faces of
    ``ctx.dataset.<split>`` chosen by :func:`eval_indices` (the same faces for every kind) and
    occludes them with :func:`make_eval_set` using :func:`kind_seed` ``(seed, kind)`` (default
    seed ``ctx.profile.seed``). Each set is saved with :func:`save_occlusion_set` as
    ``<root>/<kind>.pt`` where ``root`` defaults to ``cache_dir()/eval_sets/<hash>``, the hash
    covering the chosen images and landmarks (their bytes), n, seed, fill, split and
    :data:`EVAL_SET_VERSION` (not the list of kinds: any subset reuses the files); later calls
    (notebook 05's evaluation) load the very same images.
    ``ctx`` needs only ``ctx.profile.eval_samples``, ``ctx.profile.seed`` and
    ``ctx.dataset.<split>.batch(indices)`` returning ``{'image' (B, 3, H, W), 'landmarks'
    (B, 68, 2)}``. Returns ``{kind: OcclusionResult}`` with ``params['indices']`` (the split
    rows, for the ground truth), ``params['split']`` and ``params['path']``.
    Taught in notebook 02, section 9; used by notebook 05 (paper Sec. 4.2, Tables 1-7).
    """
    kinds = [str(k).lower() for k in kinds]
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise ValueError(f"kinds must be a non-empty list of occlusion kinds, bad: {bad}; valid: {', '.join(KINDS)}")
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; valid fills: {', '.join(FILLS)}")
    data = getattr(ctx.dataset, split, None)
    if data is None or not hasattr(data, "batch"):
        raise ValueError(f"ctx.dataset has no split {split!r} with a .batch(indices) method")
    m = len(data)
    n = int(ctx.profile.eval_samples if n is None else n)
    n = min(n, m)
    seed = int(ctx.profile.seed if seed is None else seed)
    idx = eval_indices(m, n, seed)
    batch = data.batch(idx.numpy())
    images, landmarks = batch["image"], batch["landmarks"]
    digest = hashlib.sha256()
    for t in (images, landmarks):
        digest.update(np.ascontiguousarray(t.detach().cpu().float().numpy()).tobytes())
    # each kind's set depends only on these (not on which other kinds are asked for), so any
    # subset of kinds reuses the same files
    settings = {"version": EVAL_SET_VERSION, "n": n, "seed": seed, "fill": fill, "split": split,
                "data": digest.hexdigest()}
    key = config_hash(settings)
    base = Path(root) if root is not None else cache_dir() / "eval_sets" / key
    out: dict[str, OcclusionResult] = {}
    for kind in kinds:
        path = base / f"{kind}.pt"
        # a foreign, truncated or byte-changed file is rebuilt (artifacts.load_cached warns)
        res = load_cached(path, load_occlusion_set, "evaluation set")
        if res is not None and res.params.get("key") != key:
            res = None
        if res is None:
            res = make_eval_set(images, landmarks, kind, kind_seed(seed, kind), fill=fill)
            res.params.update({"indices": idx.tolist(), "split": split, "key": key})
            save_occlusion_set(path, res)
        res.params["path"] = str(path)
        out[kind] = res
    return out


# ---------------------------------------------------------------------------------------------
# An occlusion explorer (notebook 02, section 10)
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# Teaching aids for notebook 02: tables, coverage statistics, a linear landmark probe
# ---------------------------------------------------------------------------------------------
def kinds_table(kinds: Sequence[str] | None = None) -> str:
    """A markdown table: kind, definition (``KIND_DESCRIPTIONS``) and documented coverage range
    (``COVERAGE_RANGES``) of each kind. Taught in notebook 02, sections 2-4."""
    kinds = list(kinds) if kinds is not None else [k for k in KINDS]
    rows = ["| kind | definition | coverage of the face region |", "|---|---|---|"]
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r}; valid kinds: {', '.join(KINDS)}")
        lo, hi = COVERAGE_RANGES[k]
        rows.append(f"| `{k}` | {KIND_DESCRIPTIONS[k]} | {lo:.1%} - {hi:.1%} |")
    return "\n".join(rows)


def coverage_samples(images: Tensor, landmarks: Tensor | None, kinds: Sequence[str], seed: int = 0,
                     repeats: int = 1, boxes: Tensor | None = None, **options: Any) -> dict[str, Tensor]:
    """Coverage of ``repeats`` independent occlusions of every image for each kind.

    images ``(B, C, H, W)``, landmarks ``(B, 68, 2)`` -> ``{kind: (repeats * B,) float}``.
    Kind ``k`` uses the seed :func:`kind_seed` ``(seed, k)``. Taught in notebook 02, section 6.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    out = {}
    for k in kinds:
        g = torch.Generator().manual_seed(kind_seed(seed, k))
        out[k] = torch.cat([occlude(images, k, g, landmarks, boxes, **options).coverage for _ in range(repeats)])
    return out


def coverage_histograms(coverage: Mapping[str, Tensor], ranges: Mapping[str, tuple[float, float]] = COVERAGE_RANGES,
                        ncols: int = 4, bins: int = 25):
    """One histogram per kind of the coverage values, the documented range shaded.
    ``coverage`` as returned by :func:`coverage_samples` -> matplotlib Figure. Taught in
    notebook 02, section 6."""
    import matplotlib.pyplot as plt

    names = list(coverage)
    ncols = max(1, min(ncols, len(names)))
    nrows = (len(names) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 2.1 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, k in zip(axes.flat, names):
        v = coverage[k].detach().cpu().numpy()
        if k in ranges:
            lo, hi = ranges[k]
            ax.axvspan(lo, max(hi, lo + 0.005), color="tab:green", alpha=0.15, label="documented")
        ax.hist(v, bins=bins, range=(0, 1), color="tab:blue")
        ax.set_title(f"{k}: mean {v.mean():.2f}", fontsize=8)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
    axes.flat[0].set_xlabel("fraction of the face region covered", fontsize=7)
    fig.tight_layout()
    return fig
