"""Tests of occ3d_lib.evaluation.evaluate: per-sample metrics, evaluate() with its baseline and references,
colour invariance, a Deep3DFaceRecon checkpoint's landmark convention."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from evaluation_samples import S, _gt_coeffs, _make_set

from occ3d_lib.evaluation import evaluate as E
from occ3d_lib.evaluation import report
from occ3d_lib.face.coeffs import SLICES
from occ3d_lib.nets.models import ReconNet
from occ3d_lib.occlusion.kinds import canonical_landmarks


class Oracle(torch.nn.Module):
    """Returns the ground-truth coefficients of images it has seen (looked up by nearest image); has .predict."""

    def __init__(self, sets):
        super().__init__()
        self.imgs = torch.cat([s.images for s in sets]).flatten(1)
        self.coeffs = torch.cat([s.coeffs for s in sets])
        self.calls = 0

    def predict(self, images):
        self.calls += 1
        d = torch.cdist(images.flatten(1).float(), self.imgs)
        return self.coeffs[d.argmin(1)]

    def forward(self, images):  # must not be used when predict exists
        raise AssertionError("evaluation must call .predict")


def test_sample_metrics_are_zero_for_the_ground_truth(renderer):
    gt = _gt_coeffs(4)
    es = _make_set(renderer, "none", gt)
    v = E.sample_metrics(gt, es, renderer)
    assert set(v) == set(E.METRICS)
    for k in ("me", "mse_x", "mse_y", "nme", "aflw_nme", "vertex_mm", "normal_deg", "coeff_se"):
        assert v[k].abs().max().item() < 1e-3, k
    assert v["hist"].max().item() < 0.05  # only 8-bit quantisation separates the two
    # the mean face is worse on every 3D metric
    mf = E.sample_metrics(E.mean_face_like(gt), es, renderer)
    assert (mf["vertex_mm"] > 0.1).all() and (mf["coeff_se"] > 0).all()
    # landmarks: the mean face at the true pose differs from the truth only through id/exp
    assert mf["me"].mean().item() > 0
    with pytest.raises(ValueError, match="coeffs must have shape"):
        E.sample_metrics(gt[:2], es, renderer)


def test_vertex_error_of_a_known_offset_is_reported_in_mm(renderer):
    gt = _gt_coeffs(2, pose=False)
    es = _make_set(renderer, "none", gt)
    m = renderer.model
    # identity offset whose shape effect is known: vertex error = mean |B_id[:, 0] * 0.5| per vertex * 100
    pred = gt.clone()
    pred[:, 0] += 0.5
    d = (0.5 * m.id_base[:, 0]).view(-1, 3).norm(dim=1).mean().item() * 100
    v = E.sample_metrics(pred, es, renderer)
    assert v["vertex_mm"].tolist() == pytest.approx([d, d], rel=1e-4)


def test_evaluate_structure_baseline_and_predict(renderer):
    b = 5
    gt0 = _gt_coeffs(b, seed=1, pose=False)  # zero pose and light: untrained ReconNet == mean-face baseline
    gt0[:, SLICES["angle"]] = 0
    gt0[:, SLICES["trans"]] = 0
    sets = {"none": _make_set(renderer, "none", gt0, 1), "shofi": _make_set(renderer, "shofi", gt0, 1)}
    oracle = Oracle(sets.values())
    net = ReconNet("resnet18")
    res = E.evaluate({"teacher": net, "mopi": oracle}, sets, renderer, bootstrap=20, seed=3,
                     train_identities=np.arange(100, 110))
    assert res["models"] == ["teacher", "mopi", E.MEAN_FACE]
    assert res["kinds"] == ["none", "shofi"]
    assert oracle.calls >= 2
    s = res["summary"]
    for k in ("none", "shofi"):
        assert s["mopi"][k]["me"]["mean"] == pytest.approx(0.0, abs=1e-3)
        assert s["mopi"][k]["vertex_mm"]["mean"] == pytest.approx(0.0, abs=1e-3)
        # zero-initialised heads predict exactly the mean face at zero pose = the baseline here
        for metric in ("me", "vertex_mm", "normal_deg", "coeff_se"):
            assert s["teacher"][k][metric]["mean"] == pytest.approx(s[E.MEAN_FACE][k][metric]["mean"], rel=1e-5)
        ci = s["teacher"][k]["me"]
        assert ci["lo"] <= ci["mean"] <= ci["hi"] and ci["n"] == b
    assert len(res["per_sample"]["teacher"]["shofi"]["me"]) == b
    cov = res["curves"]["coverage"]["mopi"]["me"]
    assert [c["n"] for c in cov][:3] == [b, 0, b]  # coverage 0 and 0.25 land in bins 0-10 % and 20-30 %
    assert res["meta"]["identity_leak_checked"] is True
    # the ground truth rendered is a reference, not a model: the floor of every metric
    assert res["references"] == [E.MEAN_FACE, E.GROUND_TRUTH] and E.GROUND_TRUTH not in res["models"]
    for k in ("none", "shofi"):
        assert s[E.GROUND_TRUTH][k]["me"]["mean"] == pytest.approx(0.0, abs=1e-3)
        assert s[E.GROUND_TRUTH][k]["hist"]["mean"] < s[E.MEAN_FACE][k]["hist"]["mean"]
    md = report.tables_markdown(res)
    assert "| all kinds | reference: ground truth rendered |" in md and "reference: mean face at the true pose" in md
    assert "the metric's floor" in report.hist_reading(res)
    json.dumps(E.jsonable(res))  # JSON-ready



def test_colour_invariance_measures_albedo_change(renderer):
    b = 3
    images = torch.full((b, 3, S, S), 0.6)
    lm = canonical_landmarks(S).expand(b, 68, 2).clone()

    def colour_sensitive(x):  # texture follows the mean image colour: not invariant
        c = torch.zeros(x.shape[0], 257)
        c[:, SLICES["tex"].start] = 20 * x.mean(dim=(1, 2, 3))
        return c

    def blind(x):  # ignores the image
        return torch.zeros(x.shape[0], 257)

    out = E.colour_invariance({"sensitive": colour_sensitive, "blind": blind}, images, lm, renderer,
                              kind="shofi", seed=0, bootstrap=10)
    assert out["models"]["blind"]["spread"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert out["models"]["blind"]["vs_clean"]["mean"] == pytest.approx(0.0, abs=1e-6)
    # hand computation: the occluder changes the image mean, the albedo moves along B_tex[:, 0]
    from occ3d_lib.occlusion.eval_sets import make_eval_set

    direction = renderer.model.tex_base[:, 0].view(-1, 3).mean(0)  # (3,) mean over the skin vertices, 0..255 scale
    means = torch.stack([make_eval_set(images, lm, "shofi", 0, fill="solid", color=list(c)).images.mean(dim=(1, 2, 3))
                         for c in E.DEFAULT_COLOURS], 1)  # (B, C)
    a = 20 * means.unsqueeze(-1) * direction  # albedo offsets, 8-bit levels (B, C, 3)
    expect = (a - a.mean(1, keepdim=True)).norm(dim=-1).mean(1).mean().item()
    assert expect > 0.1
    assert out["models"]["sensitive"]["spread"]["mean"] == pytest.approx(expect, rel=1e-3)
    with pytest.raises(ValueError, match="two colours"):
        E.colour_invariance({"blind": blind}, images, lm, renderer, colours=[(0, 0, 0)])



def test_a_deep3d_checkpoint_is_scored_in_its_own_landmark_convention(renderer, tmp_path):
    import dataclasses

    from occ3d_lib.nets import checkpoints
    from occ3d_lib.nets.models import seeded

    with seeded(0):
        net = ReconNet("resnet18")
    checkpoints.save_deep3d_checkpoint(net, tmp_path / "epoch_20.pth")
    assert E.landmark_offset(checkpoints.load_deep3d_checkpoint(tmp_path / "epoch_20.pth")) == (0.5, -0.5)
    assert E.landmark_offset(net) is None  # a network trained here draws its landmarks where they are
    es = _make_set(renderer, "none", _gt_coeffs(3))
    # landmarks of the same faces as a detector (or Deep3DFaceRecon's training) places them: (+1/2, -1/2) px at
    # 224 from where the renderer draws their vertices, i.e. (+1/2, -1/2) * 32/224 px at 32
    detected = dataclasses.replace(es, landmarks=es.landmarks + torch.tensor([0.5, -0.5]) * S / 224)
    deep3d, ours = Oracle([es]), Oracle([es])
    deep3d.landmark_convention = "deep3d"
    out = E.evaluate({"deep3d": deep3d, "ours": ours}, {"none": detected}, renderer, baseline=False, bootstrap=10)
    got = out["summary"]
    # scored in its convention, the checkpoint that predicts the true faces has no landmark error
    assert got["deep3d"]["none"]["me"]["mean"] == pytest.approx(0.0, abs=1e-3)
    # the same faces scored without it: the whole offset, sqrt(0.5^2 + 0.5^2) = 0.7071 px at 224
    assert got["ours"]["none"]["me"]["mean"] == pytest.approx(math.sqrt(0.5), abs=1e-3)
    assert got["ours"]["none"]["mse_x"]["mean"] == pytest.approx(0.25, abs=1e-3)
    assert got["ours"]["none"]["mse_y"]["mean"] == pytest.approx(0.25, abs=1e-3)
    assert out["meta"]["landmark_offsets_224"] == {"deep3d": (0.5, -0.5)}
