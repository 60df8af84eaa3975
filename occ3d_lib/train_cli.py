"""The training command: train a stage of the series outside a notebook, in one process or under torchrun.

Taught in README "Scaling out". Usage (``python -m occ3d_lib.train_cli`` runs :func:`main`)::

    python -m occ3d_lib.train_cli teacher --profile paper                     # one process (GPU if present)
    torchrun --nproc_per_node=8 -m occ3d_lib.train_cli sopi --profile paper   # 8 GPUs (or CPU processes)
    python -m occ3d_lib.train_cli mopi --profile course --variant all -p seed=1
    python -m occ3d_lib.train_cli all --profile paper                          # what notebooks 03-05 use

Stages: ``data`` (face model and synthetic dataset only), ``teacher``, ``sopi``, ``embedder``,
``mopi``, ``all``. A stage builds the stages it needs first (``sopi`` trains or loads the
teacher). Each stage is trained by the very function the notebooks call
(:func:`occ3d_lib.training.stages.get_teacher`, :func:`~occ3d_lib.training.stages.get_sopi`,
:func:`occ3d_lib.training.embedder.get_embedder`, :func:`occ3d_lib.training.mopi.get_mopi`) with the context
the notebooks build (:func:`occ3d_lib.data.context.make_context`), so it writes its ``final.pt``,
``history.json`` and ``checkpoint.pt`` into the same ``runs/<profile>/checkpoints/<stage>-<hash>``
folder that the notebooks then find and load instead of training. ``-p key=value`` takes the
notebooks' parameters (``seed``, ``face_model``, ``dataset``, ``teacher``, ``facenet``,
``coeff_weight``, ``run_dir``: give a notebook the same values to reuse the models) and any
profile field (e.g. ``-p sopi_steps=1000``; a notebook reuses such a model only when run with
the same field, e.g. from :func:`occ3d_lib.data.context.make_context`). A bad launch (unknown stage,
profile or parameter, a world size that does not divide a batch) prints one line
``occ3d train: error: ...`` and exits with code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any, Sequence

from occ3d_lib.core.config import PROFILES, get_profile
from occ3d_lib.core.envinfo import best_device
from occ3d_lib.data.context import Context, make_context
from occ3d_lib.pipeline import PipelineUsageError, parse_overrides
from occ3d_lib.training import distributed
from occ3d_lib.training import embedder as E
from occ3d_lib.training import mopi as M
from occ3d_lib.training import stages as S

STAGES = ("data", "teacher", "sopi", "embedder", "mopi", "all")
EXIT_USAGE = 2
#: Notebook parameters (cells tagged ``parameters`` in notebooks 03-05) that the command accepts with -p.
CONTEXT_PARAMS = ("face_model", "dataset", "teacher", "facenet", "run_dir")
STAGE_PARAMS = ("coeff_weight",)
#: Profile batch fields each stage trains with (its prerequisites' included), checked against the world size.
STAGE_BATCHES: dict[str, tuple[str, ...]] = {
    "data": (),
    "teacher": ("teacher_batch_size",),
    "sopi": ("teacher_batch_size", "sopi_batch_size"),
    "embedder": ("embedder_batch_size",),
    "mopi": ("teacher_batch_size", "sopi_batch_size", "embedder_batch_size", "mopi_batch_identities"),
    "all": ("teacher_batch_size", "sopi_batch_size", "embedder_batch_size", "mopi_batch_identities"),
}


class UsageError(ValueError):
    """A bad command line (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m occ3d_lib.train_cli``."""
    ap = _Parser(prog="python -m occ3d_lib.train_cli", description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=STAGES, help="what to train: " + ", ".join(STAGES))
    ap.add_argument("--profile", default=None, help=f"one of {', '.join(PROFILES)} (default: $OCC3D_PROFILE or course)")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a notebook parameter (seed, face_model, dataset, teacher, facenet, coeff_weight, run_dir) "
                         "or a profile field")
    ap.add_argument("--loss", choices=("se", "l1", "all"), default="se", help="SOPI loss: se (Eq. 6), l1 (Fig. 6), all")
    ap.add_argument("--variant", choices=("both", "perceptual", "label", "all"), default="both",
                    help="MOPI variant of Table 7 (all: the three)")
    ap.add_argument("--selection", choices=("facenet", "oracle", "random"), default="facenet",
                    help="how MOPI's Eq. 8 label is chosen (notebook 04, section 8)")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best here; cuda:LOCAL_RANK under torchrun)")
    ap.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across the processes (CUDA only)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def split_params(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``-p`` items -> (context parameters, stage parameters, profile overrides); unknown names are an error."""
    try:
        values = parse_overrides(items)
    except PipelineUsageError as e:
        raise UsageError(str(e)) from None
    fields = {f.name for f in dataclasses.fields(PROFILES["smoke"])} - {"name", "extra"}
    ctx_kw = {k: v for k, v in values.items() if k in CONTEXT_PARAMS}
    stage_kw = {k: v for k, v in values.items() if k in STAGE_PARAMS}
    prof_kw = {k: v for k, v in values.items() if k in fields}
    unknown = sorted(set(values) - set(ctx_kw) - set(stage_kw) - set(prof_kw))
    if unknown:
        raise UsageError(f"unknown parameter(s) {unknown}; valid: {', '.join(CONTEXT_PARAMS + STAGE_PARAMS)} "
                         "and the profile fields (see occ3d_lib.core.config.Profile)")
    return ctx_kw, stage_kw, prof_kw


def check_batches(stage: str, profile: Any, world_size: int) -> None:
    """Every batch the stage (and what it needs) trains with must split evenly over the processes."""
    for name in STAGE_BATCHES[stage]:
        distributed.shard_batch_size(getattr(profile, name), name, world_size)


def run_stage(ctx: Context, stage: str, args: argparse.Namespace, stage_kw: dict[str, Any]) -> list[Any]:
    """Train (or load) the models of ``stage`` with the notebooks' own functions; returns them."""
    out: list[Any] = []
    teacher_settings = S.TeacherSettings(**stage_kw)
    if stage in ("teacher", "sopi", "mopi", "all"):
        teacher = S.get_teacher(ctx, teacher_settings)
        out.append(("teacher", teacher))
    if stage in ("sopi", "mopi", "all"):
        losses = ("se", "l1") if stage == "all" or args.loss == "all" else (args.loss,)
        if stage == "mopi":
            losses = ("se",)
        for loss in losses:
            out.append((f"sopi ({loss})", S.get_sopi(ctx, S.SopiSettings(loss=loss), teacher=teacher)))
    if stage in ("embedder", "mopi", "all"):
        out.append(("embedder", E.get_embedder(ctx)))
    if stage in ("mopi", "all"):
        sopi = next(m for name, m in out if name == "sopi (se)")
        emb = next(m for name, m in out if name == "embedder")
        variants = M.VARIANTS if stage == "all" or args.variant == "all" else (args.variant,)
        for v in variants:
            settings = M.MopiSettings(v, selection=args.selection)
            out.append((f"mopi ({v})", M.get_mopi(ctx, v, sopi=sopi, embedder=emb, settings=settings)))
        if stage == "all":  # notebook 04, section 8
            out.append(("mopi (label, oracle)", M.get_mopi(ctx, "label", sopi=sopi, embedder=emb,
                                                          settings=M.MopiSettings("label", selection="oracle"))))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit code."""
    rank = 0
    try:
        rank, world, _ = distributed.launch_env()
        args = build_parser().parse_args(argv)
        ctx_kw, stage_kw, prof_kw = split_params(args.param)
        try:
            profile = get_profile(args.profile, **prof_kw)
            check_batches(args.stage, profile, world)
            requested = args.device or best_device()
            if args.sync_bn and world > 1 and not requested.startswith("cuda"):
                raise UsageError(f"--sync-bn needs CUDA devices (nccl), the device here is {requested!r}: "
                                 "train without --sync-bn")
            st = distributed.init(requested, sync_bn=args.sync_bn)
            device = distributed.process_device(requested)  # cuda:LOCAL_RANK under torchrun
            run_dir = ctx_kw.pop("run_dir", None)
            ctx = make_context(profile, run_dir, device=device, progress=st.is_main and not args.no_progress,
                               **ctx_kw)
        except ValueError as e:
            raise UsageError(str(e).splitlines()[0]) from None
    except UsageError as e:
        if rank == 0:
            print(f"occ3d train: error: {e}", file=sys.stderr)
        distributed.shutdown()
        return EXIT_USAGE
    try:
        t0 = time.time()
        with distributed.main_first():  # rank 0 builds (or finds) the cached face model and dataset
            ctx.face_model
            ctx.dataset
        models = run_stage(ctx, args.stage, args, stage_kw)
        if st.is_main:
            for name, m in models:
                where = getattr(m, "out_dir", None)
                hist = getattr(m, "history", None) or []
                last = f", final loss {hist[-1]['loss']:.4g}" if hist else ""
                print(f"occ3d train: {name}: {where or 'loaded from its checkpoint file'}{last}")
            print(f"occ3d train: {args.stage} done in {time.time() - t0:.0f} s on {st.world_size} process(es), "
                  f"device {ctx.device}, profile {ctx.profile.name}, run folder {ctx.run_dir}")
        return 0
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
