"""Evaluation runner: per-sample metrics, evaluate(), baseline, colour invariance, leak check, outputs."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from occ3d_lib.core.config import get_profile
from occ3d_lib.data.synthetic import SyntheticSplit
from occ3d_lib.evaluation import evaluate as E
from occ3d_lib.evaluation import report
from occ3d_lib.evaluation import sets as evalsets
from occ3d_lib.face.coeffs import SLICES, join_coeffs
from occ3d_lib.face.facemodel import FaceModel, build_point_buf
from occ3d_lib.nets.models import ReconNet
from occ3d_lib.occlusion.kinds import canonical_landmarks
from occ3d_lib.render.renderer import FaceRenderer

S = 32


def tiny_face_model(n=6):
    """A 6 x 6 vertex bump facing +z, 1.5 units wide (BFM-like units), random small bases."""
    xs = torch.linspace(-0.75, 0.75, n)
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    verts = torch.stack([X.reshape(-1), Y.reshape(-1), 0.3 * torch.exp(-(X ** 2 + Y ** 2) / 0.3).reshape(-1)], 1)
    tri = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            tri += [[i, i + 1, i + n + 1], [i, i + n + 1, i + n]]  # wound so normals point to +z
    tri = torch.tensor(tri)
    nv = verts.shape[0]
    g = torch.Generator().manual_seed(0)
    return FaceModel(mean_shape=verts, id_base=0.02 * torch.randn(3 * nv, 80, generator=g),
                     exp_base=0.02 * torch.randn(3 * nv, 64, generator=g), mean_tex=torch.full((nv, 3), 128.0),
                     tex_base=5 * torch.randn(3 * nv, 80, generator=g), tri=tri, point_buf=build_point_buf(tri, nv),
                     keypoints=torch.arange(68) % nv, skin_mask=torch.ones(nv), info={"name": "tiny-grid"})


@pytest.fixture(scope="module")
def renderer():
    return FaceRenderer(tiny_face_model(), S)


def _gt_coeffs(b, seed=0, pose=True):
    g = torch.Generator().manual_seed(seed)
    c = join_coeffs(id=torch.randn(b, 80, generator=g), exp=0.5 * torch.randn(b, 64, generator=g),
                    tex=torch.randn(b, 80, generator=g))
    if pose:
        c[:, SLICES["angle"]] = 0.2 * torch.randn(b, 3, generator=g)
        c[:, SLICES["trans"]] = 0.05 * torch.randn(b, 3, generator=g)
    return c


def _make_set(renderer, kind, coeffs, seed=0, identity=None):
    g = torch.Generator().manual_seed(seed + 100)
    b = coeffs.shape[0]
    bg = torch.rand(b, 3, 1, 1, generator=g).expand(b, 3, S, S).contiguous()
    with torch.no_grad():
        out = renderer(coeffs, bg)
    clean = (out.image * 255).round() / 255
    images = clean.clone()
    if kind != "none":  # a grey block over the top-left quarter
        images[:, :, : S // 2, : S // 2] = 0.5
    cov = torch.full((b,), 0.0 if kind == "none" else 0.25)
    return evalsets.EvalSet(kind=kind, images=images, clean=clean, landmarks=out.landmarks.float(), coeffs=coeffs,
                     coverage=cov, identity=identity if identity is not None else torch.arange(b))


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


def test_identity_leak_is_refused(renderer):
    gt = _gt_coeffs(3)
    sets = {"none": _make_set(renderer, "none", gt, identity=torch.tensor([7, 8, 9]))}
    with pytest.raises(AssertionError, match="identity leak: 1 evaluation identity"):
        E.evaluate({"m": lambda x: torch.zeros(x.shape[0], 257)}, sets, renderer, bootstrap=5,
                   train_identities=np.array([1, 2, 9]))
    evalsets.assert_no_identity_leak([1, 2], [3, 4])


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


def _fake_results():
    def ci(m):
        return {"mean": m, "lo": m * 0.9, "hi": m * 1.1, "n": 10}

    summ = {"teacher": {}, "sopi": {}, "mopi": {}}
    for k, (t, s_, m) in {"none": (1.0, 1.1, 1.0), "dsofi": (3.0, 1.2, 1.1), "dhofi": (4.0, 1.2, 1.1),
                          "shofi": (6.0, 2.0, 1.5), "random_pattern": (5.0, 1.5, 1.3), "natural": (2.0, 1.5, 1.4)}.items():
        for name, v in (("teacher", t), ("sopi", s_), ("mopi", m)):
            summ[name][k] = {"me": ci(v), "mse_x": ci(v * v), "mse_y": ci(v), "nme": ci(v / 224),
                             "nmse_x": ci(v / 224 ** 2), "nmse_y": ci(v / 224 ** 2), "hist": ci(0.1 * v),
                             "vertex_mm": ci(2 * v), "normal_deg": ci(3 * v)}
    return {"meta": {"dataset": "synthetic", "bootstrap": 10, "alpha": 0.05, "n": {}}, "models": list(summ),
            "kinds": ["none", "shofi"], "summary": summ, "curves": {}}


def test_tables_markdown_has_paper_numbers_and_ours():
    md = report.tables_markdown(_fake_results())
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Beyond the paper"):
        assert title in md
    for paper_number in ("5.84", "0.77", "7.91", "41.00", "(32.84, 23.97)", "7.98", "(3.25, 1.66)"):
        assert paper_number in md, paper_number
    assert "6.00 [5.40, 6.60]" in md          # teacher SHOFI ME with its CI
    assert "n/a" in md                         # ablation models not in the results
    line = next(row for row in md.splitlines() if row.startswith("| SHOFI / RNet"))
    assert "| -- |" in line                    # the paper printed no RNet number for SHOFI


def test_verdicts_on_hand_made_results():
    v = {x.claim: x for x in report.verdicts(_fake_results())}
    clean = v["SOPI's landmark error on unoccluded faces is comparable to the teacher's (Table 1)"]
    assert clean.verdict == "holds"  # 1.1 vs 1.0 within 1.25
    assert v["SOPI on SHOFI is as precise as on unoccluded faces (Table 1)"].verdict == "does not hold here"  # 2.0/1.1
    assert v["SOPI on DSOFI is as precise as on unoccluded faces (Table 1)"].verdict == "holds"
    beat = v["SOPI beats the teacher on SHOFI (Table 1: RNet '--', no reliable result)"]
    assert beat.verdict == "holds" and "CIs separate" in beat.ours
    assert v["Full Eq. 9 loss beats the label-only ablation (Table 7)"].verdict == "not measured"
    small = v["MOPI is more accurate than SOPI on occluded faces (Sec. 5)"]  # 1.3 vs 1.5: below the 0.5 px that count
    assert small.verdict == "too small to count" and "minimum effect" in small.ours
    res = _fake_results()
    res["summary"]["mopi-label"] = {"random_pattern": {"me": {"mean": 2.0, "lo": 1.4, "hi": 2.6, "n": 10}}}
    v2 = {x.claim: x for x in report.verdicts(res)}
    overlap = v2["Full Eq. 9 loss beats the label-only ablation (Table 7)"]  # 1.3 [1.17, 1.43] vs 2.0 [1.4, 2.6]
    assert overlap.verdict == "holds, not significant" and "CIs overlap" in overlap.ours


def test_write_metrics_strict_json_and_report(tmp_path):
    res = _fake_results()
    res["summary"]["teacher"]["none"]["hist"]["mean"] = float("nan")
    p = E.write_metrics(tmp_path / "metrics.json", res)
    text = p.read_text()
    assert "NaN" not in text
    back = E.read_metrics(p)
    assert back["summary"]["teacher"]["none"]["hist"]["mean"] is None
    r = report.write_report(tmp_path, res, {"profile": "smoke"}, {"teacher": 12.0}, figures={"grid_none": "figures/g.png"})
    body = r.read_text()
    assert r == tmp_path / "report.md"
    for s in ("## Verdicts", "### Table 7", "![grid_none](figures/g.png)", "| teacher | 12.0 |", '"profile": "smoke"'):
        assert s in body, s
    with pytest.raises(FileNotFoundError):
        E.read_metrics(tmp_path / "nope.json")


def test_run_evaluation_end_to_end(tmp_path, monkeypatch, renderer):
    """A fake Context: tiny train/test splits, the occlusion module's cached sets, report on disk."""
    monkeypatch.setenv("OCC3D_CACHE", str(tmp_path / "cache"))

    def split(name, b, seed, id0):
        c = _gt_coeffs(b, seed)
        es = _make_set(renderer, "none", c, seed)
        return SyntheticSplit(name=name, images=(es.clean * 255).round().to(torch.uint8).numpy(),
                              coeffs=c.numpy(), landmarks=es.landmarks.numpy(),
                              identity=np.arange(id0, id0 + b))

    train, test = split("train", 4, 5, 0), split("test", 6, 6, 100)
    dataset = SimpleNamespace(train=train, test=test, split=lambda n: {"train": train, "test": test}[n])
    profile = get_profile("smoke").replace(eval_samples=4, bootstrap=10)
    ctx = SimpleNamespace(profile=profile, dataset=dataset, renderer=renderer, device="cpu", run_dir=tmp_path / "run",
                          face_model_spec="tiny", dataset_spec="synthetic", teacher_spec="train", facenet_spec="synthetic")
    ctx.run_dir.mkdir()
    models = {"teacher": ReconNet("resnet18"), "sopi": lambda x: torch.zeros(x.shape[0], 257)}
    res = report.run_evaluation(ctx, models, kinds=("none", "shofi", "random_pattern"), timings={"teacher": 1.0})
    assert (ctx.run_dir / "metrics.json").is_file() and (ctx.run_dir / "report.md").is_file()
    assert (ctx.run_dir / "figures" / "grid_shofi.png").is_file()
    assert res["kinds"] == ["none", "shofi", "random_pattern"]
    assert all(n == 4 for n in res["meta"]["n"].values())
    assert math.isfinite(res["summary"]["sopi"]["shofi"]["me"]["mean"])
    assert "colour_invariance" in res and set(res["colour_invariance"]["models"]) == {"teacher", "sopi"}
    # a training identity in the test split is caught
    test.identity[:] = 0
    with pytest.raises(AssertionError, match="identity leak"):
        report.run_evaluation(ctx, models, kinds=("none",), write=False)


