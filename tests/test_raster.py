"""The pure-PyTorch rasteriser against the slow reference (occ3d_lib.render.raster_reference) and hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch

from occ3d_lib.face.facemodel import face_normals
from occ3d_lib.render import camera as geometry
from occ3d_lib.render import raster
from occ3d_lib.render.raster import interpolate, rasterize, signed_area
from occ3d_lib.render.raster_reference import reference_rasterize


def random_mesh(seed: int, size: int, n_vert: int = 14, n_tri: int = 12, batch: int = 2,
                dtype: torch.dtype = torch.float64):
    """Random overlapping triangles, some partly outside, some degenerate, some behind the camera."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, n_vert, 2, generator=g, dtype=torch.float64) * (size + 8) - 4
    z = 1 + 4 * torch.rand(batch, n_vert, 1, generator=g, dtype=torch.float64)
    z[:, 0] = -1.0  # vertex 0 is behind the camera: triangles using it are skipped
    screen = torch.cat([xy, z], -1)
    screen[:, 1] = screen[:, 2]  # vertices 1 and 2 coincide: triangles using both are degenerate
    extra = torch.tensor([[1, 2, 5], [0, 3, 4], [3, 4, 5], [8, 7, 6]])  # degenerate, behind, both windings
    tris, seen = [], {frozenset(t.tolist()) for t in extra}
    while len(tris) < n_tri:  # distinct vertex sets: two copies of one triangle would tie in depth
        t = torch.randperm(n_vert, generator=g)[:3]
        if frozenset(t.tolist()) not in seen:
            seen.add(frozenset(t.tolist()))
            tris.append(t)
    tri = torch.stack(tris)
    tri = torch.cat([tri, extra])
    return screen.to(dtype), tri


# ----------------------------------------------------------------------- vs. reference
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cull", [False, True])
def test_matches_slow_reference_on_random_meshes(seed, cull):
    size = 12
    screen, tri = random_mesh(seed, size)
    fr = rasterize(screen, tri, size, cull_backfaces=cull)
    face, bary, depth = reference_rasterize(screen, tri, size, cull)
    assert fr.mask.any() and (~fr.mask).any()  # the case is not trivial
    assert torch.equal(fr.face_idx, face)
    assert torch.equal(fr.mask, face >= 0)
    assert torch.allclose(fr.bary, bary, atol=1e-9)
    assert torch.allclose(fr.depth, depth, atol=1e-9)


def test_float32_matches_reference_and_keeps_dtype():
    size = 12
    screen, tri = random_mesh(5, size, dtype=torch.float32)
    fr = rasterize(screen, tri, size)
    face, bary, depth = reference_rasterize(screen, tri, size)
    assert fr.bary.dtype == torch.float32 and fr.depth.dtype == torch.float32
    assert torch.equal(fr.face_idx, face)
    assert torch.allclose(fr.bary.double(), bary, atol=1e-4)
    assert torch.allclose(fr.depth.double(), depth, atol=1e-4)


def test_chunked_candidates_give_the_same_result(monkeypatch):
    screen, tri = random_mesh(3, 16, n_tri=20)
    full = rasterize(screen, tri, 16)
    monkeypatch.setattr(raster, "CHUNK", 7)
    chunked = rasterize(screen, tri, 16)
    assert torch.equal(full.face_idx, chunked.face_idx)
    assert torch.equal(full.bary, chunked.bary)


def test_batch_items_are_independent():
    screen, tri = random_mesh(4, 10, batch=3)
    fr = rasterize(screen, tri, 10)
    for b in range(3):
        one = rasterize(screen[b:b + 1], tri, 10)
        assert torch.equal(one.face_idx[0], fr.face_idx[b])
        assert torch.equal(one.bary[0], fr.bary[b])


# ----------------------------------------------------------------- hand-computed cases
def test_single_triangle_coverage_barycentrics_and_depth():
    screen = torch.tensor([[[0.5, 0.5, 10.0], [6.5, 0.5, 10.0], [0.5, 6.5, 10.0]]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]])
    fr = rasterize(screen, tri, 8)
    # pixel centres (c, r) with c, r >= 1 and c + r <= 7: 6 + 5 + ... + 1
    assert int(fr.mask.sum()) == 21
    rr, cc = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    assert torch.equal(fr.mask[0], (rr >= 1) & (cc >= 1) & (rr + cc <= 7))
    # at (r=1, c=1): 0.5 px along each leg of 6 px
    assert fr.bary[0, 1, 1].tolist() == pytest.approx([5 / 6, 1 / 12, 1 / 12])
    assert fr.depth[0, 1, 1].item() == pytest.approx(10.0)
    assert fr.face_idx[0, 1, 1].item() == 0 and fr.face_idx[0, 0, 0].item() == -1
    assert fr.depth[0, 0, 0].item() == 0 and fr.bary[0, 0, 0].abs().sum() == 0  # empty pixels hold zeros


