"""A differentiable triangle rasteriser in pure PyTorch (the last step of the renderer, Eqs. 3-5).

Taught in notebook 01, section 4 ("Rasterisation"). :func:`rasterize` turns projected
triangles into per-pixel fragments (which triangle is visible, where inside it, how deep)
and :func:`interpolate` blends per-vertex attributes (colours, normals, ...) with them.

Conventions (see :mod:`occ3d_lib.render.camera`): screen coordinates are ``(x = column,
y = row, z' = camera depth)`` and pixel ``(r, c)`` is sampled at its centre ``(x=c, y=r)``
(:func:`occ3d_lib.render.camera.project` puts image-plane u = c + 1/2, v = S - 1/2 - r there, as
Deep3DFaceRecon's nvdiffrast renderer and PyTorch3D sample). Its references in the tests are
the plain-loop :func:`occ3d_lib.render.raster_reference.reference_rasterize` and PyTorch3D
(:mod:`occ3d_lib.render.raster_pytorch3d`).
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
CHUNK = 1 << 19
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
    """Valid triangles and their clipped pixel boxes (no autograd). -> flat ids b*F+f, xmin, ymin, width, count."""
    bsz, f = screen.shape[0], tri.shape[0]
    v = screen.index_select(1, tri.reshape(-1)).view(bsz, f, 3, 3)  # (B, F, 3 vertices, 3 coords)
    (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = [v[:, :, i].unbind(-1) for i in range(3)]
    area = _area(x0, y0, x1, y1, x2, y2)
    # NaN/inf in x or y makes the area NaN or inf; z must be finite and in front of the camera
    ok = torch.isfinite(area) & (area.abs() > 1e-10) & (torch.minimum(torch.minimum(z0, z1), z2) > 0)
    ok &= torch.isfinite(z0 + z1 + z2)
    if cull_backfaces:
        ok &= area < 0  # front-facing: counter-clockwise from +z becomes clockwise with rows pointing down
    # pixel-centre bounding boxes clipped to the image (clamp first so huge coordinates cannot overflow)
    lo, hi = -1.0, float(size)
    xmin = torch.minimum(torch.minimum(x0, x1), x2).clamp(lo, hi).ceil_().long().clamp_min_(0)
    xmax = torch.maximum(torch.maximum(x0, x1), x2).clamp(lo, hi).floor_().long().clamp_max_(size - 1)
    ymin = torch.minimum(torch.minimum(y0, y1), y2).clamp(lo, hi).ceil_().long().clamp_min_(0)
    ymax = torch.maximum(torch.maximum(y0, y1), y2).clamp(lo, hi).floor_().long().clamp_max_(size - 1)
    w = (xmax - xmin + 1).clamp_min_(0)
    count = w * (ymax - ymin + 1).clamp_min_(0) * ok
    sel = count.reshape(-1).nonzero().squeeze(1)  # flat ids b*F + f of triangles with candidates
    pick = lambda t: t.reshape(-1).index_select(0, sel)  # noqa: E731
    return sel, pick(xmin), pick(ymin), pick(w), pick(count)


def _area(x0: Tensor, y0: Tensor, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor) -> Tensor:
    """Twice the signed area (one formula everywhere, so culling and orientation agree bit for bit)."""
    return (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)


def _oriented_edge(ia: Tensor, ib: Tensor, xa: Tensor, ya: Tensor, xb: Tensor, yb: Tensor, px: Tensor,
                   py: Tensor, neg: Tensor) -> Tensor:
    """Inside test for edge a -> b of every candidate: True where the pixel is on the inner side.

    The edge is evaluated from its lower-numbered vertex, so a neighbour sharing it computes the
    same value with the opposite sign; a pixel exactly on the edge belongs to the triangle for
    which the edge, traversed with positive orientation, points down (or right when horizontal).
    """
    swap = ia > ib
    lox, loy = torch.where(swap, xb, xa), torch.where(swap, yb, ya)
    dx, dy = torch.where(swap, xa - xb, xb - xa), torch.where(swap, ya - yb, yb - ya)
    e = dx * (py - loy) - dy * (px - lox)
    flip = swap ^ neg
    e = torch.where(flip, -e, e)
    ddx, ddy = torch.where(flip, -dx, dx), torch.where(flip, -dy, dy)
    return (e > 0) | ((e == 0) & ((ddy > 0) | ((ddy == 0) & (ddx > 0))))


def _candidate_pass(zkeys: Tensor, pts: Tensor, tri: Tensor, sel: Tensor, xmin: Tensor, ymin: Tensor, w: Tensor,
                    count: Tensor, size: int, n_verts: int) -> None:
    """z-buffer one chunk of triangles into ``zkeys`` (B*S*S,) int64, in place. pts (B*N, 3)."""
    n_faces = tri.shape[0]
    total = int(count.sum())
    tid = torch.repeat_interleave(torch.arange(sel.numel(), device=sel.device), count, output_size=total)
    start = torch.cumsum(count, 0) - count
    local = torch.arange(total, device=sel.device) - start.index_select(0, tid)
    wt = w.index_select(0, tid)
    py = local.div(wt, rounding_mode="floor")
    px = xmin.index_select(0, tid) + (local - py * wt)
    py += ymin.index_select(0, tid)
    flat = sel.index_select(0, tid)
    b = flat.div(n_faces, rounding_mode="floor")
    f = flat - b * n_faces
    i0, i1, i2 = tri.index_select(0, f).unbind(1)
    base = b * n_verts
    x0, y0, z0 = pts.index_select(0, base + i0).unbind(1)
    x1, y1, z1 = pts.index_select(0, base + i1).unbind(1)
    x2, y2, z2 = pts.index_select(0, base + i2).unbind(1)
    pxf, pyf = px.to(pts.dtype), py.to(pts.dtype)
    neg = _area(x0, y0, x1, y1, x2, y2) < 0
    inside = _oriented_edge(i1, i2, x1, y1, x2, y2, pxf, pyf, neg)
    inside &= _oriented_edge(i2, i0, x2, y2, x0, y0, pxf, pyf, neg)
    inside &= _oriented_edge(i0, i1, x0, y0, x1, y1, pxf, pyf, neg)
    k = inside.nonzero().squeeze(1)
    if k.numel() == 0:
        return
    g = lambda t: t.index_select(0, k)  # noqa: E731
    x0, y0, z0, x1, y1, z1, x2, y2, z2, pxf, pyf = map(g, (x0, y0, z0, x1, y1, z1, x2, y2, z2, pxf, pyf))
    e0 = (x2 - x1) * (pyf - y1) - (y2 - y1) * (pxf - x1)
    e1 = (x0 - x2) * (pyf - y2) - (y0 - y2) * (pxf - x2)
    e2 = (x1 - x0) * (pyf - y0) - (y1 - y0) * (pxf - x0)
    depth = (e0 + e1 + e2) / (e0 / z0 + e1 / z1 + e2 / z2)  # perspective-correct: 1 / sum_i b_i / z_i
    pix = g(b) * (size * size) + g(py) * size + g(px)
    key = (depth.float().view(torch.int32).long() << 32) | g(f)  # positive floats sort like their bits
    zkeys.scatter_reduce_(0, pix, key, reduce="amin")


def rasterize(screen: Tensor, tri: Tensor, image_size: int, cull_backfaces: bool = False) -> Fragments:
    """Rasterise projected triangles into per-pixel :class:`Fragments` (notebook 01, section 4).

    Pixel (r, c) is sampled at (x=c, y=r); nearest depth wins. Triangles are skipped when degenerate
    (zero area), when any vertex has z' <= 0 or is not finite, and, with ``cull_backfaces``, when they
    face away from the camera (FaceModel winding: outward normals, i.e. clockwise on screen because
    rows point down).

    Args:
        screen: ``(B, N, 3)`` floating: x = column, y = row, z' = camera depth (from :func:`geometry.project`).
        tri: ``(F, 3)`` int64 vertex ids.
        image_size: the side S of the square image.
        cull_backfaces: skip triangles that face away from the camera.

    Returns:
        :class:`Fragments` with ``face_idx (B, S, S)`` int64 (-1 where empty), ``bary (B, S, S, 3)``
        (differentiable w.r.t. ``screen``), ``depth (B, S, S)``, ``mask (B, S, S)`` bool and
        ``index (M,)`` the flat indices of the M covered pixels.
    """
    _check_inputs(screen, tri, image_size)
    bsz, s = screen.shape[0], image_size
    dev, dtype = screen.device, screen.dtype
    zkeys = torch.full((bsz * s * s,), _NO_HIT, dtype=torch.long, device=dev)
    with torch.no_grad():
        sel, xmin, ymin, w, count = _triangle_setup(screen.detach(), tri, s, cull_backfaces)
        if sel.numel():
            pts = screen.detach().reshape(-1, 3)
            cum = torch.cumsum(count, 0)
            total = int(cum[-1])
            if total <= CHUNK:
                bounds = [0, sel.numel()]
            else:  # split the triangle list so that each chunk holds about CHUNK candidates
                cuts = torch.searchsorted(cum, torch.arange(CHUNK, total, CHUNK, device=dev), right=True)
                bounds = sorted(set([0] + cuts.tolist() + [sel.numel()]))
            for a, b in zip(bounds[:-1], bounds[1:]):
                _candidate_pass(zkeys, pts, tri, sel[a:b], xmin[a:b], ymin[a:b], w[a:b], count[a:b], s,
                                screen.shape[1])
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
    n = screen.shape[1]
    b = index.div(size * size, rounding_mode="floor")
    rem = index - b * (size * size)
    py = rem.div(size, rounding_mode="floor")
    px = (rem - py * size).to(screen.dtype)
    py = py.to(screen.dtype)
    pts = screen.reshape(-1, 3)
    i0, i1, i2 = tri.index_select(0, face).unbind(1)
    base = b * n
    x0, y0, z0 = pts.index_select(0, base + i0).unbind(1)
    x1, y1, z1 = pts.index_select(0, base + i1).unbind(1)
    x2, y2, z2 = pts.index_select(0, base + i2).unbind(1)
    e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)  # edge functions = twice the sub-triangle areas
    e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    area = e0 + e1 + e2
    w0, w1, w2 = e0 / (area * z0), e1 / (area * z1), e2 / (area * z2)  # screen barycentrics / depth
    depth = 1.0 / (w0 + w1 + w2)
    return torch.stack([w0 * depth, w1 * depth, w2 * depth], 1), depth


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
    n, c = attrs.shape[1], attrs.shape[2]
    b = idx.div(s * s, rounding_mode="floor")
    face = frags.face_idx.reshape(-1).index_select(0, idx)
    base = b * n
    flat = attrs.reshape(-1, c)
    w0, w1, w2 = frags.bary.reshape(-1, 3).index_select(0, idx).to(attrs.dtype).unbind(1)
    i0, i1, i2 = tri.index_select(0, face).unbind(1)
    out = (w0.unsqueeze(1) * flat.index_select(0, base + i0) + w1.unsqueeze(1) * flat.index_select(0, base + i1)
           + w2.unsqueeze(1) * flat.index_select(0, base + i2))
    full = torch.zeros(bsz * s * s, c, dtype=out.dtype, device=out.device).index_put((idx,), out)
    return full.view(bsz, s, s, c)
