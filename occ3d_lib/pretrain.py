"""Make the pretrained stand-ins the series ships: the course-sized teacher (RNet) and the synthetic FaceNet.

Taught in notebook 03, section 3 and notebook 04, section 2. The paper is handed a pre-trained RNet
(Sec. 3.1.1) and a pre-trained FaceNet (Sec. 3.2.2); the embedded track's counterparts are made once by
this command, which is not part of ``make run`` or ``make test``::

    make pretrained                                   # = python -m occ3d_lib.train_cli pretrained
    OMP_NUM_THREADS=1 python -m occ3d_lib.train_cli pretrained --only teacher   # one network per process

It trains the teacher and the embedder with the very stage functions the notebooks call
(:func:`occ3d_lib.training.stages.train_teacher`, :func:`occ3d_lib.training.embedder.train_embedder`) on the
course profile's synthetic *training* identities, with :data:`PRETRAIN_OVERRIDES` (many more teacher
steps than a class period allows), in ``runs/pretrained/`` (resumable: kill it and start it again, it
continues from its last checkpoint). Then it measures each network on the *validation* identities and
writes ``data/pretrained/{teacher,facenet}.pt`` (float16 state dicts) and ``manifest.json``
(:mod:`occ3d_lib.nets.pretrained`): the command, commit, profile and configuration hash, the training
seconds, threads and CPU-hours, the validation metrics, the learning curve and each file's BLAKE2b.
The same seed rebuilds the same weights on the same machine (the stages are seeded).
"""
from __future__ import annotations

import datetime
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from occ3d_lib.core.artifacts import REPO_ROOT
from occ3d_lib.core.config import Profile, get_profile
from occ3d_lib.data.context import Context, make_context
from occ3d_lib.evaluation.diagnostics import validation_errors
from occ3d_lib.nets import pretrained
from occ3d_lib.training import embedder as embedder_stage
from occ3d_lib.training import stages

#: The profile the shipped networks are made for, and what the long command changes in it: the
#: teacher trains for 8000 steps of 128 faces drawn from 8000 training identities (the recipe the GPU
#: records of notebook 03, docs/course_study/gpu, point to: the teacher is limited by how many faces it
#: sees, not by steps; batch 128 on the course's 1000 identities ends where batch 32 does, 4000 identities
#: go from 0.70x to 0.49x the mean face) instead of the class period's live run; about 2 hours of 2 CPU
#: cores (0.8 s a step with channels-last images). The embedder keeps the profile's steps. These are the
#: settings the shipped files were made with. The validation and test identities stay the course's own
#: (each split has its own generator).
PRETRAIN_PROFILE = "course"
PRETRAIN_OVERRIDES: Mapping[str, Any] = {"pretrained": False, "teacher_steps": 8000, "teacher_batch_size": 128,
                                         "n_train_identities": 8000}
PRETRAIN_RUN_DIR = REPO_ROOT / "runs" / "pretrained"
#: The small fixed set of the reproducibility check (:func:`shipped_check`).
CHECK_PROFILE = "smoke"
CHECK_N = 16
#: Points kept of a learning curve in the manifest (every k-th record of the history).
CURVE_POINTS = 100


def pretrain_profile(**changes: Any) -> Profile:
    """The profile the long command trains with: :data:`PRETRAIN_PROFILE` with :data:`PRETRAIN_OVERRIDES`."""
    return get_profile(PRETRAIN_PROFILE, **{**PRETRAIN_OVERRIDES, **changes})


