"""Study: how much the teacher learns per CPU-second on the course task (notebook 03, section 2).

Trains the teacher of the course profile under one named set-up (input size, backbone, loss
weights, steps, ...) and records, every ``--eval-every`` steps, the landmark ME (pixels at 224) and
the dense 3D error (mm) on the *validation* identities, against the CPU-seconds spent training
(``time.process_time`` of this process, evaluation excluded) and the wall-clock seconds. The test
identities are never touched. One JSON file per run goes to ``--out`` (default
``runs/study/``); ``--summary`` turns all of them into a markdown table and a figure.

Run (one set-up per process; two single-threaded runs share a 2-core machine fairly):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/study_course.py --setup current --steps 600
    .venv/bin/python benchmarks/study_course.py --summary

The set-ups are :data:`SETUPS`; each is a set of profile fields and teacher settings.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from occ3d_lib.core import metrics  # noqa: E402
from occ3d_lib.core.artifacts import write_json  # noqa: E402
from occ3d_lib.data.context import make_context  # noqa: E402
from occ3d_lib.evaluation.evaluate import mean_face_like  # noqa: E402
from occ3d_lib.face.coeffs import split_coeffs  # noqa: E402
from occ3d_lib.training import stages

#: name -> (profile overrides, TeacherSettings overrides). "current" is the course teacher before
#: the study: coefficient supervision only, RNet's landmark weight.
SETUPS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "current": ({}, {}),
    "landmark x30": ({}, {"landmark_scale": 30.0}),
    "shape": ({}, {"shape_weight": 0.02}),
    "shape + landmark x30": ({}, {"shape_weight": 0.02, "landmark_scale": 30.0}),
}


def val_errors(ctx: Any, model: torch.nn.Module, n: int = 200) -> dict[str, float]:
    """Landmark ME (px at 224) and dense 3D error (mm) of ``model`` and of the mean face at the true
    pose on the first ``n`` validation images."""
    val = ctx.dataset.val
    b = val.batch(list(range(min(n, len(val)))))
    r = ctx.renderer
    pred = stages.predict_coeffs(model, b["image"])
    gt = b["coeffs"]
    base = mean_face_like(gt)
    with torch.no_grad():
        def dense(c: torch.Tensor) -> float:
            p, g = split_coeffs(c.to(r.model.dtype)), split_coeffs(gt.to(r.model.dtype))
            return float(metrics.vertex_error(r.model.shape(p.id, p.exp), r.model.shape(g.id, g.exp)).mean())

        return {"me": float(r.landmark_me(pred, b["landmarks"]).mean()),
                "dense_mm": dense(pred),
                "baseline_me": float(r.landmark_me(base, b["landmarks"]).mean()),
                "baseline_dense_mm": dense(base)}


def run(setup: str, steps: int, eval_every: int, out: Path, threads: int | None) -> Path:
    if setup not in SETUPS:
        raise SystemExit(f"unknown set-up {setup!r}; valid: {', '.join(SETUPS)}")
    if threads:
        torch.set_num_threads(threads)
    overrides, teacher_kw = SETUPS[setup]
    run_dir = out / "runs" / setup.replace(" ", "_").replace("+", "and")
    ctx = make_context("course", run_dir=run_dir, progress=False, teacher_steps=steps, **overrides)
    settings = stages.TeacherSettings(**teacher_kw)
    ctx.dataset  # build or load before the clock starts
    points: list[dict[str, float]] = []
    clock = {"cpu": 0.0, "wall": 0.0, "t_cpu": time.process_time(), "t_wall": time.time()}

    def callback(trainer: Any, rec: dict[str, float]) -> None:
        clock["cpu"] += time.process_time() - clock["t_cpu"]
        clock["wall"] += time.time() - clock["t_wall"]
        if trainer.step % eval_every == 0 or trainer.step == steps:
            errs = val_errors(ctx, trainer.model)
            trainer.model.train()
            points.append({"step": trainer.step, "cpu_s": round(clock["cpu"], 2), "wall_s": round(clock["wall"], 2),
                           "loss": rec["loss"], **errs})
            print(json.dumps(points[-1]), flush=True)
        clock["t_cpu"], clock["t_wall"] = time.process_time(), time.time()

    stages.train_teacher(ctx, settings, progress=False, callback=callback)
    result = {"setup": setup, "steps": steps, "threads": torch.get_num_threads(), "profile": ctx.profile.to_dict(),
              "teacher_settings": teacher_kw, "points": points}
    path = out / f"{setup.replace(' ', '_').replace('+', 'and')}-{steps}.json"
    write_json(path, result)
    return path


def summary(out: Path) -> str:
    rows = ["| set-up | steps | CPU min | val ME px | x baseline | dense mm | x baseline |", "|---|---|---|---|---|---|---|"]
    for p in sorted(out.glob("*.json")):
        r = json.loads(p.read_text())
        if not r.get("points"):
            continue
        last = r["points"][-1]
        rows.append(f"| {r['setup']} | {r['steps']} | {last['cpu_s'] / 60:.1f} | {last['me']:.2f} | "
                    f"{last['me'] / last['baseline_me']:.2f} | {last['dense_mm']:.2f} | "
                    f"{last['dense_mm'] / last['baseline_dense_mm']:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", default="current")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/study"))
    ap.add_argument("--summary", action="store_true")
    a = ap.parse_args(argv)
    if a.summary:
        print(summary(a.out))
        return
    print(run(a.setup, a.steps, a.eval_every, a.out, a.threads))


if __name__ == "__main__":
    main()