def test_perspective_correct_barycentrics_and_depth():
    screen = torch.tensor([[[0.5, 0.5, 1.0], [6.5, 0.5, 2.0], [0.5, 6.5, 4.0]]], dtype=torch.float64)
    fr = rasterize(screen, torch.tensor([[0, 1, 2]]), 8)
    # screen bary (5/6, 1/12, 1/12) -> depth 1 / (5/6 + 1/24 + 1/48) = 48/43; weights (40, 2, 1) / 43
    assert fr.depth[0, 1, 1].item() == pytest.approx(48 / 43)
    assert fr.bary[0, 1, 1].tolist() == pytest.approx([40 / 43, 2 / 43, 1 / 43])


def test_nearer_triangle_wins_regardless_of_order():
    quad = torch.tensor([[-1.0, -1.0], [9.0, -1.0], [-1.0, 9.0]], dtype=torch.float64)
    for near_first in (True, False):
        z = [2.0, 5.0] if near_first else [5.0, 2.0]
        screen = torch.cat([torch.cat([quad, torch.full((3, 1), z[0], dtype=torch.float64)], 1),
                            torch.cat([quad, torch.full((3, 1), z[1], dtype=torch.float64)], 1)]).unsqueeze(0)
        fr = rasterize(screen, torch.tensor([[0, 1, 2], [3, 4, 5]]), 8)
        assert (fr.face_idx[fr.mask] == (0 if near_first else 1)).all()
        assert torch.allclose(fr.depth[fr.mask], torch.tensor(2.0, dtype=torch.float64))


def test_empty_outside_behind_and_degenerate():
    tri = torch.tensor([[0, 1, 2]])
    cases = {
        "outside": [[20.0, 20.0, 5.0], [30.0, 20.0, 5.0], [20.0, 30.0, 5.0]],
        "behind": [[0.0, 0.0, 5.0], [7.0, 0.0, -1.0], [0.0, 7.0, 5.0]],
        "at camera": [[0.0, 0.0, 5.0], [7.0, 0.0, 0.0], [0.0, 7.0, 5.0]],
        "collinear": [[0.0, 0.0, 5.0], [3.0, 3.0, 5.0], [6.0, 6.0, 5.0]],
        "nan": [[0.0, 0.0, 5.0], [float("nan"), 0.0, 5.0], [0.0, 7.0, 5.0]],
    }
    for name, pts in cases.items():
        fr = rasterize(torch.tensor([pts], dtype=torch.float64), tri, 8)
        assert not fr.mask.any(), name
        assert (fr.face_idx == -1).all() and fr.index.numel() == 0
        assert interpolate(torch.ones(1, 3, 2, dtype=torch.float64), tri, fr).abs().sum() == 0
    fr = rasterize(torch.zeros(2, 3, 3), torch.zeros(0, 3, dtype=torch.long), 5)  # no triangles at all
    assert fr.mask.shape == (2, 5, 5) and not fr.mask.any()


def test_triangle_half_outside_and_covering_everything():
    # right half of the image: x >= 3.6 covered, triangle reaches far outside on three sides
    screen = torch.tensor([[[3.6, -50.0, 5.0], [200.0, 8.0, 5.0], [3.6, 60.0, 5.0]]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]])
    fr = rasterize(screen, tri, 8)
    face, _, _ = reference_rasterize(screen, tri, 8)
    assert torch.equal(fr.face_idx, face)
    assert int(fr.mask.sum()) == 4 * 8 and fr.mask[0, :, 4:].all()
    big = torch.tensor([[[-1e6, -1e6, 5.0], [3e6, -1e6, 5.0], [-1e6, 3e6, 5.0]]])
    assert rasterize(big, tri, 8).mask.all()


def _coverage_counts(screen, tri, size):
    """How many triangles cover each pixel centre when rasterised one by one."""
    return sum(rasterize(screen, tri[i:i + 1], size).mask.long() for i in range(tri.shape[0]))


