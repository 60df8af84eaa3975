"""evaluation.diagnostics: the sentences and numbers the notebooks read from a run instead of typing them
in: the swap table's reading, pixels / millimetres / degrees for this camera, the histogram's sources."""
from __future__ import annotations

import pytest
import torch

from occ3d_lib.evaluation import diagnostics as D
from occ3d_lib.face.coeffs import SLICES, join_coeffs
from occ3d_lib.render.renderer import FaceRenderer


@pytest.fixture(scope="module")
def renderer(toy_face_model):
    return FaceRenderer(toy_face_model(), 32)


def _truth(b: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = join_coeffs(id=2 * torch.randn(b, 80, generator=g), exp=torch.randn(b, 64, generator=g),
                    tex=torch.randn(b, 80, generator=g))
    c[:, SLICES["angle"]] = 0.1 * torch.randn(b, 3, generator=g)
    return c


def test_swap_reading_says_what_the_numbers_say():
    parts = {"prediction": 4.0, "pose (rotation + translation)": 1.0, "shape (identity + expression)": 3.0}
    text = D.swap_reading(parts, baseline_me=5.0)
    assert "falls from 4.00 to 1.00 px (+75% of it removed)" in text and "The pose is the larger part" in text
    assert "scores 5.00 px: the teacher is below it (ratio 0.80)" in text
    worse = D.swap_reading({"prediction": 2.0, "pose (rotation + translation)": 2.5}, model="SOPI")
    assert "SOPI's error rises from 2.00 to 2.50 px (-25% of it removed)" in worse


def test_unit_conversions_match_the_camera_and_the_turns(renderer):
    gt = _truth()
    lm = renderer.landmarks(gt)
    conv = D.unit_conversions(renderer, gt, lm)
    assert conv["mm_per_px"] == pytest.approx(1000 / 1015)  # camera 10 units = 1 m away, focal 1015 px at 224
    assert conv["identity_me"] > 0
    for axis in D.POSE_AXES:
        curve = conv["curve"][axis]
        assert conv["px_per_degree"][axis] == dict(curve)[1.0] > 0
        d = conv["degrees_for_identity"][axis]
        if d is not None:  # the interpolated turn lands between two measured turns around the identity's ME
            lo = max(e for deg, e in curve if deg <= d) if any(deg <= d for deg, _ in curve) else 0.0
            hi = min(e for deg, e in curve if deg >= d)
            assert lo <= conv["identity_me"] <= hi
    assert "| yaw |" in D.conversions_markdown(conv) and "mm on the face" in D.conversions_markdown(conv)
    with pytest.raises(ValueError, match="landmarks"):
        D.unit_conversions(renderer, gt, lm[:2])


def test_hist_with_true_groups_finds_the_light(renderer):
    gt = _truth()
    clean = (renderer(gt, torch.zeros(4, 3, 32, 32)).image * 255).round() / 255
    pred = gt.clone()
    pred[:, SLICES["gamma"]] += 0.3  # only the light is wrong
    h = D.hist_with_true_groups(pred, gt, clean, renderer)
    assert h["ground truth"] < 0.05 and h["prediction"] > h["light"]
    assert h["light"] == pytest.approx(h["ground truth"], abs=1e-6)  # the true light restores the truth


def test_render_hist_is_the_prediction_row_and_swap_table_lists_every_swap(renderer):
    gt = _truth()
    clean = (renderer(gt, torch.zeros(4, 3, 32, 32)).image * 255).round() / 255
    pred = gt.clone()
    pred[:, SLICES["gamma"]] += 0.3
    assert D.render_hist(pred, clean, renderer) == D.hist_with_true_groups(pred, gt, clean, renderer, rows={})["prediction"]
    assert D.render_hist(gt, clean, renderer) < 0.05 < D.render_hist(pred, clean, renderer)
    table = D.swap_table({"prediction": 4.061, "pose (rotation + translation)": 2.77}, "SOPI").splitlines()
    assert table == ["| SOPI's prediction with ... | ME (px @224) |", "|---|---|", "| nothing changed | 4.06 |",
                     "| true pose (rotation + translation) | 2.77 |"]
