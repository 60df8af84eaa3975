"""Files the series reads never run code, and a cached file is only reused for the settings it was built with.

A pickle that would run code when unpickled (here: create a marker file) is planted, with a matching
manifest (whoever can write the file can write its manifest), at every place the series reads a
checkpoint, a trained model, a label file or shipped weights: each is refused with one line naming the
file, and the marker never appears. Manifests also record the file's name and the settings it was built
with, so a copy from another cache entry is rebuilt.
"""
import ast
import json
import warnings
from pathlib import Path

import pytest
import torch

from occ3d_lib.core import artifacts
from occ3d_lib.core.artifacts import ForeignArtifact, UnsafeArtifact
from occ3d_lib.core.config import get_profile
from occ3d_lib.data.context import Context
from occ3d_lib.nets.models import ReconNet, seeded

ROOT = Path(__file__).resolve().parents[2]


class RunsCode:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the pickle is ever loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def plant(path: Path, marker: Path, payload: dict | None = None) -> Path:
    """Overwrite ``path`` with a code-running pickle and a matching manifest (same recorded settings)."""
    mpath = artifacts.manifest_path(path)
    settings = json.loads(mpath.read_text()).get("settings") if mpath.exists() else None
    with artifacts.atomic_path(path, manifest=True, settings=settings) as tmp:
        torch.save({**(payload or {}), "model": RunsCode(marker)}, tmp)
    artifacts.verify_file(path, settings=settings)  # the manifest cannot tell: the bytes are what it says
    return path


def one_line(msg: str) -> str:
    assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
    return msg


def test_the_planted_pickle_runs_code_when_loaded_unsafely(tmp_path):
    # the fixture is real: loading it the unsafe way creates the marker
    marker = tmp_path / "ran"
    torch.save({"model": RunsCode(marker)}, tmp_path / "x.pt")
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


