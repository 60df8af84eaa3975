"""The shipped pretrained networks (occ3d_lib.nets.pretrained, occ3d_lib.pretrain): verified loading, one-line
errors for missing, damaged, foreign or unsafe files, the recorded check reproduced, and the command that
makes them rebuilding the same bytes from the same seed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from occ3d_lib import pretrain, train_cli
from occ3d_lib.core.artifacts import DamagedArtifact, file_digest
from occ3d_lib.data.context import make_context
from occ3d_lib.evaluation.diagnostics import validation_errors
from occ3d_lib.nets import pretrained
from occ3d_lib.training import embedder as E
from occ3d_lib.training import stages

SHIPPED = pretrained.pretrained_dir()

#: A pretrain run small enough for a test: a few faces, two steps of each network.
TINY = dict(n_train_identities=4, n_val_identities=2, n_test_identities=2, views_per_identity=2, teacher_steps=2,
            teacher_batch_size=4, embedder_steps=2, embedder_batch_size=8, checkpoint_every=1, log_every=1)


def _fake_shipped(root: Path) -> dict:
    """A tiny shipped 'teacher' entry written by the real writer."""
    return pretrained.write_shipped("teacher", {"w": torch.arange(6.0).view(2, 3), "n": torch.tensor(3)},
                                    {"compat": {"backbone": "x", "image_size": 64}}, root)


def test_shipped_files_are_listed_verified_and_small():
    manifest = pretrained.read_manifest()
    assert set(manifest["networks"]) == set(pretrained.NAMES)
    total = 0
    for name, entry in manifest["networks"].items():
        path = SHIPPED / entry["file"]
        assert path.stat().st_size == entry["size"] and file_digest(path) == entry["blake2b"]
        total += entry["size"]
        for key in ("command", "commit", "profile", "config_hash", "cpu_hours", "validation", "curve", "steps"):
            assert key in entry, f"{name}: manifest lacks {key}"
        assert len(entry["curve"]) >= 10 and entry["curve"][-1]["step"] == entry["steps"]
    assert total <= 80 * 2**20


def test_shipped_teacher_reproduces_its_recorded_check(tmp_path):
    entry = pretrained.shipped_entry("teacher")
    check = entry["check"]
    ctx = make_context(check["profile"], tmp_path, progress=False)
    teacher = stages.load_pretrained_teacher(ctx)
    got = validation_errors(ctx, teacher, n=check["n"])
    # float32 CPU kernels differ slightly between machines (AVX2 / AVX-512): 1 % is far below any effect the
    # series reports and far above that noise
    assert got["me"] == pytest.approx(check["me"], rel=0.01)
    assert got["dense_mm"] == pytest.approx(check["dense_mm"], rel=0.01)
    assert not any(p.requires_grad for p in teacher.parameters())
    assert teacher.out_dir.name.startswith("teacher-pretrained-")


def test_shipped_facenet_loads_with_its_recorded_curve(tmp_path):
    ctx = make_context("smoke", tmp_path, progress=False)
    emb = E.get_embedder(ctx)
    assert emb.shipped["file"] == "facenet.pt" and emb.history == pretrained.shipped_entry("facenet")["curve"]
    out = emb(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 512) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-4)


def test_write_then_load_roundtrip_in_float16(tmp_path):
    entry = _fake_shipped(tmp_path)
    assert entry["dtype"] == "float16" and entry["file"] == "teacher.pt"
    state, got = pretrained.load_shipped("teacher", tmp_path)
    assert state["w"].dtype == torch.float32 and torch.equal(state["w"], torch.arange(6.0).view(2, 3))
    assert state["n"].dtype == torch.int64 and got["blake2b"] == entry["blake2b"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == pretrained.FORMAT and list(manifest["networks"]) == ["teacher"]


def test_damaged_missing_or_unlisted_weights_are_one_line_errors(tmp_path):
    _fake_shipped(tmp_path)
    path = tmp_path / "teacher.pt"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedArtifact) as e:
        pretrained.load_shipped("teacher", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and pretrained.REBUILD in msg and "content hash" in msg
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"teacher\.pt are missing.*make pretrained"):
        pretrained.load_shipped("teacher", tmp_path)
    with pytest.raises(FileNotFoundError, match="has no 'facenet'"):
        pretrained.load_shipped("facenet", tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest .* is missing"):
        pretrained.load_shipped("teacher", tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DamagedArtifact, match="unreadable"):
        pretrained.read_manifest(tmp_path)


class _Payload:
    """Unpickling this would create a marker file (code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_runs_code_is_refused_even_with_a_matching_manifest(tmp_path):
    entry = _fake_shipped(tmp_path)
    marker = tmp_path / "pwned"
    path = tmp_path / "teacher.pt"
    torch.save({"w": _Payload(marker)}, path)  # whoever plants the file also rewrites its manifest entry
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["networks"]["teacher"].update(size=path.stat().st_size, blake2b=file_digest(path))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DamagedArtifact, match=r"teacher\.pt is refused .*could run code"):
        pretrained.load_shipped("teacher", tmp_path)
    assert not marker.exists()
    assert entry["blake2b"] != manifest["networks"]["teacher"]["blake2b"]


def test_weights_made_for_other_settings_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"made for image_size=64, this run has 96: run with -p pretrained=False"):
        pretrained.check_compat("teacher", {"compat": {"image_size": 64}}, {"image_size": 96})
    ctx = make_context("smoke", tmp_path, progress=False, image_size=96)
    with pytest.raises(ValueError, match="image_size=64"):
        stages.get_teacher(ctx)
    assert not make_context("smoke", tmp_path, progress=False, pretrained=False).profile.pretrained


def test_same_seed_rebuilds_the_same_weights(tmp_path):
    a = pretrain.build_pretrained(run_dir=tmp_path / "run-a", root=tmp_path / "a", progress=False, **TINY)
    b = pretrain.build_pretrained(run_dir=tmp_path / "run-b", root=tmp_path / "b", progress=False, **TINY)
    for name in pretrained.NAMES:
        assert a[name]["blake2b"] == b[name]["blake2b"], name
        assert a[name]["steps"] == 2 and a[name]["curve"][-1]["step"] == 2
    assert set(a["teacher"]["validation"]) >= {"me", "dense_mm", "baseline_me", "me_ratio", "dense_ratio"}
    assert 0 <= a["facenet"]["validation"]["accuracy"] <= 1
    ta, tb = pretrained.load_shipped("teacher", tmp_path / "a")[0], pretrained.load_shipped("teacher", tmp_path / "b")[0]
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_train_cli_pretrained_usage_errors(capsys):
    assert train_cli.main(["pretrained", "--profile", "paper"]) == 2
    assert "made for the course profile" in capsys.readouterr().err
    assert train_cli.main(["pretrained", "-p", "teacher=train"]) == 2
    assert "takes profile fields and run_dir" in capsys.readouterr().err
    assert train_cli.main(["teacher", "--only", "teacher"]) == 2
    assert "--only is for the pretrained stage" in capsys.readouterr().err


def test_shipped_markdown_reads_the_manifest():
    text = pretrain.shipped_markdown()
    entry = pretrained.shipped_entry("teacher")
    assert f"{entry['validation']['me_ratio']:.2f} x the mean face" in text and "facenet" in text
    fields = entry["profile_fields"]  # what the shipped file was made with, not what the code would make now
    assert f"{entry['steps']} steps of {fields['teacher_batch_size']} faces from {fields['n_train_identities']} " \
           "training identities" in text
