"""Metrics: landmark ME / MSE / normalised / NME, histogram dissimilarity, dense 3D errors, bootstrap CI."""
from __future__ import annotations

import math

import pytest
import torch

from occ3d_lib.core import metrics as M


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


# ----------------------------------------------------------------------------- landmarks
def test_landmark_me_and_mse_hand_values_at_224():
    gt = torch.zeros(2, 68, 2)
    pred = gt.clone()
    pred[0, :, 0] = 3.0  # every point 5 px away
    pred[0, :, 1] = 4.0
    pred[1, 0, 0] = 68.0                       # one point 68 px away in x
    me = M.landmark_me(pred, gt, 224)
    assert me.tolist() == pytest.approx([5.0, 1.0])
    assert M.landmark_me(pred, gt, 224, reduction="mean").item() == pytest.approx(3.0)
    mse = M.landmark_mse_xy(pred, gt, 224)
    assert mse.tolist() == [pytest.approx([9.0, 16.0]), pytest.approx([68.0, 0.0])]
    assert M.landmark_mse_xy(pred, gt, 224, reduction="mean").tolist() == pytest.approx([38.5, 8.0])
    with pytest.raises(ValueError, match="reduction"):
        M.landmark_me(pred, gt, 224, reduction="sum")


def test_landmarks_are_reported_at_224_scale():
    gt = torch.zeros(1, 68, 2)
    pred = torch.zeros(1, 68, 2)
    pred[..., 0] = 1.0  # 1 px at 64 px resolution = 3.5 px at 224
    assert M.landmark_me(pred, gt, 64).item() == pytest.approx(3.5)
    assert M.landmark_mse_xy(pred, gt, 64)[0].tolist() == pytest.approx([12.25, 0.0])
    assert M.normalized_landmark_me(pred, gt, 64).item() == pytest.approx(3.5 / 224)
    assert M.normalized_landmark_mse_xy(pred, gt, 64)[0, 0].item() == pytest.approx(12.25 / 224 ** 2)
    with pytest.raises(ValueError, match="same shape"):
        M.landmark_me(pred, torch.zeros(1, 5, 2), 64)


def test_aflw_nme_uses_gt_box():
    gt = torch.zeros(1, 68, 2)
    gt[0, 1] = torch.tensor([40.0, 10.0])   # box 40 x 10 -> sqrt(area) = 20
    pred = gt.clone()
    pred[0, :, 1] += 2.0                     # every point 2 px off
    assert M.aflw_nme(pred, gt).item() == pytest.approx(2.0 / 20.0)
    # scale invariant
    assert M.aflw_nme(pred * 3, gt * 3).item() == pytest.approx(0.1)


def test_yaw_bins():
    yaw = torch.deg2rad(torch.tensor([0.0, -29.0, 30.0, 45.0, -61.0, 90.0, 120.0]))
    assert M.yaw_bin(yaw).tolist() == [0, 0, 0, 1, 2, 2, 2]


