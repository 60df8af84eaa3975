"""Tests of occ3d_lib.occlusion.eval_sets: saving and loading a set, building the cached evaluation sets once.

Inputs are the jittered canonical faces of occlusion_samples; no renderer needed.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from occlusion_samples import LM, S, X, faces, jittered_landmarks

from occ3d_lib import occlusion as O
from occ3d_lib.occlusion import eval_sets


# ----------------------------------------------------------------------------- evaluation sets
def test_eval_set_save_load_round_trip(tmp_path):
    for kind in ("dhofi", "natural"):
        s = O.make_eval_set(X[:5], LM[:5], kind, seed=3)
        assert torch.equal(s.images, (s.images * 255).round() / 255)  # already 8-bit
        path = O.save_occlusion_set(tmp_path / f"{kind}.pt", s)
        back = O.load_occlusion_set(path)
        assert torch.equal(back.images, s.images) and torch.equal(back.masks, s.masks)
        assert torch.equal(back.coverage, s.coverage) and back.kind == kind
        assert back.params["kinds"] == s.params["kinds"] and back.params["seed"] == 3
    # a set is a pure function of its seed: rebuilding gives the stored bytes
    assert torch.equal(O.make_eval_set(X[:5], LM[:5], "dhofi", seed=3).images,
                       O.load_occlusion_set(tmp_path / "dhofi.pt").images)
    m = O.multi_occlusion_set(X[:2], LM[:2], 7, 0)
    back = O.load_occlusion_set(O.save_occlusion_set(tmp_path / "multi.pt", m))
    assert back.images.shape == (2, 7, 3, S, S) and torch.equal(back.masks, m.masks)
    with pytest.raises(FileNotFoundError):
        O.load_occlusion_set(tmp_path / "missing.pt")
    torch.save({"x": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an occlusion set"):
        O.load_occlusion_set(tmp_path / "foreign.pt")


def _fake_ctx(n_images: int = 10, eval_samples: int = 6, seed: int = 0):
    from occ3d_lib.data.synthetic import SyntheticSplit

    lm = jittered_landmarks(n_images, seed=5).numpy()
    imgs = (faces(n_images, seed=5) * 255).round().to(torch.uint8).numpy()
    test = SyntheticSplit("test", imgs, np.zeros((n_images, 257), np.float32), lm, np.arange(n_images) // 2)
    return SimpleNamespace(profile=SimpleNamespace(eval_samples=eval_samples, seed=seed),
                           dataset=SimpleNamespace(test=test))


def test_load_or_build_eval_sets_builds_once_and_reloads(tmp_path, monkeypatch):
    ctx = _fake_ctx()
    kinds = ("none", "dsofi", "natural")
    sets = O.load_or_build_eval_sets(ctx, kinds, root=tmp_path)
    assert list(sets) == list(kinds)
    idx = sets["dsofi"].params["indices"]
    assert len(idx) == 6 and idx == sorted(set(idx)) and all(0 <= i < 10 for i in idx)
    for k in kinds:
        assert (tmp_path / f"{k}.pt").is_file() and sets[k].params["indices"] == idx
    clean = ctx.dataset.test.batch(idx)["image"]
    assert torch.equal(sets["none"].images, clean)
    changed = (sets["dsofi"].images != clean).any(1, keepdim=True)
    assert bool((changed <= sets["dsofi"].masks).all())

    def boom(*a, **k):
        raise AssertionError("should have been loaded from the cache")

    monkeypatch.setattr(eval_sets, "make_eval_set", boom)
    again = O.load_or_build_eval_sets(ctx, kinds, root=tmp_path)
    for k in kinds:
        assert torch.equal(again[k].images, sets[k].images) and torch.equal(again[k].masks, sets[k].masks)
    sub = O.load_or_build_eval_sets(ctx, ["dsofi"], root=tmp_path)  # a subset reuses the files too
    assert torch.equal(sub["dsofi"].images, sets["dsofi"].images)
    monkeypatch.undo()
    (tmp_path / "dsofi.pt").write_bytes(b"half-written garbage")  # an unreadable file is rebuilt, and said so
    with pytest.warns(UserWarning, match="dsofi.pt is damaged"):
        assert torch.equal(O.load_or_build_eval_sets(ctx, kinds, root=tmp_path)["dsofi"].images, sets["dsofi"].images)
    other = O.load_or_build_eval_sets(_fake_ctx(seed=1), kinds, root=tmp_path)  # other key: rebuilt
    assert not torch.equal(other["dsofi"].masks, sets["dsofi"].masks)
    # default location: the artifact cache, keyed by a hash
    monkeypatch.setenv("OCC3D_CACHE", str(tmp_path / "cache"))
    d = O.load_or_build_eval_sets(ctx, ("shofi",))
    assert str(tmp_path / "cache" / "eval_sets") in d["shofi"].params["path"]
    assert torch.equal(O.load_or_build_eval_sets(ctx, ("shofi",))["shofi"].images, d["shofi"].images)
