"""The training loop shared by every model of the series (teacher, SOPI, embedder, MOPI).

Taught in notebook 03, section 3 ("A training loop you can kill"). One small
class, :class:`Trainer`, because a training run has state: model, optimiser,
step, random generator, loss history. What a step computes is a pure function
passed in (``step_fn``), and where its batch comes from is another
(``batch_fn``), so the loop knows nothing about faces.

Guarantees:
- seeded: the trainer owns a ``torch.Generator`` from which every batch is drawn;
- resumable: a checkpoint (model, optimiser, step, generator state, any extra
  stateful objects, history) is written atomically every ``checkpoint_every``
  steps; a run killed at any moment resumes from the last checkpoint and ends
  with the same weights as an uninterrupted run with the same seed;
- guarded: a NaN/inf loss term stops training with :class:`TrainingDiverged`
  naming the step and the term;
- logged: ``history.json`` (step, each loss term, seconds) beside the checkpoint;
- device-agnostic: CPU here, CUDA (with bf16/fp16 autocast when ``amp``) where present.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import torch
from torch import Tensor, nn

from .artifacts import load_cached, torch_save, write_json
from .config import config_hash
from .progress import progress_bar

SCHEDULES = ("constant", "cosine")
CHECKPOINT = "checkpoint.pt"
FINAL = "final.pt"
HISTORY = "history.json"


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or inf; the message names the step and the term."""


@dataclass(frozen=True)
class TrainConfig:
    """How long and how to train. ``key`` identifies the run (a checkpoint with another key is not resumed)."""

    steps: int
    lr: float
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    grad_clip: float | None = 10.0
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" or "cosine" (decay to lr * final_lr_fraction at the last step)
    final_lr_fraction: float = 0.05
    key: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.checkpoint_every <= 0 or self.log_every <= 0:
            raise ValueError("steps, checkpoint_every and log_every must be > 0")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must be in (0, 1), got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 <= self.final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}")

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based): a pure function of the step, so a
        resumed run follows the same schedule."""
        if self.schedule == "constant":
            return self.lr
        t = min(max(step / max(self.steps - 1, 1), 0.0), 1.0)
        return self.lr * (self.final_lr_fraction + (1 - self.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t)))

    def hash(self) -> str:
        d = asdict(self)
        d.pop("device")
        d.pop("checkpoint_every")
        d.pop("log_every")
        return config_hash(d)


StepFn = Callable[[nn.Module, Any], Mapping[str, Tensor]]
BatchFn = Callable[[int, torch.Generator], Any]


class Trainer:
    """Runs ``steps`` optimiser steps of ``step_fn(model, batch_fn(step, generator))``.

    ``step_fn`` returns a dict of loss terms whose ``'loss'`` entry is minimised; every term is
    logged. ``stateful`` holds extra objects to checkpoint (e.g. an on-the-fly occluder).
    """

    def __init__(self, model: nn.Module, step_fn: StepFn, batch_fn: BatchFn, config: TrainConfig,
                 out_dir: str | Path, stateful: Mapping[str, Stateful] | None = None,
                 params: list[nn.Parameter] | None = None) -> None:
        self.model = model.to(config.device)
        self.step_fn = step_fn
        self.batch_fn = batch_fn
        self.cfg = config
        self.out_dir = Path(out_dir)
        self.stateful = dict(stateful or {})
        trainable = params if params is not None else [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    @property
    def final_path(self) -> Path:
        return self.out_dir / FINAL

    def state_dict(self) -> dict[str, Any]:
        return {"key": self.cfg.hash(), "step": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "cpu_rng": torch.get_rng_state(), "history": self.history,
                "stateful": {k: v.state_dict() for k, v in self.stateful.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["cpu_rng"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        for k, v in self.stateful.items():
            v.load_state_dict(state["stateful"][k])

    def save_checkpoint(self) -> Path:
        """Write the full training state atomically (and the loss history as JSON)."""
        torch_save(self.state_dict(), self.checkpoint_path)
        write_json(self.out_dir / HISTORY, {"key": self.cfg.hash(), "history": self.history})
        return self.checkpoint_path

    def try_resume(self) -> bool:
        """Load the checkpoint if it belongs to this run (same config hash); True if resumed."""
        state = load_cached(self.checkpoint_path, lambda p: torch.load(p, map_location=self.cfg.device,
                                                                      weights_only=False), "checkpoint")
        if state is None or state.get("key") != self.cfg.hash():
            return False
        self.load_state_dict(state)
        return True

    # ------------------------------------------------------------------ loop
    def fit(self, progress: bool = True, callback: Callable[["Trainer", dict[str, float]], None] | None = None,
            desc: str = "training") -> list[dict[str, float]]:
        """Train to ``config.steps`` (resuming if possible); returns the history.

        If ``final.pt`` exists for this config the model is loaded from it and nothing runs.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.load_final():
            return self.history
        self.try_resume()
        self.model.train()
        dev = self.cfg.device
        use_amp = self.cfg.amp and dev.startswith("cuda")
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        t0 = time.time()
        with progress_bar(total=self.cfg.steps, initial=self.step, desc=desc, disable=not progress) as bar:
            while self.step < self.cfg.steps:
                batch = _to_device(self.batch_fn(self.step, self.generator), dev)
                with torch.autocast(device_type="cuda", enabled=use_amp):
                    terms = self.step_fn(self.model, batch)
                if "loss" not in terms:
                    raise KeyError("step_fn must return a dict with a 'loss' entry")
                for name, value in terms.items():
                    if not torch.isfinite(value.detach()).all():
                        raise TrainingDiverged(f"step {self.step}: loss term {name!r} is {value.detach().float().mean().item()}"
                                               " (not finite); lower the learning rate or check the inputs")
                self.optimizer.zero_grad(set_to_none=True)
                if self.cfg.schedule != "constant":
                    for group in self.optimizer.param_groups:
                        group["lr"] = self.cfg.lr_at(self.step)
                scaler.scale(terms["loss"]).backward()
                if self.cfg.grad_clip:
                    scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                scaler.step(self.optimizer)
                scaler.update()
                self.step += 1
                bar.update(1)
                if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                    rec = {"step": self.step, "seconds": round(time.time() - t0, 3)}
                    rec.update({k: float(v.detach().float().mean()) for k, v in terms.items()})
                    self.history.append(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4g}")
                    if callback is not None:
                        callback(self, rec)
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                    self.save_checkpoint()
        self.model.eval()
        torch_save({"key": self.cfg.hash(), "model": self.model.state_dict(), "history": self.history},
                   self.final_path)
        return self.history

    def load_final(self) -> bool:
        """Load ``final.pt`` if it belongs to this config; True if loaded (training is then skipped)."""
        state = load_cached(self.final_path, lambda p: torch.load(p, map_location=self.cfg.device,
                                                                 weights_only=False), "trained model")
        if state is None or state.get("key") != self.cfg.hash():
            return False
        self.model.load_state_dict(state["model"])
        self.history = list(state["history"])
        self.step = self.cfg.steps
        self.model.eval()
        return True


def _to_device(batch: Any, device: str) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def load_history(out_dir: str | Path) -> list[dict[str, float]]:
    """The loss history written by a run (empty if none)."""
    p = Path(out_dir) / HISTORY
    if not p.exists():
        return []
    return json.loads(p.read_text())["history"]


def smooth(values: list[float], window: int = 10) -> list[float]:
    """Trailing moving average for loss curves (notebook figures)."""
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc) if all(math.isfinite(a) for a in acc) else float("nan"))
    return out
