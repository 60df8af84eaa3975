"""Tests of occ3d_lib.teaching.probes: the landmark probe and the gradchecked raster function."""
from __future__ import annotations

import pytest
import torch

from occ3d_lib.core.metrics import landmark_me
from occ3d_lib.teaching import probes


def test_landmark_probe_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(300, 3, 8, 8, generator=g)
    probe_feats = imgs.mean(1).flatten(1)  # size=8: pooling is the identity
    w = torch.randn(64, 136, generator=g, dtype=torch.float64)
    lm = (probe_feats.double() @ w).view(-1, 68, 2).float()
    probe = probes.fit_landmark_probe(imgs, lm, lam=0.0, size=8)
    assert landmark_me(probe(imgs), lm, 8).max().item() < 1e-2 * 224 / 8
    with pytest.raises(ValueError, match="landmarks must be"):
        probes.fit_landmark_probe(imgs, lm[:, :5], lam=0.0, size=8)



def test_raster_colours_and_depth_gradcheck():
    scr = torch.tensor([[[0.37, 0.21, 3.0], [6.63, 0.84, 4.0], [1.12, 6.71, 5.0]]], dtype=torch.float64,
                       requires_grad=True)
    col = torch.rand(1, 3, 3, dtype=torch.float64, requires_grad=True)
    tri = torch.tensor([[0, 1, 2]])
    img, depth = probes.raster_colours_and_depth(scr, tri, 8, col)
    assert img.shape == (1, 8, 8, 3) and depth.shape[:3] == (1, 8, 8)
    assert torch.autograd.gradcheck(lambda s, c: probes.raster_colours_and_depth(s, tri, 8, c), (scr, col),
                                    eps=1e-6, atol=1e-6)
