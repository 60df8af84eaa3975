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
- logged: ``history.json`` (step, each loss term, seconds of training so far, resumes included) beside
  the checkpoint;
- device-agnostic: CPU here, CUDA (with bf16 autocast when ``amp``) where present;
- distributed: the same loop under torchrun and DistributedDataParallel (see :class:`Trainer`).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from occ3d_lib.core.artifacts import load_cached, torch_load, torch_save, write_json
from occ3d_lib.core.config import config_hash
from occ3d_lib.core.progress import progress_bar
from occ3d_lib.training import distributed

SCHEDULES = ("constant", "cosine")
CHECKPOINT = "checkpoint.pt"
#: Offset of the seed of torch's global generator at the start of a fresh run (dropout, drop-connect).
GLOBAL_RNG_OFFSET = 104_729
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
        """The run's identity: everything but where and how fast it runs (device, precision, logging),
        so a model trained on a GPU (bf16, any number of processes) is reused on a CPU and vice versa."""
        d = asdict(self)
        for k in ("device", "amp", "checkpoint_every", "log_every"):
            d.pop(k)
        return config_hash(d)


StepFn = Callable[[nn.Module, Any], Mapping[str, Tensor]]
BatchFn = Callable[[int, torch.Generator], Any]


class Trainer:
    """Runs ``steps`` optimiser steps of ``step_fn(model, batch_fn(step, generator))``.

    ``step_fn`` returns a dict of loss terms whose ``'loss'`` entry is minimised; every term is
    logged. ``stateful`` holds extra objects to checkpoint (e.g. an on-the-fly occluder).

    Distributed design (docs/scaling_out.md; :mod:`occ3d_lib.training.distributed`). The same loop runs in
    one process or in each of N processes started by torchrun; the process group and its rank
    come from :func:`occ3d_lib.training.distributed.current`.

    - Data: ``batch_fn`` returns this rank's *shard* of the global batch (the stage functions
      build it with :func:`~occ3d_lib.training.distributed.shard_batch_size`); rank ``r`` draws from its
      own generator seeded with ``derive_seed(seed, r)``, so the shards of a step are disjoint
      draws and rank 0 of a single process draws what it always drew. The global batch of N
      processes is the concatenation of the N shards.
    - Gradients: the model is wrapped in ``DistributedDataParallel``, which averages gradients
      over the ranks during ``backward``; the optimiser then takes the same step everywhere
      (gradient clipping sees the averaged gradients). With ``sync_bn`` (CUDA only) BatchNorm
      layers become ``SyncBatchNorm`` and normalise with the global batch's statistics; without
      it each rank normalises with its shard's statistics (DDP's default).
    - Losses: every term is averaged over the ranks each step (one all-reduce of a small
      vector); the averaged values are logged and checked for NaN/inf, so a divergence on any
      rank stops every rank at the same step.
    - Checkpoints: every rank's generator, CPU RNG and ``stateful`` states are gathered; rank 0
      alone writes ``checkpoint.pt``, ``history.json`` and ``final.pt`` atomically, then all
      ranks meet at a barrier. A resumed run (after a kill) reads the checkpoint on every rank
      (a shared filesystem across machines), checks that every rank resumes the same step and
      that the world size is the one that wrote it, and continues with the same batches.
    - Precision: with ``amp`` on CUDA the step runs under bf16 autocast (no loss scaling
      needed); code that must stay float32 (the rasteriser) runs inside :func:`full_precision`.
    - Identity: the config hash ignores device, precision and world size, so ``final.pt`` written
      by ``torchrun`` on GPUs is the one a notebook on one CPU finds and reuses.
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
        self.dist = distributed.current()
        self.generator = torch.Generator().manual_seed(distributed.derive_seed(config.seed, self.dist.rank))
        self.step = 0
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    @property
    def final_path(self) -> Path:
        return self.out_dir / FINAL

    @property
    def settings(self) -> dict[str, str]:
        """What the manifests of ``checkpoint.pt`` and ``final.pt`` record and are checked against: the run's
        config hash. Both files hold only tensors and plain values (read with ``weights_only=True``)."""
        return {"key": self.cfg.hash()}

    def rank_state(self) -> dict[str, Any]:
        """What differs between ranks: generator, CPU RNG and ``stateful`` states."""
        return {"generator": self.generator.get_state(), "cpu_rng": torch.get_rng_state(),
                "stateful": {k: v.state_dict() for k, v in self.stateful.items()}}

    def state_dict(self, ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The full training state; ``ranks`` holds every rank's :meth:`rank_state` (default: this one's)."""
        ranks = ranks if ranks is not None else [self.rank_state()]
        return {"key": self.cfg.hash(), "step": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "history": self.history,
                "world_size": len(ranks), "ranks": ranks, **ranks[0]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        world = int(state.get("world_size", 1))
        if world != self.dist.world_size:
            raise ValueError(f"{self.checkpoint_path} was written by {world} process(es), this run has "
                             f"{self.dist.world_size}: relaunch with {world} processes to resume it, or delete it")
        mine = state["ranks"][self.dist.rank] if "ranks" in state else state
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(mine["generator"])
        torch.set_rng_state(mine["cpu_rng"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        for k, v in self.stateful.items():
            v.load_state_dict(mine["stateful"][k])

    def save_checkpoint(self) -> Path:
        """Write the full training state atomically (and the loss history as JSON).

        Collective under torchrun: every rank contributes its :meth:`rank_state`, rank 0 writes, all
        ranks wait for the write at a barrier.
        """
        ranks = distributed.all_gather(self.rank_state())
        if self.dist.is_main:
            torch_save(self.state_dict(ranks), self.checkpoint_path, settings=self.settings)
            write_json(self.out_dir / HISTORY, {"key": self.cfg.hash(), "history": self.history})
        distributed.barrier()
        return self.checkpoint_path

    def try_resume(self) -> bool:
        """Load the checkpoint if it belongs to this run (same config hash); True if resumed.

        Under torchrun every rank must find the same checkpoint step (else a one-line error).
        """
        resumed = False
        state = load_cached(self.checkpoint_path, torch_load, "checkpoint", self.settings)
        if state is not None and state.get("key") == self.cfg.hash():
            self.load_state_dict(state)
            resumed = True
        _agree(self.step if resumed else -1, "the step to resume from", self.out_dir)
        return resumed

    # ------------------------------------------------------------------ loop
    def fit(self, progress: bool = True, callback: Callable[[Trainer, dict[str, float]], None] | None = None,
            desc: str = "training") -> list[dict[str, float]]:
        """Train to ``config.steps`` (resuming if possible); returns the history.

        If ``final.pt`` exists for this config the model is loaded from it and nothing runs.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.load_final():
            return self.history
        if not self.try_resume():
            # stochastic layers (dropout, EfficientNet's drop-connect) draw from torch's global generator: a
            # fresh run seeds it from the run's seed, so the same seed gives the same weights whatever ran
            # before in the process (a resumed run restores the generator state of its checkpoint instead)
            torch.manual_seed(distributed.derive_seed(self.cfg.seed + GLOBAL_RNG_OFFSET, self.dist.rank))
        net = self._wrap()
        self.model.train()
        dev = self.cfg.device
        use_amp = self.cfg.amp and dev.startswith("cuda")
        main = self.dist.is_main
        # "seconds" in the history count the training loop of the steps kept, across resumes
        t0 = time.time() - (float(self.history[-1]["seconds"]) if self.history else 0.0)
        with progress_bar(total=self.cfg.steps, initial=self.step, desc=desc, disable=not (progress and main)) as bar:
            while self.step < self.cfg.steps:
                batch = _to_device(self.batch_fn(self.step, self.generator), dev)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                    terms = self.step_fn(net, batch)
                if "loss" not in terms:
                    raise KeyError("step_fn must return a dict with a 'loss' entry")
                means = self._reduce_terms(terms)  # averaged over the ranks: every rank sees the same values
                for name, value in means.items():
                    if not math.isfinite(value):
                        raise TrainingDiverged(f"step {self.step}: loss term {name!r} is {value}"
                                               " (not finite); lower the learning rate or check the inputs")
                self.optimizer.zero_grad(set_to_none=True)
                if self.cfg.schedule != "constant":
                    for group in self.optimizer.param_groups:
                        group["lr"] = self.cfg.lr_at(self.step)
                terms["loss"].backward()  # DDP averages the gradients over the ranks here
                if self.cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.optimizer.step()
                self.step += 1
                bar.update(1)
                if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                    rec = {"step": self.step, "seconds": round(time.time() - t0, 3)}
                    rec.update(means)
                    self.history.append(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4g}")
                    if callback is not None:
                        callback(self, rec)
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                    self.save_checkpoint()
        self.model.eval()
        if main:
            torch_save({"key": self.cfg.hash(), "model": self.model.state_dict(), "history": self.history},
                       self.final_path, settings=self.settings)
        distributed.barrier()
        return self.history

    def _wrap(self) -> nn.Module:
        """The module the steps call: the model itself, or DistributedDataParallel around it under torchrun."""
        if not self.dist.enabled:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        cuda = str(self.cfg.device).startswith("cuda")
        if self.dist.sync_bn:
            if not cuda:
                raise ValueError("SyncBatchNorm needs CUDA devices (nccl); on CPU train without --sync-bn")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        return DistributedDataParallel(self.model, device_ids=[torch.device(self.cfg.device)] if cuda else None)

    def _reduce_terms(self, terms: Mapping[str, Tensor]) -> dict[str, float]:
        """Each term's batch mean, averaged over the ranks (one all-reduce): name -> float."""
        vec = torch.stack([v.detach().float().mean() for v in terms.values()])
        vec = distributed.all_reduce_mean(vec).cpu()
        return {k: float(x) for k, x in zip(terms, vec)}

    def load_final(self) -> bool:
        """Load ``final.pt`` if it belongs to this config; True if loaded (training is then skipped).
        Under torchrun every rank must come to the same answer (else a one-line error)."""
        state = load_cached(self.final_path, torch_load, "trained model", self.settings)
        if state is not None and state.get("key") != self.cfg.hash():
            state = None
        _agree(int(state is not None), "whether final.pt exists", self.out_dir)
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.history = list(state["history"])
        self.step = self.cfg.steps
        self.model.eval()
        return True


def _agree(value: int, what: str, out_dir: Path) -> None:
    """Raise on every rank when the ranks disagree on ``value`` (e.g. a checkpoint one machine cannot see)."""
    values = distributed.all_gather(int(value))
    if len(set(values)) > 1:
        raise RuntimeError(f"the ranks disagree on {what} in {out_dir} ({values}): put the run folder on a "
                           "filesystem that every machine shares")


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """A block that runs in float32 even inside the Trainer's bf16 autocast (the rasteriser: its
    z-buffer keys and barycentric weights need float32). Turns CUDA and CPU autocast off; cast
    tensors from the network with ``.float()`` on the way in."""
    with torch.autocast(device_type="cuda", enabled=False), torch.autocast(device_type="cpu", enabled=False):
        yield


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
