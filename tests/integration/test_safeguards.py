"""Limits a user can hit, each caught with one line that names the thing and says what to do.

Photos over the pixel budget, FIFOs and transparency; every notebook parameter checked before any
notebook starts (and the same lines from ``train_cli``); a full disk, a read-only cache and a killed
kernel; ``summary.json`` never silently reset; empty batches and bad backgrounds.
"""
import asyncio
import errno
import json
import os
import re
import struct
import tempfile
import warnings
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from occ3d_lib import pipeline, train_cli
from occ3d_lib.core import artifacts
from occ3d_lib.data.real import MAX_PIXELS, PhotoFolder, SkipImage, load_rgb
from tools.nbbuild import code, params, save

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def one_line(msg: str) -> str:
    assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
    return msg


# ------------------------------------------------------------------ photos
def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width`` x ``height`` but whose pixel data stops after 100 bytes: opening it
    reads the header; decoding it would fail as a truncated image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


def test_a_photo_over_the_pixel_budget_is_skipped_from_its_header(tmp_path):
    from PIL import Image

    huge = png_header_only(tmp_path / "b_huge.png", 12000, 12000)
    assert huge.stat().st_size < 200 and MAX_PIXELS == 40_000_000
    with pytest.raises(SkipImage) as e:
        load_rgb(huge)
    # 'too large', not 'corrupt image': the size was read from the header and the truncated pixels never decoded
    assert str(e.value) == (f"too large: {huge} is 12000 x 12000 = 144.0 megapixels, over the budget of 40 "
                            "megapixels; downscale it, or raise max_pixels")
    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "a_small.png")
    assert load_rgb(tmp_path / "a_small.png", max_pixels=400).shape == (20, 20, 3)
    with pytest.raises(SkipImage, match=r"^too large: .*a_small.png is 20 x 20 = 0.0 megapixels, over the budget"):
        load_rgb(tmp_path / "a_small.png", max_pixels=399)
    batch = PhotoFolder(tmp_path, size=32, detector=lambda img: np.array(
        [[6, 7], [13, 7], [10, 10], [7, 14], [13, 14]], np.float64)).collect()
    assert batch.names == ["a_small.png"] and [n for n, _ in batch.skipped] == ["b_huge.png"]
    assert batch.report() == "loaded 1 of 2 images, skipped 1: 1 too large"
    with pytest.raises(ValueError, match="max_pixels must be a positive int"):
        PhotoFolder(tmp_path, max_pixels=0)


def test_a_fifo_with_an_image_name_is_not_a_regular_file_and_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it would wait for a writer forever
    with pytest.raises(SkipImage) as e:
        load_rgb(tmp_path / "pipe.jpg")
    assert str(e.value) == f"missing file: {tmp_path / 'pipe.jpg'} is a FIFO (named pipe), not a regular file"
    batch = PhotoFolder(tmp_path, size=32, detector=lambda img: None).collect()
    assert batch.skipped == [("pipe.jpg", str(e.value))]
    with pytest.raises(FileNotFoundError, match="image not found"):
        load_rgb(tmp_path / "absent.jpg")


def test_transparent_pixels_are_composited_over_white_and_said(tmp_path):
    from PIL import Image

    from occ3d_lib.data.align import as_pil_rgb

    a = np.zeros((16, 16, 4), np.uint8)
    a[..., 0] = 200
    a[:8, :, 3] = 255  # top half opaque red, bottom half red at alpha 128
    a[8:, :, 3] = 128
    path = tmp_path / "logo.png"
    Image.fromarray(a, "RGBA").save(path)
    with pytest.warns(UserWarning, match=rf"^{re.escape(str(path))} has transparent pixels \(50 % not opaque\): "
                                         r"composited over white \(255, 255, 255\)"):
        rgb = load_rgb(path)
    # 200 * 128/255 + 255 * 127/255 = 227.4 -> 227 (red); 0 + 255 * 127/255 = 127 (green, blue)
    assert rgb[0, 0].tolist() == [200, 0, 0] and rgb[12, 0].tolist() == [227, 127, 127]
    with pytest.warns(UserWarning, match="^the image has transparent pixels"):
        assert np.asarray(as_pil_rgb(a))[12, 0].tolist() == [227, 127, 127]
    a[..., 3] = 255
    Image.fromarray(a, "RGBA").save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # opaque everywhere: nothing to say
        assert load_rgb(path)[12, 0].tolist() == [200, 0, 0]


