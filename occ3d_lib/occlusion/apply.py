"""Applying occlusions to images: :func:`occlude`, multi-occlusion sets and the training-time occluder.

Taught in notebook 02 (sections: 1 why occlusions break a regressor, 2-5 the kinds and fills applied,
6 coverage statistics, 7 multi-occlusion sets, 8 the training-time occluder). Paper: Sec. 3.2.1 (7
occluded images per identity), Sec. 4 ("arbitrary pixel values ... without developing pixel-value
bias"; 7 random patterns per image). The kinds, fills and face region are defined in
:mod:`occ3d_lib.occlusion.kinds`; the fixed evaluation sets built from :func:`occlude` are in
:mod:`occ3d_lib.occlusion.eval_sets`.

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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from occ3d_lib.occlusion import shapes
from occ3d_lib.occlusion.kinds import (
    COVERAGE_RANGES,
    FILLS,
    FOREHEAD_FRACTION,
    KINDS,
    MIXED_KINDS,
    MOPI_KINDS,
    NATURAL_KINDS,
    PARTIAL_KINDS,
    PATTERN_KINDS,
    RANDOM_FILLS,
    _check_boxes,
    _check_landmarks,
    _region_masks,
    _regions,
    face_boxes_from_landmarks,
    kind_seed,
    landmarks_from_boxes,
)


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


def occlude(images: Tensor, kind: str | Sequence[str], generator: torch.Generator | int,
            landmarks: Tensor | None = None, boxes: Tensor | None = None, *,
            fill: str = "natural", color: Sequence[float] | Tensor | None = None,
            textures: Tensor | None = None,
            coverage_range: tuple[float, float] | None = None,
            position: tuple[float, float] | None = None) -> OcclusionResult:
    """Occlude a batch of faces with one kind of synthetic occlusion.

    Boxes define the face region when given, else it is :func:`face_boxes_from_landmarks`; natural
    occluders use the landmarks (or the canonical template fitted into the boxes) and ignore
    ``coverage_range`` and ``position`` (their geometry follows the landmarks).
    Taught in notebook 02, sections 1-6; paper Sec. 1 item 3, Sec. 4, 4.1.1, 4.2.2.

    Args:
        images: ``(B, C, H, W)`` float in [0, 1] or uint8 (divided by 255); C = 3 (RGB), 1 (grayscale,
            replicated to RGB) or 4 (RGBA: alpha must be fully opaque and is dropped; otherwise ValueError).
        kind: a name from ``KINDS`` (see ``KIND_DESCRIPTIONS``; case-insensitive) or one name per image.
        generator: a CPU ``torch.Generator`` or an int seed.
        landmarks: ``(B, 68, 2)`` (pixel x = column, y = row, iBUG order): where the face is; or None.
        boxes: ``(B, 4)`` (x1, y1, x2, y2) face boxes; or None. At least one of ``landmarks`` / ``boxes``.
        fill: a fill of ``FILLS`` (default 'natural').
        color: a fixed RGB ``(3,)`` or ``(B, 3)`` in [0, 1] for every occluder (then ``fill`` must be
            'natural' or 'solid'); None draws colours.
        textures: ``(N, C, h, w)`` a bank for the 'texture' fill, or None.
        coverage_range: ``(lo, hi)`` overrides the per-shape area fraction of the squares, 'full' and
            the patterns; None keeps each kind's.
        position: ``(u, v)`` in [0, 1]^2 fixes where the (first) square / rectangle / pattern sits in the
            face region (0 = left/top-most, 1 = right/bottom-most) instead of a random place; or None.

    Returns:
        :class:`OcclusionResult` with images ``(B, 3, H, W)`` (dtype of the input, float32 for uint8),
        masks ``(B, 1, H, W)`` bool (exactly the assigned pixels), coverage ``(B,)``, ``kind`` (the
        requested name, or "per-sample" for a list) and ``params`` (``requested_kind``, ``kinds``,
        ``fills``, ``colors (B, 3)``, ``face_boxes (B, 4)``, ``regions (B, 4)``, ``geometry``, ``fill_seed``).
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
    u = torch.rand(b, shapes.N_UNIFORMS, generator=g, dtype=torch.float64).numpy()
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
        "geometry": plain_values([d.info for d in drawings]),
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


def _draw_occluders(kinds: list[str], u: np.ndarray, regs: list[shapes.Region], lm: Tensor | None, bx: Tensor,
                    coverage_range: tuple[float, float] | None,
                    position: tuple[float, float] | None) -> list[shapes.Drawing]:
    """One drawing per face from its uniforms ``u (B, N_UNIFORMS)``: squares and 'full', patterns, or a
    natural occluder placed from the landmarks (or the template fitted into the box)."""
    lm_np = None
    if any(k in NATURAL_KINDS or k == "natural" for k in kinds):
        lm_np = (lm if lm is not None else landmarks_from_boxes(bx)).double().cpu().numpy()
    drawings: list[shapes.Drawing] = []
    for i, k in enumerate(kinds):
        dr = shapes.Draws(u[i])
        if k == "none":
            d = shapes.Drawing(info={"type": "none"})
        elif k in shapes.RECT_AREA:
            d = shapes.draw_rects(k, dr, regs[i], coverage_range or shapes.RECT_AREA[k], position)
            d.info = {"type": k, **d.info}
        elif k in PATTERN_KINDS:
            d = shapes.draw_pattern(k, dr, regs[i], coverage_range, position)
            d.info = {"type": k, **d.info}
        else:
            d = shapes.draw_natural(k, dr, lm_np[i], FOREHEAD_FRACTION)
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
            fills.append(RANDOM_FILLS[min(int(blk[i, 0] * 4), 3)])
        elif fill == "natural":
            fills.append("natural" if k in NATURAL_KINDS else "solid")
        else:
            fills.append(fill)
    return fills


