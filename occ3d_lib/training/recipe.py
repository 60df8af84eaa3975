"""The one training recipe every stage follows (teacher, SOPI, embedder, MOPI; notebooks 03-04).

A stage names itself (:data:`STAGES`); :func:`stage_config` builds its :class:`TrainConfig` from the
profile (steps, learning rate, checkpoint and log cadence, the seed from
:data:`occ3d_lib.core.seeds.SEED_OFFSETS`, device and precision) around the stage's own ``key``;
:func:`fit_stage` trains it in ``ctx.stage_dir(<folder>, {"hash": cfg.hash()})`` through the shared
:class:`Trainer` (resuming or reusing a finished run there), attaches the loss history and the folder
to the model and returns it frozen. :func:`stage_history` reads that history back.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from occ3d_lib.core.seeds import SEED_OFFSETS
from occ3d_lib.data.context import Context
from occ3d_lib.nets.models import freeze
from occ3d_lib.training.train import BatchFn, StepFn, TrainConfig, Trainer, load_history

#: The stages trained by the series: each reads ``<stage>_steps`` and ``<stage>_lr`` from the profile
#: (the embedder's learning rate is a field of its settings) and seeds from ``SEED_OFFSETS[<stage>]``.
STAGES: tuple[str, ...] = ("teacher", "sopi", "embedder", "mopi")

M = TypeVar("M", bound=nn.Module)


def stage_config(ctx: Context, stage: str, key: Mapping[str, Any], *, lr: float | None = None,
                 seed_offset: int | None = None, schedule: str = "constant",
                 final_lr_fraction: float = 0.05) -> TrainConfig:
    """The TrainConfig of one stage's run, built from ``ctx.profile`` (notebook 03, section 3).

    Args:
        ctx: the run's Context (profile, device).
        stage: one of :data:`STAGES`.
        key: what identifies the run beyond the training settings (the stage's settings, data, inputs).
        lr: the learning rate; None reads ``profile.<stage>_lr``.
        seed_offset: added to ``profile.seed``; None reads ``SEED_OFFSETS[stage]``.
        schedule, final_lr_fraction: the learning-rate schedule (:class:`TrainConfig`).

    Returns:
        The TrainConfig; its ``hash()`` names the stage folder and so keys every cached result.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)}")
    p = ctx.profile
    offset = SEED_OFFSETS[stage] if seed_offset is None else int(seed_offset)
    return TrainConfig(steps=getattr(p, f"{stage}_steps"), lr=getattr(p, f"{stage}_lr") if lr is None else lr,
                       checkpoint_every=p.checkpoint_every, log_every=p.log_every, seed=p.seed + offset,
                       device=ctx.device, amp=str(ctx.device).startswith("cuda"), key=key, schedule=schedule,
                       final_lr_fraction=final_lr_fraction)


def fit_stage(ctx: Context, folder: str, model: M, step_fn: StepFn, batch_fn: BatchFn, cfg: TrainConfig, *,
              desc: str, progress: bool | None = None, callback: Callable | None = None,
              stateful: Mapping[str, Any] | None = None) -> M:
    """Train (or resume, or load the finished) run of a stage and return the model frozen (notebook 03, section 3).

    The run lives in ``ctx.stage_dir(folder, {"hash": cfg.hash()})``; the model gets ``history`` (the loss
    history, one dict per logged step) and ``out_dir`` (that folder). ``progress`` None follows
    ``ctx.progress``; ``stateful`` holds extra objects the checkpoint keeps (an occluder's generator).
    """
    out_dir = ctx.stage_dir(folder, {"hash": cfg.hash()})
    trainer = Trainer(model, step_fn, batch_fn, cfg, out_dir, stateful=dict(stateful or {}))
    trainer.fit(progress=ctx.progress if progress is None else progress, callback=callback, desc=desc)
    model.history = trainer.history  # type: ignore[attr-defined]
    model.out_dir = out_dir  # type: ignore[attr-defined]
    freeze(model)
    return model


def stage_history(model: nn.Module) -> list[dict[str, float]]:
    """The loss history of a model a stage trained, or a shipped one's recorded curve.

    Empty for a loaded checkpoint without either. Notebooks 03-04 plot it.

    Args:
        model: a network: its ``history`` attribute, else the history saved in its ``out_dir``.

    Returns:
        A list of dicts, one per logged step: ``step`` and a float per loss term.
    """
    h = getattr(model, "history", None)
    if h is not None:
        return list(h)
    d = getattr(model, "out_dir", None)
    return load_history(d) if d is not None else []
