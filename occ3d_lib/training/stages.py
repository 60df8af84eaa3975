"""The teacher (RNet, Eq. 2) and the SOPI trainee (Eq. 1, Eq. 6): build, train, cache, load.

Taught in notebook 03. Both are :class:`occ3d_lib.nets.models.ReconNet` (257 outputs, input RGB/255).

Teacher
    Trained here only on *unoccluded* synthetic faces with RNet's own weakly supervised losses
    through the differentiable renderer (:func:`occ3d_lib.training.losses.teacher_losses`: photometric
    with the face mask, 68-landmark loss with its weights, coefficient / gamma / reflectance
    regularisers; docs/facts.md §7). Synthetic data has ground-truth coefficients, so a
    *coefficient-supervision* term (weighted squared error per coefficient group,
    :data:`COEFF_SUPERVISION_WEIGHTS`) is added with weight ``TeacherSettings.coeff_weight``:
    weak supervision alone needs far more steps than a 2-core CPU affords to separate identity
    from expression and albedo from light; the supervised term makes the short course run
    converge (notebook 03, section 2 shows the trade-off). With ``teacher=<path to epoch_20.pth>``
    the real Deep3DFaceRecon network is loaded instead (:mod:`occ3d_lib.nets.checkpoints`).
    Afterwards the teacher is frozen (Eq. 2: ``requires_grad_(False)``, eval mode).

SOPI (Single Occlusion Per Identity)
    The trainee sees each training image occluded partially, fully or not at all at random
    (:class:`occ3d_lib.occlusion.apply.TrainingOccluder`) and regresses the frozen teacher's output on
    the *clean* version of the same image with the SE loss of Eq. 6 (L1 as the Fig. 6 ablation).
    The teacher's clean outputs (Eq. 2's outputs, the labels the trainee of Eq. 1 regresses) are
    computed once for the whole training split and cached. Where the trainee starts is the profile's
    choice (:func:`resolve_sopi_settings`, ``SopiSettings.init = None``): the paper initialises its models
    with ImageNet weights (Sec. 4) and trains SOPI 400K iterations, and so does the paper profile
    (``init = "scratch"``: the trunk's own initialisation, ImageNet where ``profile.imagenet_init``); on the
    CPU budgets of the other profiles the trainee starts from the teacher's weights (``init = "teacher"``), so
    it begins by reproducing the teacher on clean faces and only has to learn to ignore occluders, and keeps
    the teacher's BatchNorm statistics (``SopiSettings.freeze_bn``). Those profiles also add a landmark term
    to Eq. 6 (``SopiSettings.landmark_weight``) and train on a mix rich in heavy squares
    (:data:`SOPI_TRAINING_MIX`); all three choices were made on the validation identities (docs/course_study).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from occ3d_lib.core.artifacts import load_or_build, torch_load, torch_save
from occ3d_lib.core.config import Profile
from occ3d_lib.core.seeds import stream_seed
from occ3d_lib.data.context import Context
from occ3d_lib.face.coeffs import split_coeffs
from occ3d_lib.nets import pretrained
from occ3d_lib.nets.checkpoints import load_deep3d_checkpoint
from occ3d_lib.nets.models import ReconNet, batchnorm_eval, freeze, freeze_early_stages, seeded
from occ3d_lib.nets.predict import predict_coeffs
from occ3d_lib.occlusion.apply import TrainingOccluder
from occ3d_lib.render.renderer import RENDER_VERSION
from occ3d_lib.training import distributed, losses
from occ3d_lib.training.recipe import fit_stage, stage_config, stage_history  # noqa: F401 (stages.stage_history)
from occ3d_lib.training.train import TrainConfig, full_precision

#: Weights of the coefficient-supervision term per group. Coefficients of id/exp/tex are in prior
#: standard deviations; angles in radians (0.1 rad error costs 1.0 x 100 / 100 ...); translations in
#: model units (1 unit = 100 mm).
COEFF_SUPERVISION_WEIGHTS: Mapping[str, float] = {
    "id": 1.0, "exp": 1.0, "tex": 0.5, "angle": 100.0, "gamma": 2.0, "trans": 20.0,
}


#: The SOPI training mixes compared on the validation identities (weights of
#: :class:`occ3d_lib.occlusion.apply.TrainingOccluder`'s mix). The paper occludes its training faces "partially
#: or fully with arbitrary pixel values" (Sec. 4) and compares on square occluders (DSOFI, DHOFI, SHOFI);
#: "partial" draws uniformly from the partial kinds of notebook 02 (:data:`occ3d_lib.occlusion.kinds.PARTIAL_KINDS`,
#: of which the three squares are a small share), so the squares also get shares of their own. "squares 10 %"
#: gives each square kind 10 % (at 1200 steps from a study teacher it lowered SOPI's DHOFI error from 6.76 to
#: 6.43 px against partial kinds alone); "heavy squares" gives the two heavy kinds, the hardest on landmarks, a
#: quarter each, taken from the unoccluded, partial and full shares (docs/course_study/sopi, 2400 steps from the
#: shipped teacher: DHOFI 4.23 -> 4.10 px, SHOFI 3.97 -> 3.88, clean 2.38 -> 2.51 with BatchNorm trained;
#: with it frozen, DHOFI 4.18 -> 4.05, SHOFI 3.96 -> 3.80, clean 2.26 -> 2.38).
SOPI_MIXES: Mapping[str, Mapping[str, float]] = {
    "squares 10 %": {"none": 0.2, "partial": 0.35, "dsofi": 0.1, "dhofi": 0.1, "shofi": 0.1, "full": 0.15},
    "heavy squares": {"none": 0.1, "partial": 0.2, "dsofi": 0.1, "dhofi": 0.25, "shofi": 0.25, "full": 0.1},
    # the heavy squares' shares with more partial kinds (taken from none and full): on the validation identities
    # natural occluders and random patterns lower, SHOFI and DHOFI higher (docs/course_study.md)
    "heavy squares, more partial": {"none": 0.05, "partial": 0.3, "dsofi": 0.1, "dhofi": 0.25, "shofi": 0.25,
                                    "full": 0.05},
}

#: What the SOPI trainee sees by default: the mix that did best under the square occluders on the validation
#: identities (its name in :data:`SOPI_MIXES`, and its weights; notebook 03, section 6).
SOPI_TRAINING_MIX_NAME: str = "heavy squares"
SOPI_TRAINING_MIX: Mapping[str, float] = SOPI_MIXES[SOPI_TRAINING_MIX_NAME]


@dataclass(frozen=True)
class TeacherSettings:
    """How the teacher is trained (notebook 03, section 2)."""

    coeff_weight: float = 1.0  # weight of the coefficient-supervision term (0 = RNet's losses only)
    landmark_scale: float = 1.0  # multiplies RNet's landmark weight (1.6e-3)
    shape_weight: float = 0.0  # weight of the dense shape-supervision term (mm^2; 0 = off)
    #: render every batch and add RNet's image-space terms (photometric, reflectance); False keeps only
    #: the terms that need no rasterisation (landmarks are projected vertices), about a third cheaper
    #: per step on a CPU (notebook 03, section 2; benchmarks/study_course.py). None: the profile's
    #: ``teacher_photometric``
    photometric: bool | None = None
    schedule: str = "cosine"  # learning-rate schedule of the run (occ3d_lib.training.train.TrainConfig)
    coeff_group_weights: Mapping[str, float] = field(default_factory=lambda: dict(COEFF_SUPERVISION_WEIGHTS))

    def __post_init__(self) -> None:
        import math

        if self.photometric is not None and not isinstance(self.photometric, bool):
            raise ValueError(f"TeacherSettings.photometric must be True, False or None, got {self.photometric!r}")
        for name in ("coeff_weight", "landmark_scale", "shape_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"TeacherSettings.{name} must be a finite number >= 0, got {v!r}")
        bad = {k: v for k, v in self.coeff_group_weights.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0}
        if bad:
            raise ValueError(f"TeacherSettings.coeff_group_weights must be finite numbers >= 0, got {bad}")


@dataclass(frozen=True)
class SopiSettings:
    """How the SOPI trainee is trained (notebook 03, sections 6 and 8)."""

    loss: str = "se"  # "se" (Eq. 6), "l1" (Fig. 6 ablation) or "kl" (a distribution-based loss, Sec. 4.3.1)
    #: "teacher" (start from the teacher's weights), "scratch" (the trunk's own initialisation: ImageNet where
    #: the profile has ``imagenet_init``) or None: the profile's choice (:func:`resolve_sopi_settings`)
    init: str | None = None
    mix: Mapping[str, float] = field(default_factory=lambda: dict(SOPI_TRAINING_MIX))
    schedule: str = "cosine"
    #: weight of a landmark term added to the distillation loss: the trainee's 68 projected landmarks against
    #: the teacher's (RNet's landmark loss, with the teacher's landmarks as labels); 0 is Eq. 6 alone, None the
    #: profile's choice (:func:`resolve_sopi_settings`)
    landmark_weight: float | None = None
    #: keep every BatchNorm layer in eval mode while training (the statistics of the network it starts from,
    #: not those of occluded batches); False trains them as usual; None: the profile's choice
    #: (:func:`resolve_sopi_settings`: frozen where the trainee starts from the teacher)
    freeze_bn: bool | None = None
    #: how many of the trunk's first stages (the stem, then its blocks: :func:`occ3d_lib.nets.models.trunk_stages`)
    #: keep the weights SOPI starts from; 0 trains every layer (the paper)
    frozen_stages: int = 0

    def __post_init__(self) -> None:
        if self.freeze_bn is not None and not isinstance(self.freeze_bn, bool):
            raise ValueError(f"SopiSettings.freeze_bn must be True, False or None, got {self.freeze_bn!r}")
        n = self.frozen_stages
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"SopiSettings.frozen_stages must be an int >= 0, got {n!r}")
        if self.loss not in losses.DISTILL_LOSSES:
            raise ValueError(f"SopiSettings.loss must be one of {losses.DISTILL_LOSSES}, got {self.loss!r}")
        if self.init not in (None, "teacher", "scratch"):
            raise ValueError(f"SopiSettings.init must be 'teacher', 'scratch' or None, got {self.init!r}")
        w = self.landmark_weight
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0):
            raise ValueError(f"SopiSettings.landmark_weight must be a finite number >= 0 or None, got {w!r}")


#: The profiles whose SOPI starts as the paper's does, from the trunk's ImageNet weights (Sec. 4: "We initialize
#: our models with Imagenet weights"), with the paper's 400K steps to learn the face model; every other profile
#: starts SOPI from the teacher's weights, since a CPU budget leaves the trainee only time to learn to ignore
#: occluders (notebook 03, section 6).
SOPI_FROM_IMAGENET_PROFILES: tuple[str, ...] = ("paper",)

#: The landmark term's weight in the CPU profiles' SOPI loss: a quarter of RNet's landmark weight (1.6e-3). Eq. 6
#: weighs the 6 pose coefficients like any of the 257, and its squared radians are tiny beside the shape
#: and texture coefficients, yet landmark error under a large occluder is mostly pose (notebook 03,
#: section 6); the paper profile keeps Eq. 6 alone. Chosen on the validation identities (2400-step runs,
#: docs/course_study/sopi): 4e-4 matched 1.6e-3 and 6.4e-3 on every occluded kind's landmarks and kept the
#: rendered colours' histogram dissimilarity closest to Eq. 6 alone's (the larger weights pull the light).
SOPI_LANDMARK_WEIGHT: float = 4e-4


def resolve_sopi_settings(profile: Profile, settings: SopiSettings | None = None) -> SopiSettings:
    """``settings`` (default ``SopiSettings()``) with the fields left to the profile (None) filled in.

    ``init``: "scratch" (ImageNet, as the paper) in :data:`SOPI_FROM_IMAGENET_PROFILES`, else "teacher";
    ``landmark_weight``: 0 (Eq. 6 alone) there, else :data:`SOPI_LANDMARK_WEIGHT`; ``freeze_bn``: True where
    the trainee starts from the teacher (it keeps the teacher's BatchNorm statistics), else False. Notebook 03,
    section 6.

    Args:
        profile: the run's profile (its ``name``).
        settings: the SOPI settings, or None for the defaults.

    Returns:
        The :class:`SopiSettings` with every field set (``settings`` itself when all already were).
    """
    settings = SopiSettings() if settings is None else settings
    if settings.init is None:
        settings = replace(settings, init="scratch" if profile.name in SOPI_FROM_IMAGENET_PROFILES else "teacher")
    if settings.landmark_weight is None:
        settings = replace(settings, landmark_weight=0.0 if profile.name in SOPI_FROM_IMAGENET_PROFILES
                           else SOPI_LANDMARK_WEIGHT)
    if settings.freeze_bn is None:  # a trainee started from the teacher keeps the teacher's statistics
        settings = replace(settings, freeze_bn=settings.init == "teacher")
    return settings


def make_reconnet(profile: Profile, seed: int | None = None) -> ReconNet:
    """A fresh ReconNet with the profile's backbone (ImageNet init only where the profile asks).

    Its random initialisation is drawn from ``seed`` without touching the global random state.

    Args:
        profile: the run's profile (its ``backbone``, ``imagenet_init`` and ``seed``).
        seed: the seed of the initialisation (default ``profile.seed``).

    Returns:
        The untrained ReconNet: images ``(B, 3, S, S)`` in [0, 1] -> ``(B, 257)`` coefficients.
    """
    with seeded(profile.seed if seed is None else seed):
        return ReconNet(profile.backbone, imagenet_init=profile.imagenet_init)



def random_batches(split: Any, batch_size: int) -> Callable[[int, torch.Generator], dict[str, Tensor]]:
    """``batch_fn`` for :class:`Trainer`: a random batch (with the sample indices) from a split."""
    n = len(split)

    def batch_fn(step: int, g: torch.Generator) -> dict[str, Tensor]:
        idx = torch.randint(0, n, (batch_size,), generator=g)
        b = split.batch(idx.numpy())
        b["index"] = idx
        return b

    return batch_fn


# ------------------------------------------------------------------------------------------ teacher
def teacher_step_fn(renderer: Any, settings: TeacherSettings) -> Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]]:
    """One teacher step: RNet losses through the renderer (+ coefficient supervision). Notebook 03 sec. 2."""
    if settings.photometric is None:
        raise ValueError("teacher_step_fn needs TeacherSettings.photometric set; fill it from the profile with "
                         "resolve_teacher_settings(profile, settings)")
    skin = renderer.model.skin_mask
    weights = losses.RNetLossWeights(landmark=losses.RNetLossWeights().landmark * settings.landmark_scale)

    def step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        images = batch["image"]
        pred = model(images).float()
        gt_shape = None
        if settings.shape_weight > 0:
            with torch.no_grad():
                gt = split_coeffs(batch["coeffs"].to(renderer.model.dtype))
                gt_shape = renderer.model.shape(gt.id, gt.exp)
        if not settings.photometric:
            with full_precision():
                geo = renderer.geometry(pred)
            terms = dict(losses.geometric_teacher_losses(geo["landmarks"], geo["shape"], batch["landmarks"], pred,
                                                         images.shape[-1], weights=weights, gt_coeffs=batch["coeffs"],
                                                         coeff_weight=settings.coeff_weight,
                                                         coeff_group_weights=settings.coeff_group_weights,
                                                         gt_shape=gt_shape, shape_weight=settings.shape_weight))
            total = terms.pop("total")
            terms["loss"] = total
            return terms
        with full_precision():  # the rasteriser stays float32 under the Trainer's bf16 autocast
            out = renderer(pred, background=images)
        terms = dict(losses.teacher_losses(out, images, batch["landmarks"], pred, skin, weights=weights,
                                           gt_coeffs=batch["coeffs"],
                                           coeff_weight=settings.coeff_weight,
                                           coeff_group_weights=settings.coeff_group_weights,
                                           gt_shape=gt_shape, shape_weight=settings.shape_weight))
        total = terms.pop("total")
        terms["loss"] = total
        return terms

    return step


def resolve_teacher_settings(profile: Profile, settings: TeacherSettings | None = None) -> TeacherSettings:
    """``settings`` (default ``TeacherSettings()``) with the fields left to the profile filled in from it.

    Args:
        profile: the run's profile (its ``teacher_photometric``).
        settings: the teacher settings, or None for the defaults.

    Returns:
        The :class:`TeacherSettings` with ``photometric`` set (``settings`` itself when it already was).
    """
    settings = TeacherSettings() if settings is None else settings
    if settings.photometric is None:
        settings = replace(settings, photometric=profile.teacher_photometric)
    return settings


def teacher_config(ctx: Context, settings: TeacherSettings | None = None) -> TrainConfig:
    """The TrainConfig of the teacher run (its hash names the checkpoint folder).

    On CUDA the network runs under bf16 autocast; the rasteriser stays float32 (its z-buffer keys
    need float32 depths; :func:`occ3d_lib.training.train.full_precision` in :func:`teacher_step_fn`).
    """
    p = ctx.profile
    settings = resolve_teacher_settings(p, settings)
    key = {"stage": "teacher", "settings": asdict(settings), "backbone": p.backbone, "imagenet": p.imagenet_init,
           "batch": p.teacher_batch_size, "data": ctx.dataset.meta.get("key"), "face_model": ctx.face_model_spec}
    return stage_config(ctx, "teacher", key, schedule=settings.schedule)


def train_teacher(ctx: Context, settings: TeacherSettings | None = None, progress: bool | None = None,
                  callback: Callable | None = None) -> ReconNet:
    """Train (or load the cached) teacher on clean synthetic faces; returns it frozen. Notebook 03 sec. 2.

    Args:
        ctx: the run's Context (profile, dataset, renderer, device, run folder).
        settings: how it is trained; None: ``TeacherSettings()`` with the profile's fields
            (:func:`resolve_teacher_settings`).
        progress: show a progress bar; None follows ``ctx.progress``.
        callback: called as ``callback(trainer, record)`` on each logged record, or None.

    Returns:
        The frozen ReconNet (``(B, 3, S, S) -> (B, 257)``) with ``history`` and ``out_dir``.
    """
    settings = resolve_teacher_settings(ctx.profile, settings)
    cfg = teacher_config(ctx, settings)
    model = make_reconnet(ctx.profile, seed=cfg.seed)
    renderer = ctx.renderer.to(ctx.device)
    batches = random_batches(ctx.dataset.train, distributed.shard_batch_size(ctx.profile.teacher_batch_size,
                                                                             "teacher_batch_size"))
    return fit_stage(ctx, "teacher", model, teacher_step_fn(renderer, settings), batches, cfg, desc="teacher",
                     progress=progress, callback=callback)


def teacher_compat(ctx: Context) -> dict[str, Any]:
    """What a shipped teacher must have been made for to serve this context (its manifest's ``compat``)."""
    fm = ctx.face_model
    return {"backbone": ctx.profile.backbone, "image_size": ctx.profile.image_size, "render": RENDER_VERSION,
            "face_model": {k: fm.info.get(k) for k in ("name", "resolution", "seed", "version", "path")}}


def load_pretrained_teacher(ctx: Context) -> ReconNet:
    """The shipped pretrained teacher (``data/pretrained/teacher.pt``), verified, frozen. Notebook 03, section 3.

    The offline counterpart of the paper's pre-trained RNet (Sec. 3.1.1): trained once by
    ``make pretrained`` on the synthetic training identities. Its recorded loss curve is its ``history``;
    its ``out_dir`` (a run folder named after the file's hash) caches the labels it gives SOPI.
    """
    state, entry = pretrained.load_shipped("teacher")
    pretrained.check_compat("teacher", entry, teacher_compat(ctx))
    model = ReconNet(ctx.profile.backbone)
    model.load_state_dict(state)
    model.history = list(entry.get("curve", []))  # type: ignore[attr-defined]
    model.out_dir = ctx.stage_dir("teacher-pretrained", {"blake2b": entry["blake2b"]})  # type: ignore[attr-defined]
    model.shipped = entry  # type: ignore[attr-defined]
    return freeze(model.to(ctx.device))


def get_teacher(ctx: Context, settings: TeacherSettings | None = None, **kw: Any) -> ReconNet:
    """The frozen teacher of this context.

    A real Deep3DFaceRecon checkpoint, the shipped pretrained teacher (``profile.pretrained``, the
    default of the course profile) or one trained in the run.

    Args:
        ctx: the run's Context (its ``teacher_spec`` and profile).
        settings: how a teacher trained here is trained (:func:`train_teacher`).
        **kw: ``progress`` and ``callback`` of :func:`train_teacher` (used only when it trains).

    Returns:
        The frozen ReconNet: images ``(B, 3, S, S)`` in [0, 1] -> ``(B, 257)`` coefficients.
    """
    if ctx.teacher_spec != "train":
        return freeze(load_deep3d_checkpoint(ctx.teacher_spec).to(ctx.device))
    if ctx.profile.pretrained:
        return load_pretrained_teacher(ctx)
    return train_teacher(ctx, settings, **kw)


# --------------------------------------------------------------------------------------------- SOPI
def teacher_labels(ctx: Context, teacher: nn.Module, split: str = "train") -> Tensor:
    """Eq. 2's outputs, the labels the trainee of Eq. 1 regresses: the frozen teacher on every *clean* image of a split.

    Cached in the teacher's run folder (when it has one). Under torchrun rank 0 computes and writes the
    cache while the other ranks wait, then read it.

    Args:
        ctx: the run's Context (dataset, device).
        teacher: the frozen teacher; its ``out_dir`` (if any) holds the cache.
        split: the dataset split.

    Returns:
        ``(M, 257)`` float32 CPU coefficients, M the split's size, in the split's order.
    """
    path = getattr(teacher, "out_dir", None)
    data = ctx.dataset.split(split)
    cache = (path / f"labels-{split}.pt") if path is not None else None
    def build() -> Tensor:
        return torch.cat([predict_coeffs(teacher, data.batch(list(range(i, min(len(data), i + 256))))["image"],
                                         device=ctx.device) for i in range(0, len(data), 256)])

    if cache is None:  # a teacher that was not trained here (no run folder): nothing to cache
        return build()
    with distributed.main_first():
        settings = {"teacher": path.name, "split": split, "data": ctx.dataset.meta.get("key")}
        return load_or_build(cache, torch_load, build, lambda v, p: torch_save(v, p, settings=settings),
                             "teacher labels", accept=lambda labels: labels.shape[0] == len(data), settings=settings)


def sopi_step_fn(labels: Tensor, occluder: Any, loss: str = "se", landmark_weight: float = 0.0,
                 renderer: Any = None, freeze_bn: bool = False) -> Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]]:
    """One SOPI step (Eq. 1, Eq. 6): occlude the batch at random, regress teacher(clean). Notebook 03 sec. 6.

    With ``landmark_weight`` > 0 the loss adds ``landmark_weight`` x RNet's landmark loss between the trainee's
    68 projected landmarks and the teacher's (``renderer.landmarks`` of the labels ``(N, 257)``, no rendering).
    ``freeze_bn`` keeps the trainee's BatchNorm layers in eval mode (:func:`occ3d_lib.nets.models.batchnorm_eval`)."""
    if landmark_weight < 0:
        raise ValueError(f"landmark_weight must be >= 0, got {landmark_weight!r}")
    if landmark_weight > 0 and renderer is None:
        raise ValueError("sopi_step_fn: a landmark_weight > 0 needs the renderer that projects the landmarks")
    with torch.no_grad():
        target_lm = renderer.landmarks(labels).float() if landmark_weight > 0 else None  # (N, 68, 2)

    def step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if freeze_bn:
            batchnorm_eval(model)
        occ = occluder(batch["image"], landmarks=batch["landmarks"])
        index = batch["index"].cpu()
        target = labels[index].to(batch["image"].device)
        pred = model(occ.images.to(batch["image"].device)).float()
        se = losses.distill_loss(pred, target, kind=loss)
        out = {"loss": se, "coverage": occ.coverage.float().mean()}
        if target_lm is not None:
            lm = landmark_weight * losses.landmark_loss(renderer.landmarks(pred).float(), target_lm[index].to(pred),
                                                        renderer.image_size)
            out.update(loss=se + lm, distill=se.detach(), landmark=lm.detach())
        return out

    return step


