import math

import pytest
import torch

from occ3d_lib.face import coeffs
from occ3d_lib.render import camera as geometry
from occ3d_lib.render import lighting


def test_rotation_is_orthonormal_with_det_one():
    g = torch.Generator().manual_seed(0)
    angles = (torch.rand(64, 3, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    R = geometry.rotation_matrix(angles)
    eye = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(64, dtype=torch.float64), atol=1e-12)


def test_rotation_order_is_rz_ry_rx():
    # yaw of +90 degrees about y maps +z (towards the camera) to +x
    R = geometry.rotation_matrix(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=torch.float64))[0]
    assert torch.allclose(R @ torch.tensor([0, 0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          atol=1e-12)
    a = torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64)
    rx = geometry.rotation_matrix(torch.tensor([[0.3, 0, 0]], dtype=torch.float64))
    ry = geometry.rotation_matrix(torch.tensor([[0, -0.2, 0]], dtype=torch.float64))
    rz = geometry.rotation_matrix(torch.tensor([[0, 0, 0.1]], dtype=torch.float64))
    assert torch.allclose(geometry.rotation_matrix(a), rz @ ry @ rx)
    # pure roll rotates x towards y
    assert torch.allclose(rz[0] @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          torch.tensor([math.cos(0.1), math.sin(0.1), 0], dtype=torch.float64))


def test_known_point_lands_on_hand_computed_pixel():
    p = torch.tensor([[[0.5, 0.25, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    s = geometry.project(p, 224)[0]
    # u = 1015 * 0.5 / 10 + 112 = 162.75 ; v = 1015 * 0.25 / 10 + 112 = 137.375 ;
    # pixel (r, c) is centred at u = c + 0.5, v = 223.5 - r: column x = u - 0.5, row y = 223.5 - v
    assert s[0].tolist() == pytest.approx([162.25, 223.5 - 137.375, 10.0])
    assert s[1].tolist() == pytest.approx([111.5, 111.5, 10.0])  # the principal point is the image centre
    # scaling the image scales focal and centre: u and v halve at 112 px
    s2 = geometry.project(p, 112)[0]
    assert s2[0, 0].item() == pytest.approx(162.75 / 2 - 0.5)
    assert s2[0, 1].item() == pytest.approx(111.5 - 137.375 / 2)


def test_transform_rotates_then_translates():
    v = torch.tensor([[[1.0, 0, 0]]])
    R = geometry.rotation_matrix(torch.tensor([[0, 0, math.pi / 2]]))
    out = geometry.transform(v, R, torch.tensor([[0.0, 0.0, 1.0]]))
    assert torch.allclose(out, torch.tensor([[[0.0, 1.0, 1.0]]]), atol=1e-6)


def test_bad_image_size_and_angles():
    with pytest.raises(ValueError, match="positive int"):
        geometry.camera_intrinsics(0)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        geometry.rotation_matrix(torch.zeros(3))


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


def test_coefficient_split_and_errors():
    x = torch.arange(2 * 257, dtype=torch.float32).view(2, 257)
    c = coeffs.split_coeffs(x)
    assert c.id.shape == (2, 80) and c.gamma.shape == (2, 27) and c.trans.shape == (2, 3)
    assert c.angle[0].tolist() == [224.0, 225.0, 226.0] and c.gamma[0, 0].item() == 227.0
    assert torch.equal(c.to_tensor(), x)
    assert torch.equal(coeffs.join_coeffs(**{k: getattr(c, k) for k in coeffs.SLICES}), x)
    with pytest.raises(ValueError, match=r"shape \(B, 257\)"):
        coeffs.split_coeffs(torch.zeros(2, 256))
    bad = torch.zeros(2, 257)
    bad[1, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf .*batch 1, index 5"):
        coeffs.split_coeffs(bad)
    with pytest.raises(ValueError, match="floating"):
        coeffs.split_coeffs(torch.zeros(2, 257, dtype=torch.long))
