"""Shared inputs of the occlusion tests (test_apply, test_eval_sets): jittered faces and random images.

Canonical iBUG-68 layouts (occlusion.canonical_landmarks) jittered in scale, roll and shift; no renderer needed.
"""
from __future__ import annotations

import torch

from occ3d_lib import occlusion as O

S = 64


def jittered_landmarks(n: int, size: int = S, seed: int = 0) -> torch.Tensor:
    """Canonical frontal landmarks with random scale (0.9-1.1), roll (+-0.15 rad) and shift. -> (n, 68, 2)."""
    g = torch.Generator().manual_seed(seed)
    base = O.canonical_landmarks(size)
    c = base.mean(0)
    sc = 0.9 + 0.2 * torch.rand(n, 1, 1, generator=g)
    a = (torch.rand(n, generator=g) - 0.5) * 0.3
    rot = torch.stack([torch.stack([a.cos(), -a.sin()], 1), torch.stack([a.sin(), a.cos()], 1)], 1)
    shift = (torch.rand(n, 1, 2, generator=g) - 0.5) * 0.08 * size
    return ((base - c)[None] * sc) @ rot.transpose(1, 2) + c + shift


def faces(n: int, size: int = S, seed: int = 0) -> torch.Tensor:
    """Random images strictly inside (0.02, 0.98), so clipped noise fills never equal them. -> (n, 3, S, S)."""
    g = torch.Generator().manual_seed(seed + 100)
    return 0.02 + 0.96 * torch.rand(n, 3, size, size, generator=g)


N = 60
LM = jittered_landmarks(N)
X = faces(N)
