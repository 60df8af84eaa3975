"""The training command (python -m occ3d_lib.train_cli): the notebooks reuse what it trains; bad launches are one line."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from occ3d_lib.core.artifacts import REPO_ROOT
from occ3d_lib.data.context import make_context
from occ3d_lib.train_cli import main
from occ3d_lib.training import distributed, stages

#: a run that trains its own teacher (not the shipped one), two steps per stage
SMALL = {"teacher_steps": 2, "sopi_steps": 2, "pretrained": False}


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("occ3d train: error: ")
    return lines[0]


def test_notebook_finds_and_loads_what_the_command_trained(tmp_path, monkeypatch, capsys):
    argv = ["sopi", "--profile", "smoke", "--device", "cpu", "--no-progress", "-p", f"run_dir={tmp_path}"]
    argv += [a for k, v in SMALL.items() for a in ("-p", f"{k}={v}")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "occ3d train: sopi done" in out
    finals = sorted(tmp_path.glob("checkpoints/*/final.pt"))
    assert [p.parent.name.split("-")[0] for p in finals] == ["sopi", "teacher"]
    assert all((p.parent / "history.json").is_file() and (p.parent / "checkpoint.pt").is_file() for p in finals)
    assert distributed.current().world_size == 1  # the command leaves no process group behind

    def must_not_train(*a, **k):
        def step(model, batch):
            raise AssertionError("the notebook retrained a stage the command had trained")
        return step

    monkeypatch.setattr(stages, "teacher_step_fn", must_not_train)
    monkeypatch.setattr(stages, "sopi_step_fn", must_not_train)
    # what notebook 03's setup and sections 2 and 5 call, with the same parameters
    ctx = make_context("smoke", tmp_path, face_model="procedural", dataset="synthetic", teacher="train",
                       facenet="synthetic", seed=0, progress=False, **SMALL)
    teacher = stages.get_teacher(ctx, stages.TeacherSettings(coeff_weight=1.0))
    sopi = stages.get_sopi(ctx, stages.SopiSettings(loss="se"), teacher=teacher)
    for model, name in ((teacher, "teacher"), (sopi, "sopi")):
        saved = torch.load(next(p for p in finals if p.parent.name.startswith(name)), weights_only=False)
        assert model.out_dir == next(p for p in finals if p.parent.name.startswith(name)).parent
        for k, v in model.state_dict().items():
            assert torch.equal(v, saved["model"][k]), (name, k)
        assert stages.stage_history(model) == saved["history"]


def test_sopi_from_the_shipped_teacher_trains_only_sopi(tmp_path, capsys):
    argv = ["sopi", "--profile", "smoke", "--device", "cpu", "--no-progress", "-p", f"run_dir={tmp_path}",
            "-p", "sopi_steps=2"]
    assert main(argv) == 0
    assert "occ3d train: sopi done" in capsys.readouterr().out
    assert [p.parent.name.split("-")[0] for p in tmp_path.glob("checkpoints/*/final.pt")] == ["sopi"]
    labels = list(tmp_path.glob("checkpoints/teacher-pretrained-*/labels-train.pt"))
    assert len(labels) == 1  # the shipped teacher's labels are cached in a folder named after its file's hash


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: stage"),
    (["sopii"], "invalid choice: 'sopii'"),
    (["sopi", "--profile", "huge"], "unknown profile 'huge'; valid profiles: smoke, course, paper"),
    (["sopi", "-p", "sopi_stepz=3"], "unknown parameter(s) ['sopi_stepz']"),
    (["sopi", "--profile", "smoke", "-p", "sopi_steps=0"], "sopi_steps must be > 0"),
])
def test_bad_launch_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    assert message in _error_line(capsys)


def test_world_size_that_does_not_divide_a_batch_is_one_line(monkeypatch, capsys):
    # what torchrun --nproc_per_node=3 sets; checked before any process group is started
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(["sopi", "--profile", "smoke", "--device", "cpu"]) == 2
    line = _error_line(capsys)
    assert "teacher_batch_size 16 is not divisible by the world size 3" in line
    assert "-p teacher_batch_size=<a multiple of 3>" in line
    monkeypatch.setenv("RANK", "1")  # only rank 0 prints
    assert main(["sopi", "--profile", "smoke", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == ""
    assert not torch.distributed.is_initialized()


def test_module_entry_point_runs_the_command():
    r = subprocess.run([sys.executable, "-m", "occ3d_lib.train_cli", "teacher", "--profile", "nope"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == "occ3d train: error: unknown profile 'nope'; valid profiles: smoke, course, paper"


def test_gpu_check_skips_cleanly_without_cuda(monkeypatch, capsys):
    path = Path(REPO_ROOT, "benchmarks", "bench_gpu.py")
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.syspath_prepend(str(path.parent))
    spec.loader.exec_module(mod)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mod.main([]) == 0
    assert capsys.readouterr().out.strip() == "bench_gpu: skipped: no CUDA device here"
    # the comparison itself, run CPU against CPU: identical renders
    ctx = make_context("smoke", progress=False)
    coeffs = ctx.dataset.train.batch([0, 1])["coeffs"]
    same = mod.rasteriser_agreement(ctx.face_model, coeffs, ctx.profile.image_size, device="cpu")
    assert same == {"image_max_abs_diff_inside_both_masks": 0.0, "mask_disagreement_fraction": 0.0,
                    "landmark_max_diff_px": 0.0}


def test_sync_bn_on_cpu_is_one_line(monkeypatch, capsys):
    for k, v in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    assert main(["teacher", "--profile", "smoke", "--device", "cpu", "--sync-bn"]) == 2
    assert "--sync-bn needs CUDA devices" in _error_line(capsys)


def test_rasteriser_stays_float32_under_bf16_autocast():
    # the Trainer runs each step under bf16 autocast on CUDA; CPU autocast exercises the same rule here
    from occ3d_lib.render.renderer import FaceRenderer
    from occ3d_lib.training import mopi

    ctx = make_context("smoke", progress=False, device="cpu")
    seen = []

    class Spy(FaceRenderer):
        def __call__(self, coeffs, background=None):
            seen.append((coeffs.dtype, torch.is_autocast_enabled("cpu")))
            return super().__call__(coeffs, background)

    renderer = Spy(ctx.face_model, ctx.profile.image_size)
    net = stages.make_reconnet(ctx.profile)
    batch = ctx.dataset.train.batch([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(batch["image"]).dtype == torch.bfloat16  # the network does run in bf16
        terms = stages.teacher_step_fn(renderer, stages.TeacherSettings(photometric=True))(net, batch)
        emb = mopi.render_embed(renderer, lambda x: x.flatten(1), torch.zeros(2, 257, dtype=torch.bfloat16))
    assert seen == [(torch.float32, False), (torch.float32, False)]
    assert terms["loss"].dtype == torch.float32 and torch.isfinite(terms["loss"])
    assert emb.dtype == torch.float32
