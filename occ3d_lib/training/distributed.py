"""Scale-out on torch.distributed: the process group, per-rank seeds, batch shards, rank-0-first caches.

Taught in docs/scaling_out.md (the notebooks themselves always run in one process). The
training command (:mod:`occ3d_lib.train_cli`, ``python -m occ3d_lib.train_cli``) calls :func:`init`
once; everything else reads :func:`current`, the way ``torch.distributed`` itself is
process-global. Without a launcher (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``)
nothing here creates a process group and every helper is a no-op, so a notebook, a test or a
single-process command behaves exactly as before.

- :func:`init` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``) and starts the process group: ``nccl`` when the training
  device is CUDA (one GPU per process, ``cuda:LOCAL_RANK``), ``gloo`` on CPU;
- :func:`derive_seed` gives rank ``r`` its own seed (rank 0 keeps the run's seed, so a
  single-process run draws exactly the batches it always drew);
- :func:`shard_batch_size` splits a global batch into equal per-rank shards (a one-line error
  when the world size does not divide it);
- :func:`main_first` lets rank 0 build a cached artifact (dataset, teacher labels, Eq. 8 label
  pool) while the other ranks wait, then load it: built once, shared, never recomputed per rank.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from occ3d_lib.core.envinfo import best_device

TIMEOUT_ENV = "OCC3D_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 180  # rank 0 may build a paper-size dataset while the others wait at a barrier


def timeout_minutes() -> int:
    """How long a collective (a barrier while rank 0 builds a cache) may wait: ``$OCC3D_DIST_TIMEOUT_MIN``
    or 180 minutes."""
    raw = os.environ.get(TIMEOUT_ENV) or str(DEFAULT_TIMEOUT_MIN)
    if not raw.isdigit() or int(raw) < 1:
        raise LaunchError(f"{TIMEOUT_ENV}={raw!r} must be a positive number of minutes")
    return int(raw)


class LaunchError(ValueError):
    """A launch that cannot work (bad torchrun environment, a batch the world size does not divide)."""


@dataclass(frozen=True)
class DistState:
    """Where this process sits in the run: rank, world size, local rank, backend, options."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group (single process)
    sync_bn: bool = False  # convert BatchNorm to SyncBatchNorm in the Trainer (CUDA only)

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, histories and caches and prints."""
        return self.rank == 0


_STATE = DistState()


def current() -> DistState:
    """The distributed state of this process (single process unless :func:`init` started a group)."""
    return _STATE


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise LaunchError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def launch_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment, validated; (0, 1, 0) without one."""
    env = os.environ if environ is None else environ
    world = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local = _env_int(env, "LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise LaunchError(f"bad launch environment RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: "
                          "start the command with torchrun (or without any of these variables)")
    return rank, world, local


def derive_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s generators: ``seed`` itself for rank 0, a hash of (seed, rank) otherwise.

    Rank 0 keeping the run's seed makes a single-process run draw exactly what it always drew; a
    resumed run derives the same seeds again (and restores the generators' states anyway).
    """
    if rank == 0:
        return int(seed)
    return int(hashlib.sha256(f"occ3d-rank:{int(seed)}:{int(rank)}".encode()).hexdigest()[:15], 16)


def shard_batch_size(global_batch: int, name: str = "batch size", world_size: int | None = None) -> int:
    """Each rank's share of a global batch: ``global_batch / world_size`` (must divide exactly).

    ``name`` (e.g. the profile field ``sopi_batch_size``) goes into the one-line error.
    """
    w = current().world_size if world_size is None else int(world_size)
    if global_batch % w != 0:
        raise LaunchError(f"{name} {global_batch} is not divisible by the world size {w}: launch a number of "
                          f"processes that divides it, or set -p {name}=<a multiple of {w}>")
    return global_batch // w


def init(device: str = "cpu", sync_bn: bool = False, environ: Mapping[str, str] | None = None) -> DistState:
    """Start the process group from torchrun's environment (if ``WORLD_SIZE > 1``); returns the new state.

    ``device`` is the training device: CUDA selects ``nccl`` and ``cuda:LOCAL_RANK``, anything else
    ``gloo``. ``sync_bn`` asks the Trainer for SyncBatchNorm (needs CUDA). Idempotent for a group
    that is already initialised (e.g. by a test harness).
    """
    global _STATE
    rank, world, local = launch_env(environ)
    if world == 1:
        _STATE = DistState(sync_bn=sync_bn)
        return _STATE
    cuda = str(device).startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise LaunchError(f"device {device!r} asked for but CUDA is not available")
        if local >= torch.cuda.device_count():
            raise LaunchError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s) here: "
                              "launch at most that many processes per machine (--nproc_per_node)")
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                timeout=timedelta(minutes=timeout_minutes()))
    _STATE = DistState(rank=rank, world_size=world, local_rank=local, backend=dist.get_backend(), sync_bn=sync_bn)
    return _STATE


def shutdown() -> None:
    """Destroy the process group (if any) and return to the single-process state."""
    global _STATE
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _STATE = DistState()


def process_device(requested: str | None = None) -> str:
    """The device this process trains on: ``cuda:LOCAL_RANK`` under a multi-GPU launch, else
    ``requested`` or the best device here (:func:`occ3d_lib.core.envinfo.best_device`)."""
    dev = requested or best_device()
    if str(dev).startswith("cuda") and current().enabled:
        return f"cuda:{current().local_rank}"
    return dev


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if current().enabled:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (building and writing a cache), the other ranks after it (reading it).

    Every rank executes the block; a cache-or-build block thus builds once. Multi-machine runs
    need the cache folder on a filesystem that every machine sees.
    """
    st = current()
    if not st.enabled:
        yield
        return
    if not st.is_main:
        dist.barrier()
    try:
        yield
    finally:
        if st.is_main:
            dist.barrier()


def all_reduce_mean(t: Tensor) -> Tensor:
    """The mean of ``t`` over the ranks (a new tensor; ``t`` itself in a single process)."""
    if not current().enabled:
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / current().world_size


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not current().enabled:
        return [obj]
    out: list[Any] = [None] * current().world_size
    dist.all_gather_object(out, obj)
    return out
