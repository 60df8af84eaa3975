"""Tests of occ3d_lib.evaluation.sets: the identity-leak check and evaluation sets of a real, aligned batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from evaluation_samples import S, _gt_coeffs, _make_set

from occ3d_lib.evaluation import evaluate as E
from occ3d_lib.evaluation import sets as evalsets
from occ3d_lib.occlusion.kinds import canonical_landmarks


def test_identity_leak_is_refused(renderer):
    gt = _gt_coeffs(3)
    sets = {"none": _make_set(renderer, "none", gt, identity=torch.tensor([7, 8, 9]))}
    with pytest.raises(AssertionError, match="identity leak: 1 evaluation identity"):
        E.evaluate({"m": lambda x: torch.zeros(x.shape[0], 257)}, sets, renderer, bootstrap=5,
                   train_identities=np.array([1, 2, 9]))
    evalsets.assert_no_identity_leak([1, 2], [3, 4])



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