def test_every_torch_load_in_the_library_and_tools_is_weights_only():
    offenders = []
    for path in sorted([*ROOT.glob("occ3d_lib/**/*.py"), *ROOT.glob("tools/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            # torch.hub's loaders unpickle with weights_only=False and check no hash of a file already there
            # (torchvision's weights=...): the library reads such files itself (nets.models)
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                kw = {k.arg: k.value for k in node.keywords}
                passes_weights = "weights" in kw and not (isinstance(kw["weights"], ast.Constant)
                                                          and kw["weights"].value is None)
                if called in ("load_state_dict_from_url", "load_url") or (
                        passes_weights and "torchvision" in ast.unparse(node.func)):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"torch.load without weights_only=True, or torch.hub loading a file: {offenders}"


# ------------------------------------------------------------------ trained models and checkpoints
@pytest.mark.parametrize("name", ["checkpoint.pt", "final.pt"])
def test_planted_checkpoint_or_final_is_refused_unread_and_retrained(tmp_path, linear_trainer, name):
    ref = linear_trainer(tmp_path, 4)
    ref.fit(progress=False)
    want = [v.clone() for v in ref.model.state_dict().values()]
    marker = tmp_path / "ran"
    plant(tmp_path / name, marker, {"key": ref.cfg.hash()})
    if name == "checkpoint.pt":
        (tmp_path / "final.pt").unlink()  # so that the resume path reads the planted checkpoint
    again = linear_trainer(tmp_path, 4)
    with pytest.warns(UserWarning) as rec:
        again.fit(progress=False)
    msgs = [str(w.message) for w in rec if name in str(w.message)]
    assert len(msgs) == 1, [str(w.message) for w in rec]
    msg = one_line(msgs[0])
    assert str(tmp_path / name) in msg and "is refused" in msg and "could run code" in msg
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(want, again.model.state_dict().values()))


def test_a_real_checkpoint_with_an_occluder_state_loads_weights_only(tmp_path, linear_trainer):
    from occ3d_lib.occlusion.apply import TrainingOccluder

    t = linear_trainer(tmp_path, 4)
    t.stateful = {"occluder": TrainingOccluder(seed=3)}
    t.fit(progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["ranks"][0]["stateful"]["occluder"]["seed"] == 3 and state["step"] == 4
    assert torch.load(tmp_path / "final.pt", weights_only=True)["history"] == t.history


# ------------------------------------------------------------------ label files
def small_ctx(tiny_model, tmp_path, monkeypatch) -> Context:
    monkeypatch.setenv("OCC3D_CACHE", str(tmp_path / "cache"))
    p = get_profile("smoke").replace(image_size=32, n_train_identities=3, n_val_identities=1, n_test_identities=1,
                                     views_per_identity=2, pretrained=False, mopi_steps=2)
    ctx = Context(profile=p, run_dir=tmp_path / "run", progress=False)
    m = tiny_model(n_id=80, n_exp=64, n_tex=80)
    m.mean_shape = (m.mean_shape - 0.5) * 1.5
    ctx.__dict__["face_model"] = m
    return ctx


def test_planted_teacher_labels_are_refused_and_rebuilt(tiny_model, tmp_path, monkeypatch):
    from occ3d_lib.training import stages

    ctx = small_ctx(tiny_model, tmp_path, monkeypatch)
    with seeded(0):
        teacher = ReconNet("resnet18").eval()
    teacher.out_dir = tmp_path / "teacher"
    teacher.out_dir.mkdir()
    labels = stages.teacher_labels(ctx, teacher)
    marker = tmp_path / "ran"
    plant(teacher.out_dir / "labels-train.pt", marker)
    with pytest.warns(UserWarning, match=r"teacher labels .*labels-train.pt is refused \(it holds Python objects"):
        again = stages.teacher_labels(ctx, teacher)
    assert not marker.exists() and torch.equal(again, labels)


def test_planted_mopi_label_pool_is_refused_and_rebuilt(tiny_model, tmp_path, monkeypatch):
    from occ3d_lib.training import mopi

    ctx = small_ctx(tiny_model, tmp_path, monkeypatch)
    pool = {"labels": torch.arange(6.0).view(2, 3)}
    monkeypatch.setattr(mopi, "mopi_batch_fn", lambda *a, **k: None)
    monkeypatch.setattr(mopi, "build_label_pool", lambda fn, steps, seed: {k: v.clone() for k, v in pool.items()})
    with seeded(0):
        sopi, embedder = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    settings = mopi.MopiSettings("both")
    assert torch.equal(mopi.get_label_pool(ctx, settings, sopi, embedder)["labels"], pool["labels"])
    (path,) = (ctx.run_dir / "checkpoints").glob("mopi-labels-*/pool.pt")
    marker = tmp_path / "ran"
    plant(path, marker)
    with pytest.warns(UserWarning, match=r"MOPI label pool .*pool.pt is refused"):
        again = mopi.get_label_pool(ctx, settings, sopi, embedder)
    assert not marker.exists() and torch.equal(again["labels"], pool["labels"])


# ------------------------------------------------------------------ files a user provides, shipped weights
def _shipped(tmp_path: Path, marker: Path):
    from occ3d_lib.nets import pretrained

    path = tmp_path / "teacher.pt"
    torch.save({"w": RunsCode(marker)}, path)
    entry = {"file": path.name, "size": path.stat().st_size, "blake2b": artifacts.file_digest(path)}
    (tmp_path / pretrained.MANIFEST).write_text(json.dumps({"format": pretrained.FORMAT,
                                                            "networks": {"teacher": entry}}))
    return path, lambda: pretrained.load_shipped("teacher", root=tmp_path)


def _deep3d(tmp_path: Path, marker: Path):
    from occ3d_lib.nets import checkpoints

    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": RunsCode(marker)}, path)
    return path, lambda: checkpoints.load_deep3d_checkpoint(path)


def _facenet(tmp_path: Path, marker: Path):
    import os

    from occ3d_lib.core.external import FACENET_WEIGHTS
    from occ3d_lib.nets.facenet import load_pretrained_embedder

    os.environ["TORCH_HOME"] = str(tmp_path)  # restored by the test's monkeypatch
    path = tmp_path / "checkpoints" / FACENET_WEIGHTS["vggface2"][0]
    path.parent.mkdir()
    torch.save({"logits.weight": RunsCode(marker)}, path)
    return path, lambda: load_pretrained_embedder("vggface2")


def _occlusion_set(tmp_path: Path, marker: Path):
    from occ3d_lib.occlusion.eval_sets import load_occlusion_set

    path = tmp_path / "dsofi.pt"
    torch.save({"format": "x", "images": RunsCode(marker)}, path)
    return path, lambda: load_occlusion_set(path)


@pytest.mark.parametrize("make", [_shipped, _deep3d, _facenet, _occlusion_set],
                         ids=["shipped-teacher", "deep3d-checkpoint", "facenet-weights", "evaluation-set"])
def test_planted_file_a_user_gives_or_the_repository_ships_is_refused_in_one_line(tmp_path, monkeypatch, make):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / "ran"
    path, load = make(tmp_path, marker)
    with pytest.raises(UnsafeArtifact) as e:
        load()
    msg = one_line(str(e.value))
    assert msg.startswith(f"{path} is refused (it holds Python objects other than tensors and plain values")
    assert "it was not loaded" in msg
    assert not marker.exists()


def _torchvision_file(tmp_path: Path, monkeypatch, name: str = "resnet18") -> Path:
    import torchvision

    from occ3d_lib.nets import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = getattr(torchvision.models, models.TORCHVISION_IMAGENET[name]).IMAGENET1K_V1
    path = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    return path


def _name_matches(monkeypatch, path: Path) -> None:
    """Pretend the file's SHA-256 starts with the digits in its name (a file that passes torch.hub's check)."""
    from occ3d_lib.nets import models

    prefix = path.name.rsplit("-", 1)[-1].split(".")[0]
    monkeypatch.setattr(models, "file_digest", lambda p, algorithm="blake2b": prefix + "0" * 56)


def test_planted_torchvision_imagenet_weights_are_refused_unread(tmp_path, monkeypatch):
    from occ3d_lib.core.artifacts import DamagedArtifact
    from occ3d_lib.nets.models import make_backbone

    path = _torchvision_file(tmp_path, monkeypatch)
    marker = tmp_path / "ran"
    torch.save({"fc.weight": RunsCode(marker)}, path)
    with pytest.raises(DamagedArtifact) as e:  # its bytes are not the ones torchvision published
        make_backbone("resnet18", imagenet_init=True)
    msg = one_line(str(e.value))
    assert msg.startswith(f"{path} is damaged (its SHA-256 starts with") and "its name says" in msg
    _name_matches(monkeypatch, path)  # and one whose digest matched would still not be unpickled
    with pytest.raises(UnsafeArtifact) as e:
        make_backbone("resnet18", imagenet_init=True)
    assert one_line(str(e.value)).startswith(f"{path} is refused (it holds Python objects")
    assert not marker.exists()


def test_genuine_torchvision_imagenet_weights_load_into_the_trunk(tmp_path, monkeypatch):
    import torchvision

    from occ3d_lib.nets.models import make_backbone

    path = _torchvision_file(tmp_path, monkeypatch)
    with seeded(3):
        state = torchvision.models.resnet18().state_dict()
    torch.save(state, path)
    _name_matches(monkeypatch, path)
    trunk, width = make_backbone("resnet18", imagenet_init=True)
    assert width == 512 and torch.equal(trunk.conv1.weight, state["conv1.weight"])
    path.unlink()
    with pytest.raises(FileNotFoundError, match=f"ImageNet weights for resnet18 not found at {path}: download "):
        make_backbone("resnet18", imagenet_init=True)


# ------------------------------------------------------------------ manifests record name and settings
def test_manifest_refuses_a_renamed_copy_and_other_settings_and_accepts_an_old_manifest(tmp_path):
    a = artifacts.torch_save(torch.ones(3), tmp_path / "a.pt", settings={"seed": 1, "steps": 5})
    assert artifacts.verify_file(a, settings={"steps": 5, "seed": 1}) == a  # key order does not matter
    with pytest.raises(ForeignArtifact) as e:
        artifacts.verify_file(a, settings={"seed": 0, "steps": 5})
    assert one_line(str(e.value)) == (f"{a} was built for something else (built with seed=1, this run needs seed=0); "
                                      f"delete {a} and run again to rebuild it")
    b = tmp_path / "b.pt"
    b.write_bytes(a.read_bytes())
    artifacts.manifest_path(b).write_text(artifacts.manifest_path(a).read_text())
    with pytest.raises(ForeignArtifact, match="its manifest describes 'a.pt': copied or renamed"):
        artifacts.verify_file(b)
    # a manifest written before settings were recorded: its name and bytes are still checked, nothing else
    old = json.loads(artifacts.manifest_path(a).read_text())
    del old["settings"]
    artifacts.manifest_path(a).write_text(json.dumps(old))
    assert artifacts.verify_file(a, settings={"seed": 0}) == a


def test_face_model_cache_built_with_another_seed_is_rebuilt(tiny_model, tmp_path, monkeypatch):
    from occ3d_lib.face import procedural

    monkeypatch.setenv("OCC3D_CACHE", str(tmp_path))
    built = []

    def build(resolution, seed):
        built.append(seed)
        return tiny_model().replace(info={"name": "procedural", "seed": seed})

    monkeypatch.setattr(procedural, "procedural_face_model", build)
    assert procedural.load_or_build_procedural("light", seed=1).info["seed"] == 1
    one, zero = procedural.procedural_cache_path("light", 1), procedural.procedural_cache_path("light", 0)
    # the seed-1 file copied under the seed-0 name, with its manifest: named, rebuilt for seed 0
    zero.write_bytes(one.read_bytes())
    artifacts.manifest_path(zero).write_text(artifacts.manifest_path(one).read_text())
    with pytest.warns(UserWarning, match=rf"procedural face model {zero} was built for something else \(its "
                                         r"manifest describes 'procedural_light_"):
        assert procedural.load_or_build_procedural("light", seed=0).info["seed"] == 0
    # the same, with the manifest edited to the new name: the recorded seed still tells
    zero.write_bytes(one.read_bytes())
    entry = json.loads(artifacts.manifest_path(one).read_text())
    artifacts.manifest_path(zero).write_text(json.dumps({**entry, "file": zero.name}))
    with pytest.warns(UserWarning, match=r"was built for something else \(built with seed=1, this run needs seed=0\)"):
        assert procedural.load_or_build_procedural("light", seed=0).info["seed"] == 0
    assert built == [1, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file is reused quietly
        assert procedural.load_or_build_procedural("light", seed=0).info["seed"] == 0
    assert built == [1, 0, 0]


def test_dataset_folder_records_its_settings(tmp_path):
    with artifacts.atomic_dir(tmp_path / "d", manifest=True, settings={"seed": 2}) as d:
        (d / "a.npy").write_bytes(b"1")
    assert artifacts.verify_dir(tmp_path / "d", settings={"seed": 2}) == tmp_path / "d"
    with pytest.raises(ForeignArtifact, match=r"d was built for something else \(built with seed=2, this run needs "
                                              r"seed=3\)"):
        artifacts.verify_dir(tmp_path / "d", settings={"seed": 3})

