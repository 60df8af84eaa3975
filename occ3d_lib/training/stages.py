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
    (:class:`occ3d_lib.occlusion.occlude.TrainingOccluder`) and regresses the frozen teacher's output on
    the *clean* version of the same image with the SE loss of Eq. 6 (L1 as the Fig. 6 ablation).
    The teacher's clean outputs (Eq. 2's outputs, the labels the trainee of Eq. 1 regresses) are
    computed once for the whole training split and cached. The paper initialises its models with
    ImageNet weights (Sec. 4); on a CPU budget we start the trainee from the teacher's weights
    (``SopiSettings.init = "teacher"``), so it begins by reproducing the teacher on clean faces and
    only has to learn to ignore occluders. ``init = "scratch"`` (or ImageNet in the paper profile)
    is the alternative.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from occ3d_lib.core.artifacts import load_or_build, torch_save
from occ3d_lib.core.config import Profile
from occ3d_lib.data.context import Context
from occ3d_lib.face.coeffs import split_coeffs
from occ3d_lib.nets.checkpoints import load_deep3d_checkpoint
from occ3d_lib.nets.models import ReconNet, freeze, seeded
from occ3d_lib.occlusion.occlude import TrainingOccluder
from occ3d_lib.training import distributed, losses
from occ3d_lib.training.train import TrainConfig, Trainer, full_precision, load_history

#: Weights of the coefficient-supervision term per group. Coefficients of id/exp/tex are in prior
#: standard deviations; angles in radians (0.1 rad error costs 1.0 x 100 / 100 ...); translations in
#: model units (1 unit = 100 mm).
COEFF_SUPERVISION_WEIGHTS: Mapping[str, float] = {
    "id": 1.0, "exp": 1.0, "tex": 0.5, "angle": 100.0, "gamma": 2.0, "trans": 20.0,
}


#: What the SOPI trainee sees (weights of :class:`occ3d_lib.occlusion.occlude.TrainingOccluder`'s mix). The
#: paper occludes its training faces "partially or fully with arbitrary pixel values" (Sec. 4) and
#: compares on square occluders (DSOFI, DHOFI, SHOFI); "partial" draws uniformly from the 18
#: partial kinds of notebook 02 (squares would be 1/6 of them), so each square kind also gets its
#: own 10 %. Chosen on the validation identities (notebook 03, section 6): with 1200 steps the
#: square-heavy mix lowered SOPI's DHOFI error from 6.76 to 6.43 px (clean: 3.76 -> 3.83 px).
SOPI_TRAINING_MIX: Mapping[str, float] = {
    "none": 0.2, "partial": 0.35, "dsofi": 0.1, "dhofi": 0.1, "shofi": 0.1, "full": 0.15,
}


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
    """How the SOPI trainee is trained (notebook 03, section 5)."""

    loss: str = "se"  # "se" (Eq. 6) or "l1" (Fig. 6 ablation)
    init: str = "teacher"  # "teacher" or "scratch"
    mix: Mapping[str, float] = field(default_factory=lambda: dict(SOPI_TRAINING_MIX))
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        if self.loss not in ("se", "l1"):
            raise ValueError(f"SopiSettings.loss must be 'se' or 'l1', got {self.loss!r}")
        if self.init not in ("teacher", "scratch"):
            raise ValueError(f"SopiSettings.init must be 'teacher' or 'scratch', got {self.init!r}")


def build_reconnet(profile: Profile, seed: int | None = None) -> ReconNet:
    """A fresh ReconNet with the profile's backbone (ImageNet init only where the profile asks),
    its random initialisation drawn from ``seed`` (default ``profile.seed``)."""
    with seeded(profile.seed if seed is None else seed):
        return ReconNet(profile.backbone, imagenet_init=profile.imagenet_init)