def thin_curve(history: Sequence[Mapping[str, float]], points: int = CURVE_POINTS,
               keys: Sequence[str] = ("step", "seconds", "loss")) -> list[dict[str, float]]:
    """At most ``points`` records of a loss history (evenly spaced, the last one kept), with ``keys`` only."""
    if not history:
        return []
    every = max(1, -(-len(history) // points))
    kept = list(history[::every])
    if kept[-1] is not history[-1]:
        kept.append(history[-1])
    return [{k: float(r[k]) for k in keys if k in r} for r in kept]


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _made(ctx: Context, cfg_hash: str, history: Sequence[Mapping[str, float]], steps: int, command: str) -> dict[str, Any]:
    """How a network was made (the manifest's record): command, commit, profile, hash, time and CPU-hours."""
    seconds = float(history[-1]["seconds"]) if history else 0.0
    threads = torch.get_num_threads()
    device = str(ctx.device)
    hours = round(seconds * threads / 3600, 3) if device == "cpu" else None  # CPU-hours only on a CPU
    return {"command": command, "commit": _commit(), "profile": ctx.profile.name, "config_hash": cfg_hash,
            "profile_fields": ctx.profile.to_dict(), "steps": steps, "train_seconds": round(seconds, 1),
            "threads": threads, "device": device, "cpu_hours": hours,
            **({} if hours is not None else {"gpu_hours": round(seconds / 3600, 3)}),
            "machine": platform.machine(), "made": datetime.date.today().isoformat(),
            "curve": thin_curve(history)}


def shipped_check(model: torch.nn.Module, run_dir: str | Path) -> dict[str, Any]:
    """The shipped teacher's reproducible check: its errors on the first :data:`CHECK_N` validation images of
    the :data:`CHECK_PROFILE` profile (a small fixed set any machine builds in seconds), recorded in the
    manifest and reproduced by the tests."""
    ctx = make_context(CHECK_PROFILE, run_dir, progress=False, pretrained=False)
    v = validation_errors(ctx, model, n=CHECK_N)
    return {"profile": CHECK_PROFILE, "split": "val", "n": v["n"], "me": v["me"], "dense_mm": v["dense_mm"]}


def build_shipped_teacher(ctx: Context, command: str, root: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume, or reuse) the long teacher run, measure it on the validation identities, ship it."""
    settings = stages.resolve_teacher_settings(ctx.profile)
    cfg = stages.teacher_config(ctx, settings)
    teacher = stages.train_teacher(ctx, settings)
    history = stages.stage_history(teacher)
    shipped = pretrained.compact_state(teacher.state_dict())
    teacher.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in shipped.items()})
    val = validation_errors(ctx, teacher, n=None)  # measured with the float16 weights that ship
    info = {**_made(ctx, cfg.hash(), history, ctx.profile.teacher_steps, command),
            "architecture": {"kind": "ReconNet", "backbone": ctx.profile.backbone},
            "compat": stages.teacher_compat(ctx), "validation": val,
            "check": shipped_check(teacher, ctx.run_dir / "check")}
    return pretrained.write_shipped("teacher", shipped, info, root)


def build_shipped_facenet(ctx: Context, command: str, root: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume, or reuse) the synthetic FaceNet, measure verification on the validation identities, ship it."""
    settings = embedder_stage.EmbedderSettings()
    cfg = embedder_stage.embedder_config(ctx, settings)
    emb = embedder_stage.train_embedder(ctx, settings)
    history = emb.history
    shipped = pretrained.compact_state(emb.state_dict())
    emb.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in shipped.items()})
    val_split = ctx.dataset.val
    rep = embedder_stage.verification_report(emb, val_split.batch(list(range(len(val_split))))["image"],
                                             val_split.identity)
    val = {k: rep[k] for k in ("accuracy", "auc", "threshold", "mean_cos_same", "mean_cos_diff", "n_images")}
    info = {**_made(ctx, cfg.hash(), history, ctx.profile.embedder_steps, command),
            "architecture": {"kind": "FaceEmbedder", "net": "InceptionResnetV1", "input_size": emb.input_size},
            "compat": embedder_stage.facenet_compat(ctx, settings), "validation": val}
    return pretrained.write_shipped("facenet", shipped, info, root)


def build_pretrained(only: Sequence[str] = pretrained.NAMES, run_dir: str | Path | None = None,
                    root: str | Path | None = None, device: str = "cpu", progress: bool = True,
                    command: str = "make pretrained", **changes: Any) -> dict[str, dict[str, Any]]:
    """Make the shipped networks named in ``only`` ("teacher", "facenet"); returns their manifest entries.

    ``changes`` are profile fields on top of :data:`PRETRAIN_OVERRIDES` (tests make tiny ones).
    """
    bad = sorted(set(only) - set(pretrained.NAMES))
    if bad or not only:
        raise ValueError(f"only must name some of {', '.join(pretrained.NAMES)}, got {list(only)}")
    ctx = make_context(pretrain_profile(**changes), run_dir or PRETRAIN_RUN_DIR, device=device, progress=progress)
    out = {}
    if "teacher" in only:
        out["teacher"] = build_shipped_teacher(ctx, command, root)
    if "facenet" in only:
        out["facenet"] = build_shipped_facenet(ctx, command, root)
    return out


def _hours(entry: dict[str, Any]) -> str:
    """A manifest entry's training cost: CPU-hours (threads x wall hours), or GPU-hours on a GPU."""
    if entry.get("cpu_hours") is not None:
        return f"{entry['cpu_hours']:.2f} CPU"
    return f"{entry.get('gpu_hours', 0.0):.2f} GPU ({entry.get('device', 'cuda')})"


def shipped_markdown(root: str | Path | None = None) -> str:
    """A markdown table of the shipped networks: where they come from, what they cost, how good they are.

    Measured on the validation identities (notebook 03 section 3, notebook 04 section 2, README).

    Args:
        root: the folder holding the weights' manifest; None: the shipped ``data/pretrained``.

    Returns:
        The markdown table as a str, one row per network of the manifest.
    """
    manifest = pretrained.read_manifest(root)
    rows = ["| network | trained | hours | validation (never the test identities) | file |", "|---|---|---|---|---|"]
    for name, e in manifest["networks"].items():
        fields = e.get("profile_fields", {})
        batch = fields.get("teacher_batch_size" if name == "teacher" else "embedder_batch_size")
        data = (f" of {batch} faces from {fields['n_train_identities']} training identities"
                if batch and "n_train_identities" in fields else "")
        v = e.get("validation", {})
        if name == "teacher":
            val = (f"landmark ME {v['me']:.2f} px = {v['me_ratio']:.2f} x the mean face at the true pose; "
                   f"dense 3D {v['dense_mm']:.2f} mm = {v['dense_ratio']:.2f} x")
        else:
            val = f"verification accuracy {v['accuracy']:.3f}, AUC {v['auc']:.3f}"
        rows.append(f"| {name} ({e['architecture'].get('backbone', e['architecture'].get('net'))}) | "
                    f"{e['steps']} steps{data}, {e['train_seconds'] / 60:.0f} min x {e['threads']} thread(s) | "
                    f"{_hours(e)} | {val} | {e['file']}, {e['size'] / 2**20:.1f} MiB, float16 |")
    return "\n".join(rows)
