"""Bad inputs a careless operator produces: each gives one line that names the thing and says what to do.

Seed determinism of network initialisation, damaged caches (detected, named, rebuilt), typed
notebook parameters, the runs folder, odd photos, the networks' input contract, leftovers,
permissions and a full disk.
"""
import errno
import json
import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from occ3d_lib import pipeline
from occ3d_lib.core import artifacts
from occ3d_lib.core.artifacts import DamagedArtifact
from occ3d_lib.core.config import get_profile
from occ3d_lib.core.params import Declared, ParameterError, coerce
from occ3d_lib.data import synthetic as datasets
from occ3d_lib.data.context import Context
from occ3d_lib.nets import checkpoints
from occ3d_lib.nets.models import MultiOcclusionNet, ReconNet, seeded
from occ3d_lib.training import stages

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def one_line(msg: str) -> str:
    assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
    return msg


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ------------------------------------------------------------------ 1. same seed, same weights
def small_ctx(tiny_model, tmp_path, monkeypatch, seed=0, name="run"):
    monkeypatch.setenv("OCC3D_CACHE", str(tmp_path / "cache"))
    p = get_profile("smoke").replace(image_size=32, n_train_identities=4, n_val_identities=1, n_test_identities=1,
                                     views_per_identity=2, teacher_steps=3, teacher_batch_size=4,
                                     checkpoint_every=2, log_every=1, seed=seed)
    ctx = Context(profile=p, run_dir=tmp_path / name, progress=False)
    m = tiny_model(n_id=80, n_exp=64, n_tex=80)
    m.mean_shape = (m.mean_shape - 0.5) * 1.5
    m.id_base, m.exp_base = m.id_base * 0.005, m.exp_base * 0.005
    ctx.__dict__["face_model"] = m
    return ctx


def weights(model):
    return [v.detach().clone() for v in model.state_dict().values()]


