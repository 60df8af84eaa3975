"""Quick diagnostics of trained models on fixed sets: where an error comes from, each model's error
per occlusion kind, face-by-face comparisons with paired intervals, and how well Eq. 8 picks labels.

Notebooks 03 (sections 4-6: :func:`error_with_true_groups`, :func:`landmark_me_by_kind`) and 04
(sections 6-8: :func:`per_face_me`, :func:`mean_me`, :func:`comparison_markdown`,
:func:`selection_quality`). The full evaluation behind Tables 1-7 is :mod:`occ3d_lib.evaluation.report`.
Landmark errors are :func:`occ3d_lib.core.metrics.landmark_me` at the paper's 224-px scale.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from occ3d_lib.core.metrics import REFERENCE_SIZE, bootstrap_ci, histogram_dissimilarity, vertex_error
from occ3d_lib.data.context import Context
from occ3d_lib.face.coeffs import SLICES, mean_face_like, split_coeffs, validate_coeffs
from occ3d_lib.nets.predict import predict_coeffs
from occ3d_lib.occlusion.eval_sets import make_eval_set
from occ3d_lib.render.camera import CAMERA_DISTANCE, camera_intrinsics


# ----------------------------------------------------------------------- validation identities
@torch.no_grad()
def validation_errors(ctx: Context, model: nn.Module, n: int | None = 200) -> dict[str, float]:
    """Landmark ME (px at 224) and dense 3D error (mm) of ``model`` and of the mean face at the true pose
    on the first ``n`` validation images (all when None). Notebook 03, section 2 (the course study) and
    section 3 (the shipped teacher's record); never the test identities.

    Returns ``me``, ``dense_mm``, ``baseline_me``, ``baseline_dense_mm`` and the ratios ``me_ratio``,
    ``dense_ratio`` (model / mean face), ``n``.
    """
    val = ctx.dataset.val
    count = len(val) if n is None else min(n, len(val))
    if count == 0:
        raise ValueError("validation_errors needs at least one validation image (n_val_identities > 0)")
    b = val.batch(list(range(count)))
    r = ctx.renderer
    pred = predict_coeffs(model, b["image"], device=ctx.device)
    gt = b["coeffs"]
    base = mean_face_like(gt)

    def dense(c: Tensor) -> float:
        p, g = split_coeffs(c.to(r.model.dtype)), split_coeffs(gt.to(r.model.dtype))
        return float(vertex_error(r.model.shape(p.id, p.exp), r.model.shape(g.id, g.exp)).mean())

    out = {"me": float(r.landmark_me(pred, b["landmarks"]).mean()), "dense_mm": dense(pred),
           "baseline_me": float(r.landmark_me(base, b["landmarks"]).mean()), "baseline_dense_mm": dense(base)}
    out["me_ratio"] = out["me"] / out["baseline_me"]
    out["dense_ratio"] = out["dense_mm"] / out["baseline_dense_mm"]
    out["n"] = count
    return out


# -------------------------------------------------------------------------- where the error is
#: Groups of :func:`error_with_true_groups`: each row swaps these coefficient groups for the truth.
TRUE_GROUP_ROWS: Mapping[str, tuple[str, ...]] = {
    "identity": ("id",), "expression": ("exp",), "rotation": ("angle",), "translation": ("trans",),
    "pose (rotation + translation)": ("angle", "trans"), "shape (identity + expression)": ("id", "exp"),
}


@torch.no_grad()
def error_with_true_groups(pred: Tensor, gt: Tensor, landmarks: Tensor, renderer: Any,
                           rows: Mapping[str, tuple[str, ...]] = TRUE_GROUP_ROWS) -> dict[str, float]:
    """Where does a model's landmark error come from? Swap coefficient groups for the truth.

    Each row of ``rows`` replaces those groups of the prediction by the ground truth. A row that barely
    lowers the error is not where the error is; errors of several groups can also cancel, so a swap may
    even raise it. Notebook 03, section 4.

    Args:
        pred: predicted coefficients ``(B, 257)``.
        gt: true coefficients ``(B, 257)``.
        landmarks: true landmarks ``(B, 68, 2)`` in pixels of the renderer's image size.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` (its ``landmark_me``).
        rows: ``{row name: groups}``, the groups names of :data:`occ3d_lib.face.coeffs.SLICES`
            (default :data:`TRUE_GROUP_ROWS`).

    Returns:
        ``{"prediction": ME, <row name>: ME, ...}``: mean landmark ME over the B faces, floats in pixels at 224.
    """
    validate_coeffs(pred, "pred")
    validate_coeffs(gt, "gt")
    if pred.shape != gt.shape or landmarks.shape != (pred.shape[0], 68, 2):
        raise ValueError(f"pred and gt must both be (B, 257) and landmarks (B, 68, 2), got {tuple(pred.shape)}, "
                         f"{tuple(gt.shape)} and {tuple(landmarks.shape)}")
    bad = sorted({g for groups in rows.values() for g in groups} - set(SLICES))
    if bad:
        raise ValueError(f"unknown coefficient group(s) {bad}; valid: {list(SLICES)}")
    def me(c: Tensor) -> float:
        return float(renderer.landmark_me(c, landmarks).mean())

    out = {"prediction": me(pred)}
    for name, groups in rows.items():
        c = pred.clone()
        for g in groups:
            c[:, SLICES[g]] = gt[:, SLICES[g]].to(c.dtype)
        out[name] = me(c)
    return out


#: Groups of :func:`hist_with_true_groups`: what a colour histogram can see of a reconstruction.
HIST_GROUP_ROWS: Mapping[str, tuple[str, ...]] = {
    "light": ("gamma",), "albedo (skin tone)": ("tex",), "light and albedo": ("gamma", "tex"),
    "pose and shape": ("angle", "trans", "id", "exp"),
}


@torch.no_grad()
def hist_with_true_groups(pred: Tensor, gt: Tensor, clean: Tensor, renderer: Any,
                          rows: Mapping[str, tuple[str, ...]] = HIST_GROUP_ROWS) -> dict[str, float]:
    """Where does a model's histogram dissimilarity come from? The same swap as :func:`error_with_true_groups`.

    For Tables 2, 4, 6's measure: the mean Hellinger distance between the colour histograms of the
    ``clean`` images and of the rendered prediction in its face mask, for the prediction, for the
    prediction with each row's groups set to the truth, and for the truth itself. Notebook 05, section 6.

    Args:
        pred: predicted coefficients ``(B, 257)``.
        gt: true coefficients ``(B, 257)``.
        clean: the unoccluded images ``(B, 3, S, S)`` in [0, 1], S the renderer's image size.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer`.
        rows: ``{row name: groups}`` of :data:`occ3d_lib.face.coeffs.SLICES` (default :data:`HIST_GROUP_ROWS`).

    Returns:
        ``{"prediction": d, <row name>: d, ..., "ground truth": d}``: floats in [0, 1], each the mean over
        the faces (faces with an empty mask left out).
    """
    validate_coeffs(pred, "pred")
    validate_coeffs(gt, "gt")
    out = {"prediction": render_hist(pred, clean, renderer)}
    for name, groups in rows.items():
        c = pred.clone()
        for g in groups:
            c[:, SLICES[g]] = gt[:, SLICES[g]].to(c.dtype)
        out[name] = render_hist(c, clean, renderer)
    out["ground truth"] = render_hist(gt, clean, renderer)
    return out


def render_hist(coeffs: Tensor, clean: Tensor, renderer: Any) -> float:
    """Tables 2, 4, 6's histogram dissimilarity of one set of predictions: the mean Hellinger distance between
    the colour histograms of ``clean`` and of ``coeffs`` rendered, in the rendered face mask (faces with an
    empty mask left out). Notebook 05, section 6.

    Args:
        coeffs: coefficients ``(B, 257)``.
        clean: the unoccluded images ``(B, 3, S, S)`` in [0, 1], S the renderer's image size.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer`.

    Returns:
        The mean dissimilarity, a float in [0, 1].
    """
    validate_coeffs(coeffs, "coeffs")
    r = renderer(coeffs.to(renderer.model.dtype))
    return float(histogram_dissimilarity(clean.to(r.image), r.image, r.mask > 0.5).nanmean())


def swap_table(parts: Mapping[str, float], model: str = "teacher") -> str:
    """The table of :func:`error_with_true_groups` as markdown: one row per swap, the unchanged prediction
    first (notebook 03, sections 4 and 7).

    Args:
        parts: :func:`error_with_true_groups`'s dict (``"prediction"`` and one entry per swapped group).
        model: the model's name in the header.

    Returns:
        The markdown table as a str.
    """
    rows = [f"| {'nothing changed' if k == 'prediction' else 'true ' + k} | {v:.2f} |" for k, v in parts.items()]
    return "\n".join([f"| {model}'s prediction with ... | ME (px @224) |", "|---|---|", *rows])


def swap_reading(parts: Mapping[str, float], baseline_me: float | None = None, model: str = "teacher") -> str:
    """The swap table of :func:`error_with_true_groups` in sentences, read from its numbers (notebook 03, section 4).

    How much of ``model``'s landmark error the true pose and the true shape each remove, which is the
    larger part, and where the model stands against the mean face at the true pose.

    Args:
        parts: :func:`error_with_true_groups`'s dict: ``"prediction"`` and, when present, the rows
            ``"pose (rotation + translation)"`` and ``"shape (identity + expression)"`` are read.
        baseline_me: the mean face's landmark ME at the true pose (px at 224), or None to leave it out.
        model: the model's name in the sentences.

    Returns:
        The sentences as one str.
    """
    pred = float(parts["prediction"])
    rows = {"pose": parts.get("pose (rotation + translation)"), "shape": parts.get("shape (identity + expression)")}
    said = []
    for what, value in rows.items():
        if value is None:
            continue
        share = (pred - value) / pred if pred > 0 else 0.0
        verb = "falls" if value < pred else "rises"
        said.append(f"with the true {what} the {model}'s error {verb} from {pred:.2f} to {value:.2f} px "
                    f"({share:+.0%} of it removed)")
    text = "; ".join(said)
    text = text[:1].upper() + text[1:] + "." if text else f"The {model}'s error is {pred:.2f} px."
    if rows["pose"] is not None and rows["shape"] is not None:
        larger = "pose" if rows["pose"] < rows["shape"] else "shape"
        text += f" The {larger} is the larger part of the error."
    if baseline_me is not None:
        rel = "below" if pred < baseline_me else "above"
        text += (f" The mean face at the true pose scores {baseline_me:.2f} px: the {model} is {rel} it "
                 f"(ratio {pred / baseline_me:.2f}).")
    return text


#: Pose angles of :func:`unit_conversions`, in the order of the coefficient slice ``angle`` (R = Rz Ry Rx).
POSE_AXES: tuple[str, ...] = ("pitch", "yaw", "roll")


@torch.no_grad()
def unit_conversions(renderer: Any, coeffs: Tensor, landmarks: Tensor,
                     degrees: tuple[float, ...] = (0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24)) -> dict[str, Any]:
    """Pixels, millimetres and degrees for the series' camera, measured on true faces (notebook 03, section 7).

    Args:
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer`.
        coeffs: true coefficients ``(B, 257)``.
        landmarks: their landmarks ``(B, 68, 2)`` in pixels of the renderer's size.
        degrees: the turns tried about each axis (1 degree is always added).

    Returns:
        A dict: ``mm_per_px`` (float): millimetres on the face (at the camera's distance) per pixel of a
        224 image; ``identity_me`` (float): landmark ME (px at 224) of the mean face at the true pose,
        i.e. of the whole identity and expression signal; per axis of :data:`POSE_AXES`
        ``px_per_degree`` ({axis: float}, the ME of the true face turned by 1 degree) and
        ``degrees_for_identity`` ({axis: float or None}, the turn whose ME equals ``identity_me``,
        interpolated on ``degrees``; None when the largest turn stays below it); ``curve``
        ({axis: [(degrees, ME)]}).
    """
    validate_coeffs(coeffs, "coeffs")
    if landmarks.shape != (coeffs.shape[0], 68, 2):
        raise ValueError(f"landmarks must be (B, 68, 2) for B = {coeffs.shape[0]}, got {tuple(landmarks.shape)}")
    f, _ = camera_intrinsics(REFERENCE_SIZE)
    dt = renderer.model.dtype
    c0 = coeffs.to(dt)

    def me(c: Tensor) -> float:
        return float(renderer.landmark_me(c, landmarks).mean())

    out: dict[str, Any] = {"mm_per_px": CAMERA_DISTANCE * 100.0 / f, "identity_me": me(mean_face_like(c0)),
                           "px_per_degree": {}, "degrees_for_identity": {}, "curve": {}}
    grid = sorted({1.0, *map(float, degrees)})
    for i, axis in enumerate(POSE_AXES):
        curve = []
        for d in grid:
            c = c0.clone()
            c[:, SLICES["angle"].start + i] += torch.deg2rad(torch.tensor(d, dtype=dt))
            curve.append((d, me(c)))
        out["curve"][axis] = curve
        out["px_per_degree"][axis] = dict(curve)[1.0]
        target, found = out["identity_me"], None
        prev = (0.0, 0.0)
        for d, e in curve:
            if e >= target:
                found = prev[0] + (target - prev[1]) * (d - prev[0]) / max(e - prev[1], 1e-12)
                break
            prev = (d, e)
        out["degrees_for_identity"][axis] = found
    return out


def conversions_markdown(conv: Mapping[str, Any]) -> str:
    """:func:`unit_conversions` as a markdown table plus one sentence (notebook 03, section 7).

    Args:
        conv: the dict :func:`unit_conversions` returns.

    Returns:
        A markdown str: the sentence, then a table with one row per axis of :data:`POSE_AXES`; ends in a newline.
    """
    lines = [f"1 px at 224 is {conv['mm_per_px']:.2f} mm on the face at the camera's distance. The mean face at the "
             f"true pose, i.e. the whole identity and expression signal, is worth {conv['identity_me']:.2f} px of "
             "landmark ME.", "", "| turn of the true face about | ME per degree (px at 224) | degrees worth the whole "
             "identity signal |", "|---|---|---|"]
    for axis in POSE_AXES:
        d = conv["degrees_for_identity"][axis]
        lines.append(f"| {axis} | {conv['px_per_degree'][axis]:.2f} | "
                     f"{'more than the largest turn tried' if d is None else f'{d:.1f}'} |")
    return "\n".join(lines) + "\n"


def landmark_me_by_kind(models: Mapping[str, Any], eval_sets: Mapping[str, Any], split: Any, renderer: Any,
                        device: str = "cpu") -> dict[str, dict[str, float]]:
    """Mean landmark ME (pixels at 224) of each model on each fixed evaluation set. Notebook 03 sec. 4-6.

    Adds the 'baseline' row (:func:`occ3d_lib.face.coeffs.mean_face_like`: mean face at the *true* pose,
    which does not look at the image) and the 'zero' row (all-zero coefficients: mean face, frontal,
    centred, what an untrained RNet outputs).

    Args:
        models: ``{name: model}``, each anything :func:`occ3d_lib.nets.predict.predict_coeffs` runs.
        eval_sets: ``{kind: OcclusionResult}`` (:class:`occ3d_lib.occlusion.apply.OcclusionResult`) whose
            ``params['indices']`` are rows of ``split``; kind 'none' is reported as 'clean'.
        split: the dataset split holding the ground truth: ``split.batch(indices)`` gives ``coeffs (B, 257)``
            and ``landmarks (B, 68, 2)``.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` at the sets' image size.
        device: where the models run.

    Returns:
        ``{model: {kind: ME}}`` floats, rows 'zero', 'baseline', then the models in order.
    """
    out: dict[str, dict[str, float]] = {name: {} for name in ["zero", "baseline", *models]}
    for kind, res in eval_sets.items():
        name = "clean" if kind == "none" else kind
        idx = [int(i) for i in res.params["indices"]]
        gt = split.batch(idx)
        with torch.no_grad():
            out["baseline"][name] = float(renderer.landmark_me(mean_face_like(gt["coeffs"]), gt["landmarks"]).mean())
            out["zero"][name] = float(renderer.landmark_me(torch.zeros_like(gt["coeffs"]), gt["landmarks"]).mean())
        for mname, model in models.items():
            pred = predict_coeffs(model, res.images.float(), device=device)
            with torch.no_grad():
                out[mname][name] = float(renderer.landmark_me(pred, gt["landmarks"]).mean())
    return out


# ------------------------------------------------------------------ Eq. 8's choice of labels
def _ranks(x: Tensor) -> Tensor:
    """Ranks 0..W-1 along the last dimension (ties broken by position). (B, W) -> (B, W) float."""
    return x.argsort(dim=-1, stable=True).argsort(dim=-1).float()


def selection_quality(me: Tensor, distance: Tensor) -> dict[str, float]:
    """How good is Eq. 8's choice? Compare the chosen label with chance and with an oracle.

    Identities whose W errors or distances are all equal are left out of ``spearman``. Notebook 04, section 7.

    Args:
        me: ``(B, W)`` landmark error of each of the W SOPI predictions of B identities (e.g. from
            :func:`occ3d_lib.core.metrics.landmark_me`); W >= 2.
        distance: ``(B, W)`` the cosine distances Eq. 8 ranks (``select_labels(...)["distance"]``).

    Returns:
        Floats averaged over identities: ``selected`` (ME of the argmin-distance prediction, i.e. the
        label), ``mean`` (a prediction picked at random), ``oracle`` (the best of W), ``worst`` and
        ``spearman`` (mean per-identity rank correlation of distance and ME: 1 = FaceNet ranks
        reconstructions exactly by landmark error, 0 = no relation; NaN when no identity counts).
    """
    if me.ndim != 2 or me.shape != distance.shape or me.shape[1] < 2:
        raise ValueError(f"me and distance must both have shape (B, W) with W >= 2, got {tuple(me.shape)} "
                         f"and {tuple(distance.shape)}")
    me, distance = me.detach().double(), distance.detach().double()
    choice = distance.argmin(dim=1, keepdim=True)
    rm, rd = _ranks(me).double(), _ranks(distance).double()
    rm, rd = rm - rm.mean(1, keepdim=True), rd - rd.mean(1, keepdim=True)
    ok = (me.max(1).values > me.min(1).values) & (distance.max(1).values > distance.min(1).values)
    rho = (rm * rd).sum(1) / (rm.norm(dim=1) * rd.norm(dim=1)).clamp_min(1e-12)
    return {"selected": float(me.gather(1, choice).mean()), "mean": float(me.mean()),
            "oracle": float(me.min(1).values.mean()), "worst": float(me.max(1).values.mean()),
            "spearman": float(rho[ok].mean()) if bool(ok.any()) else float("nan")}


# -------------------------------------------------------------------- face-by-face comparisons
@torch.no_grad()
def per_face_me(ctx: Context, models: Mapping[str, nn.Module], kind: str = "random_pattern", seed: int = 1234,
                split: str = "test", n: int | None = None) -> dict[str, dict[str, Tensor]]:
    """Landmark ME (224-px scale) of several models, face by face, on a fixed occluded set and on the clean images.

    The set: the first ``n`` images of ``split`` occluded with ``kind`` by
    :func:`occ3d_lib.occlusion.eval_sets.make_eval_set` (fixed seed, solid random colours). Each model
    reconstructs through ``predict`` when it has one (MOPI's single-image rule), else ``__call__``. The same
    faces come in the same order for every model, so two models can be compared pairwise (notebook 04,
    section 8).

    Args:
        ctx: the run's Context (its dataset, renderer, device and ``profile.eval_samples``).
        models: ``{name: model}``.
        kind: the occlusion kind of the set.
        seed: the occlusion seed.
        split: the dataset split the faces come from.
        n: the number of faces (default ``profile.eval_samples``, at most the split's size).

    Returns:
        ``{name: {"occluded": (n,), "clean": (n,)}}`` float32 CPU tensors of ME in pixels at 224.
    """
    data = ctx.dataset.split(split)
    n = min(len(data), n or ctx.profile.eval_samples)
    b = data.batch(list(range(n)))
    occ = make_eval_set(b["image"], b["landmarks"], kind, seed, fill="solid")
    images = {"occluded": occ.images.float(), "clean": b["image"]}
    return {name: {tag: ctx.renderer.landmark_me(predict_coeffs(m, x, device=ctx.device), b["landmarks"]).float().cpu()
                   for tag, x in images.items()} for name, m in models.items()}


def compare_models(ctx: Context, models: Mapping[str, nn.Module], kind: str = "random_pattern", seed: int = 1234,
                   split: str = "test", n: int | None = None) -> dict[str, dict[str, float]]:
    """Mean landmark ME (224-px scale) of several models on a fixed occluded evaluation set and on the
    clean images: the means of :func:`per_face_me` (same arguments). Returns
    ``{name: {"occluded": ME, "clean": ME}}``. Notebook 04, sections 6-8.
    """
    return mean_me(per_face_me(ctx, models, kind, seed, split, n))


def mean_me(faces: Mapping[str, Mapping[str, Tensor]]) -> dict[str, dict[str, float]]:
    """The means of :func:`per_face_me`'s per-face errors.

    Args:
        faces: :func:`per_face_me`'s ``{name: {"occluded": (n,), "clean": (n,)}}``.

    Returns:
        ``{name: {"occluded": ME, "clean": ME}}`` floats (one per tag of ``faces``).
    """
    return {name: {tag: float(v.mean()) for tag, v in r.items()} for name, r in faces.items()}


def comparison_markdown(faces: Mapping[str, Mapping[str, Tensor]], reference: str | None = None, n_boot: int = 1000,
                        seed: int = 0) -> str:
    """A markdown table of :func:`per_face_me` results: mean ME on the occluded and clean images.

    When ``reference`` names one of the models, a column gives each model's occluded error minus the
    reference's on the same faces (paired percentile bootstrap of the mean difference, 95 %, ``n_boot``
    resamples; an interval excluding 0 means the models differ). Notebook 04, sections 6-8.

    Args:
        faces: :func:`per_face_me`'s ``{name: {"occluded": (n,), "clean": (n,)}}``.
        reference: the model the others are compared with, or None for no difference column.
        n_boot: bootstrap resamples.
        seed: the seed of the bootstrap's generator.

    Returns:
        The markdown table as a str, one row per model.
    """
    if reference is not None and reference not in faces:
        raise ValueError(f"reference {reference!r} is not one of the models {list(faces)}")
    head = "| model | ME occluded | ME clean |"
    rule = "|---|---|---|"
    if reference is not None:
        head += f" occluded minus {reference}, same faces [95 % CI] |"
        rule += "---|"
    rows = [head, rule]
    for name, r in faces.items():
        row = f"| {name} | {float(r['occluded'].mean()):.2f} | {float(r['clean'].mean()):.2f} |"
        if reference is not None:
            if name == reference:
                row += " |"
            else:
                d = r["occluded"].double() - faces[reference]["occluded"].double()
                m, lo, hi = bootstrap_ci(d, n=n_boot, generator=torch.Generator().manual_seed(seed))
                row += f" {m:+.3f} [{lo:+.3f}, {hi:+.3f}] |"
        rows.append(row)
    return "\n".join(rows)