@torch.no_grad()
def predict_coeffs(model: nn.Module | Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 64,
                   device: str = "cpu") -> Tensor:
    """Run a reconstruction model over many images without gradients. (M, 3, S, S) -> (M, 257).

    Uses ``model.predict`` when the model has one (MultiOcclusionNet's single-image rule).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (M, 3, S, S), got {tuple(images.shape)}")
    fn = getattr(model, "predict", model)
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    outs = [fn(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, images.shape[0], batch_size)]
    if isinstance(model, nn.Module) and was_training:
        model.train()
    return torch.cat(outs) if outs else torch.zeros(0, 257)


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
    """``settings`` (default ``TeacherSettings()``) with the fields left to the profile filled in from it."""
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
    return TrainConfig(steps=p.teacher_steps, lr=p.teacher_lr, checkpoint_every=p.checkpoint_every,
                       log_every=p.log_every, seed=p.seed, device=ctx.device, amp=str(ctx.device).startswith("cuda"),
                       key=key, schedule=settings.schedule)


def train_teacher(ctx: Context, settings: TeacherSettings | None = None, progress: bool | None = None,
                  callback: Callable | None = None) -> ReconNet:
    """Train (or load the cached) teacher on clean synthetic faces; returns it frozen. Notebook 03 sec. 2."""
    settings = resolve_teacher_settings(ctx.profile, settings)
    cfg = teacher_config(ctx, settings)
    out_dir = ctx.stage_dir("teacher", {"hash": cfg.hash()})
    model = build_reconnet(ctx.profile, seed=cfg.seed)
    renderer = ctx.renderer.to(ctx.device)
    trainer = Trainer(model, teacher_step_fn(renderer, settings),
                      random_batches(ctx.dataset.train, distributed.shard_batch_size(
                          ctx.profile.teacher_batch_size, "teacher_batch_size")), cfg, out_dir)
    trainer.fit(progress=ctx.progress if progress is None else progress, callback=callback, desc="teacher")
    model.history = trainer.history  # type: ignore[attr-defined]
    model.out_dir = out_dir  # type: ignore[attr-defined]
    return freeze(model)


def get_teacher(ctx: Context, settings: TeacherSettings | None = None, **kw: Any) -> ReconNet:
    """The frozen teacher of this context: a real Deep3DFaceRecon checkpoint or one trained here."""
    if ctx.teacher_spec != "train":
        return freeze(load_deep3d_checkpoint(ctx.teacher_spec).to(ctx.device))
    return train_teacher(ctx, settings, **kw)


# --------------------------------------------------------------------------------------------- SOPI
def teacher_labels(ctx: Context, teacher: nn.Module, split: str = "train") -> Tensor:
    """Eq. 2's outputs, the labels the trainee of Eq. 1 regresses: the frozen teacher on every *clean* image
    of a split, cached. (M, 257).

    Under torchrun rank 0 computes and writes the cache while the other ranks wait, then read it.
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
        return load_or_build(cache, lambda p: torch.load(p, map_location="cpu", weights_only=True), build,
                             torch_save, "teacher labels", accept=lambda labels: labels.shape[0] == len(data))


def sopi_step_fn(labels: Tensor, occluder: Any, loss: str = "se") -> Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]]:
    """One SOPI step (Eq. 1, Eq. 6): occlude the batch at random, regress teacher(clean). Notebook 03 sec. 5."""
    def step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        occ = occluder(batch["image"], landmarks=batch["landmarks"])
        target = labels[batch["index"].cpu()].to(batch["image"].device)
        pred = model(occ.images.to(batch["image"].device)).float()
        value = losses.distill_loss(pred, target, kind=loss)
        return {"loss": value, "coverage": occ.coverage.float().mean()}

    return step


def sopi_config(ctx: Context, teacher_key: str, settings: SopiSettings = SopiSettings()) -> TrainConfig:
    """The TrainConfig of a SOPI run."""
    p = ctx.profile
    key = {"stage": "sopi", "settings": asdict(settings), "teacher": teacher_key, "backbone": p.backbone,
           "batch": p.sopi_batch_size, "data": ctx.dataset.meta.get("key")}
    return TrainConfig(steps=p.sopi_steps, lr=p.sopi_lr, checkpoint_every=p.checkpoint_every,
                       log_every=p.log_every, seed=p.seed + 1, device=ctx.device, amp=str(ctx.device).startswith("cuda"),
                       key=key, schedule=settings.schedule)


def train_sopi(ctx: Context, teacher: nn.Module | None = None, settings: SopiSettings = SopiSettings(),
               progress: bool | None = None, callback: Callable | None = None) -> ReconNet:
    """Train (or load the cached) SOPI trainee; returns it frozen for evaluation. Notebook 03 sec. 5."""
    teacher = teacher if teacher is not None else get_teacher(ctx)
    out = getattr(teacher, "out_dir", None)  # the teacher stage folder name carries its config hash
    teacher_key = out.name if out is not None else str(ctx.teacher_spec)
    cfg = sopi_config(ctx, teacher_key, settings)
    out_dir = ctx.stage_dir("sopi", {"hash": cfg.hash()})
    labels = teacher_labels(ctx, teacher)
    model = build_reconnet(ctx.profile, seed=cfg.seed)
    if settings.init == "teacher":
        model.load_state_dict(teacher.state_dict())
    for p in model.parameters():
        p.requires_grad_(True)
    # each rank occludes its own shard with its own stream (rank 0: the single-process stream)
    occluder = TrainingOccluder(mix=dict(settings.mix),
                                seed=distributed.derive_seed(ctx.profile.seed + 7, distributed.current().rank))
    trainer = Trainer(model, sopi_step_fn(labels, occluder, settings.loss),
                      random_batches(ctx.dataset.train, distributed.shard_batch_size(
                          ctx.profile.sopi_batch_size, "sopi_batch_size")), cfg, out_dir,
                      stateful={"occluder": occluder})
    trainer.fit(progress=ctx.progress if progress is None else progress, callback=callback, desc=f"SOPI ({settings.loss})")
    model.history = trainer.history  # type: ignore[attr-defined]
    model.out_dir = out_dir  # type: ignore[attr-defined]
    return freeze(model)


def get_sopi(ctx: Context, settings: SopiSettings = SopiSettings(), **kw: Any) -> ReconNet:
    """The frozen SOPI model of this context (trained and cached on first use)."""
    return train_sopi(ctx, settings=settings, **kw)


def stage_history(model: nn.Module) -> list[dict[str, float]]:
    """The loss history of a model trained by this module (empty for loaded checkpoints)."""
    h = getattr(model, "history", None)
    if h is not None:
        return list(h)
    d = getattr(model, "out_dir", None)
    return load_history(d) if d is not None else []