def test_same_seed_same_teacher_weights_different_seed_different(tiny_model, tmp_path, monkeypatch):
    # the global generator is left in a different state before each run: nothing may depend on it
    torch.manual_seed(1234)
    a = weights(stages.train_teacher(small_ctx(tiny_model, tmp_path, monkeypatch, 0, "a")))
    torch.rand(100)
    b = weights(stages.train_teacher(small_ctx(tiny_model, tmp_path, monkeypatch, 0, "b")))
    c = weights(stages.train_teacher(small_ctx(tiny_model, tmp_path, monkeypatch, 5, "c")))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_network_construction_is_seeded_and_leaves_the_global_generator_alone():
    p = get_profile("smoke").replace(imagenet_init=False)  # a random trunk (ImageNet weights are the same for any seed)
    state = torch.get_rng_state()
    n1, n2, n3 = stages.make_reconnet(p, seed=3), stages.make_reconnet(p, seed=3), stages.make_reconnet(p, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    w1, w2, w3 = (next(n.backbone.parameters()) for n in (n1, n2, n3))  # the trunk's first layer
    assert torch.equal(w1, w2) and not torch.equal(w1, w3)
    from occ3d_lib.training.mopi import make_mopi

    m1, m2 = make_mopi(p, init="scratch", seed=3), make_mopi(p, init="scratch", seed=3)
    assert torch.equal(next(m1.backbone.parameters()), next(m2.backbone.parameters()))
    with pytest.raises(TypeError, match="seed must be an int"), seeded("abc"):  # type: ignore[arg-type]
        pass


# ------------------------------------------------------------------ 2. damaged caches
def tiny_dataset(tiny_model, tmp_path):
    p = get_profile("smoke").replace(image_size=32, n_train_identities=2, n_val_identities=1, n_test_identities=1,
                                     views_per_identity=2)
    m = tiny_model(n_id=80, n_exp=64, n_tex=80)
    m.mean_shape = (m.mean_shape - 0.5) * 1.5
    return p, m


@pytest.mark.parametrize("damage, file", [(truncate, "images.npy"), (truncate, "coeffs.npy"),
                                          (flip_byte, "images.npy"), (flip_byte, "coeffs.npy")])
def test_damaged_dataset_is_named_and_rebuilt(tiny_model, tmp_path, damage, file):
    p, m = tiny_dataset(tiny_model, tmp_path)
    ds = datasets.load_or_build_synthetic(p, m, root=tmp_path, progress=False)
    ref = np.array(ds.train.images), np.array(ds.train.coeffs)
    assert (ds.root / artifacts.DIR_MANIFEST).exists()
    damage(ds.root / "train" / file)
    with pytest.warns(UserWarning, match=rf"synthetic dataset .* is damaged .*{file}|{file}.*damaged"):
        again = datasets.load_or_build_synthetic(p, m, root=tmp_path, progress=False)
    assert np.array_equal(again.train.images, ref[0]) and np.array_equal(again.train.coeffs, ref[1])
    artifacts.verify_dir(again.root)


def test_verify_names_the_file_and_what_to_do(tmp_path):
    path = tmp_path / "x.pt"
    artifacts.torch_save({"a": torch.arange(1000)}, path)
    assert artifacts.verify_file(path) == path
    flip_byte(path)
    with pytest.raises(DamagedArtifact) as e:
        artifacts.verify_file(path)
    msg = one_line(str(e.value))
    assert str(path) in msg and "content hash" in msg and "delete" in msg
    truncate(path)
    with pytest.raises(DamagedArtifact, match="truncated"):
        artifacts.verify_file(path)
    artifacts.manifest_path(path).unlink()
    with pytest.raises(DamagedArtifact, match="no manifest"):
        artifacts.verify_file(path)


@pytest.mark.parametrize("name", ["final.pt", "checkpoint.pt"])
@pytest.mark.parametrize("damage", [truncate, flip_byte])
def test_damaged_trained_model_or_checkpoint_is_retrained_to_the_same_weights(tmp_path, linear_trainer, name, damage):
    ref = linear_trainer(tmp_path, 6)
    ref.fit(progress=False)
    want = weights(ref.model)
    damage(tmp_path / name)
    if name == "checkpoint.pt":
        (tmp_path / "final.pt").unlink()  # make the resume path read the damaged checkpoint
    again = linear_trainer(tmp_path, 6)
    with pytest.warns(UserWarning, match=rf"{name} is damaged"):
        again.fit(progress=False)
    assert all(torch.equal(x, y) for x, y in zip(want, weights(again.model)))


def test_damaged_teacher_labels_and_eval_set_are_rebuilt(tiny_model, tmp_path, monkeypatch):
    from occ3d_lib import occlusion

    path = tmp_path / "labels-train.pt"
    artifacts.torch_save(torch.ones(3, 257), path)
    truncate(path)
    with pytest.warns(UserWarning, match="labels-train.pt is damaged"):
        assert artifacts.load_cached(path, torch.load) is None
    assert not path.exists()

    ctx = small_ctx(tiny_model, tmp_path, monkeypatch)
    sets = occlusion.load_or_build_eval_sets(ctx, ["dsofi"], n=2, seed=0, root=tmp_path / "sets")
    f = tmp_path / "sets" / "dsofi.pt"
    flip_byte(f, offset=f.stat().st_size - 200)
    with pytest.warns(UserWarning, match="evaluation set .*dsofi.pt is damaged"):
        again = occlusion.load_or_build_eval_sets(ctx, ["dsofi"], n=2, seed=0, root=tmp_path / "sets")
    assert torch.equal(again["dsofi"].images, sets["dsofi"].images)


def test_truncated_face_model_npz_is_one_line_naming_the_file(tiny_model, tmp_path):
    from occ3d_lib.face.facemodel import FaceModel

    path = tiny_model().save(tmp_path / "m.npz")
    truncate(path)
    with pytest.raises(DamagedArtifact) as e:
        FaceModel.load(path)
    assert str(path) in one_line(str(e.value))


def test_truncated_downloaded_checkpoint_says_download_again(tmp_path):
    path = tmp_path / "epoch_20.pth"
    with seeded(0):
        checkpoints.save_deep3d_checkpoint(ReconNet("resnet18"), path)
    truncate(path)
    with pytest.raises(ValueError) as e:
        checkpoints.load_deep3d_checkpoint(path)
    msg = one_line(str(e.value))
    assert str(path) in msg and "download epoch_20.pth again" in msg


# ------------------------------------------------------------------ 3. typed parameters
def plan(*items, profile="smoke", only=None):
    return pipeline.plan(NOTEBOOKS, profile, only=only, overrides=pipeline.split_items(list(items)))


def test_parameters_are_typed_against_their_defaults():
    steps = plan("run_l1_ablation=false", "coeff_weight=2", "seed=3", "teacher=train", only=["03"])
    params = steps[0][1]
    assert params["run_l1_ablation"] is False and params["coeff_weight"] == 2.0 and params["seed"] == 3
    assert isinstance(params["coeff_weight"], float) and params["teacher"] == "train"
    steps = plan("run_ablations=yes", "real_data=none", only=["05"])
    assert steps[0][1]["run_ablations"] is True and steps[0][1]["real_data"] is None


@pytest.mark.parametrize("item, message", [
    ("run_l1_ablation=maybe", "run_l1_ablation=maybe is not true/false"),
    ("coeff_weight=abc", "coeff_weight=abc is not a finite number"),
    ("coeff_weight=nan", "coeff_weight=nan is not a finite number"),
    ("coeff_weight=-5", "coeff_weight must be a finite number >= 0"),
    ("seed=abc", "seed=abc is not an int"),
    ("seed=1.5", "seed=1.5 is not an int"),
    ("seed=2**70", "seed=2**70 is not an int"),
    ("seed=1180591620717411303424", "does not fit in 64 bits"),
    ("seed=4294967296", "seed must be in [0, 2**32)"),
    ("profile=course", "the profile is chosen with --profile"),
    ("run_ablations=perhaps", "run_ablations=perhaps is not true/false"),
])
def test_bad_parameter_values_stop_before_anything_runs(tmp_path, capsys, item, message):
    rc = pipeline.main(["--profile", "smoke", "-p", item, "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == pipeline.EXIT_USAGE, out
    assert message in one_line(out), out
    assert not (tmp_path / "runs").exists()


def test_coerce_checks_python_values_too():
    d = Declared("flag", "True")
    assert coerce(d, False) is False
    with pytest.raises(ParameterError, match="flag=1 is not true/false"):
        coerce(d, 1)
    with pytest.raises(ParameterError, match="maybe is not true/false or none"):
        coerce(Declared("run_ablations", "None", "Optional[bool]"), "maybe")
    assert coerce(Declared("x", "None", "bool | None"), "none") is None
    assert coerce(Declared("w", "1.0"), 2) == 2.0
    assert coerce(Declared("name", '"x"'), "'quoted'") == "quoted"


def _code_outside_parameters(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"]
                     if c["cell_type"] == "code" and "parameters" not in c.get("metadata", {}).get("tags", []))


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_uses_every_parameter_it_declares(path):
    import re

    code = _code_outside_parameters(path)
    unused = [k for k in pipeline.notebook_parameters(path) if not re.search(rf"\b{k}\b", code)]
    assert not unused, f"{path.name} declares {unused} but never uses them"
    if "seed" in pipeline.notebook_parameters(path):
        assert "seed=seed" in code, f"{path.name}: the seed parameter must reach make_context"


# ------------------------------------------------------------------ 4. runs folder and summary
def test_unwritable_runs_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder should be")
    rc = pipeline.main(["--profile", "smoke", "--only", "00", "--runs-dir", str(blocker)])
    out = capsys.readouterr().out
    assert rc == pipeline.EXIT_USAGE and "cannot write in the runs folder" in one_line(out)
    assert "--runs-dir" in out


def _hammer(args):
    path, who = args
    for i in range(15):
        pipeline.update_summary(path, "smoke", f"{who}-{i}", {"status": "ok"})


def test_summary_updates_from_two_processes_keep_every_entry(tmp_path):
    path = tmp_path / "summary.json"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_hammer, [(path, "a"), (path, "b")])
    entries = json.loads(path.read_text())["notebooks"]
    assert len(entries) == 30


# ------------------------------------------------------------------ 5. photos
def _png(path, arr, mode=None):
    from PIL import Image

    Image.fromarray(arr, mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def test_photo_depths_and_modes_are_converted_losslessly(tmp_path):
    from PIL import Image

    from occ3d_lib.data.align import as_pil_rgb
    from occ3d_lib.data.real import load_rgb

    g16 = np.full((16, 16), 32768, np.uint16)  # mid grey at 16 bits
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert np.abs(load_rgb(tmp_path / "g16.png").astype(int) - 128).max() <= 1
    f255 = np.full((16, 16, 3), 100.0, np.float32)  # a float image in 0-255
    assert np.asarray(as_pil_rgb(f255))[0, 0].tolist() == [100, 100, 100]
    assert np.asarray(as_pil_rgb(f255 / 255))[0, 0].tolist() == [100, 100, 100]
    with pytest.raises(ValueError, match="expected"):
        as_pil_rgb(np.full((4, 4, 3), 300.0))
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    r, g, b = load_rgb(tmp_path / "cmyk.jpg")[8, 8]
    assert r > 200 and g < 60 and b < 60
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    assert load_rgb(tmp_path / "pal.png")[0, 0].tolist() == [10, 200, 30]
    ex = Image.new("RGB", (20, 10), (1, 2, 3))
    exif = ex.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    ex.save(tmp_path / "exif.jpg", exif=exif)
    assert load_rgb(tmp_path / "exif.jpg").shape[:2] == (20, 10)


def test_one_bad_photo_never_aborts_the_folder(tmp_path, monkeypatch):
    from PIL import Image

    from occ3d_lib.data.real import PhotoFolder

    _png(tmp_path / "a_good.png", np.full((64, 64, 3), 120, np.uint8))
    _png(tmp_path / "b_huge.png", np.full((200, 200, 3), 120, np.uint8))
    (tmp_path / "c_folder.jpg").mkdir()
    os.symlink(tmp_path / "gone.jpg", tmp_path / "d_broken.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 40000 px > 2x the limit: a decompression bomb
    lm5 = np.array([[22, 26], [42, 26], [32, 36], [24, 46], [40, 46]], np.float64)
    batch = PhotoFolder(tmp_path, size=32, detector=lambda img: lm5).collect()
    assert batch.names == ["a_good.png"]
    reasons = dict(batch.skipped)
    assert set(reasons) == {"b_huge.png", "c_folder.jpg", "d_broken.jpg"}
    assert "too large" in reasons["b_huge.png"] and "a folder" in reasons["c_folder.jpg"]
    assert "broken link" in reasons["d_broken.jpg"]
    assert "skipped 3" in batch.report()


# ------------------------------------------------------------------ 6. networks and renderer
@pytest.mark.parametrize("images, exc, message", [
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, "float RGB in \\[0, 1\\]: pass images.float\\(\\) / 255"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.float64), TypeError, "pass images.to\\(torch.float32\\)"),
    (torch.full((1, 3, 32, 32), 200.0), ValueError, "look like 0-255 values: divide by 255"),
    (torch.full((1, 3, 32, 32), -1.0), ValueError, "takes RGB in \\[0, 1\\]"),
])
def test_networks_check_dtype_and_range_at_the_boundary(images, exc, message):
    with seeded(0):
        net, mopi = ReconNet("resnet18"), MultiOcclusionNet("resnet18", n_heads=2)
    for fn in (net, mopi.predict, lambda x: stages.predict_coeffs(net, x)):
        with pytest.raises(exc, match=message) as e:
            fn(images)
        one_line(str(e.value))


def test_renderer_empty_batch_is_one_line(tiny_model):
    from occ3d_lib.render.renderer import FaceRenderer

    with pytest.raises(ValueError, match="empty batch"):
        FaceRenderer(tiny_model(n_id=80, n_exp=64, n_tex=80), 16)(torch.zeros(0, 257))


def test_nan_checkpoint_and_foreign_keys_name_the_file(tmp_path):
    with seeded(0):
        net = ReconNet("resnet18")
    state = net.state_dict()
    state["final_layers.0.bias"] = torch.full_like(state["final_layers.0.bias"], float("nan"))
    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": state}, path)
    with pytest.raises(ValueError, match=r"epoch_20.pth: 1 tensor\(s\) hold NaN or inf .*final_layers.0.bias"):
        checkpoints.load_deep3d_checkpoint(path)
    torch.save({"net_recon": {"encoder.weight": torch.zeros(2)}}, path)
    with pytest.raises(ValueError) as e:
        checkpoints.load_deep3d_checkpoint(path)
    assert str(path) in one_line(str(e.value)) and "encoder.weight" in str(e.value)


# ------------------------------------------------------------------ 7. leftovers, permissions, full disk
def test_stale_temp_files_of_dead_writers_are_swept(tmp_path):
    target = tmp_path / "x.pt"
    dead = subprocess_pid_that_exited()
    stale_file = tmp_path / f".x.pt.{dead}.abc.tmp"
    stale_file.write_bytes(b"half")
    stale_dir = tmp_path / f".x.pt.{dead}.def.tmp"
    stale_dir.mkdir()
    live = tmp_path / f".x.pt.{os.getppid()}.ghi.tmp"  # a writer that is still running
    live.write_bytes(b"busy")
    artifacts.torch_save(torch.zeros(1), target)
    assert not stale_file.exists() and not stale_dir.exists() and live.exists()


def subprocess_pid_that_exited() -> int:
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                        (0o077, 0o600, 0o700)])
def test_artifacts_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        f = artifacts.torch_save(torch.zeros(1), tmp_path / "x.pt")
        with artifacts.atomic_dir(tmp_path / "d", manifest=True) as d:
            (d / "a.npy").write_bytes(b"1")
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == file_mode
    assert artifacts.manifest_path(f).stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "d").stat().st_mode & 0o777 == dir_mode
    assert (tmp_path / "d" / "a.npy").stat().st_mode & 0o777 == file_mode


