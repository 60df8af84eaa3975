"""Synthetic dataset: deterministic, split by identity, atomic against interruption, cached."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from occ3d_lib.core.config import config_hash, get_profile
from occ3d_lib.data import synthetic as datasets
from occ3d_lib.data.synthetic import SPLITS, dataset_settings, load_or_build_synthetic, random_backgrounds
from occ3d_lib.face.coeffs import N_EXP, N_ID, N_TEX
from occ3d_lib.face.facemodel import FaceModel, build_point_buf
from occ3d_lib.render.renderer import FaceRenderer

ARRAYS = ("images", "coeffs", "landmarks", "identity")


def pyramid_model(seed: int = 0) -> FaceModel:
    """A square pyramid facing +z with small random bases (80/64/80 components as the coefficients need)."""
    verts = torch.tensor([[-0.8, -0.8, 0.0], [0.8, -0.8, 0.0], [0.8, 0.8, 0.0], [-0.8, 0.8, 0.0], [0.0, 0.0, 0.5]])
    tri = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    n = verts.shape[0]
    g = torch.Generator().manual_seed(seed)
    return FaceModel(mean_shape=verts, id_base=torch.randn(3 * n, N_ID, generator=g) * 0.01,
                     exp_base=torch.randn(3 * n, N_EXP, generator=g) * 0.01,
                     mean_tex=torch.full((n, 3), 128.0), tex_base=torch.randn(3 * n, N_TEX, generator=g),
                     tri=tri, point_buf=build_point_buf(tri, n), keypoints=torch.arange(68) % n,
                     skin_mask=torch.ones(n), info={"name": "pyramid", "resolution": 0, "seed": seed, "version": 1})


def tiny_profile(**kw):
    base = dict(image_size=16, n_train_identities=3, n_val_identities=2, n_test_identities=2, views_per_identity=2)
    base.update(kw)
    return get_profile("smoke").replace(**base)


def _arrays(ds):
    return {(s, k): np.asarray(getattr(ds.split(s), k)) for s in SPLITS for k in ARRAYS}


def test_same_seed_same_bytes_and_sizes(tmp_path):
    p, m = tiny_profile(), pyramid_model()
    a = load_or_build_synthetic(p, m, root=tmp_path / "a", progress=False)
    b = load_or_build_synthetic(p, m, root=tmp_path / "b", progress=False)
    for key, arr in _arrays(a).items():
        assert np.array_equal(arr, _arrays(b)[key]), key
    assert len(a.train) == 6 and len(a.val) == 4 and len(a.test) == 4
    assert a.train.images.shape == (6, 3, 16, 16) and a.train.images.dtype == np.uint8
    assert a.train.coeffs.shape == (6, 257) and a.train.landmarks.shape == (6, 68, 2)
    c = load_or_build_synthetic(tiny_profile(seed=1), m, root=tmp_path / "c", progress=False)
    assert not np.array_equal(np.asarray(c.train.coeffs), np.asarray(a.train.coeffs))


def test_stored_ground_truth_reproduces_the_images(tmp_path):
    m = pyramid_model()
    ds = load_or_build_synthetic(tiny_profile(), m, root=tmp_path, progress=False)
    batch = ds.train.batch([0, 3])
    out = FaceRenderer(m, 16)(batch["coeffs"])
    assert torch.allclose(out.landmarks, batch["landmarks"], atol=1e-4)
    face = out.mask.bool().expand(-1, 3, -1, -1)
    assert face.any()
    assert (batch["image"][face] - out.image.clamp(0, 1)[face]).abs().max() <= 1 / 255 + 1e-6
    # views of one identity share identity and albedo coefficients, nothing else
    c = ds.train.coeffs
    assert np.array_equal(c[0, :80], c[1, :80]) and np.array_equal(c[0, 144:224], c[1, 144:224])
    assert not np.array_equal(c[0, 80:144], c[1, 80:144])


def test_splits_are_identity_disjoint(tmp_path):
    ds = load_or_build_synthetic(tiny_profile(), pyramid_model(), root=tmp_path, progress=False)
    ids = {s: set(ds.split(s).identities.tolist()) for s in SPLITS}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert [len(ids[s]) for s in SPLITS] == [3, 2, 2]
    # one identity's coefficients never appear under another split
    tr, te = ds.train.coeffs[:, :80], ds.test.coeffs[:, :80]
    assert not any(np.array_equal(x, y) for x in tr for y in te)
    with pytest.raises(ValueError, match="unknown split"):
        ds.split("training")


def test_interrupted_generation_leaves_nothing_complete_and_is_redone(tmp_path):
    p, m = tiny_profile(), pyramid_model()
    with pytest.raises(KeyboardInterrupt):
        load_or_build_synthetic(p, m, root=tmp_path, progress=False, _interrupt_after=3)
    key = config_hash(dataset_settings(p, m))
    assert not (tmp_path / key).exists()
    assert list(tmp_path.iterdir()) == []  # no half-written temp folder left behind either
    ds = load_or_build_synthetic(p, m, root=tmp_path, progress=False)
    ref = load_or_build_synthetic(p, m, root=tmp_path / "fresh", progress=False)
    for k, arr in _arrays(ds).items():
        assert np.array_equal(arr, _arrays(ref)[k]), k


def test_incomplete_folder_under_the_final_name_is_regenerated(tmp_path):
    p, m = tiny_profile(), pyramid_model()
    key = config_hash(dataset_settings(p, m))
    (tmp_path / key / "train").mkdir(parents=True)
    (tmp_path / key / "meta.json").write_text(f'{{"key": "{key}"}}')  # meta present, arrays missing
    assert not datasets.is_complete(tmp_path / key, key)
    ds = load_or_build_synthetic(p, m, root=tmp_path, progress=False)
    assert datasets.is_complete(tmp_path / key, key) and len(ds.train) == 6


def test_second_call_reuses_the_cache(tmp_path, monkeypatch):
    p, m = tiny_profile(), pyramid_model()
    first = load_or_build_synthetic(p, m, root=tmp_path, progress=False)

    def boom(*a, **k):
        raise AssertionError("generate_split called although the dataset is cached")

    monkeypatch.setattr(datasets, "generate_split", boom)
    second = load_or_build_synthetic(p, m, root=tmp_path, progress=False)
    assert second.root == first.root
    assert np.array_equal(np.asarray(second.train.images), np.asarray(first.train.images))
    with pytest.raises(AssertionError, match="generate_split called"):  # a different setting is not reused
        load_or_build_synthetic(tiny_profile(views_per_identity=3), m, root=tmp_path, progress=False)


def test_backgrounds_are_deterministic_and_in_range():
    a = random_backgrounds(8, 16, torch.Generator().manual_seed(0))
    b = random_backgrounds(8, 16, torch.Generator().manual_seed(0))
    assert a.shape == (8, 3, 16, 16) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1


def test_named_nonnegative_expression_is_drawn_as_absolute_value():
    m = pyramid_model()
    names = ["smile"] * m.n_exp
    names[3] = "mouth open"
    m.info["component_names"] = {"exp": names}
    g = torch.Generator().manual_seed(0)
    ids, tex = datasets.sample_identities(400, m, g)
    c = datasets.sample_views(ids, tex, m, torch.Generator().manual_seed(1))
    exp = c[:, 80 + 64 - 64: 80 + 64]  # RNet order: id 0:80, exp 80:144
    assert (exp[:, 3] >= 0).all() and (exp[:, 3] > 0).any()
    assert (exp[:, 0] < 0).any()  # other components keep both signs
    m.info["component_names"] = {}
    c2 = datasets.sample_views(ids, tex, m, torch.Generator().manual_seed(1))
    assert torch.equal(c2[:, 80:144].abs(), exp.abs()) and (c2[:, 80 + 3] < 0).any()
