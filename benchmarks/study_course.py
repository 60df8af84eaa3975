"""Study: how much the teacher learns per CPU-second on the course task (notebook 03, section 2).

Trains the teacher of the course profile under one named set-up (input size, backbone, loss
weights, steps, ...) and records, every ``--eval-every`` steps, the landmark ME (pixels at 224) and
the dense 3D error (mm) on the *validation* identities, against the CPU-seconds spent training
(``time.process_time`` of this process, evaluation excluded) and the wall-clock seconds. The test
identities are never touched. One JSON file per run goes to ``--out`` (default
``runs/study/``); ``--summary`` turns all of them into a markdown page with a table and a figure.
``--sopi-steps N`` instead trains SOPI from a set-up's teacher (with ``--pretrained-teacher``: from the
shipped pretrained teacher, as the course profile does) and records its validation ME under each
occlusion kind (records in ``<out>/sopi/``).

Run one set-up per process, alone on the machine (the records in docs/course_study/ were made
this way, each with torch's default two threads on 2 cores, the machine otherwise quiet):

    .venv/bin/python benchmarks/study_course.py --setup "resnet18, no photometric" --steps 400 \
        --eval-every 100 --out docs/course_study
    .venv/bin/python benchmarks/study_course.py --setup "resnet18, no photometric" --steps 400 \
        --sopi-steps 400 --eval-every 100 --out docs/course_study
    .venv/bin/python benchmarks/study_course.py --summary --out docs/course_study \
        --figure docs/course_study/study.png > docs/course_study.md
    # MOPI with Eq. 7's FaceNet in float32 or bfloat16, from the course run's SOPI (runs/course):
    .venv/bin/python benchmarks/study_course.py --mopi-precision bfloat16 --eval-every 100 --out docs/course_study

The set-ups are :data:`SETUPS`; each is a set of profile fields and teacher settings.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from occ3d_lib.core.artifacts import write_json  # noqa: E402
from occ3d_lib.data.context import make_context  # noqa: E402
from occ3d_lib.evaluation import diagnostics  # noqa: E402
from occ3d_lib.evaluation.study import (  # noqa: E402
    FIRST_SOPI_MIX,
    data_limit_markdown,
    device_markdown,
    load_sopi_study,
    load_study,
    plot_study,
    sopi_markdown,
    study_markdown,
)
from occ3d_lib.nets.models import ReconNet  # noqa: E402
from occ3d_lib.nets.predict import predict_coeffs  # noqa: E402
from occ3d_lib.occlusion.eval_sets import load_or_build_eval_sets  # noqa: E402
from occ3d_lib.training import mopi, stages  # noqa: E402
from occ3d_lib.training.embedder import get_embedder, weights_hash  # noqa: E402

#: name -> (profile overrides, TeacherSettings overrides) on top of the course profile. Every set-up
#: keeps the coefficient-supervision term; "all RNet losses" also renders each batch for the
#: photometric and reflectance terms.
SETUPS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "resnet18, all RNet losses": ({"backbone": "resnet18", "imagenet_init": False}, {"photometric": True}),
    "resnet18, no photometric": ({"backbone": "resnet18", "imagenet_init": False}, {"photometric": False}),
    "resnet18, no photometric, shape + landmark x30": ({"backbone": "resnet18", "imagenet_init": False}, {
        "photometric": False, "shape_weight": 0.02, "landmark_scale": 30.0}),
    "regnet_y_400mf, no photometric": ({"backbone": "regnet_y_400mf", "imagenet_init": False}, {"photometric": False}),
    "resnet18, no photometric, batch 64": ({"backbone": "resnet18", "imagenet_init": False, "teacher_batch_size": 64,
                                            "teacher_lr": 2e-3}, {"photometric": False}),
    # EfficientNet-Lite0 from the ImageNet weights its package ships (the course profile's trunk)
    "efficientnet_lite0 imagenet, no photometric": ({"backbone": "efficientnet_lite0", "imagenet_init": True},
                                                    {"photometric": False}),
    "efficientnet_lite0 imagenet 96 px, no photometric": ({"backbone": "efficientnet_lite0", "imagenet_init": True,
                                                           "image_size": 96}, {"photometric": False}),
    "resnet18 96 px, no photometric": ({"backbone": "resnet18", "imagenet_init": False, "image_size": 96},
                                       {"photometric": False}),
    # where the shipped teacher's limit lies: four times the samples per step, then also four times the
    # training identities (the validation and test identities do not change: each split has its own seed)
    "efficientnet_lite0 imagenet, no photometric, batch 128": ({"backbone": "efficientnet_lite0", "imagenet_init": True,
                                                               "teacher_batch_size": 128}, {"photometric": False}),
    "efficientnet_lite0 imagenet, no photometric, batch 128, 4000 identities": (
        {"backbone": "efficientnet_lite0", "imagenet_init": True, "teacher_batch_size": 128,
         "n_train_identities": 4000}, {"photometric": False}),
}


def slug(setup: str) -> str:
    """A file-name form of a set-up's name ("resnet18, no photometric" -> "resnet18-no-photometric")."""
    return "-".join("".join(ch if ch.isalnum() or ch == "_" else " " for ch in setup.replace("+", "and")).split())


