"""The slow, obviously-correct reference rasteriser (notebook 01, section 4).

Plain Python loops over images, pixels and triangles in float64: for every pixel centre, the
nearest triangle that covers it. It answers the same question as :func:`occ3d_lib.render.raster.rasterize`
(same screen frame: pixel (r, c) sampled at (x = c, y = r); same skipping of triangles that are
degenerate, touch a vertex with z' <= 0 or, with ``cull``, face away) and is the first of the two
references the fast rasteriser is tested against; PyTorch3D (:mod:`occ3d_lib.render.raster_pytorch3d`)
is the second. Use it on tiny images only: it costs B * S * S * F Python iterations.

Pixels exactly on an edge belong to every triangle sharing it here (the fast rasteriser gives
them to exactly one), and exact depth ties go to the lower triangle id in both.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def reference_rasterize(screen: Tensor, tri: Tensor, size: int, cull: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Nearest covering triangle per pixel centre, by loops in float64.

    screen (B, N, 3) (x = column, y = row, z'), tri (F, 3) -> face ids (B, S, S) int64 (-1 empty),
    perspective-correct barycentrics (B, S, S, 3) and depth z' (B, S, S), both float64 and 0 where empty.
    """
    if screen.ndim != 3 or screen.shape[-1] != 3 or tri.ndim != 2 or tri.shape[-1] != 3:
        raise ValueError(f"screen must be (B, N, 3) and tri (F, 3), got {tuple(screen.shape)} and {tuple(tri.shape)}")
    scr = screen.detach().double().cpu()
    bsz = scr.shape[0]
    face = torch.full((bsz, size, size), -1, dtype=torch.long)
    bary = torch.zeros(bsz, size, size, 3, dtype=torch.float64)
    depth = torch.zeros(bsz, size, size, dtype=torch.float64)
    tris = [[int(i) for i in t] for t in tri.tolist()]
    for b in range(bsz):
        pts = scr[b].tolist()
        for r in range(size):
            for c in range(size):
                best = math.inf
                for f, (i0, i1, i2) in enumerate(tris):
                    (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = pts[i0], pts[i1], pts[i2]
                    if min(z0, z1, z2) <= 0:
                        continue
                    area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
                    if abs(area) <= 1e-10 or (cull and area >= 0):
                        continue
                    l1 = ((c - x0) * (y2 - y0) - (r - y0) * (x2 - x0)) / area
                    l2 = ((x1 - x0) * (r - y0) - (y1 - y0) * (c - x0)) / area
                    l0 = 1 - l1 - l2
                    if min(l0, l1, l2) < 0:
                        continue
                    d = 1 / (l0 / z0 + l1 / z1 + l2 / z2)
                    if d < best:
                        best = d
                        face[b, r, c] = f
                        bary[b, r, c] = torch.tensor([l0 / z0 * d, l1 / z1 * d, l2 / z2 * d])
                        depth[b, r, c] = d
    return face, bary, depth
