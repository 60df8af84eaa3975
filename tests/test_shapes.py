"""Tests of occ3d_lib.occlusion.shapes: the occluder rasteriser against a slow winding-number reference."""
from __future__ import annotations

import numpy as np
import torch

from occ3d_lib.occlusion import shapes as oc


# ----------------------------------------------------------------------------------- rasteriser
def _winding_reference(loops, h, w):
    """Slow per-pixel winding number (pixel centres), the same orientation rules as loops_to_edges."""
    out = np.zeros((h, w), bool)
    edges = oc.loops_to_edges(loops)
    for r in range(h):
        for c in range(w):
            wn = 0
            for x0, y0, x1, y1 in edges:
                if (y0 > r) != (y1 > r):
                    xi = x0 + (r - y0) * (x1 - x0) / (y1 - y0)
                    if c > xi:  # the crossing lies left of the centre (strictly: centre on it is outside)
                        wn += 1 if y1 > y0 else -1
            out[r, c] = wn != 0
    return out


def test_rasterize_rectangle_exact_pixels():
    loop = oc._rect_loop(2, 3, 4, 2)  # columns 2..5, rows 3..4
    m = oc.rasterize_edges(torch.tensor(oc.loops_to_edges([(loop, False)]), dtype=torch.float32)[None], 8, 8)[0]
    ref = torch.zeros(8, 8, dtype=torch.bool)
    ref[3:5, 2:6] = True
    assert torch.equal(m, ref)


def test_rasterize_matches_slow_reference_with_holes():
    rng = np.random.default_rng(0)
    h = w = 20
    for _ in range(5):
        star = oc.superellipse(7.3, 5.1, 3.0, 17) + rng.uniform(8, 12, 2)
        tri = rng.uniform(-2, 22, (3, 2))
        hole = oc.superellipse(2.2, 1.7, 2.0, 9) + star.mean(0)
        loops = [(star, False), (tri, False), (hole, True)]
        fast = oc.rasterize_edges(torch.tensor(oc.loops_to_edges(loops))[None], h, w)[0].numpy()
        assert (fast == _winding_reference(loops, h, w)).all()