def sopi_val_errors(ctx: Any, model: torch.nn.Module, eval_sets: dict[str, Any]) -> dict[str, float]:
    """SOPI's landmark ME (px at 224) on the validation identities' fixed occluded sets, per kind, with
    the mean face at the true pose as ``baseline_<kind>`` and the histogram dissimilarity as ``hist_<kind>``."""
    baseline = diagnostics.landmark_me_by_kind({}, eval_sets, ctx.dataset.val, ctx.renderer)["baseline"]
    out = {f"baseline_{k}": v for k, v in baseline.items()}
    for kind, res in eval_sets.items():  # one forward pass per set gives both the landmarks and the render
        name = "clean" if kind == "none" else kind
        gt = ctx.dataset.val.batch([int(i) for i in res.params["indices"]])
        pred = predict_coeffs(model, res.images.float())
        out[name] = float(ctx.renderer.landmark_me(pred, gt["landmarks"]).mean())
        out[f"hist_{name}"] = diagnostics.render_hist(pred, gt["image"], ctx.renderer)
    return out


def clocked_eval(evaluate: Callable[[torch.nn.Module], dict[str, float]], eval_every: int, last: int,
                 points: list[dict[str, float]]) -> Callable[[Any, dict[str, float]], None]:
    """A Trainer callback that adds up the CPU and wall seconds spent training (evaluation excluded) and,
    every ``eval_every`` steps and at step ``last``, appends ``evaluate(model)`` with the clock to ``points``."""
    clock = {"cpu": 0.0, "wall": 0.0, "t_cpu": time.process_time(), "t_wall": time.time()}

    def callback(trainer: Any, rec: dict[str, float]) -> None:
        clock["cpu"] += time.process_time() - clock["t_cpu"]
        clock["wall"] += time.time() - clock["t_wall"]
        if trainer.step % eval_every == 0 or trainer.step == last:
            errs = evaluate(trainer.model)
            trainer.model.train()
            points.append({"step": trainer.step, "cpu_s": round(clock["cpu"], 2), "wall_s": round(clock["wall"], 2),
                           "loss": rec["loss"], **errs})
            print(json.dumps(points[-1]), flush=True)
        clock["t_cpu"], clock["t_wall"] = time.process_time(), time.time()

    return callback


