"""The training command: train a stage of the series outside a notebook, in one process or under torchrun.

Taught in docs/scaling_out.md. Usage (``python -m occ3d_lib.train_cli`` runs :func:`main`)::

    python -m occ3d_lib.train_cli teacher --profile paper                     # one process (GPU if present)
    torchrun --nproc_per_node=8 -m occ3d_lib.train_cli sopi --profile paper   # 8 GPUs (or CPU processes)
    python -m occ3d_lib.train_cli mopi --profile course --variant all -p seed=1
    python -m occ3d_lib.train_cli all --profile paper                          # what notebooks 03-05 use
    python -m occ3d_lib.train_cli pretrained                                   # make data/pretrained/ (hours)

Stages: ``data`` (face model and synthetic dataset only), ``teacher``, ``sopi``, ``embedder``,
``mopi``, ``all``, and ``pretrained`` (``make pretrained``: the long runs behind the shipped teacher and
FaceNet, :mod:`occ3d_lib.pretrain`; ``--only teacher`` or ``--only facenet`` makes one of them).
A stage builds the stages it needs first (``sopi`` trains or loads the
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
profile or parameter, a value ``make run`` would refuse: ``coeff_weight=-1``, a missing teacher or face
model file, an unwritable ``run_dir``; ``--device cuda`` without CUDA; a world size that does not divide a
batch) prints the same one line as ``make run``, ``occ3d train: error: ...``, and exits with code 2 before
anything is built.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from occ3d_lib import pretrain
from occ3d_lib.core.config import PROFILES, Profile, get_profile
from occ3d_lib.core.envinfo import best_device, check_device
from occ3d_lib.core.params import Declared, ParameterError, coerce, field_declarations, split_items
from occ3d_lib.data.context import Context, make_context
from occ3d_lib.pipeline import PARAMETER_TYPES, PipelineUsageError, check_values, series_declarations
from occ3d_lib.training import distributed, embedder, mopi, stages

STAGES = ("data", "teacher", "sopi", "embedder", "mopi", "all", "pretrained")
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
    "pretrained": ("teacher_batch_size", "embedder_batch_size"),
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
    ap.add_argument("--only", choices=("teacher", "facenet"), action="append", default=None,
                    help="pretrained stage: make only this network (repeatable; default both)")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best here; cuda:LOCAL_RANK under torchrun)")
    ap.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across the processes (CUDA only)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def split_params(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``-p`` items -> (context parameters, stage parameters, profile overrides), each value typed: the
    notebooks' parameters as their ``parameters`` cells declare them (as in ``make run``), profile fields
    by the field's type (``-p imagenet_init=true`` is True). Unknown names and bad values are an error."""
    try:
        raw = split_items(list(items))
    except ParameterError as e:
        raise UsageError(str(e)) from None
    fields = {k: d for k, d in field_declarations(Profile).items() if k not in ("name", "extra")}
    notebook = series_declarations()
    unknown = sorted(set(raw) - set(CONTEXT_PARAMS) - set(STAGE_PARAMS) - set(fields))
    if unknown:
        raise UsageError(f"unknown parameter(s) {unknown}; valid: {', '.join(CONTEXT_PARAMS + STAGE_PARAMS)} "
                         "and the profile fields (see occ3d_lib.core.config.Profile)")
    values: dict[str, Any] = {}
    for k, text in raw.items():
        decl = fields.get(k) or notebook.get(k) or Declared(k, None, PARAMETER_TYPES.get(k))
        try:
            values[k] = coerce(decl, text)
        except ParameterError as e:
            raise UsageError(str(e)) from None
    ctx_kw = {k: v for k, v in values.items() if k in CONTEXT_PARAMS}
    stage_kw = {k: v for k, v in values.items() if k in STAGE_PARAMS}
    prof_kw = {k: v for k, v in values.items() if k in fields}
    return ctx_kw, stage_kw, prof_kw


