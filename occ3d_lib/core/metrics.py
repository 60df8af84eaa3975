"""Evaluation metrics (paper Sec. 4.2, Tables 1-7, plus ground-truth 3D metrics beyond the paper).

Taught in notebook 05 ("Evaluation"), sections 1-3. Every function is pure and defined in its
docstring; shapes follow :mod:`occ3d_lib` conventions (landmarks ``(B, 68, 2)`` in pixels of an
``S x S`` image, images ``(B, 3, S, S)`` in [0, 1], masks ``(B, 1, S, S)``, meshes ``(B, N, 3)`` in
model units).

Units.
- Landmark ME / MSE are reported in pixels of a 224 x 224 image (the paper's input size): inputs
  in pixels at size S are multiplied by ``224 / S`` first, so the numbers do not depend on the
  profile's resolution.
- "Normalised" ME / MSE (the paper's AFLW2000-3D columns) divide the 224-scale coordinates by 224
  (ME / 224, MSE / 224^2). The paper's own normalised numbers (0.68 for an ME of 1.24 px) cannot
  be ME / 224, so they are not on a recoverable scale; we keep the definition the paper states.
- AFLW2000-3D NME (3DDFA protocol): mean Euclidean error / sqrt(w h) of the ground-truth landmark
  box, usually quoted in percent (x 100).
- Mesh errors: model units are BFM's (1 unit = 100 mm: BFM09 stores micrometres and
  ``BFM_model_front`` scales them by 1e-5; see docs/facts.md §2 and docs/CONVENTIONS.md), so
  :data:`MM_PER_UNIT` = 100. The procedural model uses the same units (a face ~1.5 units wide).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

REFERENCE_SIZE = 224
MM_PER_UNIT = 100.0
N_LANDMARKS = 68


# --------------------------------------------------------------------------- helpers
def _check_lm(pred: Tensor, gt: Tensor) -> None:
    for name, x in (("pred", pred), ("gt", gt)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (B, 68, 2), got {type(x).__name__}")
        if x.ndim != 3 or x.shape[2] != 2:
            raise ValueError(f"{name} landmarks must have shape (B, K, 2), got {tuple(x.shape)}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt landmarks must have the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")


def _scale(image_size: int) -> float:
    if not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    return REFERENCE_SIZE / image_size


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return x
    if reduction == "mean":
        return x.mean(dim=0)
    raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")


# --------------------------------------------------------------------------- landmarks (Tables 1, 3, 5, 7)
def landmark_me(pred: Tensor, gt: Tensor, image_size: int, reduction: str = "none") -> Tensor:
    """Landmark ME: mean over the 68 points of the Euclidean distance, in pixels at 224 x 224.

    Tables 1, 3, 5, 7 ("ME").

    Args:
        pred: predicted landmarks ``(B, 68, 2)`` in pixels of an ``image_size`` image.
        gt: ground-truth landmarks ``(B, 68, 2)``, same units.
        image_size: the side S of the images the pixels refer to; distances are scaled by 224 / S.
        reduction: "none" (one value per face) or "mean".

    Returns:
        ``(B,)`` (``reduction="none"``) or a scalar tensor (``"mean"``), pixels at 224.
    """
    _check_lm(pred, gt)
    d = torch.linalg.vector_norm((pred - gt.to(pred)) * _scale(image_size), dim=-1)  # (B, K)
    return _reduce(d.mean(dim=1), reduction)


def landmark_mse_xy(pred: Tensor, gt: Tensor, image_size: int, reduction: str = "none") -> Tensor:
    """Per-axis landmark MSE (x, y): mean over the 68 points of dx^2 and of dy^2, pixels^2 at 224.

    Table 1's "(x, y)" pair.

    Args:
        pred: predicted landmarks ``(B, 68, 2)`` in pixels of an ``image_size`` image.
        gt: ground-truth landmarks ``(B, 68, 2)``, same units.
        image_size: the side S of the images the pixels refer to; offsets are scaled by 224 / S.
        reduction: "none" (one pair per face) or "mean".

    Returns:
        ``(B, 2)`` (columns: x, y) or ``(2,)`` with ``reduction="mean"``, pixels^2 at 224.
    """
    _check_lm(pred, gt)
    d = (pred - gt.to(pred)) * _scale(image_size)
    return _reduce((d ** 2).mean(dim=1), reduction)


def normalized_landmark_me(pred: Tensor, gt: Tensor, image_size: int, reduction: str = "none") -> Tensor:
    """Normalised ME (Table 1, AFLW2000-3D columns): :func:`landmark_me` with coordinates / 224."""
    return landmark_me(pred, gt, image_size, reduction) / REFERENCE_SIZE


def normalized_landmark_mse_xy(pred: Tensor, gt: Tensor, image_size: int, reduction: str = "none") -> Tensor:
    """Normalised per-axis MSE: :func:`landmark_mse_xy` with coordinates / 224 (so / 224^2)."""
    return landmark_mse_xy(pred, gt, image_size, reduction) / REFERENCE_SIZE ** 2


def aflw_nme(pred: Tensor, gt: Tensor, reduction: str = "none") -> Tensor:
    """AFLW2000-3D NME (3DDFA protocol): mean 2D Euclidean error / sqrt(w h) of the gt landmark box.

    pred, gt (B, 68, 2) in the same (any) pixel units; the box is the min/max of ``gt``. A fraction
    (multiply by 100 for percent). Returns (B,) or a scalar.
    """
    _check_lm(pred, gt)
    gt = gt.to(pred)
    wh = gt.amax(dim=1) - gt.amin(dim=1)  # (B, 2)
    area = (wh[:, 0] * wh[:, 1]).clamp(min=1e-12)
    err = torch.linalg.vector_norm(pred - gt, dim=-1).mean(dim=1)
    return _reduce(err / area.sqrt(), reduction)


YAW_EDGES_DEG: tuple[float, ...] = (0.0, 30.0, 60.0, 90.0)
"""|yaw| bin edges of the AFLW2000-3D protocol: [0, 30], (30, 60], (60, 90]."""


def yaw_bin(yaw_rad: Tensor, edges_deg: Sequence[float] = YAW_EDGES_DEG) -> Tensor:
    """Index of the |yaw| bin of each sample (0 for [e0, e1], 1 for (e1, e2], ...). (B,) radians -> (B,) long.

    Values beyond the last edge go to the last bin.
    """
    deg = torch.round(yaw_rad.to(torch.float64).abs() * (180.0 / math.pi) * 1e4) / 1e4  # float32 radians: 30.000001 -> 30
    inner = torch.tensor(list(edges_deg[1:-1]), dtype=deg.dtype, device=deg.device)
    return torch.bucketize(deg, inner, right=False)


def yaw_bin_label(yaw_deg: float) -> str:
    """The AFLW2000-3D |yaw| bin of one yaw in degrees, by :func:`yaw_bin`: '[0, 30]', '(30, 60]' or '(60, 90]'."""
    e = YAW_EDGES_DEG
    labels = [f"[{e[0]:g}, {e[1]:g}]"] + [f"({a:g}, {b:g}]" for a, b in zip(e[1:-1], e[2:])]
    return labels[int(yaw_bin(torch.tensor([math.radians(yaw_deg)]))[0])]


# --------------------------------------------------------------------------- histogram dissimilarity (Tables 2, 4, 6)
def masked_color_histograms(images: Tensor, mask: Tensor, bins: int = 16) -> Tensor:
    """Per-channel colour histograms of the pixels inside ``mask``, each summing to 1.

    images (B, 3, H, W) in [0, 1] (values outside are clamped into the end bins); mask
    (B, 1, H, W) bool or float weights. Returns (B, 3, bins); rows of an empty mask are all 0.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if mask.shape != (images.shape[0], 1, *images.shape[2:]):
        raise ValueError(f"mask must have shape {(images.shape[0], 1, *images.shape[2:])}, got {tuple(mask.shape)}")
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    b = images.shape[0]
    idx = (images.detach().clamp(0, 1) * bins).long().clamp(max=bins - 1).reshape(b, 3, -1)
    w = mask.detach().to(torch.float64).reshape(b, 1, -1).expand(b, 3, -1)
    hist = torch.zeros(b, 3, bins, dtype=torch.float64, device=images.device).scatter_add_(2, idx, w)
    total = hist.sum(dim=2, keepdim=True)
    return torch.where(total > 0, hist / total.clamp(min=1e-300), torch.zeros_like(hist))