def run_sopi(setup: str, teacher_steps: int, sopi_steps: int, eval_every: int, out: Path,
             pretrained: bool = False, landmark_weight: float | None = None, mix: str | None = None,
             lr: float | None = None, freeze_bn: bool | None = None, frozen_stages: int = 0) -> Path:
    """Train SOPI (the course profile's loss and mix unless told otherwise) for ``sopi_steps`` from the set-up's
    teacher of ``teacher_steps`` (or, with ``pretrained``, from the shipped pretrained teacher, as the course
    profile does) and record its validation ME under each square kind against CPU-seconds (a SOPI record).
    ``landmark_weight`` is
    :attr:`stages.SopiSettings.landmark_weight` (None: the profile's), ``mix`` a name in :data:`stages.SOPI_MIXES`
    (None: :data:`stages.SOPI_TRAINING_MIX`), ``lr`` SOPI's learning rate (None: the profile's ``sopi_lr``),
    ``freeze_bn`` :attr:`stages.SopiSettings.freeze_bn` (None: the profile's), ``frozen_stages``
    :attr:`stages.SopiSettings.frozen_stages`."""
    overrides, teacher_kw = SETUPS[setup]
    mix = stages.SOPI_TRAINING_MIX_NAME if mix is None else mix
    if mix not in stages.SOPI_MIXES:
        raise SystemExit(f"unknown SOPI mix {mix!r}; valid: {', '.join(stages.SOPI_MIXES)}")
    if lr is not None:
        overrides = {**overrides, "sopi_lr": lr}
    run_dir = out / "runs" / (slug(setup) + ("-pretrained-teacher" if pretrained else ""))
    ctx = make_context("course", run_dir=run_dir, progress=False, teacher_steps=teacher_steps,
                       sopi_steps=sopi_steps, pretrained=pretrained, **overrides)
    if pretrained:
        teacher = stages.load_pretrained_teacher(ctx)
        teacher_steps = int(teacher.shipped["steps"])
    else:
        teacher = stages.train_teacher(ctx, stages.TeacherSettings(**teacher_kw), progress=False)
    eval_sets = load_or_build_eval_sets(ctx, kinds=("none", "dsofi", "dhofi", "shofi", "random_pattern", "natural"),
                                        n=min(200, len(ctx.dataset.val)), split="val")
    points: list[dict[str, float]] = [{"step": 0, "cpu_s": 0.0, "wall_s": 0.0,
                                       **sopi_val_errors(ctx, teacher, eval_sets)}]
    print(json.dumps(points[-1]), flush=True)
    callback = clocked_eval(lambda m: sopi_val_errors(ctx, m, eval_sets), eval_every, sopi_steps, points)

    settings = stages.resolve_sopi_settings(ctx.profile, stages.SopiSettings(landmark_weight=landmark_weight,
                                                                             mix=dict(stages.SOPI_MIXES[mix]),
                                                                             freeze_bn=freeze_bn,
                                                                             frozen_stages=frozen_stages))
    stages.train_sopi(ctx, teacher, settings=settings, progress=False, callback=callback)
    result = {"stage": "sopi", "setup": setup, "teacher_steps": teacher_steps, "steps": sopi_steps,
              "landmark_weight": settings.landmark_weight, "mix": mix, "mix_weights": dict(settings.mix),
              "sopi_lr": ctx.profile.sopi_lr, "lr_set": lr is not None, "freeze_bn": settings.freeze_bn,
              "frozen_stages": settings.frozen_stages,
              "threads": torch.get_num_threads(), "profile": ctx.profile.to_dict(), "points": points}
    name = f"{slug(setup)}-teacher{teacher_steps}-sopi{sopi_steps}"
    if pretrained:
        result["teacher"] = {"pretrained": teacher.shipped["blake2b"], "commit": teacher.shipped.get("commit")}
        name = f"{slug(setup)}-pretrained-teacher-{teacher.shipped['blake2b'][:8]}-sopi{sopi_steps}"
    if settings.landmark_weight:
        name += f"-landmark-{settings.landmark_weight:g}"
    if mix != FIRST_SOPI_MIX:
        name += f"-mix-{slug(mix)}"
    if lr is not None:
        name += f"-lr-{lr:g}"
    if settings.freeze_bn:
        name += "-frozen-bn"
    if settings.frozen_stages:
        name += f"-frozen-stages-{settings.frozen_stages}"
    path = out / "sopi" / f"{name}.json"
    write_json(path, result)
    return path


