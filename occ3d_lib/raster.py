"""A differentiable triangle rasteriser in pure PyTorch (the last step of the renderer, Eqs. 3-5).

Taught in notebook 01, section 4 ("Rasterisation"). :func:`rasterize` turns projected
triangles into per-pixel fragments (which triangle is visible, where inside it, how deep)
and :func:`interpolate` blends per-vertex attributes (colours, normals, ...) with them.

Conventions (see :mod:`occ3d_lib.geometry`): screen coordinates are ``(x = column,
y = row, z' = camera depth)`` and pixel ``(r, c)`` is sampled at its centre ``(x=c, y=r)``.
Smaller ``z'`` is closer; vertices with ``z' <= 0`` are behind the camera and every
triangle touching one is skipped.

How it works, without Python loops over pixels or triangles:

1. per triangle (all images of the batch at once): signed area, validity (finite,
   in front of the camera, non-degenerate, optionally front-facing) and the pixel
   bounding box clipped to the image;
2. every (triangle, pixel-in-its-box) pair is enumerated with ``repeat_interleave``
   (in chunks of at most :data:`CHUNK` candidates);
3. the inside test uses edge functions. Each edge is evaluated from its lower-numbered
   vertex, so two triangles sharing an edge compute bit-identical values of opposite
   sign, and pixel centres exactly on an edge go to one side only (a "top-left" style
   tie rule on the edge's direction): shared edges leave no holes and no double cover;
4. the depth of every covered candidate (perspective-correct: ``1/z'`` is affine in
   screen space) is packed with the triangle id into one int64 key, and
   ``scatter_reduce('amin')`` keeps the nearest per pixel (the z-buffer; exact depth
   ties go to the lower triangle id);
5. for the winning pixels only, barycentrics are recomputed with autograd from the
   vertex positions, so gradients flow to the screen coordinates (and through them to
   pose, shape and camera) and to interpolated attributes.

The coverage mask itself is a hard (non-differentiable) decision: gradients reach vertex
positions through the barycentrics of covered pixels, not through silhouette changes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Largest number of (triangle, pixel) candidates handled at once (bounds peak memory).
CHUNK = 1 << 20
_NO_HIT = torch.iinfo(torch.int64).max


@dataclass
class Fragments:
    """Per-pixel rasterisation result for B images of S x S pixels.

    face_idx (B, S, S) int64: visible triangle (row of ``tri``), -1 where empty.
    bary (B, S, S, 3): perspective-correct barycentric weights of that triangle's three
      vertices (sum to 1), differentiable w.r.t. the screen coordinates; 0 where empty.
    depth (B, S, S): camera depth z' of the visible surface (perspective-correct); 0 where empty.
    mask (B, S, S) bool: pixel covered by some triangle.
    index (M,) int64: flat indices ``b*S*S + r*S + c`` of the covered pixels (M = mask.sum()).
    """

    face_idx: Tensor
    bary: Tensor
    depth: Tensor
    mask: Tensor
    index: Tensor

    @property
    def image_size(self) -> int:
        return int(self.mask.shape[-1])


def signed_area(screen: Tensor, tri: Tensor) -> Tensor:
    """Twice the signed screen-space area of each triangle. (B, N, >=2), (F, 3) -> (B, F).

    With y = row pointing down, a triangle that faces the camera under FaceModel's outward
    winding (counter-clockwise seen from +z) has a *negative* value here (notebook 01, sec. 4).
    """
    p = screen[..., :2]
    v0, v1, v2 = p[:, tri[:, 0]], p[:, tri[:, 1]], p[:, tri[:, 2]]
    a, b = v1 - v0, v2 - v0
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _check_inputs(screen: Tensor, tri: Tensor, image_size: int) -> None:
    if not isinstance(screen, Tensor) or screen.ndim != 3 or screen.shape[-1] != 3:
        raise ValueError(f"screen must be a tensor of shape (B, N, 3), got "
                         f"{tuple(screen.shape) if isinstance(screen, Tensor) else type(screen).__name__}")
    if not screen.is_floating_point():
        raise ValueError(f"screen must be floating point, got {screen.dtype}")
    if not isinstance(tri, Tensor) or tri.ndim != 2 or tri.shape[-1] != 3:
        raise ValueError(f"tri must be a tensor of shape (F, 3), got "
                         f"{tuple(tri.shape) if isinstance(tri, Tensor) else type(tri).__name__}")
    if tri.dtype != torch.long:
        raise ValueError(f"tri must be int64, got {tri.dtype}")
    if tri.numel() and (int(tri.min()) < 0 or int(tri.max()) >= screen.shape[1]):
        raise ValueError(f"tri indices must lie in [0, {screen.shape[1]}), got [{int(tri.min())}, {int(tri.max())}]")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if tri.shape[0] >= 2 ** 31:
        raise ValueError("at most 2**31 - 1 triangles are supported")


def _triangle_setup(screen: Tensor, tri: Tensor, size: int, cull_backfaces: bool):
    """Per-(image, triangle) tables for the candidate pass (no autograd)."""
    bsz, f = screen.shape[0], tri.shape[0]
    v = screen.index_select(1, tri.reshape(-1)).view(bsz, f, 3, 3)  # (B, F, 3 vertices, 3 coords)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    area = (x[..., 1] - x[..., 0]) * (y[..., 2] - y[..., 0]) - (y[..., 1] - y[..., 0]) * (x[..., 2] - x[..., 0])
    ok = torch.isfinite(v).all(-1).all(-1) & (z > 0).all(-1) & (area.abs() > 1e-10)
    if cull_backfaces:
        ok &= area < 0  # front-facing: counter-clockwise from +z becomes clockwise with rows pointing down
    # pixel-centre bounding boxes clipped to the image (clamp first so huge coordinates cannot overflow)
    lo = (-1.0, float(size))
    xmin = x.amin(-1).clamp(*lo).ceil().long().clamp_min(0)
    xmax = x.amax(-1).clamp(*lo).floor().long().clamp_max(size - 1)
    ymin = y.amin(-1).clamp(*lo).ceil().long().clamp_min(0)
    ymax = y.amax(-1).clamp(*lo).floor().long().clamp_max(size - 1)
    w = (xmax - xmin + 1).clamp_min(0)
    h = (ymax - ymin + 1).clamp_min(0)
    count = torch.where(ok, w * h, torch.zeros_like(w))
    sel = (count > 0).reshape(-1).nonzero().squeeze(1)  # flat ids b*F + f of triangles with candidates
    if sel.numel() == 0:
        return None
    pick = lambda t: t.reshape(bsz * f, -1).index_select(0, sel)  # noqa: E731
    x, y, z, area = pick(x), pick(y), pick(z), pick(area).squeeze(1)
    # edge i is opposite vertex i and runs a -> b with (a, b) = (1, 2), (2, 0), (0, 1)
    ia, ib = [1, 2, 0], [2, 0, 1]
    t = tri.index_select(0, sel % f)
    swap = t[:, ia] > t[:, ib]  # evaluate every edge from its lower-numbered vertex
    xa, xb, ya, yb = x[:, ia], x[:, ib], y[:, ia], y[:, ib]
    lox, loy = torch.where(swap, xb, xa), torch.where(swap, yb, ya)
    dx, dy = torch.where(swap, xa - xb, xb - xa), torch.where(swap, ya - yb, yb - ya)
    orient = torch.where(area > 0, 1.0, -1.0).to(x.dtype).unsqueeze(1)
    sgn = torch.where(swap, -orient, orient)  # e'_i = sgn_i * canonical edge value; > 0 inside
    # direction of the edge when the triangle is traversed with positive orientation: ties
    # (pixel centre exactly on the edge) go to the side for which it points down or right
    ddx, ddy = sgn * dx, sgn * dy
    tie = (ddy > 0) | ((ddy == 0) & (ddx > 0))
    table = torch.cat([lox, loy, dx, dy, sgn, tie.to(x.dtype), 1.0 / z], dim=1)  # (T, 21)
    return sel, table, pick(xmin).squeeze(1), pick(ymin).squeeze(1), pick(w).squeeze(1), pick(count).squeeze(1)


def _candidate_pass(zkeys: Tensor, sel: Tensor, table: Tensor, xmin: Tensor, ymin: Tensor, w: Tensor,
                    count: Tensor, size: int, n_faces: int) -> None:
    """z-buffer one chunk of triangles into ``zkeys`` (B*S*S,) int64, in place."""
    total = int(count.sum())
    tid = torch.repeat_interleave(torch.arange(sel.numel(), device=sel.device), count, output_size=total)
    start = torch.cumsum(count, 0) - count
    local = torch.arange(total, device=sel.device) - start.index_select(0, tid)
    wt = w.index_select(0, tid)
    py = local.div(wt, rounding_mode="floor")
    px = xmin.index_select(0, tid) + (local - py * wt)
    py += ymin.index_select(0, tid)
    rows = table.index_select(0, tid)  # (K, 21)
    lox, loy, dx, dy, sgn, tie, invz = rows.split(3, dim=1)
    pxf, pyf = px.to(table.dtype).unsqueeze(1), py.to(table.dtype).unsqueeze(1)
    e = sgn * (dx * (pyf - loy) - dy * (pxf - lox))  # (K, 3) oriented edge functions
    inside = ((e > 0) | ((e == 0) & (tie > 0))).all(1)
    k = inside.nonzero().squeeze(1)
    if k.numel() == 0:
        return
    e, invz = e.index_select(0, k), invz.index_select(0, k)
    depth = e.sum(1) / (e * invz).sum(1)  # perspective-correct: 1 / sum_i b_i / z_i
    flat = sel.index_select(0, tid.index_select(0, k))
    b = flat // n_faces
    pix = b * (size * size) + py.index_select(0, k) * size + px.index_select(0, k)
    key = (depth.float().view(torch.int32).long() << 32) | (flat - b * n_faces)  # positive floats sort as ints
    zkeys.scatter_reduce_(0, pix, key, reduce="amin")


def rasterize(screen: Tensor, tri: Tensor, image_size: int, cull_backfaces: bool = False) -> Fragments:
    """Rasterise projected triangles into per-pixel :class:`Fragments` (notebook 01, section 4).

    screen (B, N, 3): x = column, y = row, z' = camera depth (from :func:`geometry.project`);
    tri (F, 3) int64 vertex ids. Pixel (r, c) is sampled at (x=c, y=r); nearest depth wins.
    Triangles are skipped when degenerate (zero area), when any vertex has z' <= 0 or is not
    finite, and, with ``cull_backfaces``, when they face away from the camera (FaceModel
    winding: outward normals, i.e. clockwise on screen because rows point down).
    """
    _check_inputs(screen, tri, image_size)
    bsz, s, f = screen.shape[0], image_size, tri.shape[0]
    dev, dtype = screen.device, screen.dtype
    zkeys = torch.full((bsz * s * s,), _NO_HIT, dtype=torch.long, device=dev)
    with torch.no_grad():
        setup = _triangle_setup(screen.detach(), tri, s, cull_backfaces) if f else None
        if setup is not None:
            sel, table, xmin, ymin, w, count = setup
            cum = torch.cumsum(count, 0)
            total = int(cum[-1])
            if total <= CHUNK:
                bounds = [0, sel.numel()]
            else:  # split the triangle list so that each chunk holds about CHUNK candidates
                cuts = torch.searchsorted(cum, torch.arange(CHUNK, total, CHUNK, device=dev), right=True)
                bounds = sorted(set([0] + cuts.tolist() + [sel.numel()]))
            for a, b in zip(bounds[:-1], bounds[1:]):
                _candidate_pass(zkeys, sel[a:b], table[a:b], xmin[a:b], ymin[a:b], w[a:b], count[a:b], s, f)
    hit = zkeys != _NO_HIT
    index = hit.nonzero().squeeze(1)
    face = torch.full((bsz * s * s,), -1, dtype=torch.long, device=dev)
    face_hit = zkeys.index_select(0, index) & 0xFFFFFFFF
    face[index] = face_hit
    bary_hit, depth_hit = _barycentrics(screen, tri, index, face_hit, s)
    bary = torch.zeros(bsz * s * s, 3, dtype=dtype, device=dev).index_put((index,), bary_hit)
    depth = torch.zeros(bsz * s * s, dtype=dtype, device=dev).index_put((index,), depth_hit)
    return Fragments(face_idx=face.view(bsz, s, s), bary=bary.view(bsz, s, s, 3), depth=depth.view(bsz, s, s),
                     mask=hit.view(bsz, s, s), index=index)


def _barycentrics(screen: Tensor, tri: Tensor, index: Tensor, face: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Differentiable perspective-correct barycentrics and depth at covered pixels. -> (M, 3), (M,)."""
    b = index // (size * size)
    rem = index - b * (size * size)
    py, px = (rem // size).to(screen.dtype), (rem % size).to(screen.dtype)
    vid = tri.index_select(0, face)  # (M, 3)
    v = screen.reshape(-1, 3).index_select(0, (b.unsqueeze(1) * screen.shape[1] + vid).reshape(-1)).view(-1, 3, 3)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    ia, ib = [1, 2, 0], [2, 0, 1]
    xa, ya, xb, yb = x[:, ia], y[:, ia], x[:, ib], y[:, ib]
    e = (xb - xa) * (py.unsqueeze(1) - ya) - (yb - ya) * (px.unsqueeze(1) - xa)  # (M, 3) edge functions
    lam = e / e.sum(1, keepdim=True)  # screen-space barycentrics
    wz = lam / z
    depth = 1.0 / wz.sum(1)
    return wz * depth.unsqueeze(1), depth


def interpolate(attrs: Tensor, tri: Tensor, frags: Fragments) -> Tensor:
    """Blend per-vertex attributes with the fragments' barycentrics (notebook 01, section 4).

    attrs (B, N, C) or (N, C), tri (F, 3) -> (B, S, S, C); zeros where no triangle covers the pixel.
    Differentiable w.r.t. ``attrs`` and (through ``frags.bary``) the screen coordinates.
    """
    bsz, s = frags.mask.shape[0], frags.image_size
    if attrs.ndim == 2:
        attrs = attrs.unsqueeze(0).expand(bsz, -1, -1)
    if attrs.ndim != 3 or attrs.shape[0] != bsz:
        raise ValueError(f"attrs must have shape (B={bsz}, N, C) or (N, C), got {tuple(attrs.shape)}")
    idx = frags.index
    b = idx // (s * s)
    face = frags.face_idx.reshape(-1).index_select(0, idx)
    n, c = attrs.shape[1], attrs.shape[2]
    vid = (b.unsqueeze(1) * n + tri.index_select(0, face)).reshape(-1)
    vals = attrs.reshape(-1, c).index_select(0, vid).view(-1, 3, c)  # (M, 3, C)
    w = frags.bary.reshape(-1, 3).index_select(0, idx).to(attrs.dtype)
    out = (w.unsqueeze(2) * vals).sum(1)
    full = torch.zeros(bsz * s * s, c, dtype=out.dtype, device=out.device).index_put((idx,), out)
    return full.view(bsz, s, s, c)
