"""The sentences and tables the notebooks read from a run instead of typing them in: the swap table's reading,
pixels / millimetres / degrees, the histogram's sources, the share of the mean face's 3D error removed, and the
checks of the paper's own tables."""
from __future__ import annotations

import pytest
import torch

from occ3d_lib.evaluation import diagnostics as D
from occ3d_lib.evaluation import report
from occ3d_lib.evaluation.evaluate import MEAN_FACE
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


def _results():
    def st(x):
        return {"mean": x, "lo": x - 0.1, "hi": x + 0.1, "n": 10}
    summ = {MEAN_FACE: {k: {"vertex_mm": st(5.0)} for k in ("none", "shofi")},
            "sopi": {"none": {"vertex_mm": st(4.0)}, "shofi": {"vertex_mm": st(4.5)}},
            "teacher": {"none": {"vertex_mm": st(4.0)}, "shofi": {"vertex_mm": st(5.5)}}}
    return {"models": ["teacher", "sopi", MEAN_FACE], "kinds": ["none", "shofi"], "summary": summ}


def test_share_of_the_mean_face_error_removed():
    shares = report.share_removed(_results())
    assert shares["sopi"] == pytest.approx({"none": 0.2, "shofi": 0.1})
    assert shares["teacher"]["shofi"] == pytest.approx(-0.1) and MEAN_FACE not in shares
    md = report.share_removed_markdown(_results())
    assert "| sopi | +20 % | +10 % |" in md and "| teacher | +20 % | -10 % |" in md
    assert "The most: teacher on Unoccluded, +20 %" in md
    worse = _results()
    for name in ("sopi", "teacher"):
        for k in ("none", "shofi"):
            worse["summary"][name][k]["vertex_mm"]["mean"] = 6.0
    assert "No model removes any of it here" in report.share_removed_markdown(worse)


def test_the_paper_checks_find_what_its_tables_break():
    checks = {c["check"].split(" (")[0]: c for c in report.paper_checks()}
    me = next(c for k, c in checks.items() if k.startswith("ME <= sqrt"))
    # Table 5's RNet row and Table 7's perceptual-only row print an ME above sqrt(MSE_x + MSE_y)
    assert "Table 5, teacher: ME 7.91 > sqrt(5.65 + 3.94) = 3.10" in me["result"]
    assert "Table 7, mopi_perceptual: ME 41.00" in me["result"] and "Table 1" not in me["result"]
    factor = next(c for k, c in checks.items() if "5.59" in k)
    assert "Table 6 RNet histogram (CelebA) / MOPI ME = 5.589" in factor["result"]
    rows = next(c for k, c in checks.items() if k.startswith("Table 5's MOPI row"))
    assert rows["result"].startswith("nearly the same row") and "MSE x 3.21 vs 3.25" in rows["result"]
    assert "4.76" in next(c for k, c in checks.items() if k.startswith("histogram"))["result"]
    assert report.paper_checks_markdown().count("\n") == len(checks) + 2