# ----------------------------------------------------------------------------- histograms
def test_histogram_dissimilarity_identity_symmetry_and_disjoint():
    g = _gen(1)
    a = torch.rand(3, 3, 8, 8, generator=g)
    b = torch.rand(3, 3, 8, 8, generator=g)
    mask = torch.ones(3, 1, 8, 8)
    assert torch.allclose(M.histogram_dissimilarity(a, a, mask), torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(M.histogram_dissimilarity(a, b, mask), M.histogram_dissimilarity(b, a, mask))
    black, white = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert M.histogram_dissimilarity(black, white, torch.ones(1, 1, 4, 4)).item() == pytest.approx(1.0)
    # only pixels inside the mask count: differences outside are invisible
    c = a.clone()
    c[:, :, :4] = 1 - c[:, :, :4]
    m2 = torch.zeros(3, 1, 8, 8)
    m2[:, :, 4:] = 1
    assert torch.allclose(M.histogram_dissimilarity(a, c, m2), torch.zeros(3, dtype=torch.float64))
    assert torch.isnan(M.histogram_dissimilarity(a, b, torch.zeros(3, 1, 8, 8))).all()


def test_histogram_hand_value():
    # red channel: half the pixels in bin 0 vs all in bin 0 -> BC = sqrt(0.5), green/blue identical
    x = torch.zeros(1, 3, 1, 2)
    y = torch.zeros(1, 3, 1, 2)
    y[0, 0, 0, 1] = 0.99
    h = M.masked_color_histograms(y, torch.ones(1, 1, 1, 2), bins=4)
    assert h[0, 0].tolist() == [0.5, 0.0, 0.0, 0.5]
    d = M.histogram_dissimilarity(x, y, torch.ones(1, 1, 1, 2), bins=4)
    assert d.item() == pytest.approx(math.sqrt(1 - math.sqrt(0.5)) / 3)


# ----------------------------------------------------------------------------- dense 3D
def test_vertex_error_in_mm_and_alignment():
    g = _gen(2)
    gt = torch.randn(2, 50, 3, generator=g, dtype=torch.float64)
    shifted = gt + torch.tensor([0.03, 0.0, 0.04], dtype=torch.float64)  # 0.05 units = 5 mm
    assert M.vertex_error(shifted, gt).tolist() == pytest.approx([5.0, 5.0])
    assert M.vertex_error(shifted, gt, mm_per_unit=1.0).tolist() == pytest.approx([0.05, 0.05])
    moved = 1.3 * gt @ _rot_z(0.4).T + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert M.vertex_error(moved, gt, "none").min().item() > 10
    assert M.vertex_error(moved, gt, "similarity").max().item() == pytest.approx(0.0, abs=1e-8)
    rigid_only = gt @ _rot_z(-1.0).T + 0.5
    assert M.vertex_error(rigid_only, gt, "rigid").max().item() == pytest.approx(0.0, abs=1e-8)
    # rigid alignment cannot undo a scale
    assert M.vertex_error(1.3 * gt, gt, "rigid").min().item() > 1
    # a mask restricts the average: error on vertex 0 only
    e = gt.clone()
    e[:, 0, 0] += 0.1
    mask = torch.zeros(50)
    mask[:2] = 1
    assert M.vertex_error(e, gt, mask=mask).tolist() == pytest.approx([5.0, 5.0])
    with pytest.raises(ValueError, match="alignment must be one of"):
        M.vertex_error(gt, gt, "affine")


def test_umeyama_recovers_similarity_and_avoids_reflection():
    g = _gen(3)
    src = torch.randn(1, 30, 3, generator=g, dtype=torch.float64)
    r = _rot_z(0.7)
    dst = 2.0 * src @ r.T + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    s, rot, t = M.umeyama(src, dst)
    assert s.item() == pytest.approx(2.0)
    assert torch.allclose(rot[0], r, atol=1e-10)
    assert torch.allclose(t[0], torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64), atol=1e-10)
    mirrored = src * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    _, rot2, _ = M.umeyama(src, mirrored, with_scale=False)
    assert torch.linalg.det(rot2[0]).item() == pytest.approx(1.0)


def test_normal_angular_error_hand_values():
    z = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]]])
    tilt = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 0.0, -1.0]]])
    # 45 degrees and 180 degrees
    assert M.normal_angular_error(tilt, z).item() == pytest.approx((45 + 180) / 2)
    assert M.normal_angular_error(tilt, z, mask=torch.tensor([1.0, 0.0])).item() == pytest.approx(45.0)
    assert M.normal_angular_error(z, z).item() == pytest.approx(0.0, abs=1e-3)


# ----------------------------------------------------------------------------- statistics
def test_bootstrap_ci_properties():
    v = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    m, lo, hi = M.bootstrap_ci(v, n=2000, alpha=0.1, generator=_gen(4))
    assert m == pytest.approx(4.0)
    assert 1.0 <= lo < m < hi <= 10.0
    # slow reference: the same resampling written as a loop
    g = _gen(4)
    idx = torch.randint(0, 5, (2000, 5), generator=g)
    means = torch.stack([v.double()[row].mean() for row in idx])
    assert lo == pytest.approx(torch.quantile(means, 0.05).item())
    assert hi == pytest.approx(torch.quantile(means, 0.95).item())
    # reproducible, constant data has a zero-width interval, NaNs are dropped
    assert M.bootstrap_ci(v, n=500, generator=_gen(9)) == M.bootstrap_ci(v, n=500, generator=_gen(9))
    assert M.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert M.bootstrap_ci([float("nan"), 3.0]) == (3.0, 3.0, 3.0)
    assert all(math.isnan(x) for x in M.bootstrap_ci([float("nan")]))
    with pytest.raises(ValueError, match="alpha"):
        M.bootstrap_ci(v, alpha=1.5)


def test_binned_mean():
    vals = torch.tensor([1.0, 3.0, 5.0, 7.0, 100.0])
    keys = torch.tensor([0.0, 0.25, 0.5, 0.75, 0.875])
    out = M.binned_mean(vals, keys, [0.0, 0.5, 0.75])
    assert [(b["n"], b["mean"]) for b in out] == [(2, 2.0), (2, 6.0)]  # 0.75 falls in the closed last bin
    assert math.isnan(M.binned_mean(vals, keys, [0.55, 0.7])[0]["mean"])
    with pytest.raises(ValueError, match="increasing"):
        M.binned_mean(vals, keys, [0.5, 0.1])
