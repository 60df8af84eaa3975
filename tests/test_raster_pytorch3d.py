"""PyTorch3D as the reference: the same camera in both renderers, the pixel-centre convention, the backend switch.

PyTorch3D's CPU rasteriser is the naive one (every pixel tests every triangle), so images here are tiny.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch3d.ops import corresponding_points_alignment
from pytorch3d.transforms import euler_angles_to_matrix

from occ3d_lib.core import metrics
from occ3d_lib.core.config import get_profile
from occ3d_lib.data import synthetic as datasets
from occ3d_lib.face.coeffs import N_EXP, N_ID, N_TEX, join_coeffs
from occ3d_lib.render import camera as geometry
from occ3d_lib.render.raster_pytorch3d import cameras, pytorch3d_available, rasterize_pytorch3d
from occ3d_lib.render.raster_reference import reference_rasterize
from occ3d_lib.render.renderer import FaceRenderer, compare_backends, rasterize_vertices, resolve_backend


def unproject(screen: torch.Tensor, size: int) -> torch.Tensor:
    """World points that :func:`geometry.project` maps to ``screen`` (x = column, y = row, z')."""
    f, c = geometry.camera_intrinsics(size)
    u, v, zp = screen[..., 0] + 0.5, (size - 0.5) - screen[..., 1], screen[..., 2]
    return torch.stack([(u - c) * zp / f, (v - c) * zp / f, geometry.CAMERA_DISTANCE - zp], -1)


def test_pytorch3d_is_importable():
    assert pytorch3d_available()


# --------------------------------------------------------------------------- the pixel-centre convention
def test_one_triangle_covers_the_hand_computed_pixels_in_all_three_rasterisers():
    """Pixel (r, c) is sampled at image-plane u = c + 1/2, v = S - 1/2 - r (v up)."""
    s = 8
    f, c = geometry.camera_intrinsics(s)
    # legs on u = 1.2 and v = 1.2, hypotenuse u + v = 6.9, in the plane z = 0 (z' = 10)
    uv = torch.tensor([[1.2, 1.2], [5.7, 1.2], [1.2, 5.7]], dtype=torch.float64)
    world = torch.cat([(uv - c) * 10 / f, torch.zeros(3, 1, dtype=torch.float64)], 1).unsqueeze(0)
    tri = torch.tensor([[0, 1, 2]])
    rr, cc = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    u, v = cc + 0.5, s - 0.5 - rr
    want = (u >= 1.2) & (v >= 1.2) & (u + v <= 6.9)
    # c + 0.5 >= 1.2 -> c >= 1; 7.5 - r >= 1.2 -> r <= 6; c - r <= -2: rows 3..6 hold 1, 2, 3, 4 pixels
    assert int(want.sum()) == 10 and want[6, 1:5].all() and want[3, 1] and not want[7].any()
    old = (cc >= 1.2) & (s - 1 - rr >= 1.2) & (cc + s - 1 - rr <= 6.9)  # sampling at u = c, v = S - 1 - r
    assert not torch.equal(old, want)
    ours = rasterize_vertices(world, tri, s)
    theirs = rasterize_vertices(world, tri, s, backend="pytorch3d")
    ref, _, _ = reference_rasterize(geometry.project(world, s), tri, s)
    assert torch.equal(ours.mask[0], want) and torch.equal(theirs.mask[0], want) and torch.equal(ref[0] >= 0, want)
    assert torch.allclose(ours.depth[ours.mask], torch.tensor(10.0, dtype=torch.float64))
    assert torch.allclose(theirs.depth[theirs.mask], torch.tensor(10.0, dtype=torch.float64), atol=1e-5)
    # reversed winding faces away from the camera: both cull it
    back = torch.tensor([[0, 2, 1]])
    assert not rasterize_vertices(world, back, s, cull_backfaces=True).mask.any()
    assert not rasterize_vertices(world, back, s, cull_backfaces=True, backend="pytorch3d").mask.any()
    assert torch.equal(rasterize_vertices(world, tri, s, cull_backfaces=True, backend="pytorch3d").mask[0], want)


def test_pytorch3d_screen_space_is_occ3d_screen_plus_half_a_pixel():
    g = torch.Generator().manual_seed(0)
    world = (torch.rand(1, 20, 3, generator=g) - 0.5) * torch.tensor([2.0, 2.0, 1.0])
    for s in (32, 224):
        p3d = cameras(s).transform_points_screen(world)[..., :2]
        assert torch.allclose(p3d, geometry.project(world, s)[..., :2] + 0.5, atol=1e-3)


def test_deep3d_nvdiffrast_renderer_samples_where_occ3d_does():
    """Deep3DFaceRecon's renderer: its OpenGL-style projection, y negated before it, rows bottom-up in memory.

    A camera-space point lands at the same continuous pixel position (pixel (r, c) centred at (c, r)) there
    and in occ3d, so renders line up; its landmark coordinates (u, S - 1 - v) are ours + (1/2, -1/2).
    """
    s, focal, centre, znear, zfar = 224, 1015.0, 112.0, 5.0, 15.0
    half = np.tan(np.arctan(centre / focal)) * znear  # x = tan(fov / 2) * znear with fov = 2 atan(c / f)
    proj = np.array([[znear / half, 0, 0, 0], [0, znear / -half, 0, 0],
                     [0, 0, -(zfar + znear) / (zfar - znear), -2 * zfar * znear / (zfar - znear)],
                     [0, 0, -1, 0]]) @ np.diag([1.0, -1.0, -1.0, 1.0])
    rng = np.random.default_rng(0)
    world = np.concatenate([rng.uniform(-1, 1, (50, 2)), rng.uniform(-0.5, 0.5, (50, 1))], 1)
    cam = world.copy()
    cam[:, 2] = 10 - cam[:, 2]  # to_camera
    hom = np.concatenate([cam, np.ones((50, 1))], 1)
    hom[:, 1] = -hom[:, 1]  # "the direction of y is the same as v"
    clip = hom @ proj.T
    ndc = clip[:, :2] / clip[:, 3:]
    # OpenGL / nvdiffrast: pixel j of a row is centred at ndc x = (2 j + 1) / S - 1, memory row i at
    # ndc y = (2 i + 1) / S - 1; Deep3DFaceRecon uses memory row i as image row i
    col, row = (ndc[:, 0] + 1) * s / 2 - 0.5, (ndc[:, 1] + 1) * s / 2 - 0.5
    ours = geometry.project(torch.tensor(world)[None], s)[0].numpy()
    np.testing.assert_allclose(ours[:, 0], col, atol=1e-9)
    np.testing.assert_allclose(ours[:, 1], row, atol=1e-9)
    # Deep3DFaceRecon's landmarks: u = f x / z' + c, v likewise, image row S - 1 - v
    u, v = focal * cam[:, 0] / cam[:, 2] + centre, focal * cam[:, 1] / cam[:, 2] + centre
    offset = np.stack([u, s - 1 - v], 1) - ours[:, :2]
    np.testing.assert_allclose(offset, np.tile(geometry.DEEP3D_LANDMARK_OFFSET, (50, 1)), atol=1e-9)


# ---------------------------------------------------------------------------- PyTorch3D as the reference
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cull", [False, True])
def test_random_meshes_match_pytorch3d_and_the_loop_reference(seed, cull):
    s = 24
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(2, 30, 2, generator=g, dtype=torch.float64) * (s + 8) - 4  # some triangles leave the image
    screen = torch.cat([xy, 4 + 8 * torch.rand(2, 30, 1, generator=g, dtype=torch.float64)], -1)  # overlapping depths
    tri = torch.stack([torch.randperm(30, generator=g)[:3] for _ in range(16)])  # both windings
    world = unproject(screen, s)
    ours = rasterize_vertices(world, tri, s, cull_backfaces=cull)
    theirs = rasterize_vertices(world, tri, s, cull_backfaces=cull, backend="pytorch3d")
    face, bary, depth = reference_rasterize(geometry.project(world, s), tri, s, cull)
    assert ours.mask.any() and (~ours.mask).any()
    assert torch.equal(ours.face_idx, face) and torch.equal(theirs.face_idx, face)
    assert torch.equal(theirs.mask, face >= 0) and torch.equal(theirs.index, ours.index)
    assert theirs.bary.dtype == torch.float64  # returned in the input's dtype, computed in float32
    assert torch.allclose(theirs.bary, bary, atol=1e-5)
    assert torch.allclose(theirs.depth, depth, rtol=1e-5, atol=1e-5)
    assert torch.allclose(ours.bary, bary, atol=1e-9) and torch.allclose(ours.depth, depth, atol=1e-9)


@pytest.fixture(scope="module")
def face_model():
    from occ3d_lib.face.procedural import load_or_build_procedural

    return load_or_build_procedural("light", seed=0)  # 9088 triangles; shared with the notebooks' cache


def test_face_mesh_matches_pytorch3d(face_model):
    s = 32
    c = join_coeffs(angle=torch.tensor([[0.1, 0.6, 0.1], [-0.2, -1.1, 0.0]]),  # strong yaw: self-occlusion
                    exp=torch.zeros(2, N_EXP).index_fill_(1, torch.tensor([0]), 2.0),  # open mouth
                    trans=torch.tensor([[0.05, -0.1, 0.3], [0.0, 0.0, 0.0]]))
    verts = FaceRenderer(face_model, s).geometry(c)["vertices"]
    ours = rasterize_vertices(verts, face_model.tri, s)
    theirs = rasterize_vertices(verts, face_model.tri, s, backend="pytorch3d")
    assert ours.mask.sum() > 300
    same = ours.face_idx == theirs.face_idx
    assert same.float().mean() > 0.999  # float32 rounding may flip a pixel centre lying on an edge
    both = same & ours.mask
    assert torch.allclose(ours.bary[both], theirs.bary[both], atol=1e-4)
    assert torch.allclose(ours.depth[both], theirs.depth[both], rtol=1e-5)


# ------------------------------------------------------------------------------------ the backend switch
def _coeffs(b: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return join_coeffs(id=torch.randn(b, N_ID, generator=g), exp=torch.randn(b, N_EXP, generator=g),
                       tex=torch.randn(b, N_TEX, generator=g), angle=(torch.rand(b, 3, generator=g) - 0.5) * 0.8,
                       gamma=torch.randn(b, 27, generator=g) * 0.1, trans=(torch.rand(b, 3, generator=g) - 0.5) * 0.2)


def test_face_renderer_gives_the_same_output_and_gradients_with_both_backends(toy_face_model):
    model, s = toy_face_model(), 32
    bg = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(1))
    target = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(2))
    outs, grads = {}, {}
    for backend in ("occ3d", "pytorch3d"):
        c = _coeffs(2, seed=3).requires_grad_(True)
        out = FaceRenderer(model, s, backend=backend)(c, bg)
        ((out.image - target) ** 2).mean().backward()
        outs[backend], grads[backend] = out, c.grad
    a, b = outs["occ3d"], outs["pytorch3d"]
    assert a.mask.sum() > 100 and torch.equal(a.mask, b.mask)
    for name in ("landmarks", "vertices", "shape", "albedo", "colors", "screen"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.allclose(a.image, b.image, atol=1e-5) and torch.allclose(a.face, b.face, atol=1e-5)
    ga, gb = grads["occ3d"], grads["pytorch3d"]
    assert torch.isfinite(ga).all() and torch.isfinite(gb).all() and ga.abs().sum() > 0
    for name, sl in (("id", slice(0, 80)), ("tex", slice(144, 224)), ("angle", slice(224, 227)),
                     ("gamma", slice(227, 254)), ("trans", slice(254, 257))):
        assert torch.allclose(ga[:, sl], gb[:, sl], rtol=1e-3, atol=1e-3 * ga[:, sl].abs().max().item()), name


def test_backend_choice_is_validated_and_auto_means_pytorch3d_only_on_cuda(toy_face_model):
    assert resolve_backend("auto", "cpu") == "occ3d"
    assert resolve_backend("auto", "cuda") == "pytorch3d"  # resolving needs no GPU, only PyTorch3D
    assert resolve_backend("pytorch3d", "cpu") == "pytorch3d"
    with pytest.raises(ValueError, match="render backend must be one of"):
        FaceRenderer(toy_face_model(), 16, backend="nvdiffrast")
    with pytest.raises(ValueError, match="render backend must be one of"):
        resolve_backend("opengl")
    r = FaceRenderer(toy_face_model(), 16, backend="pytorch3d").to("cpu")
    assert r.backend == "pytorch3d"
    with pytest.raises(ValueError, match="vertices must be a tensor of shape"):
        rasterize_pytorch3d(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), 8)


