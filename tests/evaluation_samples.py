"""Shared inputs of the evaluation tests: a tiny face model, ground-truth coefficients and rendered EvalSets.

The ``renderer`` fixture (tests/conftest.py) renders ``tiny_face_model()`` at ``S`` pixels.
"""
from __future__ import annotations

import torch

from occ3d_lib.evaluation import sets as evalsets
from occ3d_lib.face.coeffs import SLICES, join_coeffs
from occ3d_lib.face.facemodel import FaceModel, build_point_buf

S = 32


def tiny_face_model(n=6):
    """A 6 x 6 vertex bump facing +z, 1.5 units wide (BFM-like units), random small bases."""
    xs = torch.linspace(-0.75, 0.75, n)
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    verts = torch.stack([X.reshape(-1), Y.reshape(-1), 0.3 * torch.exp(-(X ** 2 + Y ** 2) / 0.3).reshape(-1)], 1)
    tri = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            tri += [[i, i + 1, i + n + 1], [i, i + n + 1, i + n]]  # wound so normals point to +z
    tri = torch.tensor(tri)
    nv = verts.shape[0]
    g = torch.Generator().manual_seed(0)
    return FaceModel(mean_shape=verts, id_base=0.02 * torch.randn(3 * nv, 80, generator=g),
                     exp_base=0.02 * torch.randn(3 * nv, 64, generator=g), mean_tex=torch.full((nv, 3), 128.0),
                     tex_base=5 * torch.randn(3 * nv, 80, generator=g), tri=tri, point_buf=build_point_buf(tri, nv),
                     keypoints=torch.arange(68) % nv, skin_mask=torch.ones(nv), info={"name": "tiny-grid"})



def _gt_coeffs(b, seed=0, pose=True):
    g = torch.Generator().manual_seed(seed)
    c = join_coeffs(id=torch.randn(b, 80, generator=g), exp=0.5 * torch.randn(b, 64, generator=g),
                    tex=torch.randn(b, 80, generator=g))
    if pose:
        c[:, SLICES["angle"]] = 0.2 * torch.randn(b, 3, generator=g)
        c[:, SLICES["trans"]] = 0.05 * torch.randn(b, 3, generator=g)
    return c


def _make_set(renderer, kind, coeffs, seed=0, identity=None):
    g = torch.Generator().manual_seed(seed + 100)
    b = coeffs.shape[0]
    bg = torch.rand(b, 3, 1, 1, generator=g).expand(b, 3, S, S).contiguous()
    with torch.no_grad():
        out = renderer(coeffs, bg)
    clean = (out.image * 255).round() / 255
    images = clean.clone()
    if kind != "none":  # a grey block over the top-left quarter
        images[:, :, : S // 2, : S // 2] = 0.5
    cov = torch.full((b,), 0.0 if kind == "none" else 0.25)
    return evalsets.EvalSet(kind=kind, images=images, clean=clean, landmarks=out.landmarks.float(), coeffs=coeffs,
                     coverage=cov, identity=identity if identity is not None else torch.arange(b))