def test_full_disk_is_one_line(tmp_path, monkeypatch):
    def full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as e:
        artifacts.torch_save({"a": 1}, tmp_path / "x.pt")
    assert e.value.errno == errno.ENOSPC
    msg = one_line(str(e.value))
    assert "disk full while writing" in msg and "x.pt" in msg and "free" in msg
    assert not list(tmp_path.glob(".x.pt.*.tmp")) and not (tmp_path / "x.pt").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert artifacts.load_cached(tmp_path / "x.pt", torch.load) is None


def test_load_or_build_reuses_rebuilds_damaged_and_rejected(tmp_path):
    path = tmp_path / "thing.pt"
    calls = []

    def build():
        calls.append(1)
        return torch.full((2,), float(len(calls)))

    def load(p):
        return torch.load(p, weights_only=True)

    first = artifacts.load_or_build(path, load, build, artifacts.torch_save, "thing")
    again = artifacts.load_or_build(path, load, build, artifacts.torch_save, "thing")
    assert len(calls) == 1 and torch.equal(first, again)  # reused, not rebuilt
    truncate(path)
    with pytest.warns(UserWarning, match="thing .*thing.pt is damaged"):
        rebuilt = artifacts.load_or_build(path, load, build, artifacts.torch_save, "thing")
    assert len(calls) == 2 and torch.equal(rebuilt, torch.full((2,), 2.0))
    # a sound file that the caller does not accept (e.g. written for another data size) is rebuilt
    other = artifacts.load_or_build(path, load, build, artifacts.torch_save, "thing", accept=lambda v: v[0] > 2)
    assert len(calls) == 3 and torch.equal(other, torch.full((2,), 3.0))
    assert torch.equal(load(path), other)