def _grid_mesh(k: int, lo: float, hi: float, jitter: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(lo, hi, k + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    xy = torch.stack([xx, yy], -1).reshape(-1, 2)
    inner = ((xx > lo) & (xx < hi) & (yy > lo) & (yy < hi)).reshape(-1)
    xy[inner] += (torch.rand(int(inner.sum()), 2, generator=g, dtype=torch.float64) - 0.5) * jitter
    tris = []
    for i in range(k):
        for j in range(k):
            a, b, c, d = i * (k + 1) + j, i * (k + 1) + j + 1, (i + 1) * (k + 1) + j + 1, (i + 1) * (k + 1) + j
            tris += [[a, b, c], [a, c, d]] if (i + j) % 2 else [[a, b, d], [b, c, d]]
    screen = torch.cat([xy, torch.full((xy.shape[0], 1), 5.0, dtype=torch.float64)], 1).unsqueeze(0)
    return screen, torch.tensor(tris)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shared_edges_leave_no_hole_and_no_double_cover(dtype):
    size = 10
    # integer vertices on pixel centres (edges pass exactly through centres) and a jittered grid
    for jitter, lo, hi, k in ((0.0, -2.0, 12.0, 7), (1.3, -2.0, 12.0, 6)):
        screen, tri = _grid_mesh(k, lo, hi, jitter, seed=k)
        screen = screen.to(dtype)
        counts = _coverage_counts(screen, tri, size)
        assert (counts == 1).all(), f"jitter={jitter}: counts {counts.unique().tolist()}"
        assert rasterize(screen, tri, size).mask.all()
    # a fan of 8 triangles around a vertex sitting exactly on a pixel centre
    ang = torch.arange(8, dtype=torch.float64) * math.pi / 4
    ring = torch.stack([4 + 3 * ang.cos(), 4 + 3 * ang.sin()], 1).round()
    pts = torch.cat([torch.tensor([[4.0, 4.0]], dtype=torch.float64), ring])
    screen = torch.cat([pts, torch.full((9, 1), 5.0, dtype=torch.float64)], 1).unsqueeze(0).to(dtype)
    tri = torch.tensor([[0, 1 + i, 1 + (i + 1) % 8] for i in range(8)])
    counts = _coverage_counts(screen, tri, size)
    assert counts.max() == 1 and counts[0, 4, 4] == 1
    assert counts[0, 3:6, 2:7].min() == 1 and counts[0, 2:7, 3:6].min() == 1  # no hole inside the fan


# ------------------------------------------------------------------------------ culling
def test_backface_culling_follows_the_facemodel_winding():
    # a world triangle wound counter-clockwise seen from +z: FaceModel's outward normal points to the camera
    world = torch.tensor([[[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.0, 0.3, 0.0]]], dtype=torch.float64)
    front, back = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 1]])
    assert face_normals(world, front)[0, 0, 2] > 0 and face_normals(world, back)[0, 0, 2] < 0
    screen = geometry.project(world, 32)
    assert signed_area(screen, front)[0, 0] < 0  # clockwise on screen because rows point down
    assert rasterize(screen, front, 32, cull_backfaces=True).mask.any()
    assert not rasterize(screen, back, 32, cull_backfaces=True).mask.any()
    assert torch.equal(rasterize(screen, back, 32).mask, rasterize(screen, front, 32).mask)


# ---------------------------------------------------------------------------- gradients
def test_gradcheck_interpolate_wrt_attributes_and_positions():
    screen = torch.tensor([[[0.37, 0.21, 3.0], [6.63, 0.84, 4.0], [1.12, 6.71, 5.0], [7.33, 6.58, 3.5]]],
                          dtype=torch.float64, requires_grad=True)
    tri = torch.tensor([[0, 1, 2], [1, 3, 2]])
    colors = torch.rand(1, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def f(scr, col):
        fr = rasterize(scr, tri, 8)
        return interpolate(col, tri, fr), fr.depth

    # no pixel centre lies within the finite-difference step of an edge, so coverage is constant
    assert rasterize(screen, tri, 8).mask.sum() > 20
    assert torch.autograd.gradcheck(f, (screen, colors), eps=1e-6, atol=1e-6)


def test_gradients_reach_vertex_positions_and_colours():
    screen = torch.tensor([[[0.4, 0.3, 5.0], [7.2, 1.1, 5.0], [2.1, 7.4, 5.0]]], requires_grad=True)
    colors = torch.tensor([[[1.0], [0.0], [0.0]]], requires_grad=True)
    tri = torch.tensor([[0, 1, 2]])
    out = interpolate(colors, tri, rasterize(screen, tri, 8))
    out.sum().backward()
    assert screen.grad.abs().sum() > 0 and colors.grad.abs().sum() > 0
    # sum of colour weights over the covered pixels equals the covered count
    assert colors.grad.sum().item() == pytest.approx(rasterize(screen.detach(), tri, 8).mask.sum().item(), rel=1e-5)


def test_interpolate_reproduces_linear_attributes():
    # attributes equal to the vertex screen positions (equal depths): interpolation gives the pixel centre
    screen = torch.tensor([[[0.2, 0.1, 5.0], [9.3, 0.8, 5.0], [0.7, 9.6, 5.0]]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]])
    fr = rasterize(screen, tri, 10)
    xy = interpolate(screen[..., :2], tri, fr)
    rr, cc = torch.meshgrid(torch.arange(10.0, dtype=torch.float64), torch.arange(10.0, dtype=torch.float64), indexing="ij")
    m = fr.mask[0]
    assert torch.allclose(xy[0][m], torch.stack([cc, rr], -1)[m], atol=1e-12)
    assert (xy[0][~m] == 0).all()
    assert torch.allclose(fr.bary.sum(-1)[fr.mask], torch.tensor(1.0, dtype=torch.float64))


def test_bad_inputs_are_named():
    tri = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match=r"screen must be .*\(B, N, 3\)"):
        rasterize(torch.zeros(3, 3), tri, 8)
    with pytest.raises(ValueError, match="tri indices"):
        rasterize(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 3]]), 8)
    with pytest.raises(ValueError, match="int64"):
        rasterize(torch.zeros(1, 3, 3), tri.int(), 8)
    with pytest.raises(ValueError, match="positive int"):
        rasterize(torch.zeros(1, 3, 3), tri, 0)
    fr = rasterize(torch.zeros(1, 3, 3), tri, 4)
    with pytest.raises(ValueError, match="attrs must have shape"):
        interpolate(torch.zeros(2, 3, 1), tri, fr)
