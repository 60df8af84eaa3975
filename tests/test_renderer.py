"""FaceRenderer on a tiny hand-made face model: shapes, coverage, landmarks, compositing, gradients."""
from __future__ import annotations

import math

import pytest
import torch

from occ3d_lib.face.coeffs import N_EXP, N_ID, N_TEX, join_coeffs
from occ3d_lib.face.facemodel import FaceModel, build_point_buf, face_normals
from occ3d_lib.render import camera as geometry
from occ3d_lib.render import lighting
from occ3d_lib.render.renderer import FaceRenderer, mean_face_coeffs

S = 32


def pyramid_model(seed: int = 0, scale: float = 0.02) -> FaceModel:
    """A square pyramid (base +-0.8 at z = 0, apex at z = 0.5) with outward (+z) winding and small random bases."""
    verts = torch.tensor([[-0.8, -0.8, 0.0], [0.8, -0.8, 0.0], [0.8, 0.8, 0.0], [-0.8, 0.8, 0.0], [0.0, 0.0, 0.5]])
    tri = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    n = verts.shape[0]
    g = torch.Generator().manual_seed(seed)
    return FaceModel(mean_shape=verts, id_base=torch.randn(3 * n, N_ID, generator=g) * scale,
                     exp_base=torch.randn(3 * n, N_EXP, generator=g) * scale,
                     mean_tex=torch.full((n, 3), 128.0), tex_base=torch.randn(3 * n, N_TEX, generator=g) * 2,
                     tri=tri, point_buf=build_point_buf(tri, n), keypoints=torch.arange(68) % n,
                     skin_mask=torch.ones(n), info={"name": "pyramid", "resolution": 0, "seed": seed, "version": 1})


def random_coeffs(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return join_coeffs(id=torch.randn(b, N_ID, generator=g), exp=torch.randn(b, N_EXP, generator=g),
                       tex=torch.randn(b, N_TEX, generator=g), angle=(torch.rand(b, 3, generator=g) - 0.5) * 0.4,
                       gamma=torch.randn(b, 27, generator=g) * 0.1, trans=(torch.rand(b, 3, generator=g) - 0.5) * 0.2)


def test_pyramid_faces_the_camera():
    m = pyramid_model()
    assert (face_normals(m.mean_shape.unsqueeze(0), m.tri)[0, :, 2] > 0).all()


def test_output_shapes_and_ranges():
    r = FaceRenderer(pyramid_model(), S)
    out = r(random_coeffs(3))
    assert out.image.shape == (3, 3, S, S) and out.face.shape == (3, 3, S, S)
    assert out.mask.shape == (3, 1, S, S) and out.landmarks.shape == (3, 68, 2)
    for name in ("vertices", "shape", "albedo", "colors", "screen"):
        assert getattr(out, name).shape == (3, 5, 3), name
    assert out.image.min() >= 0 and out.image.max() <= 1


def test_mean_face_mask_is_the_projected_base_and_colour_is_hand_computed():
    r = FaceRenderer(pyramid_model(), S)
    out = r(mean_face_coeffs(1))
    # the base square at z = 0 projects to u, v in [16 - 0.8 f / 10, 16 + 0.8 f / 10] with f = 1015 * 32 / 224;
    # pixel (r, c) is sampled at u = c + 0.5, v = 31.5 - r
    f, c = geometry.camera_intrinsics(S)
    lo, hi = c - 0.8 * f / 10, c + 0.8 * f / 10
    idx = torch.arange(S, dtype=torch.float32)
    inside = (idx + 0.5 >= lo) & (idx + 0.5 <= hi)
    rows_in = ((S - 0.5 - idx) >= lo) & ((S - 0.5 - idx) <= hi)
    assert torch.equal(out.mask[0, 0].bool(), rows_in[:, None] & inside[None, :])
    # gamma = 0: irradiance is the DC term 0.8 * a0 * c0 whatever the normal; albedo 128/255
    expect = 128 / 255 * lighting.DC_OFFSET * lighting.A0 * lighting.C0
    face = out.face[0].permute(1, 2, 0)[out.mask[0, 0].bool()]
    assert torch.allclose(face, torch.full_like(face, expect), atol=1e-5)


def test_landmarks_are_projected_keypoints_and_match_the_cheap_path():
    m = pyramid_model()
    r = FaceRenderer(m, S)
    coeffs = random_coeffs(4, seed=1)
    out = r(coeffs)
    expect = geometry.project(out.vertices[:, m.keypoints], S)[..., :2]
    assert torch.allclose(out.landmarks, expect, atol=1e-5)
    assert torch.allclose(r.landmarks(coeffs), out.landmarks, atol=1e-4)


def test_background_compositing():
    r = FaceRenderer(pyramid_model(), S)
    g = torch.Generator().manual_seed(2)
    bg = torch.rand(2, 3, S, S, generator=g)
    out = r(random_coeffs(2, seed=2), bg)
    m = out.mask.bool().expand(-1, 3, -1, -1)
    assert m.any() and (~m).any()
    assert torch.equal(out.image[~m], bg[~m])
    assert torch.allclose(out.image[m], out.face.clamp(0, 1)[m])
    assert torch.equal(r(random_coeffs(2, seed=2)).image[~m], torch.zeros(int((~m).sum())))
    with pytest.raises(ValueError, match="background must have shape"):
        r(random_coeffs(2), torch.zeros(2, 3, S + 1, S))


def test_gradients_reach_every_coefficient_group():
    r = FaceRenderer(pyramid_model(), S)
    coeffs = random_coeffs(2, seed=3).requires_grad_(True)
    target = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(0))
    out = r(coeffs, torch.full((2, 3, S, S), 0.5))
    ((out.image - target) ** 2).mean().backward()
    g = coeffs.grad
    assert torch.isfinite(g).all()
    for name, sl in (("id", slice(0, 80)), ("exp", slice(80, 144)), ("tex", slice(144, 224)),
                     ("angle", slice(224, 227)), ("gamma", slice(227, 254)), ("trans", slice(254, 257))):
        assert g[:, sl].abs().sum() > 0, name


