"""Track parameters: forms, missing files stop the first cell with a helpful message, resolvers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from occ3d_lib.data import tracks
from occ3d_lib.data.context import make_context
from occ3d_lib.nets.models import ReconNet


def _bfm_file(path: Path, n: int = 4, exbase_cols: int = 64) -> Path:
    tri = np.array([[1, 2, 3], [2, 4, 3]], np.float32)
    savemat(path, {"meanshape": np.zeros((1, 3 * n), np.float32), "idBase": np.zeros((3 * n, 80), np.float32),
                   "exBase": np.zeros((3 * n, exbase_cols), np.float32), "meantex": np.zeros((1, 3 * n), np.float32),
                   "texBase": np.zeros((3 * n, 80), np.float32), "tri": tri,
                   "point_buf": np.full((n, 8), 3, np.float32), "keypoints": np.ones((1, 68), np.float32),
                   "skinmask": np.ones((1, n), np.float32)})
    return path


def test_forms() -> None:
    tracks.validate_specs()  # all defaults
    for kw, match in [({"facenet": "imagenet"}, "facenet must be one of"), ({"dataset": "celeba"}, "celeba:<root>"),
                      ({"dataset": "mnist:/x"}, "celeba:<root>"), ({"teacher": ""}, "teacher must be a non-empty")]:
        with pytest.raises(ValueError, match=match):
            tracks.validate_specs(**kw)


def test_missing_files_say_what_to_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cases = [
        ({"dataset": f"celeba:{tmp_path / 'x'}"}, "CelebA img_align_celeba not found.*mmlab"),
        ({"dataset": f"aflw2000:{tmp_path / 'x'}"}, "AFLW2000-3D folder not found.*3DDFA"),
        ({"dataset": f"photos:{tmp_path / 'x'}"}, "photo folder not found"),
        ({"face_model": str(tmp_path / "BFM_model_front.mat")}, "BFM_model_front.mat not found.*data/BFM"),
        ({"teacher": str(tmp_path / "epoch_20.pth")}, "teacher checkpoint not found.*Deep3DFaceRecon"),
        ({"facenet": "vggface2"}, "20180402-114759-vggface2.pt.*not found"),
    ]
    for kw, match in cases:
        with pytest.raises(FileNotFoundError, match=match):
            tracks.validate_specs(**kw)
        tracks.validate_specs(**kw, check_files=False)  # the form alone is fine


def test_first_cell_stops_on_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="celeba"):
        make_context("smoke", run_dir=tmp_path / "run", dataset=f"celeba:{tmp_path / 'nowhere'}", progress=False)


def test_files_present_and_formats_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bfm = _bfm_file(tmp_path / "BFM_model_front.mat")
    tracks.validate_specs(face_model=str(bfm))
    bad = _bfm_file(tmp_path / "bad.mat", exbase_cols=63)
    with pytest.raises(ValueError, match="'exBase' has shape \\[12, 63\\], expected \\[12, 64\\]"):
        tracks.validate_specs(face_model=str(bad))
    (tmp_path / "junk.mat").write_bytes(b"junk" * 50)
    with pytest.raises(ValueError, match="cannot read"):
        tracks.validate_specs(face_model=str(tmp_path / "junk.mat"))
    # teacher: a Deep3DFaceRecon-layout checkpoint passes, a foreign one does not
    st = ReconNet("resnet18").state_dict()
    torch.save({"net_recon": st}, tmp_path / "epoch_20.pth")
    tracks.validate_specs(teacher=str(tmp_path / "epoch_20.pth"))
    assert tracks.resolve_teacher_checkpoint(str(tmp_path / "epoch_20.pth")) == tmp_path / "epoch_20.pth"
    torch.save({"net_recon": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "foreign.pth")
    with pytest.raises(ValueError, match="lacks"):
        tracks.validate_specs(teacher=str(tmp_path / "foreign.pth"))
    # facenet weights in $TORCH_HOME/checkpoints
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    w = tmp_path / "th" / "checkpoints" / "20180402-114759-vggface2.pt"
    w.parent.mkdir(parents=True)
    w.write_bytes(b"w")
    tracks.validate_specs(facenet="vggface2")
    assert tracks.resolve_facenet("vggface2") == w
    # CelebA index files must parse
    base = tmp_path / "c" / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    (base / "identity_CelebA.txt").write_text("000001.jpg 1\n")
    (base / "list_eval_partition.txt").write_text("000001.jpg 2\n")
    (base / "list_landmarks_align_celeba.txt").write_text("1\nheader\n000001.jpg 1 2 3\n")
    with pytest.raises(ValueError, match="list_landmarks_align_celeba.txt, line 3"):
        tracks.validate_specs(dataset=f"celeba:{tmp_path / 'c'}")


def test_resolvers_defaults(tmp_path: Path) -> None:
    assert tracks.resolve_teacher_checkpoint("train") is None
    assert tracks.resolve_facenet("synthetic") is None
    assert tracks.resolve_dataset("synthetic") == "synthetic"
    with pytest.raises(FileNotFoundError, match="Deep3DFaceRecon"):
        tracks.resolve_teacher_checkpoint(str(tmp_path / "none.pth"))
    (tmp_path / "ph").mkdir()
    ds = tracks.resolve_dataset(f"photos:{tmp_path / 'ph'}", size=64)
    assert type(ds).__name__ == "PhotoFolder" and len(ds) == 0 and ds.size == 64