def hellinger_distance(p: Tensor, q: Tensor) -> Tensor:
    """Hellinger distance ``sqrt(1 - sum_i sqrt(p_i q_i))`` between histograms along the last dim.

    Symmetric, 0 for identical histograms, 1 for disjoint supports. (..., K) x2 -> (...).
    """
    if p.shape != q.shape:
        raise ValueError(f"histograms must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    bc = (p * q).clamp(min=0).sqrt().sum(dim=-1)
    return (1 - bc).clamp(min=0).sqrt()


def histogram_dissimilarity(images: Tensor, rendered: Tensor, mask: Tensor, bins: int = 16) -> Tensor:
    """Texture dissimilarity of Tables 2, 4, 6 (the paper does not define it; our definition).

    For each sample, the per-channel colour histograms (``bins`` bins over [0, 1]) of the input
    ``images`` and of the ``rendered`` reconstruction, both taken inside the same ``mask``
    (usually the rendered face mask), compared with the Hellinger distance and averaged over
    R, G, B. Range [0, 1]: identical regions give 0; symmetric in (images, rendered). Samples
    with an empty mask give NaN.

    Args:
        images: input images ``(B, 3, H, W)`` in [0, 1] (values outside fall into the end bins).
        rendered: the reconstruction rendered, same shape as ``images``.
        mask: ``(B, 1, H, W)`` bool or float weights: the pixels that count.
        bins: histogram bins per channel (>= 2).

    Returns:
        ``(B,)`` float64 dissimilarity in [0, 1], NaN where the mask is empty.
    """
    if images.shape != rendered.shape:
        raise ValueError(f"images and rendered must have the same shape, got {tuple(images.shape)} and {tuple(rendered.shape)}")
    hp = masked_color_histograms(images, mask, bins)
    hq = masked_color_histograms(rendered, mask, bins)
    d = hellinger_distance(hp, hq).mean(dim=1)
    empty = mask.reshape(mask.shape[0], -1).to(torch.float64).sum(dim=1) <= 0
    return torch.where(empty, torch.full_like(d, float("nan")), d)


# --------------------------------------------------------------------------- dense 3D (beyond the paper)
def umeyama(src: Tensor, dst: Tensor, with_scale: bool = True, weights: Tensor | None = None
            ) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares similarity (or rigid) transform mapping ``src`` onto ``dst`` (Umeyama 1991).

    src, dst (B, N, 3); weights optional (N,) non-negative. Returns scale (B,), rotation (B, 3, 3)
    and translation (B, 3) with ``dst ~ s * src @ R^T + t``; ``with_scale=False`` fixes s = 1.
    """
    if src.shape != dst.shape or src.ndim != 3 or src.shape[2] != 3:
        raise ValueError(f"src and dst must both have shape (B, N, 3), got {tuple(src.shape)} and {tuple(dst.shape)}")
    dst = dst.to(src)
    w = torch.ones(src.shape[1], dtype=src.dtype, device=src.device) if weights is None else weights.to(src)
    w = (w / w.sum()).view(1, -1, 1)
    mu_s, mu_d = (src * w).sum(1, keepdim=True), (dst * w).sum(1, keepdim=True)
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w).transpose(1, 2) @ xs  # (B, 3, 3) = sum_i w_i d_i s_i^T
    u, sig, vt = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vt))
    d = torch.where(d == 0, torch.ones_like(d), d)
    e = torch.ones(src.shape[0], 3, dtype=src.dtype, device=src.device)
    e[:, 2] = d
    rot = u @ torch.diag_embed(e) @ vt
    if with_scale:
        var_s = ((xs ** 2).sum(-1, keepdim=True) * w).sum(dim=(1, 2))
        scale = (sig * e).sum(-1) / var_s.clamp(min=1e-30)
    else:
        scale = torch.ones(src.shape[0], dtype=src.dtype, device=src.device)
    t = mu_d.squeeze(1) - scale.unsqueeze(1) * torch.einsum("bij,bj->bi", rot, mu_s.squeeze(1))
    return scale, rot, t


ALIGNMENTS = ("none", "rigid", "similarity")


def align(pred: Tensor, gt: Tensor, mode: str = "none", weights: Tensor | None = None) -> Tensor:
    """``pred`` (B, N, 3) moved onto ``gt`` by nothing, a rigid or a similarity Umeyama transform."""
    if mode == "none":
        return pred
    if mode not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {list(ALIGNMENTS)}, got {mode!r}")
    s, r, t = umeyama(pred, gt, with_scale=mode == "similarity", weights=weights)
    return s.view(-1, 1, 1) * pred @ r.transpose(1, 2) + t.unsqueeze(1)


def _vertex_weights(mask: Tensor | None, n: int, ref: Tensor) -> Tensor:
    if mask is None:
        return torch.ones(n, dtype=ref.dtype, device=ref.device)
    if mask.shape != (n,):
        raise ValueError(f"vertex mask must have shape (N,) = ({n},), got {tuple(mask.shape)}")
    m = mask.to(ref)
    if float(m.sum()) <= 0:
        raise ValueError("vertex mask selects no vertex")
    return m


def vertex_error(pred: Tensor, gt: Tensor, align_mode: str = "none", mask: Tensor | None = None,
                 mm_per_unit: float = MM_PER_UNIT) -> Tensor:
    """Dense 3D error: mean per-vertex Euclidean distance to the ground-truth mesh, in mm.

    Args:
        pred: predicted meshes ``(B, N, 3)`` in model units, with the same topology as ``gt`` (vertex i
            corresponds to vertex i).
        gt: ground-truth meshes ``(B, N, 3)`` in model units.
        align_mode: "none" | "rigid" | "similarity": first align pred to gt (Umeyama on the masked vertices).
        mask: optional ``(N,)`` 0/1 vertex subset (e.g. the skin mask); None uses every vertex.
        mm_per_unit: millimetres per model unit: 100 for BFM units; pass 1.0 for model units.

    Returns:
        ``(B,)`` mean distance per mesh, in mm (times ``mm_per_unit``).
    """
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"pred and gt must both have shape (B, N, 3), got {tuple(pred.shape)} and {tuple(gt.shape)}")
    w = _vertex_weights(mask, pred.shape[1], pred)
    p = align(pred, gt, align_mode, weights=w)
    d = torch.linalg.vector_norm(p - gt.to(p), dim=-1)  # (B, N)
    return (d * w).sum(dim=1) / w.sum() * mm_per_unit


def normal_angular_error(pred_normals: Tensor, gt_normals: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean angle in degrees between corresponding unit vertex normals. (B, N, 3) x2, mask (N,) -> (B,).

    Inputs are re-normalised; the cosine is clamped to [-1, 1] before ``acos``.
    """
    if pred_normals.shape != gt_normals.shape or pred_normals.ndim != 3 or pred_normals.shape[2] != 3:
        raise ValueError(f"normals must both have shape (B, N, 3), got {tuple(pred_normals.shape)} and "
                         f"{tuple(gt_normals.shape)}")
    w = _vertex_weights(mask, pred_normals.shape[1], pred_normals)
    a = torch.nn.functional.normalize(pred_normals, dim=-1)
    b = torch.nn.functional.normalize(gt_normals.to(a), dim=-1)
    ang = torch.rad2deg(torch.acos((a * b).sum(-1).clamp(-1.0, 1.0)))
    return (ang * w).sum(dim=1) / w.sum()


# --------------------------------------------------------------------------- statistics
def bootstrap_ci(values: Tensor | Sequence[float], n: int = 1000, alpha: float = 0.05,
                 generator: torch.Generator | None = None) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of the mean: ``(mean, lo, hi)``.

    values (K,) (non-finite entries are dropped; all dropped -> three NaNs); ``n`` resamples of
    size K with replacement; lo / hi are the ``alpha/2`` and ``1 - alpha/2`` quantiles of the
    resampled means. One value gives ``(v, v, v)``. ``generator`` makes it reproducible
    (default: a generator seeded with 0).
    """
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1).cpu()
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        nan = float("nan")
        return nan, nan, nan
    mean = float(v.mean())
    if v.numel() == 1:
        return mean, mean, mean
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    idx = torch.randint(0, v.numel(), (n, v.numel()), generator=g)
    means = v[idx].mean(dim=1)
    lo, hi = torch.quantile(means, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)).tolist()
    return mean, float(lo), float(hi)


def binned_mean(values: Tensor, keys: Tensor, edges: Sequence[float]) -> list[dict[str, float]]:
    """Mean of ``values`` in bins of ``keys``: [e0, e1), [e1, e2), ..., the last bin closed.

    values, keys (K,). Returns one dict per bin: lo, hi, n, mean (NaN when empty), std.
    Used for error vs occluded fraction and error by |yaw|.
    """
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    k = torch.as_tensor(keys, dtype=torch.float64).reshape(-1)
    if v.shape != k.shape:
        raise ValueError(f"values and keys must have the same length, got {v.numel()} and {k.numel()}")
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be increasing with at least two entries, got {list(edges)}")
    out = []
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        last = i == len(edges) - 2
        sel = (k >= lo) & ((k <= hi) if last else (k < hi)) & torch.isfinite(v)
        x = v[sel]
        out.append({"lo": float(lo), "hi": float(hi), "n": int(x.numel()),
                    "mean": float(x.mean()) if x.numel() else float("nan"),
                    "std": float(x.std(unbiased=False)) if x.numel() else float("nan")})
    return out
