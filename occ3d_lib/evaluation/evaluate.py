"""The evaluation runner: Tables 1-7 regenerated, 3D metrics beyond the paper, figures, report.

Taught in notebook 05 ("Evaluation"). Nothing here trains: models are passed in (a "model" is
any callable / ``nn.Module`` mapping images ``(B, 3, S, S)`` in [0, 1] to coefficients
``(B, 257)``; a ``.predict`` method, MultiOcclusionNet's single-image rule, is used when present).

Pieces
- :class:`EvalSet`: one fixed evaluation set (model inputs plus ground truth). Built from the
  run's cached occlusion sets (:func:`occ3d_lib.occlusion.occlude.load_or_build_eval_sets`) by
  :func:`load_eval_sets`, or from real data by :func:`eval_set_from_arrays`.
- :func:`evaluate`: per model and per set, landmark ME / MSE (x, y) / normalised ME / MSE /
  AFLW NME, histogram dissimilarity, dense vertex error and normal error against the ground-truth
  mesh (synthetic sets), each with a bootstrap CI; a mean-face baseline (mean shape and albedo
  at the true pose and light); error vs occluded fraction and vs |yaw|.
- :func:`colour_invariance`: the paper's Fig. 3 as a number.
- :func:`tables_markdown`: Tables 1-7 in the paper's layouts with the paper's numbers beside ours,
  plus a 3D table; :func:`verdicts`: holds / does not hold per claim; :func:`write_metrics`,
  :func:`save_figures`, :func:`write_report`; :func:`run_evaluation` does all of it for a Context.

Model roles: tables refer to models by role; :data:`DEFAULT_ROLES` maps role -> model name
(``teacher`` = the paper's RNet, ``sopi`` = "Ours" of Tables 1-4, ``mopi`` = "Ours" of Tables 5-7,
``mopi_perceptual`` / ``mopi_label`` = Table 7's single-term ablations).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from occ3d_lib.core import metrics as M
from occ3d_lib.core import thresholds as TH
from occ3d_lib.core.artifacts import atomic_path, write_json, write_text
from occ3d_lib.core.viz import _np_image, rows_grid
from occ3d_lib.data import real
from occ3d_lib.data.context import Context
from occ3d_lib.data.landmarks import batch_landmarks68
from occ3d_lib.evaluation.claims import Claim, claims_markdown
from occ3d_lib.face.coeffs import SLICES, mean_face_like, validate_coeffs
from occ3d_lib.occlusion.occlude import EVAL_KINDS, kind_seed, load_or_build_eval_sets, make_eval_set
from occ3d_lib.training.stages import predict_coeffs

MEAN_FACE = "mean-face"
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


# ------------------------------------------------------------------------------------ data
@dataclass
class EvalSet:
    """One fixed evaluation set: the model inputs and what they are compared with.

    images (B, 3, S, S) model inputs in [0, 1] (occluded); clean (B, 3, S, S) the unoccluded
    originals or None (real data); landmarks (B, 68, 2) ground truth in pixels at S (synthetic:
    the exact projection; real: a detector's output); coeffs (B, 257) ground-truth coefficients
    or None (real data: no 3D ground truth); coverage (B,) occluded fraction of the face region;
    identity (B,) identity ids or None; masks (B, 1, S, S) occluder pixels or None; yaw_deg (B,)
    the true yaw where known without coefficients (AFLW2000-3D's pose), else taken from ``coeffs``.
    """

    kind: str
    images: Tensor
    landmarks: Tensor
    clean: Tensor | None = None
    coeffs: Tensor | None = None
    coverage: Tensor | None = None
    identity: Tensor | None = None
    masks: Tensor | None = None
    dataset: str = "synthetic"
    yaw_deg: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"EvalSet {self.kind!r}: images must have shape (B, 3, S, S), got {tuple(self.images.shape)}")
        b = self.images.shape[0]
        if self.landmarks.shape != (b, 68, 2):
            raise ValueError(f"EvalSet {self.kind!r}: landmarks must have shape ({b}, 68, 2), got {tuple(self.landmarks.shape)}")
        if self.clean is not None and self.clean.shape != self.images.shape:
            raise ValueError(f"EvalSet {self.kind!r}: clean must have the images' shape {tuple(self.images.shape)}")
        if self.coeffs is not None:
            validate_coeffs(self.coeffs, "EvalSet.coeffs")
            if self.coeffs.shape[0] != b:
                raise ValueError(f"EvalSet {self.kind!r}: coeffs must have {b} rows, got {self.coeffs.shape[0]}")
        if self.coverage is None:
            self.coverage = torch.zeros(b)
        if self.coverage.shape != (b,):
            raise ValueError(f"EvalSet {self.kind!r}: coverage must have shape ({b},), got {tuple(self.coverage.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])


def eval_sets_from_occlusion(sets: Mapping[str, Any], split: Any, dataset: str = "synthetic") -> dict[str, EvalSet]:
    """Attach ground truth to the occlusion module's sets. ``sets[kind]`` is an
    :class:`occ3d_lib.occlusion.occlude.OcclusionResult` whose ``params['indices']`` are rows of ``split``
    (a SyntheticSplit with ``.batch(idx)`` -> image, coeffs, landmarks, identity)."""
    out = {}
    for kind, res in sets.items():
        idx = res.params.get("indices")
        if idx is None:
            raise ValueError(f"occlusion set {kind!r} has no params['indices']: cannot find its ground truth")
        b = split.batch(np.asarray(idx, dtype=np.int64))
        out[kind] = EvalSet(kind=kind, images=res.images.float(), clean=b["image"], landmarks=b["landmarks"].float(),
                            coeffs=b["coeffs"].float(), coverage=res.coverage.float(), identity=b["identity"],
                            masks=res.masks, dataset=dataset, info={"path": res.params.get("path"), "indices": list(idx)})
    return out


def load_eval_sets(ctx: Context, kinds: Sequence[str] | None = None, n: int | None = None,
                   split: str = "test") -> dict[str, EvalSet]:
    """The run's fixed evaluation sets with ground truth (built once by the occlusion module, cached)."""
    sets = load_or_build_eval_sets(ctx, tuple(kinds or EVAL_KINDS), n=n, split=split)
    return eval_sets_from_occlusion(sets, ctx.dataset.split(split))


def eval_set_from_arrays(kind: str, images: Tensor, landmarks: Tensor, dataset: str, **kw: Any) -> EvalSet:
    """An evaluation set from real data: images (B, 3, S, S), detector landmarks (B, 68, 2)."""
    return EvalSet(kind=kind, images=images.float(), landmarks=landmarks.float(), dataset=dataset, **kw)


REAL_KINDS: tuple[str, ...] = ("none", "dsofi", "dhofi", "shofi", "random_pattern")


def real_eval_sets(spec: str, image_size: int, kinds: Sequence[str] = REAL_KINDS, n: int = 200, seed: int = 0,
                   split: str = "test", progress: bool = False) -> dict[str, EvalSet]:
    """Occluded evaluation sets from real photos (notebook 05 section "Running on real data").

    ``spec`` is a dataset spec of :mod:`occ3d_lib.data.real` (``"celeba:<root>"``,
    ``"aflw2000:<root>"``, ``"photos:<folder>"``); up to ``n`` faces are aligned to ``image_size``
    crops. Ground-truth landmarks: the set's own where it has them (AFLW2000-3D's 68 points),
    else dlib's 68-point detector on the clean crop, as the paper does; faces where dlib finds
    nothing are dropped and the rate is kept in ``info['dlib_failure_rate']`` (report it). Each
    kind is occluded with the same seeds as the synthetic sets (:func:`occlusion.kind_seed`).
    No 3D ground truth: the 3D metrics are absent for these sets.
    """
    ds = real.open_dataset(spec, size=image_size, split=split)
    if isinstance(ds, str):
        raise ValueError("real_eval_sets needs a real dataset spec, got 'synthetic' (use load_eval_sets)")
    batch = ds.collect(limit=n, progress=progress)
    if batch.images.shape[0] == 0:
        raise ValueError(f"no usable image in {spec!r}: {batch.report()}")
    images, lm = batch.images.float(), batch.landmarks.float()
    info: dict[str, Any] = {"load_report": batch.report(), "skipped": len(batch.skipped), "landmarks": "dataset"}
    have = torch.isfinite(lm).all(dim=(1, 2))
    if not bool(have.all()):
        det = batch_landmarks68(images)
        found = torch.from_numpy(det.found)
        lm = torch.where(have.view(-1, 1, 1), lm, torch.from_numpy(det.landmarks).float())
        info.update(landmarks="dlib", dlib_failure_rate=det.failure_rate, dlib_found=int(found.sum()))
        keep = have | found
    else:
        keep = have
    if not bool(keep.any()):
        raise ValueError(f"no face with landmarks in {spec!r} (dlib failure rate {info.get('dlib_failure_rate')})")
    idx = keep.nonzero().view(-1)
    images, lm = images[idx], lm[idx]
    yaw = batch.yaw_deg[idx].float()
    name = real.parse_dataset_spec(spec)[0]
    out = {}
    for kind in kinds:
        res = make_eval_set(images, lm, kind, kind_seed(seed, kind))
        out[kind] = EvalSet(kind=kind, images=res.images.float(), clean=images, landmarks=lm, coverage=res.coverage.float(),
                            identity=batch.identity[idx], masks=res.masks, dataset=name,
                            yaw_deg=yaw if bool(torch.isfinite(yaw).any()) else None,
                            info={**info, "names": [batch.names[i] for i in idx.tolist()]})
    return out


def assert_no_identity_leak(eval_identities: Any, train_identities: Any) -> None:
    """Raise ``AssertionError`` naming the shared ids if any evaluation identity was seen in training."""
    ev = set(np.asarray(eval_identities).reshape(-1).tolist())
    tr = set(np.asarray(train_identities).reshape(-1).tolist())
    shared = sorted(ev & tr)
    if shared:
        raise AssertionError(f"identity leak: {len(shared)} evaluation identit{'y' if len(shared) == 1 else 'ies'} "
                             f"also in the training split (first: {shared[:5]})")


# ------------------------------------------------------------------------------------ prediction
def mean_skin_albedo(renderer: Any, coeffs: Tensor, skin_mask: Tensor | None = None) -> Tensor:
    """Mean reconstructed albedo over the skin vertices, RGB in [0, 1]. (B, 257) -> (B, 3)."""
    model = renderer.model
    alb = model.albedo(coeffs[:, SLICES["tex"]].to(model.dtype))  # (B, N, 3)
    m = (model.skin_mask if skin_mask is None else skin_mask).to(alb).view(1, -1, 1)
    return ((alb * m).sum(1) / m.sum().clamp(min=1)).float()


@torch.no_grad()
def sample_metrics(coeffs: Tensor, es: EvalSet, renderer: Any, hist_reference: str = "clean", hist_bins: int = 16,
                   batch_size: int = 32) -> dict[str, Tensor]:
    """Per-sample metrics of predicted coefficients on one set: {metric: (B,)} (keys of :data:`METRICS`;
    the 3D metrics only where ground-truth coefficients exist).

    Histogram reference: the clean image where known (``hist_reference="clean"``), else the input;
    the region is the rendered face mask (coverage > 0.5).
    """
    if coeffs.shape != (len(es), 257):
        raise ValueError(f"coeffs must have shape ({len(es)}, 257), got {tuple(coeffs.shape)}")
    if hist_reference not in ("clean", "input"):
        raise ValueError(f"hist_reference must be 'clean' or 'input', got {hist_reference!r}")
    s = es.image_size
    dtype = renderer.model.dtype
    lm = renderer.landmarks(coeffs.to(dtype)).float()
    gt = es.landmarks.float()
    out = {"me": M.landmark_me(lm, gt, s), "nme": M.normalized_landmark_me(lm, gt, s), "aflw_nme": M.aflw_nme(lm, gt)}
    mse, nmse = M.landmark_mse_xy(lm, gt, s), M.normalized_landmark_mse_xy(lm, gt, s)
    out.update(mse_x=mse[:, 0], mse_y=mse[:, 1], nmse_x=nmse[:, 0], nmse_y=nmse[:, 1])
    ref = es.clean if (hist_reference == "clean" and es.clean is not None) else es.images
    hist, vmm, ndeg = [], [], []
    for i in range(0, len(es), batch_size):
        c = coeffs[i:i + batch_size].to(dtype)
        r = renderer(c)
        hist.append(M.histogram_dissimilarity(ref[i:i + batch_size].to(r.image), r.image, r.mask > 0.5, bins=hist_bins))
        if es.coeffs is not None:
            g = renderer.geometry(es.coeffs[i:i + batch_size].to(dtype))
            vmm.append(M.vertex_error(r.shape, g["shape"]))
            ndeg.append(M.normal_angular_error(renderer.model.normals(r.shape), renderer.model.normals(g["shape"])))
    out["hist"] = torch.cat(hist).float() if hist else torch.zeros(0)
    if es.coeffs is not None:
        out["vertex_mm"] = torch.cat(vmm).float()
        out["normal_deg"] = torch.cat(ndeg).float()
        out["coeff_se"] = ((coeffs.float() - es.coeffs.float()) ** 2).mean(dim=1)
    return {k: v.detach().float().cpu() for k, v in out.items()}


def _ci(values: Tensor, n: int, alpha: float, seed: int) -> dict[str, float]:
    m, lo, hi = M.bootstrap_ci(values, n=max(n, 1), alpha=alpha, generator=torch.Generator().manual_seed(seed))
    finite = torch.isfinite(torch.as_tensor(values, dtype=torch.float64))
    return {"mean": m, "lo": lo, "hi": hi, "n": int(finite.sum())}


def evaluate(models: Mapping[str, Any], eval_sets: Mapping[str, EvalSet], renderer: Any, *, baseline: bool = True,
             bootstrap: int = 1000, alpha: float = 0.05, seed: int = 0, batch_size: int = 32, device: str = "cpu",
             train_identities: Any = None, hist_reference: str = "clean", hist_bins: int = 16,
             coverage_edges: Sequence[float] = COVERAGE_EDGES, yaw_edges: Sequence[float] = YAW_EDGES_DEG,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate every model on every set (paper Sec. 4.2; notebook 05 sections 2-5). JSON-ready dict:

    ``meta``; ``models``; ``kinds``; ``summary[model][kind][metric] = {mean, lo, hi, n}`` (bootstrap
    percentile CI of the mean, ``bootstrap`` resamples, level 1 - alpha); ``per_sample[model][kind]
    [metric]`` lists; ``coverage[kind]`` and ``yaw_deg[kind]`` (ground truth |yaw|) lists;
    ``curves['coverage'|'yaw'][model][metric]`` = :func:`occ3d_lib.core.metrics.binned_mean` over all
    sets pooled (coverage bins 0-80 %: SHOFI's single square reaches at most 60 % and the 'full' kind fills
    the 60-80 % bins).
    ``baseline`` adds :data:`MEAN_FACE` (needs ground-truth coefficients). ``train_identities``:
    if given, :func:`assert_no_identity_leak` runs first.
    """
    if not models:
        raise ValueError("evaluate needs at least one model")
    if not eval_sets:
        raise ValueError("evaluate needs at least one evaluation set")
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
                                  batch_size=batch_size)
            per[name][kind] = {k: v.tolist() for k, v in vals.items()}
            summary[name][kind] = {k: _ci(v, bootstrap, alpha, seed) for k, v in vals.items()}
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
                curves[which][name][metric] = M.binned_mean(v, keys, edges)
    first = next(iter(eval_sets.values()))
    return {
        "meta": {"image_size": first.image_size, "dataset": first.dataset, "bootstrap": bootstrap, "alpha": alpha,
                 "seed": seed, "hist_reference": hist_reference, "hist_bins": hist_bins,
                 "n": {k: len(es) for k, es in eval_sets.items()}, "metrics": METRICS,
                 "coverage_edges": list(coverage_edges), "yaw_edges_deg": list(yaw_edges),
                 "identity_leak_checked": train_identities is not None},
        "models": names,
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
    """Occluder-colour invariance (paper Fig. 3, Sec. 4.1.1) as a number; notebook 05 section 6.

    The same faces (B, 3, S, S) with landmarks (B, 68, 2) are occluded with ``kind`` from one seed
    in each colour of ``colours`` (solid fill). The occlusion module draws the geometry before the
    colour, so only the colour changes; this is checked (identical masks) and a ``RuntimeError``
    raised otherwise. Per model and face: the reconstructed mean skin albedo a_c (RGB in [0, 1])
    under each colour c; ``spread`` = mean_c ||a_c - mean_c a_c|| (0 = perfectly invariant) and
    ``vs_clean`` = mean_c ||a_c - a_clean|| (a_clean from the unoccluded face). Returned in 8-bit
    levels (x 255) with bootstrap CIs.
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
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def write_metrics(path: str | Path, results: Mapping[str, Any]) -> Path:
    """Write results atomically as strict JSON (NaN / inf become null); returns the path."""
    return write_json(path, _jsonable(dict(results)))


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Read a metrics.json written by :func:`write_metrics`."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no metrics file at {p}")
    return json.loads(p.read_text())


# ------------------------------------------------------------------------------------ the paper's numbers
#: Paper Tables 1-7 (Tiwari et al.). ME px, MSE (x, y), normalised ME, normalised MSE (x, y);
#: None where the paper prints "--". CelebA columns -> our ME / MSE; AFLW2000-3D -> normalised.
PAPER: dict[str, Any] = {
    "table1": {  # SOPI ("Ours") vs RNet
        "none": {"sopi": (1.24, (3.25, 1.66), 0.68, (0.26, 0.43)), "teacher": (1.24, (3.23, 1.69), 0.68, (0.26, 0.43))},
        "dsofi": {"sopi": (1.25, (3.27, 1.68), 0.68, (0.26, 0.43)), "teacher": None},
        "dhofi": {"sopi": (1.24, (3.20, 1.66), 0.68, (0.26, 0.43)), "teacher": None},
        "shofi": {"sopi": (1.26, (3.26, 1.70), 0.69, (0.26, 0.44)), "teacher": None},
    },
    "table2": {  # histogram dissimilarity (CelebA, AFLW2000-3D)
        "none": {"sopi": (4.76, 3.82), "teacher": (4.74, 3.81)},
        "dsofi": {"sopi": (4.77, 3.82), "teacher": (4.90, 4.02)},
        "dhofi": {"sopi": (4.79, 3.84), "teacher": (7.98, 5.36)},
        "shofi": {"sopi": (4.83, 3.88), "teacher": None},
    },
    "table3": {"teacher": 5.84, "sopi": 0.77},  # ME, 54 naturally occluded CelebA images
    "table4": {"teacher": 5.01, "sopi": 4.76},  # histogram dissimilarity, same images
    "table5": {"teacher": (7.91, (5.65, 3.94), 0.87, (0.64, 0.93)), "mopi": (1.24, (3.21, 1.67), 0.68, (0.26, 0.44))},
    "table6": {"teacher": (6.93, 4.74), "mopi": (4.76, 3.82)},
    "table7": {"mopi_perceptual": (41.0, (32.84, 23.97), 0.94, (0.75, 0.88)),
               "mopi_label": (2.11, (3.10, 2.23), 0.71, (0.32, 0.46)),
               "mopi": (1.24, (3.21, 1.67), 0.68, (0.26, 0.44))},
}
TABLE1_KINDS = ("none", "dsofi", "dhofi", "shofi")
NATURAL_KIND = "natural"
PATTERN_KIND = "random_pattern"
KIND_LABELS = {"none": "Unoccluded", "dsofi": "DSOFI", "dhofi": "DHOFI", "shofi": "SHOFI", "full": "Full",
               "random_pattern": "Random patterns", "natural": "Natural occluders"}


def _get(results: Mapping[str, Any] | None, model: str | None, kind: str, metric: str) -> dict[str, float] | None:
    if results is None or model is None:
        return None
    return results.get("summary", {}).get(model, {}).get(kind, {}).get(metric)


def _f(x: float | None, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{nd}f}" if abs(x) >= 10 ** -nd or x == 0 else f"{x:.2e}"


def _fci(s: dict[str, float] | None, nd: int = 2) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{_f(s['mean'], nd)} [{_f(s['lo'], nd)}, {_f(s['hi'], nd)}]"


def _pair(a: dict | None, b: dict | None, nd: int = 2) -> str:
    if not a or not b or a.get("mean") is None or b.get("mean") is None:
        return "n/a"
    return f"({_f(a['mean'], nd)}, {_f(b['mean'], nd)})"


def _paper_pair(p: Any) -> str:
    return "--" if p is None else f"({p[0]:.2f}, {p[1]:.2f})"


def _paper(x: Any) -> str:
    return "--" if x is None else f"{x:.2f}"


def _landmark_cells(res: Mapping[str, Any] | None, norm_res: Mapping[str, Any] | None, model: str | None, kind: str) -> list[str]:
    return [_fci(_get(res, model, kind, "me")),
            _pair(_get(res, model, kind, "mse_x"), _get(res, model, kind, "mse_y")),
            _fci(_get(norm_res, model, kind, "nme"), 4),
            _pair(_get(norm_res, model, kind, "nmse_x"), _get(norm_res, model, kind, "nmse_y"), 6)]


def _landmark_table(rows: list[tuple[str, str | None, str, Any]], res: Mapping[str, Any],
                    norm_res: Mapping[str, Any]) -> list[str]:
    head = ["| row | ME ours | ME paper | MSE (x, y) ours | MSE paper | norm. ME ours | norm. ME paper "
            "| norm. MSE (x, y) ours | norm. MSE paper |", "|---|---|---|---|---|---|---|---|---|"]
    for label, model, kind, p in rows:
        c = _landmark_cells(res, norm_res, model, kind)
        pp = (None, None, None, None) if p is None else p
        head.append(f"| {label} | {c[0]} | {_paper(pp[0])} | {c[1]} | {_paper_pair(pp[1])} | {c[2]} | {_paper(pp[2])} "
                    f"| {c[3]} | {_paper_pair(pp[3])} |")
    return head


def tables_markdown(results: Mapping[str, Any], roles: Mapping[str, str] | None = None,
                    aflw_results: Mapping[str, Any] | None = None, natural_results: Mapping[str, Any] | None = None) -> str:
    """Tables 1-7 in the paper's layouts, our numbers (mean [95 % CI]) beside the paper's (notebook 05 section 4).

    ``results`` from :func:`evaluate` on the main (synthetic or CelebA-like) sets supplies the ME /
    MSE columns (the paper's CelebA columns); ``aflw_results`` (optional) supplies the normalised
    columns (the paper's AFLW2000-3D columns) and the second histogram column, else they come from
    ``results``; ``natural_results`` (optional) supplies Tables 3-4 (real naturally occluded
    faces), else our 'natural' occluder set is used. ``roles``: see :data:`DEFAULT_ROLES`.
    Histogram dissimilarity: ours is a Hellinger distance in [0, 1]; the paper does not define its
    scale, so compare orderings, not values. Ends with a table of the 3D metrics (beyond the paper).
    """
    r = {**DEFAULT_ROLES, **(roles or {})}
    norm = aflw_results if aflw_results is not None else results
    nat = natural_results if natural_results is not None else results
    t, s, m = r["teacher"], r["sopi"], r["mopi"]
    P = PAPER
    src = results.get("meta", {}).get("dataset", "?")
    nsrc = norm.get("meta", {}).get("dataset", "?")
    out = [f"ME / MSE columns: {src} sets (paper: CelebA). Normalised columns: {nsrc} sets (paper: AFLW2000-3D). "
           "Ours: mean [95 % bootstrap CI]; MSE pairs are means. '--' = the paper printed no number; "
           "'n/a' = not measured here.", ""]
    out += ["### Table 1: landmark errors, SOPI (Ours) vs teacher (RNet)", ""]
    rows = []
    for k in TABLE1_KINDS:
        rows.append((f"{KIND_LABELS[k]} / Ours (SOPI)", s, k, P["table1"][k]["sopi"]))
        rows.append((f"{KIND_LABELS[k]} / RNet (teacher)", t, k, P["table1"][k]["teacher"]))
    out += _landmark_table(rows, results, norm) + [""]
    out += ["### Table 2: histogram dissimilarity (lower is better)", "",
            f"| occlusion | method | ours ({src}) | paper CelebA | ours ({nsrc}) | paper AFLW2000-3D |",
            "|---|---|---|---|---|---|"]
    for k in TABLE1_KINDS:
        for label, model, role in (("Ours (SOPI)", s, "sopi"), ("RNet (teacher)", t, "teacher")):
            p = P["table2"][k][role]
            out.append(f"| {KIND_LABELS[k]} | {label} | {_fci(_get(results, model, k, 'hist'), 3)} | "
                       f"{_paper(None if p is None else p[0])} | {_fci(_get(norm, model, k, 'hist'), 3)} | "
                       f"{_paper(None if p is None else p[1])} |")
    nsrc_nat = nat.get("meta", {}).get("dataset", "?")
    out += ["", f"### Table 3: landmark ME on naturally occluded faces ({nsrc_nat}, kind '{NATURAL_KIND}')", "",
            "| method | ME ours | ME paper |", "|---|---|---|"]
    for label, model, role in (("RNet (teacher)", t, "teacher"), ("Ours (SOPI)", s, "sopi")):
        out.append(f"| {label} | {_fci(_get(nat, model, NATURAL_KIND, 'me'))} | {_paper(P['table3'][role])} |")
    out += ["", "### Table 4: histogram dissimilarity on naturally occluded faces", "",
            "| method | ours | paper |", "|---|---|---|"]
    for label, model, role in (("RNet (teacher)", t, "teacher"), ("Ours (SOPI)", s, "sopi")):
        out.append(f"| {label} | {_fci(_get(nat, model, NATURAL_KIND, 'hist'), 3)} | {_paper(P['table4'][role])} |")
    out += ["", "### Table 5: landmark errors on random patterns, MOPI (Ours) vs RNet", ""]
    out += _landmark_table([("RNet (teacher)", t, PATTERN_KIND, P["table5"]["teacher"]),
                            ("Ours (MOPI)", m, PATTERN_KIND, P["table5"]["mopi"])], results, norm) + [""]
    out += ["### Table 6: histogram dissimilarity on random patterns", "",
            f"| method | ours ({src}) | paper CelebA | ours ({nsrc}) | paper AFLW2000-3D |", "|---|---|---|---|---|"]
    for label, model, role in (("RNet (teacher)", t, "teacher"), ("Ours (MOPI)", m, "mopi")):
        p = P["table6"][role]
        out.append(f"| {label} | {_fci(_get(results, model, PATTERN_KIND, 'hist'), 3)} | {_paper(p[0])} | "
                   f"{_fci(_get(norm, model, PATTERN_KIND, 'hist'), 3)} | {_paper(p[1])} |")
    out += ["", "### Table 7: MOPI loss ablation (Eq. 9) on random patterns", ""]
    out += _landmark_table([("L_perc only", r["mopi_perceptual"], PATTERN_KIND, P["table7"]["mopi_perceptual"]),
                            ("L_label only", r["mopi_label"], PATTERN_KIND, P["table7"]["mopi_label"]),
                            ("L_perc + L_label", m, PATTERN_KIND, P["table7"]["mopi"])], results, norm) + [""]
    out += ["### Beyond the paper: 3D error against the ground-truth mesh (synthetic sets only)", ""]
    kinds = list(results.get("kinds", []))
    out += ["| model | " + " | ".join(f"{KIND_LABELS.get(k, k)} mm / deg" for k in kinds) + " |",
            "|---|" + "---|" * len(kinds)]
    for name in results.get("models", []):
        cells = []
        for k in kinds:
            v, n = _get(results, name, k, "vertex_mm"), _get(results, name, k, "normal_deg")
            cells.append(f"{_fci(v)} / {_f(n['mean'], 1) if n and n.get('mean') is not None else 'n/a'}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------ verdicts
def _mean(results: Mapping[str, Any], model: str, kind: str, metric: str) -> float | None:
    s = _get(results, model, kind, metric)
    return None if not s or s.get("mean") is None or not math.isfinite(s["mean"]) else float(s["mean"])


def _better(results: Mapping[str, Any], a: str, b: str, kind: str, metric: str) -> tuple[str, str] | None:
    """(verdict, numbers) for 'a has a lower metric than b on kind' with CI separation noted."""
    sa, sb = _get(results, a, kind, metric), _get(results, b, kind, metric)
    if not sa or not sb or sa.get("mean") is None or sb.get("mean") is None:
        return None
    lower = sa["mean"] < sb["mean"]
    sep = sa["hi"] < sb["lo"] if lower else sb["hi"] < sa["lo"]
    verdict = ("holds" if sep else "holds, not significant") if lower else "does not hold here"
    note = "CIs separate" if sep else "CIs overlap"
    return verdict, f"{a} {_fci(sa)} vs {b} {_fci(sb)} ({note})"


def verdicts(results: Mapping[str, Any], roles: Mapping[str, str] | None = None,
             colour: Mapping[str, Any] | None = None, flat_ratio: float | None = None) -> list[Claim]:
    """One verdict per quantitative claim of the paper, on our numbers (notebook 05 section 10).

    Each item is a :class:`~occ3d_lib.evaluation.claims.Claim`: claim, paper (its numbers, formatted from
    :data:`PAPER`), ours (our numbers), verdict ('holds' / 'does not hold here' / 'not measured') and
    against (what the claim compares with: 'teacher', 'mean face', 'clean', 'ablation', 'SOPI'). The
    thresholds are :mod:`occ3d_lib.core.thresholds`: "as precise as unoccluded" is ME(occluded) <=
    ``AS_PRECISE`` x ME(unoccluded) (``flat_ratio`` overrides it); "comparable" within that factor;
    "better" a lower mean ("holds" when the 95 % CIs separate, "holds, not significant" when they
    overlap). Beyond the paper, SOPI and MOPI are compared with the mean face at the true pose
    (:data:`MEAN_FACE`) on landmarks and in 3D.
    """
    flat_ratio = TH.AS_PRECISE if flat_ratio is None else flat_ratio
    r = {**DEFAULT_ROLES, **(roles or {})}
    t, s, m = r["teacher"], r["sopi"], r["mopi"]
    out: list[Claim] = []

    def add(claim: str, paper: str, res: tuple[str, str] | None, against: str = "teacher") -> None:
        out.append(Claim(claim, paper, res[1] if res else "n/a", res[0] if res else "not measured", against))

    def me(table: str, *keys: str) -> float:  # the paper's ME (px) of a table cell
        cell = PAPER[table]
        for k in keys:
            cell = cell[k]
        return cell[0] if isinstance(cell, tuple) else cell

    def hist(table: str, *keys: str) -> float:  # the paper's histogram dissimilarity on CelebA
        return me(table, *keys)

    # Table 1: SOPI comparable to RNet on clean faces
    a, b = _mean(results, s, "none", "me"), _mean(results, t, "none", "me")
    add("SOPI's landmark error on unoccluded faces is comparable to the teacher's (Table 1)",
        f"ME {me('table1', 'none', 'sopi')} vs {me('table1', 'none', 'teacher')}",
        None if a is None or b is None else
        ("holds" if a <= flat_ratio * b and b <= flat_ratio * a else "does not hold here",
         f"SOPI {a:.2f} vs teacher {b:.2f} px (ratio {a / b if b else float('nan'):.2f}, limit {flat_ratio})"),
        against="teacher (clean)")
    for k in ("dsofi", "dhofi", "shofi"):
        ak = _mean(results, s, k, "me")
        add(f"SOPI on {KIND_LABELS[k]} is as precise as on unoccluded faces (Table 1)",
            f"ME {me('table1', k, 'sopi')} vs {me('table1', 'none', 'sopi')}",
            None if ak is None or a is None else
            ("holds" if ak <= flat_ratio * a else "does not hold here",
             f"SOPI {ak:.2f} vs clean {a:.2f} px (ratio {ak / a if a else float('nan'):.2f}, limit {flat_ratio})"),
            against="clean")
        add(f"SOPI beats the teacher on {KIND_LABELS[k]} (Table 1: RNet '--', no reliable result)", "RNet --",
            _better(results, s, t, k, "me"))
    for k in ("dsofi", "dhofi"):
        add(f"SOPI's histogram dissimilarity is below the teacher's on {KIND_LABELS[k]} (Table 2)",
            f"{hist('table2', k, 'sopi')} vs {hist('table2', k, 'teacher')} (CelebA)",
            _better(results, s, t, k, "hist"))
    add("SOPI beats the teacher on natural occlusions (Table 3)",
        f"ME {me('table3', 'sopi')} vs {me('table3', 'teacher')}", _better(results, s, t, NATURAL_KIND, "me"))
    add("SOPI's histogram dissimilarity is below the teacher's on natural occlusions (Table 4)",
        f"{hist('table4', 'sopi')} vs {hist('table4', 'teacher')}", _better(results, s, t, NATURAL_KIND, "hist"))
    add("MOPI beats the teacher on random patterns (Table 5)",
        f"ME {me('table5', 'mopi')} vs {me('table5', 'teacher')}", _better(results, m, t, PATTERN_KIND, "me"))
    add("MOPI's histogram dissimilarity is below the teacher's on random patterns (Table 6)",
        f"{hist('table6', 'mopi')} vs {hist('table6', 'teacher')}", _better(results, m, t, PATTERN_KIND, "hist"))
    add("MOPI is more accurate than SOPI on occluded faces (Sec. 5)", "stated, no table",
        _better(results, m, s, PATTERN_KIND, "me"), against="SOPI")
    add("Full Eq. 9 loss beats the label-only ablation (Table 7)",
        f"ME {me('table7', 'mopi')} vs {me('table7', 'mopi_label')}",
        _better(results, m, r["mopi_label"], PATTERN_KIND, "me"), against="ablation")
    add("Full Eq. 9 loss beats the perceptual-only ablation (Table 7)",
        f"ME {me('table7', 'mopi')} vs {me('table7', 'mopi_perceptual')}",
        _better(results, m, r["mopi_perceptual"], PATTERN_KIND, "me"), against="ablation")
    for model, kind in ((s, "none"), (s, "shofi"), (m, PATTERN_KIND)):
        for metric, what in (("me", "landmark error"), ("vertex_mm", "dense 3D error")):
            add(f"Baseline: {model.upper()}'s {what} on {KIND_LABELS.get(kind, kind)} is below the mean face at the "
                "true pose", "not measured in the paper", _better(results, model, MEAN_FACE, kind, metric),
                against="mean face")
    add("Beyond the paper: SOPI's dense 3D error under SHOFI is below the teacher's", "not measured in the paper",
        _better(results, s, t, "shofi", "vertex_mm"))
    if colour is not None:
        cm = colour.get("models", {})
        if t in cm and s in cm:
            st, ss = cm[t]["spread"], cm[s]["spread"]
            lower = ss["mean"] < st["mean"]
            add("SOPI's reconstructed skin tone ignores the occluder colour better than the teacher's (Fig. 3)",
                "qualitative (Fig. 3)",
                ("holds" if lower else "does not hold here",
                 f"albedo spread across {len(colour.get('colours', []))} colours: SOPI {_fci(ss)} vs teacher {_fci(st)} "
                 f"8-bit levels"))
        else:
            add("SOPI ignores the occluder colour better than the teacher (Fig. 3)", "qualitative (Fig. 3)", None)
    return out


def verdict_counts(items: Sequence[Claim]) -> dict[str, dict[str, int]]:
    """Verdicts counted by what each claim compares with (``against``): {against: {verdict: n}}."""
    out: dict[str, dict[str, int]] = {}
    for v in items:
        row = out.setdefault(v.against, {})
        row[v.verdict] = row.get(v.verdict, 0) + 1
    return out


def verdict_counts_markdown(items: Sequence[Claim]) -> str:
    """One sentence with the verdict counts overall and split by what the claims compare with, so that a
    reader sees how many 'holds' are wins over a teacher that never saw an occluder (notebook 05 section 10)."""
    def n(verdict: str, rows: Mapping[str, int]) -> int:
        return rows.get(verdict, 0)

    total: dict[str, int] = {}
    counts = verdict_counts(items)
    for rows in counts.values():
        for k, c in rows.items():
            total[k] = total.get(k, 0) + c
    parts = [f"{a}: {n('holds', rows)} of {sum(rows.values())}" for a, rows in counts.items()]
    return (f"Holds: {n('holds', total)} (plus {n('holds, not significant', total)} with overlapping 95 % intervals), "
            f"does not hold here: {n('does not hold here', total)}, not measured: {n('not measured', total)}. "
            f"Holds by what the claim compares with: {'; '.join(parts)}.")


# ------------------------------------------------------------------------------------ figures
@torch.no_grad()
def qualitative_grid(models: Mapping[str, Any], es: EvalSet, renderer: Any, n: int = 6, batch_size: int = 32,
                     device: str = "cpu"):
    """Figs. 2-5 style grid for one set: rows input, clean (if known), then each model's reconstruction
    rendered over the input image. Returns a matplotlib Figure."""
    n = min(n, len(es))
    imgs = es.images[:n].float()
    rows = {"input": imgs}
    if es.clean is not None:
        rows["clean"] = es.clean[:n].float()
    for name, model in models.items():
        c = predict_coeffs(model, imgs, batch_size, device).to(renderer.model.dtype)
        rows[name] = renderer(c, imgs.to(renderer.model.dtype)).image.float()
    return rows_grid(rows, suptitle=f"{KIND_LABELS.get(es.kind, es.kind)} ({es.dataset})")


def worst_cases(results: Mapping[str, Any], model: str, kind: str, metric: str = "me", k: int = 4) -> list[int]:
    """Indices (into the ``kind`` set) of the ``k`` samples where ``model`` has the largest ``metric``
    (failure cases, notebook 05 section 9). NaNs are ignored."""
    vals = results.get("per_sample", {}).get(model, {}).get(kind, {}).get(metric)
    if vals is None:
        raise KeyError(f"no per-sample {metric!r} for model {model!r} on {kind!r}")
    v = torch.tensor([x if x is not None else float("nan") for x in vals], dtype=torch.float64)
    v = torch.where(torch.isfinite(v), v, torch.full_like(v, -float("inf")))
    return torch.argsort(v, descending=True)[: min(k, v.numel())].tolist()


@torch.no_grad()
def failure_grid(models: Mapping[str, Any], es: EvalSet, renderer: Any, indices: Sequence[int], device: str = "cpu",
                 errors: Sequence[float] | None = None):
    """Rows input (with ground-truth landmarks in green and the first model's in red) and each model's
    render for the chosen samples of ``es``; ``errors`` (one per index, landmark ME in px) title the
    columns. Returns a Figure (notebook 05 section 9)."""
    import matplotlib.pyplot as plt

    idx = torch.as_tensor(list(indices), dtype=torch.long)
    imgs = es.images[idx].float()
    rows = [("input", imgs, None)]
    for name, model in models.items():
        c = predict_coeffs(model, imgs, 32, device).to(renderer.model.dtype)
        out = renderer(c, imgs.to(renderer.model.dtype))
        rows.append((name, out.image.float(), out.landmarks.float()))
    fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.7 * len(idx) + 0.6, 1.7 * len(rows)), squeeze=False)
    gt = es.landmarks[idx]
    for r, (name, im, lm) in enumerate(rows):
        for c in range(len(idx)):
            ax = axes[r, c]
            ax.imshow(_np_image(im[c]), interpolation="nearest")
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
            ax.scatter(gt[c, :, 0], gt[c, :, 1], s=2, c="lime", linewidths=0)
            if lm is not None:
                ax.scatter(lm[c, :, 0], lm[c, :, 1], s=2, c="red", linewidths=0)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and errors is not None:
                ax.set_title(f"face {int(idx[c])}: ME {float(errors[c]):.1f} px", fontsize=7)
    fig.suptitle(f"{KIND_LABELS.get(es.kind, es.kind)}: green = ground-truth landmarks, red = reconstruction", fontsize=9)
    fig.tight_layout()
    return fig


@torch.no_grad()
def colour_grid(models: Mapping[str, Any], image: Tensor, landmarks: Tensor, renderer: Any, kind: str = "shofi",
                seed: int = 0, colours: Sequence[Sequence[float]] = DEFAULT_COLOURS, device: str = "cpu"):
    """Fig. 3 style: one face (3, S, S) occluded by the same occluder in each colour (columns), and
    each model's reconstruction below. Returns a Figure (notebook 05 section 8)."""
    imgs = torch.cat([make_eval_set(image[None], landmarks[None], kind, seed, fill="solid",
                                    color=list(map(float, c))).images.float() for c in colours])
    rows = {"input": imgs}
    for name, model in models.items():
        c = predict_coeffs(model, imgs, 32, device).to(renderer.model.dtype)
        rows[name] = renderer(c).image.float()  # black background: the skin tone alone
    return rows_grid(rows, suptitle=f"same {kind} occluder, {len(colours)} colours")


def curve_figure(results: Mapping[str, Any], which: str = "coverage", metric: str = "me", ax: Any = None):
    """Error vs occluded fraction (``which="coverage"``) or vs |yaw| (``"yaw"``), one line per model with a
    95 % band (mean +- 1.96 std / sqrt(n) per bin; notebook 05 section 7). Draws into ``ax`` when given;
    returns the Figure."""
    import matplotlib.pyplot as plt

    if which not in ("coverage", "yaw"):
        raise ValueError(f"which must be 'coverage' or 'yaw', got {which!r}")
    fig, ax = plt.subplots(figsize=(6.2, 3.4)) if ax is None else (ax.figure, ax)
    for name, per_metric in results.get("curves", {}).get(which, {}).items():
        bins = per_metric.get(metric)
        if not bins:
            continue
        xs = [0.5 * (b["lo"] + b["hi"]) * (100 if which == "coverage" else 1) for b in bins]
        ys = np.array([b["mean"] if b["mean"] is not None else float("nan") for b in bins], dtype=float)
        half = np.array([1.96 * float(b.get("std") or 0.0) / math.sqrt(b["n"]) if b.get("n") else float("nan")
                         for b in bins], dtype=float)
        line, = ax.plot(xs, ys, marker="o", ms=3, label=name, ls="--" if name == MEAN_FACE else "-")
        ax.fill_between(xs, ys - half, ys + half, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("occluded fraction of the face (%)" if which == "coverage" else "|yaw| (degrees)")
    ax.set_ylabel(METRICS.get(metric, metric), fontsize=7)
    ax.set_title(f"{METRICS.get(metric, metric).split(',')[0].split(':')[0]} by "
                 f"{'occluded fraction' if which == 'coverage' else 'head yaw'} (95 % bands)", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def save_figures(run_dir: str | Path, models: Mapping[str, Any], eval_sets: Mapping[str, EvalSet], renderer: Any,
                 results: Mapping[str, Any], n: int = 6, device: str = "cpu") -> dict[str, str]:
    """Write qualitative grids per kind and the coverage / yaw curves to ``run_dir/figures``.
    Returns {name: path relative to run_dir}."""
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    figdir = run_dir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}

    def save(fig, name: str) -> None:
        path = figdir / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        out[name] = str(path.relative_to(run_dir))

    for kind, es in eval_sets.items():
        save(qualitative_grid(models, es, renderer, n=n, device=device), f"grid_{kind}")
    for which in ("coverage", "yaw"):
        for metric in ("me", "vertex_mm"):
            save(curve_figure(results, which, metric), f"curve_{which}_{metric}")
    return out


# ------------------------------------------------------------------------------------ report
def write_report(run_dir: str | Path, results: Mapping[str, Any], settings: Mapping[str, Any],
                 timings: Mapping[str, float], figures: Mapping[str, str] | None = None,
                 roles: Mapping[str, str] | None = None, colour: Mapping[str, Any] | None = None,
                 aflw_results: Mapping[str, Any] | None = None,
                 natural_results: Mapping[str, Any] | None = None) -> Path:
    """Write ``run_dir/report.md``: verdicts, Tables 1-7, 3D table, colour invariance, curves,
    qualitative grids, settings and timings. Returns its path (notebook 05 section 8)."""
    run_dir = Path(run_dir)
    colour = colour if colour is not None else results.get("colour_invariance")
    v = verdicts(results, roles, colour)
    lines = ["# occ3d run report", "",
             "Reproduction of *Occlusion Resistant Network for 3D Face Reconstruction* (Tiwari et al.) on this "
             "run's data. Our numbers are measured here; the paper's are copied from its tables.", "",
             "## Verdicts on the paper's claims", "", claims_markdown(v),
             verdict_counts_markdown(v), "", "Thresholds (one definition, `occ3d_lib.core.thresholds`):", "",
             TH.thresholds_markdown(), "",
             "## Tables", "", tables_markdown(results, roles, aflw_results, natural_results)]
    if colour:
        lines += ["## Occluder-colour invariance (Fig. 3 as a number)", "",
                  f"Kind {colour.get('kind')}, {colour.get('n')} faces, {len(colour.get('colours', []))} colours; "
                  "spread = mean distance of the reconstructed mean skin albedo from its mean over colours; "
                  "vs clean = mean distance from the unoccluded reconstruction (8-bit levels).", "",
                  "| model | spread | vs clean |", "|---|---|---|"]
        for name, d in colour.get("models", {}).items():
            lines.append(f"| {name} | {_fci(d['spread'])} | {_fci(d['vs_clean'])} |")
        lines.append("")
    lines += ["## Error vs occluded fraction and |yaw|", ""]
    for which in ("coverage", "yaw"):
        curves = results.get("curves", {}).get(which, {})
        if not curves:
            continue
        any_m = next(iter(curves.values())).get("me", [])
        head = "| model | " + " | ".join(
            (f"{b['lo'] * 100:.0f}-{b['hi'] * 100:.0f}%" if which == "coverage" else f"{b['lo']:.0f}-{b['hi']:.0f} deg")
            for b in any_m) + " |"
        lines += [f"Landmark ME (px at 224) by {'occluded fraction' if which == 'coverage' else '|yaw|'} "
                  "(n per bin in brackets):", "", head, "|---|" + "---|" * len(any_m)]
        for name, pm in curves.items():
            cells = [f"{_f(b['mean'])} ({b['n']})" for b in pm.get("me", [])]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for name, rel in figures.items():
            lines += [f"**{name}**", "", f"![{name}]({rel})", ""]
    lines += ["## Settings", "", "```json", json.dumps(_jsonable(dict(settings)), indent=2, sort_keys=True, default=str),
              "```", "", "## Timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {float(s):.1f} |" for k, s in timings.items()]
    meta = results.get("meta", {})
    lines += ["", "## Metric definitions", ""] + [f"- `{k}`: {d}" for k, d in METRICS.items()]
    lines += ["", f"Bootstrap: {meta.get('bootstrap')} resamples, {100 * (1 - float(meta.get('alpha', 0.05))):.0f} % "
              f"percentile intervals. Set sizes: {meta.get('n')}. Identity leak check: "
              f"{'passed' if meta.get('identity_leak_checked') else 'not run'}.", ""]
    return write_text(run_dir / "report.md", "\n".join(lines))


# ------------------------------------------------------------------------------------ one call
def run_evaluation(ctx: Context, models: Mapping[str, Any], *, kinds: Sequence[str] | None = None, n: int | None = None,
                   colour_kind: str = "shofi", figures: bool = True, write: bool = True,
                   settings: Mapping[str, Any] | None = None, timings: Mapping[str, float] | None = None,
                   roles: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole evaluation of a run (notebook 05, pipeline): fixed sets of ``ctx``, identity-leak
    check against the training split, :func:`evaluate`, :func:`colour_invariance` on the clean
    faces, and (``write``) ``run_dir/metrics.json``, figures and ``report.md``. Returns the results
    (with ``colour_invariance`` and ``figures`` added)."""
    import time

    t0 = time.perf_counter()
    sets = load_eval_sets(ctx, kinds, n)
    p = ctx.profile
    res = evaluate(models, sets, ctx.renderer, bootstrap=p.bootstrap, seed=p.seed, device=ctx.device,
                   train_identities=ctx.dataset.train.identity)
    base = sets.get("none") or next(iter(sets.values()))
    clean = base.clean if base.clean is not None else base.images
    res["colour_invariance"] = colour_invariance(models, clean, base.landmarks, ctx.renderer, kind=colour_kind,
                                                 seed=p.seed, bootstrap=p.bootstrap, device=ctx.device)
    tm = dict(timings or {})
    tm["evaluation"] = time.perf_counter() - t0
    res["timings"] = tm
    if write:
        figs = save_figures(ctx.run_dir, models, sets, ctx.renderer, res, device=ctx.device) if figures else {}
        res["figures"] = figs
        write_metrics(ctx.run_dir / "metrics.json", res)
        st = dict(settings or {})
        st.setdefault("profile", p.to_dict())
        st.setdefault("tracks", {"face_model": ctx.face_model_spec, "dataset": ctx.dataset_spec,
                                 "teacher": ctx.teacher_spec, "facenet": ctx.facenet_spec})
        write_report(ctx.run_dir, res, st, tm, figs, roles=roles)
    return res