def _rasterize(drawings: list[shapes.Drawing], regs: list[shapes.Region], height: int, width: int) -> Tensor:
    edges = [shapes.loops_to_edges(d.loops) for d in drawings]
    e_max = max(len(e) for e in edges)
    masks = torch.zeros(len(drawings), height, width, dtype=torch.bool)
    if e_max:
        packed = np.zeros((len(edges), e_max, 4), np.float32)
        for i, e in enumerate(edges):
            packed[i, :len(e)] = e
        masks = shapes.rasterize_edges(torch.from_numpy(packed), height, width)
    scribbles = [(i, pts, frac) for i, d in enumerate(drawings) for pts, frac in d.scribbles]
    if scribbles:
        shapes.rasterize_scribbles(scribbles, regs, height, width, masks)
    return masks


def multi_occlusion_set(images: Tensor, landmarks: Tensor | None = None, n_variants: int = 7,
                        generator: torch.Generator | int = 0, *, boxes: Tensor | None = None,
                        kinds: Sequence[str] = MOPI_KINDS, fill: str = "solid",
                        **options: Any) -> OcclusionResult:
    """Seven (``n_variants``) occluded variants per identity image, for the MOPI network.

    Each identity's variants take their kinds from a random permutation of ``kinds`` (cycled with fresh
    permutations when ``n_variants > len(kinds)``), so with the default pool of 6 random-pattern kinds
    the first 6 variants have 6 different patterns; each variant has its own colour (``fill='solid'``,
    the paper's arbitrary pixel values) and its own random placement. Deterministic from the
    generator / seed. Taught in notebook 02, section 7; paper Sec. 3.2.1, Sec. 4.

    Args:
        images: ``(3, H, W)`` or ``(B, 3, H, W)`` (any input :func:`occlude` accepts).
        landmarks: ``(68, 2)`` / ``(B, 68, 2)`` pixels, or None (then ``boxes``).
        n_variants: V, the variants per image (a positive int).
        generator: a CPU ``torch.Generator`` or an int seed.
        boxes: ``(4,)`` / ``(B, 4)`` face boxes, or None.
        kinds: the pool of occluding kinds (default :data:`MOPI_KINDS`, the random patterns).
        fill: the fill of every variant (:data:`FILLS`).
        **options: further keyword options of :func:`occlude`.

    Returns:
        :class:`OcclusionResult` with images ``(B, V, 3, H, W)``, masks ``(B, V, 1, H, W)``, coverage
        ``(B, V)``, kind "multi", ``params['kinds']`` a B x V list and ``params['n_variants']``.
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
    def from_profile(cls, profile: Any, seed: int | None = None, **kwargs: Any) -> TrainingOccluder:
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


def coverage_samples(images: Tensor, landmarks: Tensor | None, kinds: Sequence[str], seed: int = 0,
                     repeats: int = 1, boxes: Tensor | None = None, **options: Any) -> dict[str, Tensor]:
    """Coverage of ``repeats`` independent occlusions of every image for each kind.

    Kind ``k`` uses the seed :func:`kind_seed` ``(seed, k)``. Taught in notebook 02, section 6.

    Args:
        images: ``(B, C, H, W)`` (any input :func:`occlude` accepts).
        landmarks: ``(B, 68, 2)`` pixels, or None (then ``boxes``).
        kinds: the occlusion kinds.
        seed: the base seed.
        repeats: occlusions per image and kind (a positive int).
        boxes: ``(B, 4)`` face boxes, or None.
        **options: further keyword options of :func:`occlude`.

    Returns:
        ``{kind: (repeats * B,)}`` float coverage fractions.
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

    Taught in notebook 02, section 6.

    Args:
        coverage: ``{kind: (M,)}`` as returned by :func:`coverage_samples`.
        ranges: ``{kind: (lo, hi)}`` documented ranges (default :data:`COVERAGE_RANGES`); a kind without one
            is not shaded.
        ncols: panels per row.
        bins: histogram bins over [0, 1].

    Returns:
        The matplotlib Figure.
    """
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


def plain_values(obj: Any) -> Any:
    """numpy scalars / arrays -> Python types (for torch.load(weights_only=True) and JSON)."""
    if isinstance(obj, dict):
        return {str(k): plain_values(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_values(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


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
            pal = shapes.NATURAL_PALETTES[kinds[i]]
            base = torch.tensor(pal[min(int(blk[i, 4] * len(pal)), len(pal) - 1)], dtype=torch.float64)
            colors[i] = (base + (2 * blk[i, 5:8] - 1) * shapes.NATURAL_COLOR_JITTER).clamp(0, 1)
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