def test_real_eval_sets_from_an_aligned_batch(monkeypatch, renderer):
    """A fake real set with its own landmarks (AFLW-like): sets per kind, no 3D ground truth, yaw kept."""
    from occ3d_lib.data import real as realdata

    b = 3
    images = torch.rand(b, 3, S, S, generator=torch.Generator().manual_seed(1))
    lm = canonical_landmarks(S).expand(b, 68, 2).clone()
    batch = realdata.AlignedBatch(images=images, landmarks=lm, identity=torch.full((b,), -1),
                                  yaw_deg=torch.tensor([10.0, -40.0, 70.0]), names=["a", "b", "c"])

    class FakeSet:
        def collect(self, limit=None, progress=False):
            return batch

    monkeypatch.setattr(realdata, "open_dataset", lambda spec, size, split="test", template=None, **kw: FakeSet())
    sets = evalsets.real_eval_sets("aflw2000:/nowhere", S, kinds=("none", "shofi"), n=3)
    assert list(sets) == ["none", "shofi"]
    assert sets["none"].coeffs is None and sets["none"].dataset == "aflw2000"
    assert torch.equal(sets["none"].clean, images) and not torch.equal(sets["shofi"].images, images)
    assert (sets["shofi"].coverage > 0.2).all()
    res = E.evaluate({"zero": lambda x: torch.zeros(x.shape[0], 257)}, sets, renderer, bootstrap=5)
    assert res["models"] == ["zero"]  # no mean-face baseline without ground-truth coefficients
    assert "vertex_mm" not in res["summary"]["zero"]["none"]
    assert [c["n"] for c in res["curves"]["yaw"]["zero"]["me"]] == [2, 0, 2, 0, 2]  # |yaw| 10, 40, 70 in bins 0-15, 30-45, 60-90


