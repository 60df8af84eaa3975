"""5-point alignment to the 224 crop (docs/facts.md §8) and MTCNN detection."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from occ3d_lib.data import align
from occ3d_lib.render.camera import project


def _rot(a: float, b: float, c: float) -> np.ndarray:
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_pos_fit_recovers_scaled_orthographic_projection() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    r = _rot(0.2, -0.4, 0.1)
    xp = 37.5 * (x @ r.T)[:, :2] + np.array([120.0, 80.0])
    t, s = align.pos_fit(xp, x)
    np.testing.assert_allclose(t, [120.0, 80.0], atol=1e-9)
    assert s == pytest.approx(37.5, rel=1e-9)
    with pytest.raises(ValueError, match="K >= 4"):
        align.pos_fit(xp[:3], x[:3])


def test_extract_5p_hand_values() -> None:
    lm = np.zeros((68, 2))
    lm[36], lm[39], lm[42], lm[45] = (10, 20), (20, 22), (40, 20), (50, 18)
    lm[30], lm[48], lm[54] = (30, 40), (18, 60), (42, 61)
    np.testing.assert_allclose(align.extract_5p(lm), [[15, 21], [45, 19], [30, 40], [18, 60], [42, 61]])
    with pytest.raises(ValueError, match="68"):
        align.extract_5p(np.zeros((5, 2)))


def _template_crop_points(size: int = 224) -> np.ndarray:
    """Where a scaled-orthographic face at 102 px/unit puts the template in the crop."""
    cx, cy = align.crop_centre(size)
    tpl = align.DEFAULT_TEMPLATE_5P
    return np.stack([cx + 102 * size / 224 * tpl[:, 0], cy - 102 * size / 224 * tpl[:, 1]], 1)


def test_template_maps_to_itself() -> None:
    q = _template_crop_points()
    tf = align.estimate_alignment(q)
    assert tf.scale == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(tf.points(q), q, atol=1e-9)
    assert align.crop_centre(224) == (111.5, 111.5)


def test_rendered_face_at_zero_pose_needs_almost_no_change() -> None:
    """Consistency with the renderer's camera: the model origin projects where the crop puts it."""
    tpl = torch.tensor(align.DEFAULT_TEMPLATE_5P, dtype=torch.float64)[None]
    for size in (224, 64):
        pts = project(tpl, size)[0, :, :2].numpy()
        tf = align.estimate_alignment(pts, size=size)
        assert tf.scale == pytest.approx(1.0, abs=0.06)  # perspective vs orthographic, ~3-4 %
        np.testing.assert_allclose(tf.origin, align.crop_centre(size), atol=0.05 * size)
        np.testing.assert_allclose(tf.points(pts), pts, atol=0.03 * size)


def _smooth(xy: np.ndarray) -> np.ndarray:
    x, y = xy[..., 0], xy[..., 1]
    r = 128 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0)
    g = 128 + 90 * np.cos((x + y) / 40.0)
    b = 128 + 80 * np.sin((x - 2 * y) / 50.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255)


