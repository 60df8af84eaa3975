"""Real image sets on fixtures in the real formats: CelebA, AFLW2000-3D, photo folders; dlib landmarks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from occ3d_lib.core import external, metrics
from occ3d_lib.data import align, landmarks
from occ3d_lib.data import real as realdata


def _face_points_224() -> np.ndarray:
    cx, cy = align.crop_centre(224)
    t = align.DEFAULT_TEMPLATE_5P
    return np.stack([cx + 102 * t[:, 0], cy - 102 * t[:, 1]], 1)


def _blob_image(w: int, h: int, pts: np.ndarray, seed: int) -> np.ndarray:
    """Noise background with a bright dot at every point."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 120, size=(h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for x, y in pts:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 4] = 255
    return img


# --------------------------------------------------------------------------------------------- CelebA
def _celeba(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    base = tmp_path / "root" / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 6)]
    lm = {}
    for i, n in enumerate(names):
        pts = np.array([[69, 109], [106, 113], [77, 142], [73, 152], [108, 154]], float) + i
        lm[n] = pts
        img = _blob_image(178, 218, pts, i)
        if i == 1:
            Image.fromarray(img).convert("L").save(base / "img_align_celeba" / n, quality=95)  # grayscale JPEG
        elif i == 2:
            Image.fromarray(img).convert("CMYK").save(base / "img_align_celeba" / n, quality=95)  # CMYK JPEG
        else:
            Image.fromarray(img).save(base / "img_align_celeba" / n, quality=95)
    data = (base / "img_align_celeba" / names[4]).read_bytes()
    (base / "img_align_celeba" / names[4]).write_bytes(data[: len(data) // 3])  # truncated JPEG
    (base / "list_eval_partition.txt").write_text("".join(f"{n} {s}\n" for n, s in zip(names, [0, 2, 2, 1, 2])))
    (base / "identity_CelebA.txt").write_text("".join(f"{n} {100 + i}\n" for i, n in enumerate(names)))
    header = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
    rows = "".join(f"{n:<10}" + "".join(f"{int(v):>6d}" for v in lm[n].reshape(-1)) + "\n" for n in names)
    (base / "list_landmarks_align_celeba.txt").write_text(f"{len(names)}\n{header}{rows}")
    return tmp_path / "root", lm


def test_celeba_layout_splits_identities_alignment(tmp_path: Path) -> None:
    root, lm = _celeba(tmp_path)
    ds = realdata.CelebA(root, split="test", size=224)
    assert ds.items == ["000002.jpg", "000003.jpg", "000005.jpg"]
    assert len(realdata.CelebA(root / "celeba", split="train")) == 1  # root may also be the celeba folder
    s = ds[0]
    assert s["identity"] == 101 and s["image"].shape == (3, 224, 224) and s["landmarks"] is None
    # grayscale JPEG -> equal channels; aligned exactly like align_face on the raw file
    img = realdata.load_rgb(ds.root / "img_align_celeba" / "000002.jpg")
    crop, tf, _ = align.align_face(img, lm["000002.jpg"])
    torch.testing.assert_close(s["image"], torch.from_numpy(crop).permute(2, 0, 1).float() / 255)
    assert torch.equal(s["image"][0], s["image"][1])
    # the 5 annotated dots land on the template's crop points
    q = tf.points(lm["000002.jpg"])
    for x, y in np.rint(q).astype(int):
        assert float(s["image"][:, y - 1:y + 2, x - 1:x + 2].mean()) > 0.6
    b = ds.collect()
    assert b.names == ["000002.jpg", "000003.jpg"] and b.identity.tolist() == [101, 102]
    assert len(b.skipped) == 1 and b.skipped[0][0] == "000005.jpg" and "corrupt image" in b.skipped[0][1]
    assert b.report() == "loaded 2 of 3 images, skipped 1: 1 corrupt image"
    assert torch.isnan(b.landmarks).all() and b.images.shape == (2, 3, 224, 224)


def test_celeba_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mmlab.ie.cuhk.edu.hk.*celeba/img_align_celeba"):
        realdata.CelebA(tmp_path / "none")
    root, _ = _celeba(tmp_path)
    (root / "celeba" / "identity_CelebA.txt").unlink()
    with pytest.raises(FileNotFoundError, match="identity_CelebA.txt"):
        realdata.CelebA(root)
    (root / "celeba" / "identity_CelebA.txt").write_text("000001.jpg\n")
    with pytest.raises(ValueError, match="identity_CelebA.txt, line 1"):
        realdata.CelebA(root)
    with pytest.raises(ValueError, match="split"):
        realdata.CelebA(root, split="dev")


# ---------------------------------------------------------------------------------------- AFLW2000-3D
def test_aflw2000_landmarks_pose_and_bad_annotation(tmp_path: Path) -> None:
    d = tmp_path / "AFLW2000"
    d.mkdir()
    rng = np.random.default_rng(0)
    pts68 = np.zeros((3, 68))
    pts68[0] = 150 + 60 * rng.uniform(-1, 1, 68)
    pts68[1] = 200 + 70 * rng.uniform(-1, 1, 68)
    p5 = np.array([[120, 160], [180, 162], [150, 200], [128, 235], [172, 236]], float)
    pts68[:2, 36], pts68[:2, 39], pts68[:2, 42], pts68[:2, 45] = p5[0] - [8, 0], p5[0] + [8, 0], p5[1] - [8, 0], p5[1] + [8, 0]
    pts68[:2, 30], pts68[:2, 48], pts68[:2, 54] = p5[2], p5[3], p5[4]
    Image.fromarray(_blob_image(300, 400, p5, 1)).save(d / "image00002.jpg")
    savemat(d / "image00002.mat", {"pt3d_68": pts68, "Pose_Para": np.array([[0.1, -0.7, 0.05, 150, 200, 0, 1.0]]),
                                   "pt2d": np.zeros((2, 21))})
    Image.fromarray(_blob_image(300, 400, p5, 2)).save(d / "image00004.jpg")
    savemat(d / "image00004.mat", {"pt3d_68": pts68})  # no Pose_Para
    savemat(d / "image00006.mat", {"pt3d_68": pts68, "Pose_Para": np.zeros((1, 7))})  # no image
    ds = realdata.AFLW2000(tmp_path)  # root above AFLW2000/ works
    assert ds.items == ["image00002", "image00004", "image00006"]
    s = ds[0]
    tf = align.estimate_alignment(p5)
    np.testing.assert_allclose(s["landmarks"].numpy(), tf.points(pts68[:2].T), atol=1e-4)
    assert s["yaw_deg"] == pytest.approx(-40.107, abs=1e-3) and metrics.yaw_bin_label(s["yaw_deg"]) == "(30, 60]"
    lm = s["landmarks"].numpy()
    w, h = lm.max(0) - lm.min(0)
    assert s["box_size"] == pytest.approx(float(np.sqrt(w * h)), rel=1e-5)
    np.testing.assert_allclose(tf.points(p5), _face_points_224(), atol=15)  # face lands in the template place
    b = ds.collect()
    assert b.names == ["image00002"] and b.yaw_deg[0] == pytest.approx(-40.107, abs=1e-3)
    assert [w.split(":")[0] for _, w in b.skipped] == ["annotation", "missing file"]
    assert [metrics.yaw_bin_label(a) for a in (0, -30, 30.5, 61)] == ["[0, 30]", "[0, 30]", "(30, 60]", "(60, 90]"]
    with pytest.raises(FileNotFoundError, match="3DDFA"):
        realdata.AFLW2000(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no AFLW2000-3D files"):
        realdata.AFLW2000(tmp_path / "empty")


# ------------------------------------------------------------------------------------- photo folders
def test_photo_folder_with_injected_detector(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    pts = np.array([[40, 50], [70, 50], [55, 68], [44, 82], [66, 82]], float)
    Image.fromarray(_blob_image(110, 120, pts, 0)).save(tmp_path / "p" / "a.png")
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(tmp_path / "p" / "b.png")
    (tmp_path / "p" / "c.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "p" / "notes.txt").write_text("ignored")
    ds = realdata.PhotoFolder(tmp_path / "p", size=64,
                              detector=lambda im: pts if im.shape[:2] == (120, 110) else None)
    assert ds.items == ["a.png", "b.png", "c.jpg"]
    b = ds.collect()
    assert b.names == ["a.png"] and b.images.shape == (1, 3, 64, 64)
    assert b.report() == "loaded 1 of 3 images, skipped 2: 1 corrupt image, 1 no face"
    with pytest.raises(FileNotFoundError, match="photos:<folder>"):
        realdata.PhotoFolder(tmp_path / "nope")


def test_photo_folder_mtcnn_on_astronaut(tmp_path: Path) -> None:
    skd = pytest.importorskip("skimage.data")
    pytest.importorskip("facenet_pytorch")
    (tmp_path / "p").mkdir()
    Image.fromarray(skd.astronaut()).save(tmp_path / "p" / "astronaut.png")
    Image.fromarray(np.full((160, 160, 3), 90, np.uint8)).save(tmp_path / "p" / "wall.png")
    ds = realdata.open_dataset(f"photos:{tmp_path / 'p'}", size=112)
    b = ds.collect()  # type: ignore[union-attr]
    assert b.names == ["astronaut.png"] and b.skipped[0][0] == "wall.png" and "no face" in b.skipped[0][1]


# -------------------------------------------------------------------------------------- files & specs
def test_load_rgb_and_require_file(tmp_path: Path) -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255  # opaque (transparent pixels are composited over white, with a warning)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    a = realdata.load_rgb(tmp_path / "a.png")
    assert a.shape == (20, 30, 3) and a.dtype == np.uint8 and a[0, 0, 0] == 200
    Image.new("P", (10, 12)).save(tmp_path / "p.png")
    assert realdata.load_rgb(tmp_path / "p.png").shape == (12, 10, 3)
    with pytest.raises(FileNotFoundError):
        realdata.load_rgb(tmp_path / "missing.jpg")
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(realdata.SkipImage, match="corrupt image"):
        realdata.load_rgb(tmp_path / "x.jpg")
    with pytest.raises(FileNotFoundError, match="thing not found at .*y.bin. Download it from the moon and put it "
                                                "at data/y.bin"):
        external.require_file(tmp_path / "y.bin", "thing", "the moon", "data/y.bin")
    assert external.require_file(tmp_path / "a.png", "a", "b") == tmp_path / "a.png"


def test_facenet_weights_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(FileNotFoundError, match="20180402-114759-vggface2.pt.*releases/download"):
        external.facenet_weights_path("vggface2", must_exist=True)
    p = external.facenet_weights_path("casia-webface", must_exist=False)
    assert p == tmp_path / "th" / "checkpoints" / "20180408-102900-casia-webface.pt"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"x")
    assert external.facenet_weights_path("casia-webface", must_exist=True) == p
    with pytest.raises(ValueError):
        external.facenet_weights_path("imagenet")


def test_parse_dataset_spec() -> None:
    assert realdata.parse_dataset_spec("synthetic") == ("synthetic", None)
    assert realdata.parse_dataset_spec("celeba:/x/y") == ("celeba", Path("/x/y"))
    for bad in ("celeba", "celeba:", "imagenet:/x", "photos"):
        with pytest.raises(ValueError, match="celeba:<root>"):
            realdata.parse_dataset_spec(bad)
    assert realdata.open_dataset("synthetic") == "synthetic"


# ---------------------------------------------------------------------------------- dlib landmarks
def test_dlib_model_file_found() -> None:
    pytest.importorskip("dlib")
    p = landmarks.dlib_model_path()
    assert p.name == "shape_predictor_68_face_landmarks.dat" and p.stat().st_size > 50_000_000
    with pytest.raises(FileNotFoundError, match="not found inside"):
        landmarks.dlib_model_path("no_such_model.dat")


def test_dlib_blank_image_has_no_face_and_batch_counts_failures() -> None:
    pytest.importorskip("dlib")
    blank = np.full((120, 120, 3), 128, np.uint8)
    assert landmarks.detect_landmarks68(blank) is None
    assert landmarks.detect_face_box(blank) is None
    b = landmarks.batch_landmarks68(torch.full((2, 3, 32, 32), 0.5))
    assert b.landmarks.shape == (2, 68, 2) and np.isnan(b.landmarks).all()
    assert b.found.tolist() == [False, False] and b.failure_rate == 1.0


def test_dlib_astronaut_landmarks_inside_mtcnn_box() -> None:
    pytest.importorskip("dlib")
    pytest.importorskip("facenet_pytorch")
    skd = pytest.importorskip("skimage.data")
    img = skd.astronaut()
    lm = landmarks.detect_landmarks68(img)
    assert lm is not None and lm.shape == (68, 2)
    det = align.detect_faces(img)[0]
    x1, y1, x2, y2 = det.box
    mx, my = 0.1 * (x2 - x1), 0.1 * (y2 - y1)  # jaw points sit on the box edge
    assert np.all((lm[:, 0] > x1 - mx) & (lm[:, 0] < x2 + mx) & (lm[:, 1] > y1 - my) & (lm[:, 1] < y2 + my))
    inner = lm[17:]  # brows, nose, eyes, mouth lie strictly inside
    assert np.all((inner[:, 0] > x1) & (inner[:, 0] < x2) & (inner[:, 1] > y1) & (inner[:, 1] < y2))
    # dlib's 5 derived points agree with MTCNN's to a few pixels (face ~90 px wide)
    np.testing.assert_allclose(align.extract_5p(lm), det.points, atol=8)
    # iBUG order: image-left eye (36-41) left of the other eye, mouth below the nose tip
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean() and lm[48:68, 1].mean() > lm[30, 1]
    lm_box = landmarks.detect_landmarks68(img, box=det.box)  # MTCNN's box instead of dlib's detector
    assert lm_box is not None and np.abs(lm_box - lm).mean() < 3
    small = np.asarray(Image.fromarray(img).resize((256, 256), Image.BICUBIC))
    lm_small = landmarks.detect_landmarks68(small, min_size=512)  # upscaled x2 inside, mapped back
    assert lm_small is not None
    np.testing.assert_allclose((lm_small + 0.5) * 2 - 0.5, lm, atol=4)
    b = landmarks.batch_landmarks68([img, np.zeros((100, 100, 3), np.uint8)])
    assert b.found.tolist() == [True, False] and b.failure_rate == 0.5


def test_user_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from occ3d_lib.core.artifacts import REPO_ROOT

    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.txt").write_text("x")
    assert external.user_path("here.txt") == Path("here.txt")  # exists from the working directory
    assert external.user_path("data/BFM/none.mat") == REPO_ROOT / "data/BFM/none.mat"  # else from the repo root
    assert external.user_path(tmp_path / "abs") == tmp_path / "abs"


def test_photo_demo_on_astronaut() -> None:
    pytest.importorskip("dlib")
    pytest.importorskip("facenet_pytorch")
    pytest.importorskip("skimage")
    d = realdata.photo_demo(size=224)
    assert d["photo"].shape == (512, 512, 3) and d["crop"].shape == (224, 224, 3) and d["prob"] > 0.99
    lm = d["landmarks68_crop"]
    assert lm.shape == (68, 2) and np.all((lm > 0) & (lm < 224))  # the whole face is inside the crop
    np.testing.assert_allclose(d["transform"].points(d["landmarks68"]), lm)
    with pytest.raises(ValueError, match="no face"):
        realdata.photo_demo(np.full((100, 100, 3), 128, np.uint8))