# ------------------------------------------------------------------ parameters, before any notebook starts
#: A bad value of every parameter of every notebook, and what the one-line refusal says.
BAD_VALUES = {
    "profile": ("profile=course", "the profile is chosen with --profile"),
    "run_dir": ("run_dir=/proc/occ3d-nope", "parameter run_dir=/proc/occ3d-nope: cannot create or write in the "
                                            "folder /proc/occ3d-nope"),
    "face_model": ("face_model=/etc/passwd", "parameter face_model=/etc/passwd: /etc/passwd: cannot read as a MATLAB "
                                             ".mat file"),
    "dataset": ("dataset=garbage", "parameter dataset=garbage: dataset must be 'synthetic' or one of"),
    "teacher": ("teacher=/nonexistent/epoch_20.pth", "parameter teacher=/nonexistent/epoch_20.pth: teacher "
                                                      "checkpoint not found at /nonexistent/epoch_20.pth"),
    "facenet": ("facenet=vggface", "parameter facenet=vggface: facenet must be one of ('synthetic', 'vggface2'"),
    "seed": ("seed=-1", "seed must be in [0, 2**32)"),
    "coeff_weight": ("coeff_weight=-1", "parameter coeff_weight=-1.0: TeacherSettings.coeff_weight must be a "
                                        "finite number >= 0"),
    "run_l1_ablation": ("run_l1_ablation=maybe", "run_l1_ablation=maybe is not true/false or none"),
    "run_kl_ablation": ("run_kl_ablation=maybe", "run_kl_ablation=maybe is not true/false or none"),
    "run_ablations": ("run_ablations=perhaps", "run_ablations=perhaps is not true/false"),
    "run_oracle": ("run_oracle=2", "run_oracle=2 is not true/false or none"),
    "real_data": ("real_data=synthetic", "parameter real_data=synthetic: real_data is a real dataset spec"),
    "pretrained": ("pretrained=maybe", "pretrained=maybe is not true/false or none"),
    "train_facenet": ("train_facenet=2", "train_facenet=2 is not true/false or none"),
}