def test_backface_culling_hides_a_face_turned_away():
    r_cull = FaceRenderer(pyramid_model(), S, cull_backfaces=True)
    r_all = FaceRenderer(pyramid_model(), S)
    front = mean_face_coeffs(1)
    assert torch.equal(r_cull(front).mask, r_all(front).mask)
    back = mean_face_coeffs(1, angle=torch.tensor([[0.0, math.pi, 0.0]]))
    assert r_all(back).mask.sum() > 0 and r_cull(back).mask.sum() == 0


def test_bad_coefficients_are_rejected():
    r = FaceRenderer(pyramid_model(), S)
    with pytest.raises(ValueError, match=r"\(B, 257\)"):
        r(torch.zeros(1, 256))
    bad = mean_face_coeffs(1)
    bad[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        r(bad)
    with pytest.raises(ValueError, match="positive int"):
        FaceRenderer(pyramid_model(), 0)


def test_landmark_me_method_matches_metrics_by_hand(toy_face_model):
    from occ3d_lib.core.metrics import landmark_me
    from occ3d_lib.render.renderer import FaceRenderer
    r = FaceRenderer(toy_face_model(), 32)
    g = torch.Generator().manual_seed(0)
    c = torch.randn(3, 257, generator=g) * 0.1
    gt = r.landmarks(c).float()
    assert torch.allclose(r.landmark_me(c, gt).float(), torch.zeros(3), atol=1e-5)
    # shift every landmark by (3, 4) px at 32 px: distance 5 px, i.e. 5 * 224 / 32 = 35 px at 224
    torch.testing.assert_close(r.landmark_me(c, gt + torch.tensor([3.0, 4.0])).float(), torch.full((3,), 35.0),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(r.landmark_me(c, gt + 1.0).float(), landmark_me(r.landmarks(c).float(), gt + 1.0, 32))