def run_mopi(precision: str, eval_every: int, out: Path, sopi_run: Path) -> Path:
    """Train MOPI ("both", the course profile's schedule) from the course run's SOPI (cached in ``sopi_run``,
    trained there first if missing) and the shipped FaceNet, with Eq. 7's FaceNet in ``precision``
    (:attr:`mopi.MopiSettings.embed_precision`), and record its validation ME under each kind against
    CPU-seconds (a MOPI record). Both precisions share the label pool, data and seed."""
    sopi = stages.get_sopi(make_context("course", run_dir=sopi_run, progress=False), progress=False)
    ctx = make_context("course", run_dir=out / "runs" / "mopi", progress=False)
    embedder = get_embedder(ctx)  # the shipped FaceNet, as the course profile has it
    eval_sets = load_or_build_eval_sets(ctx, kinds=("none", "dsofi", "dhofi", "shofi", "random_pattern", "natural"),
                                        n=min(200, len(ctx.dataset.val)), split="val")
    points: list[dict[str, float]] = [{"step": 0, "cpu_s": 0.0, "wall_s": 0.0,
                                       **sopi_val_errors(ctx, sopi, eval_sets)}]
    print(json.dumps(points[-1]), flush=True)
    steps = ctx.profile.mopi_steps
    callback = clocked_eval(lambda m: sopi_val_errors(ctx, m, eval_sets), eval_every, steps, points)
    settings = mopi.MopiSettings("both", embed_precision=precision)
    mopi.train_mopi(ctx, "both", sopi=sopi, embedder=embedder, settings=settings, progress=False, callback=callback)
    result = {"stage": "mopi", "variant": "both", "embed_precision": precision, "steps": steps,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "sopi": weights_hash(sopi), "profile": ctx.profile.to_dict(), "points": points}
    path = out / "mopi" / f"both-{precision}-{torch.backends.cpu.get_cpu_capability().lower()}.json"
    write_json(path, result)
    return path


def mopi_markdown(records: list[dict[str, Any]]) -> str:
    """The MOPI records as a table: precision, CPU, CPU-seconds per step and the last point's validation ME
    per kind (step 0 is the SOPI that MOPI starts from)."""
    kinds = ("clean", "dsofi", "dhofi", "shofi", "random_pattern", "natural")
    rows = ["| Eq. 7's FaceNet | CPU | steps | CPU s / step | " + " | ".join(kinds) + " |",
            "|---|---|---|---|" + "---|" * len(kinds)]
    for first in {r["sopi"]: r["points"][0] for r in records}.values():  # one row per SOPI they start from
        rows.append("| SOPI (step 0) | | | | " + " | ".join(f"{first[k]:.2f}" for k in kinds) + " |")
    for r in records:
        last = r["points"][-1]
        rows.append(f"| {r['embed_precision']} | {r['cpu_capability']} | {last['step']} | "
                    f"{last['cpu_s'] / max(last['step'], 1):.2f} | " + " | ".join(f"{last[k]:.2f}" for k in kinds) + " |")
    return "\n".join(rows)


def run(setup: str, steps: int, eval_every: int, out: Path, device: str = "cpu") -> Path:
    """Train the teacher of ``setup`` for ``steps`` on ``device`` and record its validation errors (a teacher
    record; on a GPU the clock's CPU-seconds are the host's and ``wall_s`` is the one to read)."""
    overrides, teacher_kw = SETUPS[setup]
    run_dir = out / "runs" / slug(setup)
    ctx = make_context("course", run_dir=run_dir, progress=False, device=device, teacher_steps=steps, **overrides)
    settings = stages.TeacherSettings(**teacher_kw)
    _ = ctx.dataset  # build or load before the clock starts
    points: list[dict[str, float]] = []
    callback = clocked_eval(lambda m: diagnostics.validation_errors(ctx, m), eval_every, steps, points)

    stages.train_teacher(ctx, settings, progress=False, callback=callback)
    result = {"setup": setup, "steps": steps, "threads": torch.get_num_threads(), "profile": ctx.profile.to_dict(),
              "teacher_settings": teacher_kw, "device": device, "points": points}
    if device != "cpu":
        result["device_name"] = torch.cuda.get_device_name() if device.startswith("cuda") else device
    path = out / f"{slug(setup)}-{steps}{'' if device == 'cpu' else '-' + device.split(':')[0]}.json"
    write_json(path, result)
    return path


#: Candidates screened for speed only (``--speed``): (backbone, input px, channels_last, bf16 autocast,
#: torch.compile).
SPEED_CANDIDATES = [("resnet18", 64, False, False, False), ("resnet18", 64, True, False, False),
                    ("resnet18", 64, False, True, False), ("resnet18", 64, False, False, True),
                    ("resnet18", 96, False, False, False), ("resnet18", 128, False, False, False),
                    ("resnet34", 64, False, False, False), ("regnet_y_400mf", 64, False, False, False),
                    ("mobilenet_v3_large", 64, False, False, False), ("efficientnet_b0", 64, False, False, False),
                    ("efficientnet_lite0", 64, False, False, False), ("efficientnet_lite0", 64, True, False, False)]


