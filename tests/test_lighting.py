"""occ3d_lib.render.lighting: the SH basis and shading against hand-computed values (notebook 01, section 3)."""
import math

import pytest
import torch

from occ3d_lib.render import lighting


def _sphere_grid(n=400):
    th = (torch.arange(n, dtype=torch.float64) + 0.5) * math.pi / n
    ph = (torch.arange(2 * n, dtype=torch.float64) + 0.5) * math.pi / n
    T, P = torch.meshgrid(th, ph, indexing="ij")
    nrm = torch.stack([T.sin() * P.cos(), T.sin() * P.sin(), T.cos()], -1)
    w = T.sin() * (math.pi / n) ** 2
    return nrm, w


def test_sh_basis_is_orthogonal_over_the_sphere():
    nrm, w = _sphere_grid()
    Y = lighting.sh_basis(nrm)  # (n, 2n, 9)
    G = torch.einsum("ijk,ijl,ij->kl", Y, Y, w)
    off = G - torch.diag(torch.diag(G))
    assert off.abs().max() < 1e-4 * G.diag().abs().min()
    # scaled basis: integral of (a_l c_l Y)^2 = a_l^2 (the c_l normalise the harmonics)
    a = torch.tensor([lighting.A0] + [lighting.A1] * 3 + [lighting.A2] * 5, dtype=torch.float64)
    assert torch.allclose(G.diag(), a ** 2, rtol=1e-3)


def test_shading_of_a_known_normal_is_hand_computed():
    n = torch.tensor([[[0.0, 0.0, 1.0]]])
    albedo = torch.full((1, 1, 3), 0.5)
    gamma = torch.zeros(1, 27)
    # ambient only: 0.8 * a0 * c0 = 0.8 * pi / sqrt(4 pi) = 0.4 * sqrt(pi)
    c = lighting.shade(albedo, n, gamma)
    assert torch.allclose(c, torch.full((1, 1, 3), 0.5 * 0.4 * math.sqrt(math.pi)))
    # add 0.5 to the z-band coefficient of the red channel: + 0.5 * a1 * c1 * z = 0.5 * sqrt(pi)
    gamma[0, 2] = 0.5
    c = lighting.shade(albedo, n, gamma)
    assert c[0, 0, 0].item() == pytest.approx(0.5 * (0.4 + 0.5) * math.sqrt(math.pi), rel=1e-6)
    assert c[0, 0, 1].item() == pytest.approx(0.5 * 0.4 * math.sqrt(math.pi), rel=1e-6)


def test_white_gamma_repeats_rows():
    g = lighting.white_gamma(torch.arange(9.0).unsqueeze(0))
    assert torch.equal(lighting.gamma_matrix(g)[0, 0], lighting.gamma_matrix(g)[0, 2])