@pytest.mark.parametrize("a", [0.5, 1.7])
def test_known_similarity_is_undone(a: float) -> None:
    """A 224 crop scaled by 1/a and shifted into a bigger photo is recovered from its 5 points."""
    q = _template_crop_points()
    centre = np.array(align.crop_centre(224))
    origin = np.array([301.3, 276.8])
    p = origin + (q - centre) / a  # the 5 points in the photo
    h, w = 600, 620  # big enough to hold the whole crop region for both scales
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    photo_xy = np.stack([xx, yy], -1)
    photo = _smooth(centre + a * (photo_xy - origin)).astype(np.uint8)  # crop content seen in the photo
    # a bright blob at the nose tip to check the pixel-centre convention
    d2 = ((photo_xy - p[2]) ** 2).sum(-1)
    blob_sigma = 3.0 / a
    photo = np.where(d2[..., None] < (3 * blob_sigma) ** 2, 255 * np.exp(-d2 / (2 * blob_sigma ** 2))[..., None],
                     photo).astype(np.uint8)
    crop, tf, lm = align.align_face(photo, p, lm68=np.repeat(p[:1], 68, 0))
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert tf.scale == pytest.approx(a, rel=1e-9)
    np.testing.assert_allclose(tf.origin, origin, atol=1e-9)
    np.testing.assert_allclose(tf.points(p), q, atol=1e-9)
    np.testing.assert_allclose(tf.inverse_points(q), p, atol=1e-9)
    np.testing.assert_allclose(lm[0], q[0], atol=1e-9)
    cyx = np.stack(np.mgrid[0:224, 0:224][::-1], -1).astype(np.float64)
    want = _smooth(cyx)
    far = ((cyx - q[2]) ** 2).sum(-1) > 12 ** 2
    err = np.abs(crop.astype(float) - want)[far]
    assert err.mean() < 2.5, err.mean()
    # blob centroid lands on the nose point in the crop (sub-pixel)
    win = (((cyx - q[2]) ** 2).sum(-1) < 8 ** 2)
    wgt = np.where(win, np.clip(crop[..., 0].astype(float) - want[..., 0], 0, None) + 1e-9, 0)
    cen = (cyx * wgt[..., None]).sum((0, 1)) / wgt.sum()
    np.testing.assert_allclose(cen, q[2], atol=0.35)


def test_crop_outside_photo_is_black_and_small_sizes_work() -> None:
    photo = np.full((60, 60, 3), 200, np.uint8)
    q = _template_crop_points(64)
    tf = align.estimate_alignment(q / 3.0 - 10, size=64)  # tiny face at the top-left corner
    crop = align.warp_to_crop(photo, tf)
    assert crop.shape == (64, 64, 3)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [200, 200, 200]


def test_as_pil_rgb_modes() -> None:
    g = Image.fromarray(np.full((4, 5), 77, np.uint8), "L")
    assert np.asarray(align.as_pil_rgb(g)).shape == (4, 5, 3)
    cmyk = Image.new("CMYK", (5, 4), (0, 0, 0, 0))
    assert np.asarray(align.as_pil_rgb(cmyk))[0, 0].tolist() == [255, 255, 255]
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 3] = 255
    assert np.asarray(align.as_pil_rgb(rgba)).shape == (4, 5, 3)
    t = torch.ones(3, 4, 5) * 0.5
    assert np.asarray(align.as_pil_rgb(t))[0, 0].tolist() == [128, 128, 128]
    with pytest.raises(ValueError):
        align.as_pil_rgb(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(TypeError):
        align.as_pil_rgb("not an image")


def test_template_from_face_model_uses_keypoints() -> None:
    class M:
        mean_shape = torch.arange(68 * 3, dtype=torch.float32).view(68, 3)
        keypoints = torch.arange(68)

    t = align.template_from_face_model(M())
    np.testing.assert_allclose(t[0], (M.mean_shape[36] + M.mean_shape[39]).numpy() / 2)
    np.testing.assert_allclose(t[2], M.mean_shape[30].numpy())


def test_mtcnn_astronaut_and_blank() -> None:
    pytest.importorskip("facenet_pytorch")
    skd = pytest.importorskip("skimage.data")
    img = skd.astronaut()
    dets = align.detect_faces(img)
    assert len(dets) >= 1 and dets[0].prob > 0.99
    b, pts = dets[0].box, dets[0].points
    assert pts.shape == (5, 2)
    assert np.all((pts[:, 0] > b[0]) & (pts[:, 0] < b[2]) & (pts[:, 1] > b[1]) & (pts[:, 1] < b[3]))
    assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0] and pts[0, 1] < pts[2, 1] < pts[3, 1]
    crop, tf, _ = align.align_face(img, pts)
    q = tf.points(pts)
    want = _template_crop_points()
    np.testing.assert_allclose(q[:2], want[:2], atol=12)  # the eyes sit where the template puts them
    np.testing.assert_allclose(q, want, atol=20)  # nose / mouth of a real face deviate more
    assert align.detect_5p(np.full((200, 200, 3), 128, np.uint8)) is None
