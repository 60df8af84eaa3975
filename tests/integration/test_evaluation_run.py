"""The evaluation run end to end: a fake Context's synthetic splits, the occlusion module's cached sets,
evaluation, the identity-leak check and the report with its figures on disk."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from evaluation_samples import _gt_coeffs, _make_set

from occ3d_lib.core.config import get_profile
from occ3d_lib.data.synthetic import SyntheticSplit
from occ3d_lib.evaluation import report
from occ3d_lib.nets.models import ReconNet


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