def test_every_parameter_of_every_notebook_has_a_bad_value_checked_here():
    declared = set().union(*(pipeline.notebook_parameters(p) for p in pipeline.discover_notebooks(NOTEBOOKS)))
    assert declared == set(BAD_VALUES)


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_bad_value_of_any_parameter_stops_before_any_notebook_starts(tmp_path, capsys, name):
    item, message = BAD_VALUES[name]
    rc = pipeline.main(["--profile", "smoke", "-p", item, "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == pipeline.EXIT_USAGE, out
    assert out.startswith("occ3d pipeline: error: ") and message in one_line(out), out
    assert not (tmp_path / "runs").exists()


def test_run_dir_is_a_folder_name_taken_from_where_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = pipeline.plan(NOTEBOOKS, "smoke", only=["00"], overrides={"run_dir": "5"})
    assert steps[0][1]["run_dir"] == str(tmp_path / "5") and (tmp_path / "5").is_dir()
    assert pipeline.declared_parameters(NOTEBOOKS / "00_introduction.ipynb")["run_dir"].describe() == "a string or none"


@pytest.mark.parametrize("item", ["coeff_weight=-1", "teacher=/nonexistent/epoch_20.pth", "facenet=vggface",
                                  "face_model=/nonexistent/BFM_model_front.mat", "run_dir=/proc/occ3d-nope",
                                  "dataset=garbage", "seed=abc"])
def test_train_cli_refuses_the_same_values_with_the_same_line(tmp_path, capsys, item):
    assert pipeline.main(["--profile", "smoke", "-p", item, "--runs-dir", str(tmp_path / "runs")]) == 2
    pipeline_line = capsys.readouterr().out.strip()
    assert train_cli.main(["teacher", "--profile", "smoke", "--device", "cpu", "-p", item]) == train_cli.EXIT_USAGE
    cli_line = capsys.readouterr().err.strip()
    assert one_line(cli_line).startswith("occ3d train: error: parameter ")
    # the same words; the pipeline may name the notebook whose parameters cell types the value first
    assert pipeline_line.endswith(cli_line.removeprefix("occ3d train: error: "))


def test_train_cli_types_profile_fields_and_checks_the_device(monkeypatch, capsys):
    ctx_kw, stage_kw, prof_kw = train_cli.split_params(["imagenet_init=true", "sopi_lr=1e-3", "run_dir=5",
                                                        "coeff_weight=2"])
    assert prof_kw == {"imagenet_init": True, "sopi_lr": 0.001} and ctx_kw == {"run_dir": "5"}
    assert stage_kw == {"coeff_weight": 2.0} and isinstance(stage_kw["coeff_weight"], float)
    with pytest.raises(train_cli.UsageError, match="parameter imagenet_init=maybe is not true/false"):
        train_cli.split_params(["imagenet_init=maybe"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train_cli.main(["data", "--profile", "smoke", "--device", "cuda"]) == 2
    assert one_line(capsys.readouterr().err).startswith(
        "occ3d train: error: device 'cuda': CUDA is not available here")
    assert train_cli.main(["data", "--profile", "smoke", "--device", "gpu"]) == 2
    assert "device 'gpu' is not a torch device; use cpu, cuda, cuda:N or mps" in capsys.readouterr().err


def test_help_shows_the_runs_folder_option(capsys):
    with pytest.raises(SystemExit):
        pipeline.main(["--help"])
    assert "--runs-dir FOLDER" in capsys.readouterr().out


# ------------------------------------------------------------------ summary.json
def test_an_unreadable_summary_is_moved_aside_and_said_never_reset(tmp_path):
    path = tmp_path / "summary.json"
    cut = '{"profile": "smoke", "notebooks": {"01_a": {"status": "ok", "seconds": 3'
    path.write_text(cut)
    said = []
    data = pipeline.update_summary(path, "smoke", "02_b", {"status": "ok"}, log=said.append)
    assert data["notebooks"] == {"02_b": {"status": "ok"}}
    (aside,) = tmp_path.glob("summary.json.damaged-*")
    assert aside.read_text() == cut  # the old entries are kept there
    assert len(said) == 1 and one_line(said[0]).startswith(f"occ3d pipeline: {path} was unreadable (JSONDecodeError")
    assert f"moved it to {aside}" in said[0]
    path.write_text(json.dumps({"profile": "smoke", "notebooks": ["not", "a", "mapping"]}))
    pipeline.update_summary(path, "smoke", "03_c", {"status": "ok"}, log=said.append)
    assert "'notebooks' is a list, not an object" in said[1] and len(list(tmp_path.glob("summary.json.damaged-*"))) >= 1


def test_a_summary_json_that_is_a_folder_stops_before_anything_runs(tmp_path, capsys):
    (tmp_path / "runs" / "smoke" / "summary.json").mkdir(parents=True)
    rc = pipeline.main(["--profile", "smoke", "--only", "00", "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == pipeline.EXIT_USAGE
    assert one_line(out).strip() == (f"occ3d pipeline: error: {tmp_path / 'runs' / 'smoke' / 'summary.json'} is a "
                                     "folder, where the run summary (a JSON file) goes; move it away (e.g. mv "
                                     f"{tmp_path / 'runs' / 'smoke' / 'summary.json'} "
                                     f"{tmp_path / 'runs' / 'smoke' / 'summary.json'}.old) and run again")
    assert not list((tmp_path / "runs" / "smoke").glob("*.ipynb"))


# ------------------------------------------------------------------ a full disk, a killed kernel, a read-only cache
@pytest.fixture()
def one_notebook(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    save(nbdir / "01_a.ipynb", [params("x = 1"), code("print(x)")])
    return nbdir


def _run(nbdir, tmp_path):
    return pipeline.main(["--profile", "smoke", "--notebooks-dir", str(nbdir), "--runs-dir", str(tmp_path / "runs")])


def test_a_full_disk_while_saving_a_notebook_is_one_line_and_leaves_no_invalid_copy(one_notebook, tmp_path,
                                                                                     monkeypatch, capsys):
    import papermill

    def full(input_path, output_path, **kw):
        Path(output_path).write_text('{"cells": [{"cell_type": "co')  # cut short where the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(papermill, "execute_notebook", full)
    assert _run(one_notebook, tmp_path) == pipeline.EXIT_FAILED
    out = capsys.readouterr().out.splitlines()
    run = tmp_path / "runs" / "smoke"
    assert out[1].startswith(f"occ3d pipeline: FAILED in notebook 01_a: disk full while writing "
                             f"{run / '.01_a.partial.ipynb'} (")
    assert out[1].endswith("MiB free); free some space or point OCC3D_CACHE / the run folder at a larger disk, "
                           "then run again")
    assert out[2] == ("occ3d pipeline: no executed copy of it was kept (the run stopped before papermill saved a "
                      "valid one)")
    assert sorted(p.name for p in run.iterdir()) == ["summary.json", "summary.json.lock"]  # no invalid notebook
    entry = json.loads((run / "summary.json").read_text())["notebooks"]["01_a"]
    assert entry["status"] == "failed" and entry["error"].startswith("disk full while writing")


def test_a_killed_kernel_is_said_as_such_not_as_an_unwritable_folder(one_notebook, tmp_path, monkeypatch, capsys):
    import papermill
    from nbclient.exceptions import DeadKernelError

    def killed(input_path, output_path, **kw):
        raise DeadKernelError("Kernel died")

    monkeypatch.setattr(papermill, "execute_notebook", killed)
    assert _run(one_notebook, tmp_path) == pipeline.EXIT_FAILED
    out = capsys.readouterr().out.splitlines()
    assert out[1] == ("occ3d pipeline: FAILED in notebook 01_a: its kernel died (killed by a signal, or out of "
                      "memory) while a cell ran; run it again (finished stages are reused), with more memory if it "
                      "was killed for lack of it")
    assert "writ" not in out[2] or "no executed copy of it was kept" in out[2]
    # where the folder really cannot be written in, that is what is said
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the runs folder should be")
    lines = pipeline.failure_lines("01_a", DeadKernelError("Kernel died"), None, blocked / ".p.ipynb", blocked)
    assert lines[1].startswith(f"occ3d pipeline: no executed copy of it could be written: cannot write in the runs "
                               f"folder {blocked}")


def test_numpy_short_write_on_a_full_disk_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    def short_write(*a, **k):  # what ndarray.tofile raises when the disk fills
        raise OSError("262144 requested and 4096 written")

    monkeypatch.setattr(np, "save", short_write)
    with pytest.raises(OSError) as e, artifacts.atomic_dir(tmp_path / "dataset", manifest=True) as d:
        np.save(d / "images.npy", np.zeros(3))
    assert e.value.errno == errno.ENOSPC
    assert f"disk full while writing {tmp_path / 'dataset'} (" in one_line(str(e.value))
    assert list(tmp_path.iterdir()) == []  # no half-written folder left


def test_a_read_only_cache_names_the_damaged_file_and_what_to_do(tmp_path, monkeypatch):
    path = artifacts.torch_save(torch.ones(300), tmp_path / "labels-train.pt")
    path.write_bytes(path.read_bytes()[:100])

    def read_only(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(PermissionError) as e:
        artifacts.load_or_build(path, artifacts.torch_load, lambda: torch.zeros(3), artifacts.torch_save,
                                "teacher labels")
    msg = one_line(str(e.value))
    assert f"teacher labels {path} must be rebuilt (100 bytes, the manifest says " in msg
    assert msg.endswith("but cannot be deleted (Read-only file system): the cache is read-only; delete it by hand "
                        "or set OCC3D_CACHE to a writable folder")
    assert "manifest.json" not in msg

    def no_temp(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", no_temp)
    with pytest.raises(PermissionError) as e:
        artifacts.torch_save(torch.ones(1), tmp_path / "x.pt")
    assert one_line(str(e.value)).endswith(f"cannot write x.pt in {tmp_path} (Read-only file system); choose a "
                                           "writable location (set OCC3D_CACHE for caches, or another run folder) "
                                           "or fix its permissions")


# ------------------------------------------------------------------ the kernel's shutdown
def _signals_at_shutdown(cls) -> list:
    km = cls(kernel_name="python3")
    sent = []

    async def signal_kernel(sig):
        sent.append(sig)

    async def nothing(*a, **k):
        return None

    km._async_signal_kernel = signal_kernel
    km._async_request_shutdown = km._async_finish_shutdown = km._async_cleanup_resources = nothing
    km.provisioner = mock.Mock(has_process=True)  # a running kernel
    asyncio.run(km.shutdown_kernel())
    return sent


def test_make_run_shuts_kernels_down_without_the_interrupt_that_makes_them_log_keyboardinterrupt():
    import signal

    from jupyter_client.manager import AsyncKernelManager

    assert _signals_at_shutdown(AsyncKernelManager) == [signal.SIGINT]  # what made the stray log line
    assert _signals_at_shutdown(pipeline.QuietShutdownKernelManager) == []
    config = pipeline.papermill_config()
    assert config.NotebookClient.kernel_manager_class is pipeline.QuietShutdownKernelManager
    assert config.KernelManager.transport_encryption == "auto"


# ------------------------------------------------------------------ empty batches, backgrounds
def test_empty_batches_and_empty_sets_are_one_line(tiny_model):
    from occ3d_lib.evaluation.evaluate import evaluate
    from occ3d_lib.evaluation.sets import EvalSet
    from occ3d_lib.render.renderer import FaceRenderer

    r = FaceRenderer(tiny_model(n_id=80, n_exp=64, n_tex=80), 16)
    with pytest.raises(ValueError, match=r"^coeffs is an empty batch \(0, 257\): there is nothing to render"):
        r.geometry(torch.zeros(0, 257))
    empty = EvalSet("none", torch.zeros(0, 3, 16, 16), torch.zeros(0, 68, 2))
    with pytest.raises(ValueError) as e:
        evaluate({"m": lambda x: torch.zeros(len(x), 257)}, {"none": empty}, r)
    assert one_line(str(e.value)).startswith("evaluation set(s) ['none'] hold no images: nothing to evaluate")


@pytest.mark.parametrize("fill, exc, message", [
    (float("nan"), ValueError, r"background holds NaN or inf values; the renderer takes finite RGB in \[0, 1\]"),
    (128.0, ValueError, r"background holds values in \[128, 128\]; the renderer takes RGB in \[0, 1\] \(they look "
                        r"like 0-255 values: divide by 255\)"),
    (-0.5, ValueError, r"background holds values in \[-0.5, -0.5\]; the renderer takes RGB in \[0, 1\]$"),
])
def test_a_nan_or_0_255_background_is_refused(tiny_model, fill, exc, message):
    from occ3d_lib.render.renderer import FaceRenderer

    r = FaceRenderer(tiny_model(n_id=80, n_exp=64, n_tex=80), 16)
    with pytest.raises(exc, match=message) as e:
        r(torch.zeros(1, 257), torch.full((1, 3, 16, 16), fill))
    one_line(str(e.value))
    with pytest.raises(TypeError, match=r"background is torch.uint8; .* pass background.float\(\) / 255"):
        r(torch.zeros(1, 257), torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    assert r(torch.zeros(1, 257), torch.full((1, 3, 16, 16), 1.005)).image.isfinite().all()  # resampling slack


def test_an_optional_profile_parameter_left_to_the_profile_is_accepted():
    steps = pipeline.plan(NOTEBOOKS, "smoke", only=["03"], overrides={"pretrained": "none"})
    assert steps[0][1]["pretrained"] is None  # none: the profile's own value, not a bad profile field


#: The words of each line introduced for the limits above, as docs/what_can_go_wrong.md must quote them.
DOCUMENTED = ["is refused (it holds Python objects other than tensors and plain values", "was built for something else",
              "copied or renamed from another cache entry", "but cannot be deleted (Read-only file system): the cache is "
              "read-only", "choose a writable location (set OCC3D_CACHE for caches, or another run folder)",
              "too large: ", "over the budget of 40 megapixels", "is a FIFO (named pipe), not a regular file",
              "has transparent pixels", "cannot create or write in the folder", "dataset must be 'synthetic' or one of",
              "facenet must be one of", "real_data is a real dataset spec", "CUDA is not available here",
              "is not a torch device", "its kernel died (killed by a signal, or out of memory)",
              "no executed copy of it was kept", "no executed copy of it could be written",
              "is a folder, where the run summary (a JSON file) goes", "was unreadable (JSONDecodeError",
              "could not be updated", "background holds NaN or inf values", "background is torch.uint8",
              "(they look like 0-255 values: divide by 255)", "hold no images: nothing to evaluate", "--runs-dir"]


def test_what_can_go_wrong_lists_every_new_line():
    text = (ROOT / "docs" / "what_can_go_wrong.md").read_text()
    missing = [m for m in DOCUMENTED if m not in text]
    assert not missing, f"docs/what_can_go_wrong.md does not list {missing}"