def speed(batch: int = 32, reps: int = 4) -> str:
    """Median wall ms of one forward + backward + Adam step of each :data:`SPEED_CANDIDATES` trunk (257
    outputs) on a random batch: the price per step of a set-up before any accuracy is measured."""
    import statistics

    import torchvision

    rows = ["| backbone | input px | channels_last | bf16 autocast | torch.compile | ms / step | x resnet18 @ 64 |",
            "|---|---|---|---|---|---|---|"]
    base = None
    for name, size, cl, bf16, comp in SPEED_CANDIDATES:
        torch.manual_seed(0)
        x = torch.rand(batch, 3, size, size)
        if not hasattr(torchvision.models, name):  # the library's own trunk (ImageNet weights from its package)
            m = ReconNet(name, imagenet_init=True)
            m.channels_last = cl  # the network puts its input in that memory order itself
        else:
            m = getattr(torchvision.models, name)(num_classes=257)
            if cl:
                m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam(m.parameters(), 1e-4)
        fwd = torch.compile(m) if comp else m
        ts = []
        t0 = time.perf_counter()
        for i in range(reps + 2):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = fwd(x)
            opt.zero_grad()
            y.float().square().mean().backward()
            opt.step()
            if i > 1:  # the first two steps warm up (and compile)
                ts.append(time.perf_counter() - t)
        warm = time.perf_counter() - t0 - sum(ts)
        ms = 1000 * statistics.median(ts)
        base = base or ms
        yes = {True: "yes", False: "no"}
        compiled = f"yes ({warm:.0f} s to compile)" if comp else "no"
        rows.append(f"| {name} | {size} | {yes[cl]} | {yes[bf16]} | {compiled} | {ms:.0f} | {ms / base:.2f} |")
    cap = torch.backends.cpu.get_cpu_capability()
    return "\n".join(rows) + f"\n\nbatch {batch}, {torch.get_num_threads()} threads, CPU capability {cap}"