#: SopiSettings fields added after SOPI runs had been cached: Eq. 6's landmark term, frozen BatchNorm statistics,
#: fixed early trunk stages. Where one is off (0 / False) it is left out of the run's key.
_SOPI_OPTIONS_ADDED_LATER: tuple[str, ...] = ("landmark_weight", "freeze_bn", "frozen_stages")


def sopi_config(ctx: Context, teacher_key: str, settings: SopiSettings = SopiSettings()) -> TrainConfig:
    """The TrainConfig of a SOPI run (``settings`` resolved against the profile first, so an ``init`` left to the
    profile and the same ``init`` given by name share one folder)."""
    p = ctx.profile
    settings = resolve_sopi_settings(p, settings)
    fields = asdict(settings)
    for name in _SOPI_OPTIONS_ADDED_LATER:  # switched off, an option leaves the key (and folder) it had before it existed
        if not fields[name]:
            del fields[name]
    key = {"stage": "sopi", "settings": fields, "teacher": teacher_key, "backbone": p.backbone,
           "batch": p.sopi_batch_size, "data": ctx.dataset.meta.get("key")}
    return stage_config(ctx, "sopi", key, schedule=settings.schedule)


def train_sopi(ctx: Context, teacher: nn.Module | None = None, settings: SopiSettings = SopiSettings(),
               progress: bool | None = None, callback: Callable | None = None) -> ReconNet:
    """Train (or load the cached) SOPI trainee; returns it frozen for evaluation. Notebook 03 sec. 6.
    Where it starts (``settings.init``) is resolved from the profile by :func:`resolve_sopi_settings`."""
    settings = resolve_sopi_settings(ctx.profile, settings)
    teacher = teacher if teacher is not None else get_teacher(ctx)
    out = getattr(teacher, "out_dir", None)  # the teacher stage folder name carries its config hash
    teacher_key = out.name if out is not None else str(ctx.teacher_spec)
    cfg = sopi_config(ctx, teacher_key, settings)
    labels = teacher_labels(ctx, teacher)
    model = make_reconnet(ctx.profile, seed=cfg.seed)
    if settings.init == "teacher":
        model.load_state_dict(teacher.state_dict())
    for p in model.parameters():
        p.requires_grad_(True)
    freeze_early_stages(model, settings.frozen_stages)
    # each rank occludes its own shard with its own stream (rank 0: the single-process stream)
    occluder = TrainingOccluder(mix=dict(settings.mix), seed=distributed.derive_seed(
        stream_seed(ctx.profile.seed, "sopi_occluder"), distributed.current().rank))
    batches = random_batches(ctx.dataset.train, distributed.shard_batch_size(ctx.profile.sopi_batch_size,
                                                                             "sopi_batch_size"))
    step = sopi_step_fn(labels, occluder, settings.loss, settings.landmark_weight, ctx.renderer, settings.freeze_bn)
    return fit_stage(ctx, "sopi", model, step, batches, cfg,
                     desc=f"SOPI ({settings.loss})", progress=progress, callback=callback,
                     stateful={"occluder": occluder})


def get_sopi(ctx: Context, settings: SopiSettings = SopiSettings(), **kw: Any) -> ReconNet:
    """The frozen SOPI model of this context (trained and cached on first use).

    Args:
        ctx: the run's Context.
        settings: how SOPI is trained (:class:`SopiSettings`; ``init`` None is resolved from the profile).
        **kw: ``teacher``, ``progress`` and ``callback`` of :func:`train_sopi`.

    Returns:
        The frozen ReconNet: images ``(B, 3, S, S)`` in [0, 1] -> ``(B, 257)`` coefficients.
    """
    return train_sopi(ctx, settings=settings, **kw)