def test_worst_cases_and_figures(renderer):
    res = {"per_sample": {"m": {"shofi": {"me": [1.0, 5.0, None, 3.0]}}}}
    assert report.worst_cases(res, "m", "shofi", k=2) == [1, 3]
    with pytest.raises(KeyError, match="no per-sample"):
        report.worst_cases(res, "m", "none")
    gt = _gt_coeffs(3)
    es = _make_set(renderer, "shofi", gt)
    models = {"zero": lambda x: torch.zeros(x.shape[0], 257)}
    fig = report.failure_grid(models, es, renderer, [2, 0])
    assert len(fig.axes) == 2 * 2
    fig2 = report.colour_grid(models, es.clean[0], canonical_landmarks(S), renderer, colours=E.DEFAULT_COLOURS[:3])
    assert len(fig2.axes) == 2 * 3


def test_verdict_strings_are_formatted_from_the_papers_table():
    v = {x.claim: x for x in report.verdicts(_fake_results())}
    t5 = report.PAPER["table5"]
    assert v["MOPI beats the teacher on random patterns (Table 5)"].paper == f"ME {t5['mopi'][0]} vs {t5['teacher'][0]}"
    t1 = report.PAPER["table1"]
    assert v["SOPI on DHOFI is as precise as on unoccluded faces (Table 1)"].paper == \
        f"ME {t1['dhofi']['sopi'][0]} vs {t1['none']['sopi'][0]}"


def test_verdict_counts_split_by_what_a_claim_compares_with():
    res = _fake_results()
    res["summary"][E.MEAN_FACE] = {k: {"me": {"mean": 1.05, "lo": 0.95, "hi": 1.15, "n": 10},
                                       "vertex_mm": {"mean": 10.0, "lo": 9.0, "hi": 11.0, "n": 10}}
                                   for k in ("none", "shofi", "random_pattern")}
    v = report.verdicts(res)
    base = [x for x in v if x.against == "mean face"]
    assert len(base) == 6 and all(x.claim.startswith("Baseline:") for x in base)
    # landmark ME: SOPI 1.1 and 2.0, MOPI 1.3 are all above the mean face's 1.05; 3D: 2.2, 4.0, 2.6 mm far below 10
    counts = report.verdict_counts(v)
    assert counts["mean face"] == {"does not hold here": 3, "holds": 3}
    assert sum(sum(row.values()) for row in counts.values()) == len(v)
    assert "mean face: 3 of 6" in report.verdict_counts_markdown(v)


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