def summary(out: Path, figure: Path | None = None) -> str:
    """The records in ``out`` as a markdown page: the teacher table, the SOPI table when there are SOPI
    records, and the figure (saved to ``figure`` when given, linked relative to ``out``'s parent)."""
    records = load_study(out)
    text = ["# The course study: learning per CPU-second", "",
            "Written by `benchmarks/study_course.py --summary` from the records in "
            f"`{out.as_posix()}/` (one JSON file per run). Validation identities only; landmark ME in pixels at",
            "224, dense 3D error in mm over all vertices of the unposed shape; `x mean face` divides by the",
            "mean face placed at the true pose. CPU-minutes are the training process's CPU time (two threads",
            "on 2 cores), evaluation excluded.", "", "## The teacher", "", study_markdown(records), ""]
    if figure is not None:
        import matplotlib
        matplotlib.use("Agg")
        plot_study(records).savefig(figure, dpi=110, bbox_inches="tight")
        text += [f"![validation error against CPU-minutes]({figure.relative_to(out.parent).as_posix()})", ""]
    if (out / "speed.md").is_file():
        text += ["## Price per step of other trunks and settings (speed only)", "",
                 "`study_course.py --speed > " + (out / "speed.md").as_posix() + "`: one forward + backward + Adam step",
                 "on random data, before any accuracy is measured.", "", (out / "speed.md").read_text().strip(), ""]
    if (out / "gpu").is_dir():
        gpu = load_study(out / "gpu")
        text += ["## Where the shipped teacher stops (GPU runs)", "",
                 "The shipped teacher's 8000-step schedule on one GPU (`--device cuda`, bf16 autocast, four set-ups at",
                 "once), records in `" + (out / "gpu").as_posix() + "/`; wall-clock minutes, not CPU-minutes.", "",
                 device_markdown(gpu), "", data_limit_markdown(gpu), ""]
    if (out / "sopi").is_dir():
        text += ["## SOPI from the chosen teacher", "",
                 "Validation ME under each occlusion kind (ratio to the clean ME in brackets); step 0 is the",
                 "teacher SOPI starts from. Each SOPI row names its loss: Eq. 6 alone, or with RNet's landmark term",
                 "against the teacher's landmarks at the weight shown (`stages.SopiSettings.landmark_weight`), then",
                 f"what else the run changed: its training mix (`stages.SOPI_MIXES`; unnamed: \"{FIRST_SOPI_MIX}\"),",
                 "frozen BatchNorm statistics (`stages.SopiSettings.freeze_bn`), the trunk's first stages kept",
                 "fixed (`stages.SopiSettings.frozen_stages`), a learning rate other than the profile's. The runs",
                 "from the shipped teacher share data and seed; compare them at equal CPU-minutes.", "",
                 sopi_markdown(load_sopi_study(out)), ""]
    if (out / "mopi").is_dir():
        records = [json.loads(f.read_text()) for f in sorted((out / "mopi").glob("*.json"))]
        text += ["## MOPI: Eq. 7's FaceNet in float32 or bfloat16", "",
                 "`study_course.py --mopi-precision P`: MOPI (\"both\", the course schedule) from the course run's",
                 "SOPI with the shipped FaceNet run in precision P inside the training step (the label choice stays",
                 "float32); the same label pool, data and seed. Validation ME in pixels at 224 after the last step;",
                 "CPU-seconds per step of the training process, evaluation excluded.", "",
                 mopi_markdown(records), ""]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", default="current")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="teacher study only: cpu, or cuda where a GPU is lent")
    ap.add_argument("--sopi-steps", type=int, default=0,
                    help="instead of the teacher study: train SOPI this long from the set-up's teacher of --steps")
    ap.add_argument("--sopi-landmark-weight", type=float, default=None,
                    help="with --sopi-steps: weight of SOPI's landmark term (0: Eq. 6 alone; default: the profile's)")
    ap.add_argument("--sopi-mix", default=None, choices=sorted(stages.SOPI_MIXES),
                    help="with --sopi-steps: the training occluder mix (stages.SOPI_MIXES; default: the profile's)")
    ap.add_argument("--sopi-lr", type=float, default=None,
                    help="with --sopi-steps: SOPI's learning rate (default: the profile's)")
    ap.add_argument("--sopi-bn", choices=("frozen", "trained"), default=None,
                    help="with --sopi-steps: SOPI's BatchNorm layers kept in eval mode or trained "
                         "(SopiSettings.freeze_bn; default: the profile's)")
    ap.add_argument("--sopi-frozen-stages", type=int, default=0,
                    help="with --sopi-steps: keep the trunk's first N stages (stem, then blocks) fixed "
                         "(SopiSettings.frozen_stages; default 0)")
    ap.add_argument("--mopi-precision", choices=("float32", "bfloat16"), default=None,
                    help="instead of the teacher study: train MOPI from the course run's SOPI (--sopi-run) with "
                         "Eq. 7's FaceNet in this precision")
    ap.add_argument("--sopi-run", type=Path, default=Path("runs/course"),
                    help="with --mopi-precision: the run folder whose cached SOPI MOPI starts from")
    ap.add_argument("--pretrained-teacher", action="store_true",
                    help="with --sopi-steps: start from the shipped pretrained teacher (the course profile's)")
    ap.add_argument("--out", type=Path, default=Path("runs/study"))
    ap.add_argument("--summary", action="store_true", help="print the table of the records in --out")
    ap.add_argument("--speed", action="store_true", help="time one training step of each candidate trunk")
    ap.add_argument("--figure", type=Path, default=None, help="with --summary: also save the figure here")
    a = ap.parse_args(argv)
    if a.speed:
        print(speed())
        return
    if a.summary:
        print(summary(a.out, a.figure))
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.mopi_precision:  # needs no set-up: MOPI starts from the course run's SOPI
        print(run_mopi(a.mopi_precision, a.eval_every, a.out, a.sopi_run))
        return
    if a.setup not in SETUPS:
        raise SystemExit(f"unknown set-up {a.setup!r}; valid: {', '.join(SETUPS)}")
    if a.sopi_steps:
        print(run_sopi(a.setup, a.steps, a.sopi_steps, a.eval_every, a.out, a.pretrained_teacher, a.sopi_landmark_weight,
                       a.sopi_mix, a.sopi_lr,
                       None if a.sopi_bn is None else a.sopi_bn == "frozen", a.sopi_frozen_stages))
    else:
        print(run(a.setup, a.steps, a.eval_every, a.out, a.device))


if __name__ == "__main__":
    main()