def test_profiles_choose_the_backend(toy_face_model):
    assert get_profile("paper").render_backend == "auto"
    assert get_profile("smoke").render_backend == "occ3d" and get_profile("course").render_backend == "occ3d"
    with pytest.raises(ValueError, match="render_backend must be one of"):
        get_profile("smoke", render_backend="opengl")
    from occ3d_lib.data.context import Context

    ctx = Context(profile=get_profile("smoke", render_backend="pytorch3d"), run_dir=None)  # type: ignore[arg-type]
    ctx.__dict__["face_model"] = toy_face_model()
    assert ctx.renderer.backend == "pytorch3d" and ctx.renderer.image_size == 64


def test_compare_backends_reports_agreement_and_times(toy_face_model):
    res = compare_backends(toy_face_model(), _coeffs(2, seed=4), 24, repeats=1)
    assert set(res["seconds"]) == {"occ3d", "pytorch3d"} and min(res["seconds"].values()) > 0
    assert res["same_face"] == 1.0 and res["max_abs_diff"] < 1e-4
    assert torch.equal(res["face_idx"]["occ3d"], res["face_idx"]["pytorch3d"])
    assert res["occ3d"].image.shape == (2, 3, 24, 24)


def test_render_version_keys_the_synthetic_dataset(toy_face_model, monkeypatch):
    p, m = get_profile("smoke"), toy_face_model()
    before = datasets.dataset_settings(p, m)
    monkeypatch.setattr(datasets, "RENDER_VERSION", datasets.RENDER_VERSION + 1)
    assert datasets.dataset_settings(p, m) != before


