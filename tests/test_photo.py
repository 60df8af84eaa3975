"""Your own photo (notebook 05, section 11b): the shipped photos are found and aligned by dlib, occluders land on
the crop, every model reconstructs it, and a bad photo is one line."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from occ3d_lib.render.renderer import FaceRenderer
from occ3d_lib.teaching import photo

matplotlib.use("Agg")


def _mean_face(x: torch.Tensor) -> torch.Tensor:  # a "model": the mean face, frontal, whatever it sees
    return torch.zeros(x.shape[0], 257)


@pytest.fixture(scope="module")
def astronaut():
    img, name = photo.load_photo("astronaut")
    return photo.find_face(img, name)


def test_the_shipped_photos_load_and_dlib_finds_their_faces(astronaut):
    assert astronaut.detector == "dlib" and astronaut.crop.shape == (224, 224, 3)
    # the 68 points land in the crop, the eyes above the mouth, the face near the crop's centre
    lm = astronaut.landmarks
    assert lm.shape == (68, 2) and (lm > 0).all() and (lm < 224).all()
    assert lm[36:48, 1].mean() < lm[48:68, 1].mean() and abs(lm[:, 0].mean() - 111.5) < 20
    img, name = photo.load_photo("grace_hopper")
    assert name == "grace_hopper" and img.ndim == 3 and img.dtype == np.uint8


def test_a_bad_photo_is_one_line(tmp_path):
    with pytest.raises(photo.PhotoError, match="^no such file: ") as e:
        photo.load_photo(tmp_path / "missing.jpg")
    assert "\n" not in str(e.value)
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(photo.PhotoError, match="^not an image: ") as e:
        photo.load_photo(tmp_path / "notes.png")
    assert "\n" not in str(e.value)
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    grey, name = photo.load_photo(tmp_path / "grey.png")
    with pytest.raises(photo.PhotoError, match="^no face found in grey.png"):
        photo.find_face(grey, name)
    with pytest.raises(photo.PhotoError, match="not an image"):
        photo.load_photo(3.5)


def test_occluders_land_on_the_crop(astronaut):
    clean, cov = photo.occlude_crop(astronaut, "none")
    assert cov == 0.0 and clean.shape == (1, 3, 224, 224) and clean.min() >= 0 and clean.max() <= 1
    left, cov_l = photo.occlude_crop(astronaut, "square", square=(0.0, 0.5, 0.2), colour=(1.0, 0.0, 0.0))
    right, cov_r = photo.occlude_crop(astronaut, "square", square=(1.0, 0.5, 0.2), colour=(1.0, 0.0, 0.0))
    assert 0.1 < cov_l < 0.3 and 0.1 < cov_r < 0.3
    changed_l = (left != clean).any(1)[0].nonzero()[:, 1].float().mean()
    changed_r = (right != clean).any(1)[0].nonzero()[:, 1].float().mean()
    assert changed_l < changed_r  # u = 0 is the left of the face, u = 1 the right
    glasses, cov_g = photo.occlude_crop(astronaut, "sunglasses", seed=1)
    rows = (glasses != clean).any(1)[0].nonzero()[:, 0].float().mean()
    assert cov_g > 0 and abs(rows - astronaut.landmarks[36:48, 1].mean()) < 25  # over the eyes dlib found
    with pytest.raises(ValueError, match="unknown occluder"):
        photo.occlude_crop(astronaut, "helmet")


def test_each_model_reconstructs_the_photo_with_its_error_against_dlib(astronaut, toy_face_model):
    r = FaceRenderer(toy_face_model(), 32)
    res = photo.photo_result({"teacher": _mean_face, "sopi": _mean_face}, r, kind="hand", face=astronaut)
    assert set(res["renders"]) == {"teacher", "sopi"} and res["renders"]["sopi"].shape == (3, 32, 32)
    assert res["dlib"].shape == (68, 2) and (res["dlib"] < 32).all()
    assert res["me"]["teacher"] == pytest.approx(res["me"]["sopi"]) and res["me"]["teacher"] > 0
    assert res["coverage"] > 0 and res["face"] is astronaut
    fig = photo.photo_figure([res])
    assert len(fig.axes) == 3 and "ME" in fig.axes[1].get_title()
    no_lm = photo.FaceCrop("x", astronaut.crop, None, "MTCNN", astronaut.transform)
    res2 = photo.photo_result({"sopi": _mean_face}, r, kind="square", face=no_lm)
    assert res2["me"] == {} and res2["dlib"] is None  # no 68 points: no error to report
    photo.photo_figure([res2])


def test_the_explorer_draws_a_static_grid_headless(monkeypatch, toy_face_model):
    monkeypatch.setenv("OCC3D_INTERACTIVE", "0")
    fig = photo.photo_explorer({"sopi": _mean_face}, FaceRenderer(toy_face_model(), 32), photos=("astronaut",),
                               static_kinds=("none", "square"))
    assert fig is not None and len(fig.axes) == 4


def test_the_explorer_reads_the_typed_path_and_says_what_is_wrong_in_one_line(monkeypatch, toy_face_model, tmp_path):
    import sys

    for var in ("CI", "OCC3D_PROGRESS"):  # both make viz.headless() true
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OCC3D_INTERACTIVE", "1")
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    box = photo.photo_explorer({"sopi": _mean_face}, FaceRenderer(toy_face_model(), 32), photos=("astronaut",))
    which, path = box.children[0].children
    msg = box.children[3]
    assert "face found by" in msg.value
    assert not path.continuous_update  # the path arrives whole, on Enter
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    path.value = str(notes)  # typed while a shipped photo is chosen: nothing to do yet
    assert "face found by" in msg.value
    which.value = "my file"
    assert "not an image" in msg.value and str(notes) in msg.value and "\n" not in msg.value
    path.value = str(tmp_path / "missing.png")
    assert "no such file" in msg.value
    path.value = ""
    assert msg.value == "type the path of a photo in the file box"