def check_params(profile: str | None, ctx_kw: dict[str, Any], stage_kw: dict[str, Any],
                 device: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checks ``make run`` makes before anything runs (:func:`occ3d_lib.pipeline.check_values`: track
    choices and their files, ``coeff_weight``'s range, a writable ``run_dir``), plus ``--device``; returns
    the context and stage parameters with paths made absolute. One-line :class:`UsageError` otherwise."""
    try:
        if device:
            check_device(device)
        checked = check_values(get_profile(profile).name, {**ctx_kw, **stage_kw})
    except (PipelineUsageError, ValueError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    return {k: checked[k] for k in ctx_kw}, {k: checked[k] for k in stage_kw}


def check_batches(stage: str, profile: Any, world_size: int) -> None:
    """Every batch the stage (and what it needs) trains with must split evenly over the processes."""
    for name in STAGE_BATCHES[stage]:
        distributed.shard_batch_size(getattr(profile, name), name, world_size)


def run_stage(ctx: Context, stage: str, args: argparse.Namespace, stage_kw: dict[str, Any]) -> list[Any]:
    """Train (or load) the models of ``stage`` with the notebooks' own functions; returns them."""
    out: list[Any] = []
    teacher_settings = stages.TeacherSettings(**stage_kw)
    if stage in ("teacher", "sopi", "mopi", "all"):
        teacher = stages.get_teacher(ctx, teacher_settings)
        out.append(("teacher", teacher))
    if stage in ("sopi", "mopi", "all"):
        losses = ("se", "l1") if stage == "all" or args.loss == "all" else (args.loss,)
        if stage == "mopi":
            losses = ("se",)
        for loss in losses:
            out.append((f"sopi ({loss})", stages.get_sopi(ctx, stages.SopiSettings(loss=loss), teacher=teacher)))
    if stage in ("embedder", "mopi", "all"):
        out.append(("embedder", embedder.get_embedder(ctx)))
    if stage in ("mopi", "all"):
        sopi = next(m for name, m in out if name == "sopi (se)")
        emb = next(m for name, m in out if name == "embedder")
        variants = mopi.VARIANTS if stage == "all" or args.variant == "all" else (args.variant,)
        for v in variants:
            settings = mopi.MopiSettings(v, selection=args.selection)
            out.append((f"mopi ({v})", mopi.get_mopi(ctx, v, sopi=sopi, embedder=emb, settings=settings)))
        if stage == "all":  # notebook 04, section 8
            out.append(("mopi (label, oracle)", mopi.get_mopi(ctx, "label", sopi=sopi, embedder=emb,
                                                          settings=mopi.MopiSettings("label", selection="oracle"))))
    return out


def run_pretrained(args: argparse.Namespace, ctx_kw: dict[str, Any], stage_kw: dict[str, Any],
                    prof_kw: dict[str, Any], world: int) -> int:
    """The ``pretrained`` stage: :func:`occ3d_lib.pretrain.build_pretrained` in one process; prints each file made."""
    if args.profile not in (None, pretrain.PRETRAIN_PROFILE):
        raise UsageError(f"the pretrained networks are made for the {pretrain.PRETRAIN_PROFILE} profile; "
                         f"drop --profile {args.profile}")
    if world > 1:
        raise UsageError("the pretrained stage runs in one process: start it without torchrun")
    extra = sorted((set(ctx_kw) - {"run_dir"}) | set(stage_kw))
    if extra:
        raise UsageError(f"the pretrained stage takes profile fields and run_dir with -p, not {extra}")
    try:
        pretrain.pretrain_profile(**prof_kw)
    except ValueError as e:
        raise UsageError(str(e).splitlines()[0]) from None
    only = tuple(dict.fromkeys(args.only or ("teacher", "facenet")))
    command = "python -m occ3d_lib.train_cli pretrained" + "".join(f" --only {o}" for o in args.only or ()) + "".join(
        f" -p {item}" for item in args.param)
    t0 = time.time()
    entries = pretrain.build_pretrained(only, run_dir=ctx_kw.get("run_dir"), device=args.device or "cpu",
                                       progress=not args.no_progress, command=command, **prof_kw)
    for name, e in entries.items():
        print(f"occ3d train: pretrained {name}: {e['file']} ({e['size'] / 2**20:.1f} MiB), validation "
              f"{ {k: round(v, 4) for k, v in e['validation'].items()} }")
    print(f"occ3d train: pretrained done in {time.time() - t0:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit code."""
    rank = 0
    try:
        rank, world, _ = distributed.launch_env()
        args = build_parser().parse_args(argv)
        ctx_kw, stage_kw, prof_kw = split_params(args.param)
        ctx_kw, stage_kw = check_params(args.profile, ctx_kw, stage_kw, args.device)
        if args.stage == "pretrained":
            return run_pretrained(args, ctx_kw, stage_kw, prof_kw, world)
        if args.only:
            raise UsageError("--only is for the pretrained stage")
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
            _ = ctx.face_model, ctx.dataset
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