# ----------------------------------------------------- what PyTorch3D already does, as the test reference
def test_rotation_matrix_matches_pytorch3d_euler_angles():
    g = torch.Generator().manual_seed(0)
    angles = (torch.rand(32, 3, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    # R = Rz(angle z) Ry(angle y) Rx(angle x): PyTorch3D's "ZYX" convention takes (z, y, x)
    want = euler_angles_to_matrix(angles.flip(-1), "ZYX")
    assert torch.allclose(geometry.rotation_matrix(angles), want, atol=1e-12)


@pytest.mark.parametrize("with_scale", [True, False])
def test_umeyama_matches_pytorch3d_corresponding_points_alignment(with_scale):
    g = torch.Generator().manual_seed(1)
    src = torch.randn(3, 40, 3, generator=g, dtype=torch.float64)
    rot = euler_angles_to_matrix(torch.randn(3, 3, generator=g, dtype=torch.float64), "XYZ")
    dst = 1.7 * src @ rot.transpose(1, 2) + torch.randn(3, 1, 3, generator=g, dtype=torch.float64)
    dst = dst + 0.05 * torch.randn(dst.shape, generator=g, dtype=torch.float64)  # not an exact fit
    # a vertex mask as metrics uses it (PyTorch3D squares non-binary weights in the covariance, occ3d does not)
    w = (torch.rand(40, generator=g) > 0.3).to(torch.float64)
    s, r, t = metrics.umeyama(src, dst, with_scale=with_scale, weights=w)
    ref = corresponding_points_alignment(src, dst, weights=w.expand(3, -1), estimate_scale=with_scale)
    # PyTorch3D's row-vector convention: dst ~ s * src @ R + T
    assert torch.allclose(r, ref.R.transpose(1, 2), atol=1e-9)
    assert torch.allclose(s, ref.s, atol=1e-9) and torch.allclose(t, ref.T, atol=1e-9)
