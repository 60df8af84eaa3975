"""The evaluation runner: Tables 1-7 regenerated, 3D metrics beyond the paper, figures, report.

Taught in notebook 05 ("Evaluation"). Nothing here trains: models are passed in (a "model" is
any callable / ``nn.Module`` mapping images ``(B, 3, S, S)`` in [0, 1] to coefficients
``(B, 257)``; a ``.predict`` method, MultiOcclusionNet's single-image rule, is used when present).

Pieces
- :class:`~occ3d_lib.evaluation.sets.EvalSet`: one fixed evaluation set (model inputs plus ground
  truth), from :mod:`occ3d_lib.evaluation.sets`.
- :func:`evaluate`: per model and per set, landmark ME / MSE (x, y) / normalised ME / MSE /
  AFLW NME, histogram dissimilarity, dense vertex error and normal error against the ground-truth
  mesh (synthetic sets), each with a bootstrap CI; a mean-face baseline (mean shape and albedo
  at the true pose and light); error vs occluded fraction and vs |yaw|.
- :func:`colour_invariance`: the paper's Fig. 3 as a number.
- :func:`write_metrics` / :func:`read_metrics`: the results as ``metrics.json``.
- Tables, verdicts, figures, ``report.md`` and
  :func:`~occ3d_lib.evaluation.report.run_evaluation` (all of it for a Context) in
  :mod:`occ3d_lib.evaluation.report`.

Model roles: tables refer to models by role; :data:`DEFAULT_ROLES` maps role -> model name
(``teacher`` = the paper's RNet, ``sopi`` = "Ours" of Tables 1-4, ``mopi`` = "Ours" of Tables 5-7,
``mopi_perceptual`` / ``mopi_label`` = Table 7's single-term ablations).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from occ3d_lib.core import metrics
from occ3d_lib.core.artifacts import write_json
from occ3d_lib.evaluation.sets import EvalSet, assert_no_identity_leak
from occ3d_lib.face.coeffs import SLICES, mean_face_like
from occ3d_lib.nets.predict import predict_coeffs
from occ3d_lib.occlusion.eval_sets import make_eval_set
from occ3d_lib.render.camera import DEEP3D_LANDMARK_OFFSET

MEAN_FACE = "mean-face"
#: The reference that renders the true coefficients: the floor of every metric that compares a render with
#: the input (its histogram dissimilarity is the 8-bit rounding of the images alone); notebook 05 section 6.
GROUND_TRUTH = "ground-truth"
DEFAULT_ROLES: dict[str, str] = {"teacher": "teacher", "sopi": "sopi", "mopi": "mopi",
                                 "mopi_perceptual": "mopi-perceptual", "mopi_label": "mopi-label"}
COVERAGE_EDGES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
YAW_EDGES_DEG: tuple[float, ...] = (0.0, 15.0, 30.0, 45.0, 60.0, 90.0)
#: Metric keys of :func:`evaluate` (per sample and summarised), with what they are.
METRICS: dict[str, str] = {
    "me": "landmark ME, px at 224x224",
    "mse_x": "landmark MSE along x, px^2 at 224",
    "mse_y": "landmark MSE along y, px^2 at 224",
    "nme": "normalised ME (coordinates / 224)",
    "nmse_x": "normalised MSE x (coordinates / 224)",
    "nmse_y": "normalised MSE y (coordinates / 224)",
    "aflw_nme": "ME / sqrt(gt box area) (AFLW2000-3D protocol), fraction",
    "hist": "histogram dissimilarity: Hellinger distance of RGB histograms in the rendered face mask, [0, 1]",
    "vertex_mm": "mean per-vertex distance to the ground-truth mesh (pose-free shape), mm",
    "normal_deg": "mean angle between predicted and ground-truth vertex normals, degrees",
    "coeff_se": "Eq. 6 SE between predicted and ground-truth coefficients",
}
#: Colours of the occluder-colour experiment (Fig. 3): black, white, red, green, blue, skin-like.
DEFAULT_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.9, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.2, 0.9), (0.85, 0.65, 0.5))


# ------------------------------------------------------------------------------------ prediction
def mean_skin_albedo(renderer: Any, coeffs: Tensor, skin_mask: Tensor | None = None) -> Tensor:
    """Mean reconstructed albedo over the skin vertices, RGB in [0, 1]. (B, 257) -> (B, 3)."""
    model = renderer.model
    alb = model.albedo(coeffs[:, SLICES["tex"]].to(model.dtype))  # (B, N, 3)
    m = (model.skin_mask if skin_mask is None else skin_mask).to(alb).view(1, -1, 1)
    return ((alb * m).sum(1) / m.sum().clamp(min=1)).float()


def landmark_offset(model: Any) -> tuple[float, float] | None:
    """Where a model's landmark convention puts its landmarks relative to occ3d's projection, (dx, dy) px at
    224: :data:`~occ3d_lib.render.camera.DEEP3D_LANDMARK_OFFSET` (+1/2, -1/2) for a Deep3DFaceRecon checkpoint
    (``model.landmark_convention == "deep3d"``, set by :func:`occ3d_lib.nets.checkpoints.load_deep3d_checkpoint`;
    its landmark loss was fitted in that convention, docs/facts.md §5), None for a model trained here."""
    return DEEP3D_LANDMARK_OFFSET if getattr(model, "landmark_convention", None) == "deep3d" else None


@torch.no_grad()
def sample_metrics(coeffs: Tensor, es: EvalSet, renderer: Any, hist_reference: str = "clean", hist_bins: int = 16,
                   batch_size: int = 32, landmark_offset: Sequence[float] | None = None) -> dict[str, Tensor]:
    """Per-sample metrics of predicted coefficients on one set (keys of :data:`METRICS`).

    The 3D metrics are computed only where ground-truth coefficients exist. Histogram reference: the clean
    image where known (``hist_reference="clean"``), else the input; the region is the rendered face mask
    (coverage > 0.5).

    Args:
        coeffs: predicted coefficients ``(B, 257)``, B = ``len(es)``.
        es: the :class:`~occ3d_lib.evaluation.sets.EvalSet` (images ``(B, 3, S, S)``, landmarks ``(B, 68, 2)``).
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` at the set's size S.
        hist_reference: "clean" or "input": what the render's histograms are compared with.
        hist_bins: histogram bins per channel.
        batch_size: faces rendered at once.
        landmark_offset: ``(dx, dy)`` px at 224 (scaled to the set's size S by S / 224), added to the
            projected landmarks before they are scored: the model's landmark convention
            (:func:`landmark_offset`); None adds nothing.

    Returns:
        ``{metric: (B,)}`` float32 CPU tensors: ``me``, ``nme``, ``aflw_nme``, ``mse_x``, ``mse_y``,
        ``nmse_x``, ``nmse_y``, ``hist``, and with ground-truth coefficients ``vertex_mm``, ``normal_deg``
        and ``coeff_se``.
    """
    if coeffs.shape != (len(es), 257):
        raise ValueError(f"coeffs must have shape ({len(es)}, 257), got {tuple(coeffs.shape)}")
    if hist_reference not in ("clean", "input"):
        raise ValueError(f"hist_reference must be 'clean' or 'input', got {hist_reference!r}")
    s = es.image_size
    dtype = renderer.model.dtype
    lm = renderer.landmarks(coeffs.to(dtype)).float()
    if landmark_offset is not None:
        lm = lm + torch.tensor([float(v) for v in landmark_offset]) * (s / metrics.REFERENCE_SIZE)
    gt = es.landmarks.float()
    out = {"me": metrics.landmark_me(lm, gt, s), "nme": metrics.normalized_landmark_me(lm, gt, s),
           "aflw_nme": metrics.aflw_nme(lm, gt)}
    mse, nmse = metrics.landmark_mse_xy(lm, gt, s), metrics.normalized_landmark_mse_xy(lm, gt, s)
    out.update(mse_x=mse[:, 0], mse_y=mse[:, 1], nmse_x=nmse[:, 0], nmse_y=nmse[:, 1])
    ref = es.clean if (hist_reference == "clean" and es.clean is not None) else es.images
    hist, vmm, ndeg = [], [], []
    for i in range(0, len(es), batch_size):
        c = coeffs[i:i + batch_size].to(dtype)
        r = renderer(c)
        hist.append(metrics.histogram_dissimilarity(ref[i:i + batch_size].to(r.image), r.image, r.mask > 0.5, bins=hist_bins))
        if es.coeffs is not None:
            g = renderer.geometry(es.coeffs[i:i + batch_size].to(dtype))
            vmm.append(metrics.vertex_error(r.shape, g["shape"]))
            ndeg.append(metrics.normal_angular_error(renderer.model.normals(r.shape), renderer.model.normals(g["shape"])))
    out["hist"] = torch.cat(hist).float() if hist else torch.zeros(0)
    if es.coeffs is not None:
        out["vertex_mm"] = torch.cat(vmm).float()
        out["normal_deg"] = torch.cat(ndeg).float()
        out["coeff_se"] = ((coeffs.float() - es.coeffs.float()) ** 2).mean(dim=1)
    return {k: v.detach().float().cpu() for k, v in out.items()}


def _ci(values: Tensor, n: int, alpha: float, seed: int) -> dict[str, float]:
    m, lo, hi = metrics.bootstrap_ci(values, n=max(n, 1), alpha=alpha, generator=torch.Generator().manual_seed(seed))
    finite = torch.isfinite(torch.as_tensor(values, dtype=torch.float64))
    return {"mean": m, "lo": lo, "hi": hi, "n": int(finite.sum())}


def evaluate(models: Mapping[str, Any], eval_sets: Mapping[str, EvalSet], renderer: Any, *, baseline: bool = True,
             bootstrap: int = 1000, alpha: float = 0.05, seed: int = 0, batch_size: int = 32, device: str = "cpu",
             train_identities: Any = None, hist_reference: str = "clean", hist_bins: int = 16,
             coverage_edges: Sequence[float] = COVERAGE_EDGES, yaw_edges: Sequence[float] = YAW_EDGES_DEG,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate every model on every set (paper Sec. 4.2; notebook 05 sections 2-5).

    The curves pool all sets (coverage bins 0-80 %: SHOFI's single square reaches at most 60 % and the
    'full' kind fills the 60-80 % bins). ``baseline`` adds :data:`MEAN_FACE` (needs ground-truth
    coefficients) to the models, and :data:`GROUND_TRUTH` (the true coefficients rendered) to ``summary``
    only, as a reference (``references`` lists both).

    Args:
        models: ``{name: model}``, each a callable ``(B, 3, S, S) -> (B, 257)`` (its ``predict`` when it has one).
        eval_sets: ``{kind: EvalSet}``, none of them empty.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` at the sets' size.
        baseline: add the mean face and the ground-truth reference where sets have coefficients.
        bootstrap: bootstrap resamples of each CI.
        alpha: the CI level is 1 - alpha.
        seed: the bootstrap's seed.
        batch_size: images per forward pass and per render.
        device: where the models run.
        train_identities: the training split's identity ids; if given, :func:`assert_no_identity_leak`
            runs first on every set with identities.
        hist_reference: "clean" or "input" (:func:`sample_metrics`).
        hist_bins: histogram bins per channel.
        coverage_edges: bin edges (fractions) of the error vs occluded fraction curves.
        yaw_edges: bin edges (degrees) of the error vs |yaw| curves.
        progress: called with ``"<model> on <kind>"`` before each model's predictions, or None.

    Returns:
        A JSON-ready dict: ``meta`` (image size, dataset, settings, ``n`` per kind, :data:`METRICS`, the
        edges, ``identity_leak_checked``, ``landmark_offsets_224``); ``models`` (names, with the mean
        face); ``references``; ``kinds``; ``summary[model][kind][metric] = {mean, lo, hi, n}`` (bootstrap
        percentile CI of the mean); ``per_sample[model][kind][metric]`` lists; ``coverage[kind]`` and
        ``yaw_deg[kind]`` (ground truth |yaw|) lists; ``curves['coverage'|'yaw'][model][metric]`` =
        :func:`occ3d_lib.core.metrics.binned_mean` lists for ``me``, ``vertex_mm`` and ``hist``.
    """
    if not models:
        raise ValueError("evaluate needs at least one model")
    if not eval_sets:
        raise ValueError("evaluate needs at least one evaluation set")
    empty = [kind for kind, es in eval_sets.items() if len(es) == 0]
    if empty:
        raise ValueError(f"evaluation set(s) {empty} hold no images: nothing to evaluate; leave them out or give "
                         "them images (a real set whose photos were all skipped says why in its load report)")
    if train_identities is not None:
        for es in eval_sets.values():
            if es.identity is not None:
                assert_no_identity_leak(es.identity, train_identities)
    has_gt = any(es.coeffs is not None for es in eval_sets.values())
    names = list(models) + ([MEAN_FACE] if baseline and has_gt and MEAN_FACE not in models else [])
    per: dict[str, dict[str, dict[str, list]]] = {m: {} for m in names}
    summary: dict[str, dict[str, dict[str, dict[str, float]]]] = {m: {} for m in names}
    for kind, es in eval_sets.items():
        for name in names:
            if name == MEAN_FACE and name not in models:
                if es.coeffs is None:
                    continue
                coeffs = mean_face_like(es.coeffs.float())
            else:
                if progress:
                    progress(f"{name} on {kind}")
                coeffs = predict_coeffs(models[name], es.images, batch_size=batch_size, device=device)
            vals = sample_metrics(coeffs, es, renderer, hist_reference=hist_reference, hist_bins=hist_bins,
                                  batch_size=batch_size,
                                  landmark_offset=landmark_offset(models[name]) if name in models else None)
            per[name][kind] = {k: v.tolist() for k, v in vals.items()}
            summary[name][kind] = {k: _ci(v, bootstrap, alpha, seed) for k, v in vals.items()}
    references = [MEAN_FACE] if MEAN_FACE in names and MEAN_FACE not in models else []
    if baseline and has_gt:  # the floor: the true coefficients rendered and scored like a model
        summary[GROUND_TRUTH] = {}
        for kind, es in eval_sets.items():
            if es.coeffs is not None:
                vals = sample_metrics(es.coeffs.float(), es, renderer, hist_reference=hist_reference,
                                      hist_bins=hist_bins, batch_size=batch_size)
                summary[GROUND_TRUTH][kind] = {k: _ci(v, bootstrap, alpha, seed) for k, v in vals.items()}
        references.append(GROUND_TRUTH)
    curves: dict[str, dict[str, dict[str, list]]] = {"coverage": {}, "yaw": {}}
    for name in names:
        kinds_done = [k for k in eval_sets if k in per[name]]
        if not kinds_done:
            continue
        cov = torch.cat([eval_sets[k].coverage.float() for k in kinds_done])
        yaw = torch.cat([_abs_yaw_deg(eval_sets[k]) for k in kinds_done])
        for which, keys, edges in (("coverage", cov, coverage_edges), ("yaw", yaw, yaw_edges)):
            curves[which][name] = {}
            for metric in ("me", "vertex_mm", "hist"):
                v = torch.cat([torch.tensor(per[name][k][metric]) if metric in per[name][k]
                               else torch.full((len(eval_sets[k]),), float("nan")) for k in kinds_done])
                curves[which][name][metric] = metrics.binned_mean(v, keys, edges)
    first = next(iter(eval_sets.values()))
    return {
        "meta": {"image_size": first.image_size, "dataset": first.dataset, "bootstrap": bootstrap, "alpha": alpha,
                 "seed": seed, "hist_reference": hist_reference, "hist_bins": hist_bins,
                 "n": {k: len(es) for k, es in eval_sets.items()}, "metrics": METRICS,
                 "coverage_edges": list(coverage_edges), "yaw_edges_deg": list(yaw_edges),
                 "identity_leak_checked": train_identities is not None,
                 "landmark_offsets_224": {m: landmark_offset(models[m]) for m in names if m in models
                                          and landmark_offset(models[m]) is not None}},
        "models": names,
        "references": references,
        "kinds": list(eval_sets),
        "summary": summary,
        "per_sample": per,
        "coverage": {k: es.coverage.float().tolist() for k, es in eval_sets.items()},
        "yaw_deg": {k: _abs_yaw_deg(es).tolist() for k, es in eval_sets.items()},
        "curves": curves,
    }


def _abs_yaw_deg(es: EvalSet) -> Tensor:
    if es.coeffs is None:
        if es.yaw_deg is not None:
            return es.yaw_deg.float().abs()
        return torch.full((len(es),), float("nan"))
    return torch.rad2deg(es.coeffs[:, SLICES["angle"]][:, 1].abs()).float()


# ------------------------------------------------------------------------------------ colour invariance
@torch.no_grad()
def colour_invariance(models: Mapping[str, Any], images: Tensor, landmarks: Tensor, renderer: Any, *,
                      kind: str = "shofi", seed: int = 0, colours: Sequence[Sequence[float]] = DEFAULT_COLOURS,
                      bootstrap: int = 1000, alpha: float = 0.05, batch_size: int = 32,
                      device: str = "cpu") -> dict[str, Any]:
    """Occluder-colour invariance (paper Fig. 3, Sec. 4.1.1) as a number; notebook 05 section 8.

    The same faces are occluded with ``kind`` from one seed in each colour of ``colours`` (solid fill). The
    occlusion module draws the geometry before the colour, so only the colour changes; this is checked
    (identical masks) and a ``RuntimeError`` raised otherwise. Per model and face: the reconstructed mean
    skin albedo a_c (RGB in [0, 1]) under each colour c; ``spread`` = mean_c ||a_c - mean_c a_c||
    (0 = perfectly invariant) and ``vs_clean`` = mean_c ||a_c - a_clean|| (a_clean from the unoccluded face).

    Args:
        models: ``{name: model}``.
        images: the unoccluded faces ``(B, 3, S, S)`` in [0, 1].
        landmarks: their landmarks ``(B, 68, 2)`` in pixels.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` (its face model's albedo and skin mask).
        kind: the occlusion kind.
        seed: the occlusion seed, the same for every colour.
        colours: at least two RGB colours in [0, 1].
        bootstrap: bootstrap resamples of each CI.
        alpha: the CI level is 1 - alpha.
        batch_size: images per forward pass.
        device: where the models run.

    Returns:
        A dict: ``kind``, ``seed``, ``colours`` (lists of 3 floats), ``n`` (B), ``units`` ("8-bit levels
        (albedo x 255)") and ``models`` ``{name: {"spread": {mean, lo, hi, n}, "vs_clean": {mean, lo, hi, n},
        "albedo": (C, 3) list}}``, spread and vs_clean in 8-bit levels (x 255) with bootstrap CIs, albedo
        the mean over faces per colour.
    """
    if len(colours) < 2:
        raise ValueError("colour_invariance needs at least two colours")
    sets = [make_eval_set(images, landmarks, kind, seed, fill="solid", color=list(map(float, c))) for c in colours]
    for s in sets[1:]:
        if not torch.equal(s.masks, sets[0].masks):
            raise RuntimeError("occluder geometry changed with the colour: the colour experiment is invalid")
    out: dict[str, Any] = {"kind": kind, "seed": seed, "colours": [list(map(float, c)) for c in colours],
                           "n": int(images.shape[0]), "units": "8-bit levels (albedo x 255)", "models": {}}
    for name, model in models.items():
        a = torch.stack([mean_skin_albedo(renderer, predict_coeffs(model, s.images.float(), batch_size, device))
                         for s in sets], 1)
        a_clean = mean_skin_albedo(renderer, predict_coeffs(model, images.float(), batch_size, device))
        spread = torch.linalg.vector_norm(a - a.mean(1, keepdim=True), dim=-1).mean(1) * 255
        vs_clean = torch.linalg.vector_norm(a - a_clean.unsqueeze(1), dim=-1).mean(1) * 255
        out["models"][name] = {"spread": _ci(spread, bootstrap, alpha, 0), "vs_clean": _ci(vs_clean, bootstrap, alpha, 0),
                               "albedo": a.mean(0).tolist()}
    return out


# ------------------------------------------------------------------------------------ output files
def jsonable(obj: Any) -> Any:
    """``obj`` with tensors and arrays as lists and non-finite floats as None (what ``metrics.json`` holds)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return obj


def write_metrics(path: str | Path, results: Mapping[str, Any]) -> Path:
    """Write results atomically as strict JSON (NaN / inf become null); returns the path."""
    return write_json(path, jsonable(dict(results)))


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Read a metrics.json written by :func:`write_metrics`."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no metrics file at {p}")
    return json.loads(p.read_text())
