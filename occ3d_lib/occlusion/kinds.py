"""The occlusion kinds and where they go on a face: the taxonomy, fills, coverage and the face region.

Taught in notebook 02 (sections 2-6: the square taxonomy, random patterns, natural occluders, fills,
coverage statistics). Paper: Sec. 1 item 3 (artificial occlusions; "goggles, facial hair, noise" as
natural occlusions), Sec. 4 ("arbitrary pixel values"), Sec. 4.1.1 (DSOFI / DHOFI / SHOFI squares),
Sec. 4.2.2 and Table 5 (random patterns: stars, crowns, no specific shape). The kinds are drawn by
:mod:`occ3d_lib.occlusion.shapes` and applied to images by :mod:`occ3d_lib.occlusion.apply`.

Face region (used for placement *and* coverage everywhere)
    The face box of an image is (x1, y1, x2, y2) in pixel coordinates (x = column, y = row).
    From 68 landmarks it is the landmarks' bounding box with its top edge raised by
    ``FOREHEAD_FRACTION`` (0.4) of the box height, to include the forehead: by the rule of
    facial thirds the hairline sits ~0.5 box heights above the brows; 0.4 keeps the box on skin
    below a typical hairline. The *face region* is the set of pixels whose centre (c, r)
    satisfies x1 <= c <= x2 and y1 <= r <= y2 and lies inside the image, so a box at or over the
    border is clipped to the image. ``coverage = |mask & region| / |region|``.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from occ3d_lib.occlusion import shapes as oc

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

# documented ranges of the *union* coverage returned per kind (checked by tests/test_apply.py,
# test_coverage_within_documented_range, on jittered canonical faces); exact by construction for the squares and
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
#: What the 'random' fill draws from (one per sample).
RANDOM_FILLS: tuple[str, ...] = ("solid", "uniform", "gaussian", "texture")
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


def kind_seed(seed: int, kind: str) -> int:
    """The seed of the ``kind`` evaluation set derived from a base seed (stable across runs and
    Python versions: CRC-32 of the name, not ``hash``). Taught in notebook 02, section 9."""
    return (int(seed) * 1_000_003 + zlib.crc32(kind.encode())) % (2**63 - 1)


def kinds_table(kinds: Sequence[str] | None = None) -> str:
    """A markdown table: kind, definition (``KIND_DESCRIPTIONS``) and documented coverage range (``COVERAGE_RANGES``).

    Taught in notebook 02, sections 2-4.

    Args:
        kinds: the kinds, one row each (default all of :data:`KINDS`); an unknown kind is a ``ValueError``.

    Returns:
        The markdown table as a str.
    """
    kinds = list(kinds) if kinds is not None else [k for k in KINDS]
    rows = ["| kind | definition | coverage of the face region |", "|---|---|---|"]
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r}; valid kinds: {', '.join(KINDS)}")
        lo, hi = COVERAGE_RANGES[k]
        rows.append(f"| `{k}` | {KIND_DESCRIPTIONS[k]} | {lo:.1%} - {hi:.1%} |")
    return "\n".join(rows)


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

    Notebook 02, section 4 checks the natural occluders' placement with it.

    Args:
        masks: ``(B, 1, H, W)`` bool occluder masks.
        landmarks: ``(B, 68, 2)`` pixels (x = column, y = row).
        idx: the landmark indices to test.

    Returns:
        ``(B, len(idx))`` bool.
    """
    p = landmarks[:, list(idx)].round().long().clamp(0, masks.shape[-1] - 1)
    return masks[torch.arange(len(landmarks))[:, None], 0, p[..., 1], p[..., 0]]


def occlusion_coverage(masks: Tensor, boxes: Tensor) -> Tensor:
    """Fraction of each face region covered by a mask. masks ``(B, 1, H, W)`` bool, boxes
    ``(B, 4)`` -> ``(B,)`` float32. Taught in notebook 02, section 6."""
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must have shape (B, 1, H, W), got {tuple(masks.shape)}")
    region = face_region_mask(boxes, masks.shape[2], masks.shape[3]).to(masks.device)
    return ((masks.bool() & region).flatten(1).sum(1).float() / region.flatten(1).sum(1).float())


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
