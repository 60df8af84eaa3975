"""The fixed evaluation sets: reproducible occluded copies of test faces, built in one place and cached.

Taught in notebook 02, section 9; used by notebook 05 (paper Sec. 4.2, Tables 1-7) through
:mod:`occ3d_lib.evaluation.sets`, which attaches the ground truth. Every evaluation set of the series,
synthetic or real, is occluded here: :func:`make_kind_sets` gives one set per kind of the same faces
(kind ``k`` seeded by :func:`occ3d_lib.occlusion.kinds.kind_seed`); :func:`load_or_build_eval_sets`
does it once per run for the synthetic test faces and caches the files. Images are quantised to 8 bits
(:func:`quantise`), so a set in memory equals the one on disk.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from occ3d_lib.core.artifacts import cache_dir, load_or_build, torch_load, torch_save
from occ3d_lib.core.config import config_hash
from occ3d_lib.core.seeds import stream_seed
from occ3d_lib.data.context import Context
from occ3d_lib.occlusion.apply import OcclusionResult, occlude, plain_values
from occ3d_lib.occlusion.kinds import FILLS, KINDS, kind_seed

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


def save_occlusion_set(path: str | Path, result: OcclusionResult, settings: Any = None) -> Path:
    """Write an occlusion set atomically (``artifacts.torch_save``, its manifest recording ``settings``):
    images as uint8, masks bool, coverage float32, kind, params. Works for single ``(B, 3, H, W)`` and
    multi ``(B, V, 3, H, W)`` sets. Taught in notebook 02, section 9."""
    if not isinstance(result, OcclusionResult):
        raise TypeError(f"result must be an OcclusionResult, got {type(result).__name__}")
    payload = {
        "format": _SET_FORMAT, "version": 1,
        "images": (result.images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8),
        "masks": result.masks.detach().cpu().bool(),
        "coverage": result.coverage.detach().cpu().float(),
        "kind": str(result.kind),
        "params": plain_values({k: (v.detach().cpu() if isinstance(v, Tensor) else v) for k, v in result.params.items()}),
    }
    return torch_save(payload, path, settings=settings)


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

def make_kind_sets(images: Tensor, landmarks: Tensor | None, kinds: Sequence[str], seed: int, *,
                   fill: str = "natural", **options: Any) -> dict[str, OcclusionResult]:
    """One fixed evaluation set per kind of the same faces: :func:`make_eval_set` of kind ``k`` seeded
    with :func:`~occ3d_lib.occlusion.kinds.kind_seed` ``(seed, k)``, so a kind's set does not depend on
    which other kinds are asked for. images ``(B, C, H, W)``, landmarks ``(B, 68, 2)`` ->
    ``{kind: OcclusionResult (B, 3, H, W)}``. Synthetic (:func:`load_or_build_eval_sets`) and real
    (:func:`occ3d_lib.evaluation.sets.real_eval_sets`) sets are both made here. Notebook 02, section 9."""
    return {kind: make_eval_set(images, landmarks, kind, kind_seed(seed, kind), fill=fill, **options)
            for kind in kinds}


#: Kinds of the fixed evaluation sets: the paper's Table 1-3 rows (unoccluded, DSOFI, DHOFI, SHOFI),
#: full occlusion, random patterns (Tables 5, 7) and natural-looking occluders (Table 4's spirit).
EVAL_KINDS: tuple[str, ...] = ("none", "dsofi", "dhofi", "shofi", "full", "random_pattern", "natural")
#: Bump when the occluder geometry or fills change, so cached evaluation sets are rebuilt.
EVAL_SET_VERSION = 1


def eval_indices(n_total: int, n: int, seed: int) -> Tensor:
    """``n`` distinct, sorted indices out of ``n_total`` drawn with ``seed`` -> ``(n,)`` int64
    (the same test faces for every kind). Taught in notebook 02, section 9."""
    if n_total < 1 or not 1 <= n <= n_total:
        raise ValueError(f"need 1 <= n <= n_total, got n={n}, n_total={n_total}")
    g = torch.Generator().manual_seed(stream_seed(int(seed), "eval_faces"))
    return torch.randperm(n_total, generator=g)[:n].sort().values


def load_or_build_eval_sets(ctx: Context, kinds: Sequence[str] = EVAL_KINDS, n: int | None = None,
                            seed: int | None = None, *, split: str = "test", fill: str = "natural",
                            root: str | Path | None = None) -> dict[str, OcclusionResult]:
    """The run's fixed occluded evaluation sets, one per kind, built once and cached.

    Takes ``n`` faces of ``ctx.dataset.<split>`` chosen by :func:`eval_indices` (the same faces for every
    kind) and occludes them with :func:`make_eval_set` using :func:`kind_seed` ``(seed, kind)``. Each set
    is saved with :func:`save_occlusion_set` as ``<root>/<kind>.pt`` where ``root`` defaults to
    ``cache_dir()/eval_sets/<hash>``, the hash covering the chosen images and landmarks (their bytes), n,
    seed, fill, split and :data:`EVAL_SET_VERSION` (not the list of kinds: any subset reuses the files);
    later calls (notebook 05's evaluation) load the very same images.
    Taught in notebook 02, section 9; used by notebook 05 (paper Sec. 4.2, Tables 1-7).

    Args:
        ctx: needs only ``ctx.profile.eval_samples``, ``ctx.profile.seed`` and
            ``ctx.dataset.<split>.batch(indices)`` returning ``{'image' (B, 3, H, W), 'landmarks' (B, 68, 2)}``.
        kinds: occlusion kinds of :data:`KINDS` (default :data:`EVAL_KINDS`).
        n: faces per set (default ``ctx.profile.eval_samples``, at most the split size).
        seed: the base seed (default ``ctx.profile.seed``).
        split: the dataset split.
        fill: the fill of the occluders (:data:`FILLS`).
        root: the folder of the files (default ``cache_dir()/eval_sets/<hash>``).

    Returns:
        ``{kind: OcclusionResult}`` (images ``(n, 3, H, W)`` float32 in [0, 1] on 8-bit levels, masks
        ``(n, 1, H, W)`` bool, coverage ``(n,)``) with ``params['indices']`` (the split rows, for the ground
        truth), ``params['split']`` and ``params['path']``.
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
        def build(kind: str = kind) -> OcclusionResult:
            res = make_kind_sets(images, landmarks, [kind], seed, fill=fill)[kind]
            res.params.update({"indices": idx.tolist(), "split": split, "key": key})
            return res

        # a foreign, truncated or byte-changed file is rebuilt (artifacts.load_or_build warns)
        recorded = {**settings, "kind": kind}
        res = load_or_build(path, load_occlusion_set, build, lambda r, p, s=recorded: save_occlusion_set(p, r, s),
                            "evaluation set", accept=lambda r: r.params.get("key") == key, settings=recorded)
        res.params["path"] = str(path)
        out[kind] = res
    return out
