"""occ3d_lib.render.camera: rotation order, projection of known points, validation (notebook 01, section 2)."""
import math

import pytest
import torch

from occ3d_lib.render import camera


def test_rotation_is_orthonormal_with_det_one():
    g = torch.Generator().manual_seed(0)
    angles = (torch.rand(64, 3, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    R = camera.rotation_matrix(angles)
    eye = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(64, dtype=torch.float64), atol=1e-12)


def test_rotation_order_is_rz_ry_rx():
    # yaw of +90 degrees about y maps +z (towards the camera) to +x
    R = camera.rotation_matrix(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=torch.float64))[0]
    assert torch.allclose(R @ torch.tensor([0, 0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          atol=1e-12)
    a = torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64)
    rx = camera.rotation_matrix(torch.tensor([[0.3, 0, 0]], dtype=torch.float64))
    ry = camera.rotation_matrix(torch.tensor([[0, -0.2, 0]], dtype=torch.float64))
    rz = camera.rotation_matrix(torch.tensor([[0, 0, 0.1]], dtype=torch.float64))
    assert torch.allclose(camera.rotation_matrix(a), rz @ ry @ rx)
    # pure roll rotates x towards y
    assert torch.allclose(rz[0] @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          torch.tensor([math.cos(0.1), math.sin(0.1), 0], dtype=torch.float64))


def test_known_point_lands_on_hand_computed_pixel():
    p = torch.tensor([[[0.5, 0.25, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    s = camera.project(p, 224)[0]
    # u = 1015 * 0.5 / 10 + 112 = 162.75 ; v = 1015 * 0.25 / 10 + 112 = 137.375 ;
    # pixel (r, c) is centred at u = c + 0.5, v = 223.5 - r: column x = u - 0.5, row y = 223.5 - v
    assert s[0].tolist() == pytest.approx([162.25, 223.5 - 137.375, 10.0])
    assert s[1].tolist() == pytest.approx([111.5, 111.5, 10.0])  # the principal point is the image centre
    # scaling the image scales focal and centre: u and v halve at 112 px
    s2 = camera.project(p, 112)[0]
    assert s2[0, 0].item() == pytest.approx(162.75 / 2 - 0.5)
    assert s2[0, 1].item() == pytest.approx(111.5 - 137.375 / 2)


def test_transform_rotates_then_translates():
    v = torch.tensor([[[1.0, 0, 0]]])
    R = camera.rotation_matrix(torch.tensor([[0, 0, math.pi / 2]]))
    out = camera.transform(v, R, torch.tensor([[0.0, 0.0, 1.0]]))
    assert torch.allclose(out, torch.tensor([[[0.0, 1.0, 1.0]]]), atol=1e-6)


def test_bad_image_size_and_angles():
    with pytest.raises(ValueError, match="positive int"):
        camera.camera_intrinsics(0)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        camera.rotation_matrix(torch.zeros(3))
