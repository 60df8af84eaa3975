"""PyTorch3D as a second rasteriser: the reference occ3d's is tested against, and the GPU backend.

Taught in notebook 01, section 5 ("The same face through PyTorch3D"). occ3d's camera (Eq. 5:
focal 1015 px and centre 112 px at 224 px, camera at z = 10 looking down -z) is expressed as a
PyTorch3D ``PerspectiveCameras`` in screen space:

* PyTorch3D's view frame has +X left, +Y up, +Z into the scene, and maps world points by
  ``X_view = X_world @ R + T``: ``R = diag(-1, 1, -1)``, ``T = (0, 0, 10)`` give
  ``X_view = (-x, y, 10 - z)``, so its view depth is occ3d's z';
* with ``in_ndc=False`` its screen frame has x to the right, y down and pixel (r, c) centred at
  (c + 1/2, r + 1/2): focal f and principal point (c, S - c) = (S/2, S/2) there put a point at
  screen (u, S - v), i.e. pixel (r, c) is sampled at u = c + 1/2, v = S - 1/2 - r, exactly
  occ3d's convention (:mod:`occ3d_lib.render.camera`), and screen = occ3d's (x, y) + 1/2.

:func:`rasterize_pytorch3d` returns occ3d's :class:`~occ3d_lib.render.raster.Fragments`, so
:func:`occ3d_lib.render.raster.interpolate` and :class:`occ3d_lib.render.renderer.FaceRenderer` work unchanged
on either backend. On a CPU PyTorch3D only has its naive rasteriser (every pixel tests every
triangle: thousands of times slower than occ3d's bounding boxes on a face mesh); on CUDA its
coarse-to-fine binned rasteriser is the fast path. PyTorch3D computes in float32.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

from occ3d_lib.render import camera
from occ3d_lib.render.raster import Fragments


@functools.cache
def pytorch3d_available() -> bool:
    """True when PyTorch3D and its compiled extension import (``make setup`` installs them)."""
    try:
        import pytorch3d.renderer  # noqa: F401
        from pytorch3d import _C  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _require() -> None:
    if not pytorch3d_available():
        raise ImportError("PyTorch3D is not importable: run 'make setup' (it installs easypytorch3d, PyTorch3D 0.7.9 "
                          "for torch 2.12), or use backend='occ3d'")


def cameras(image_size: int, device: str | torch.device = "cpu"):
    """occ3d's camera (Eq. 5) at ``image_size`` as a PyTorch3D ``PerspectiveCameras`` in screen space."""
    _require()
    from pytorch3d.renderer import PerspectiveCameras

    focal, centre = camera.camera_intrinsics(image_size)
    s = float(image_size)
    return PerspectiveCameras(focal_length=((focal, focal),), principal_point=((centre, s - centre),),
                              R=torch.diag(torch.tensor([-1.0, 1.0, -1.0])).unsqueeze(0),
                              T=torch.tensor([[0.0, 0.0, camera.CAMERA_DISTANCE]]), in_ndc=False,
                              image_size=((image_size, image_size),), device=device)


def rasterize_pytorch3d(vertices: Tensor, tri: Tensor, image_size: int, cull_backfaces: bool = False,
                        bin_size: int | None = None) -> Fragments:
    """Rasterise posed world vertices with PyTorch3D through occ3d's camera -> occ3d ``Fragments``.

    vertices (B, N, 3) world coordinates (after pose, before projection), tri (F, 3) int64.
    ``bin_size`` None lets PyTorch3D choose (0, the naive rasteriser, on a CPU; coarse-to-fine
    bins on CUDA). Barycentrics are perspective-correct and differentiable with respect to the
    vertices; depth is z' = 10 - z. Returns the same fields as :func:`occ3d_lib.render.raster.rasterize`.
    """
    _require()
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes

    if not isinstance(vertices, Tensor) or vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be a tensor of shape (B, N, 3), got "
                         f"{tuple(vertices.shape) if isinstance(vertices, Tensor) else type(vertices).__name__}")
    if not isinstance(tri, Tensor) or tri.ndim != 2 or tri.shape[-1] != 3 or tri.dtype != torch.long:
        raise ValueError(f"tri must be an int64 tensor of shape (F, 3), got "
                         f"{tuple(tri.shape) if isinstance(tri, Tensor) else type(tri).__name__}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    bsz, n_faces, s, dev, dtype = vertices.shape[0], tri.shape[0], image_size, vertices.device, vertices.dtype
    meshes = Meshes(verts=vertices.float(), faces=tri.to(dev).unsqueeze(0).expand(bsz, -1, -1))
    settings = RasterizationSettings(image_size=s, blur_radius=0.0, faces_per_pixel=1, bin_size=bin_size,
                                     perspective_correct=True, cull_backfaces=cull_backfaces)
    frags = MeshRasterizer(cameras=cameras(s, dev), raster_settings=settings)(meshes)
    packed = frags.pix_to_face[..., 0]  # (B, S, S) ids into the packed faces b * F + f, -1 where empty
    mask = packed >= 0
    offset = (torch.arange(bsz, device=dev) * n_faces).view(bsz, 1, 1)
    face = torch.where(mask, packed - offset, torch.full_like(packed, -1))
    bary = torch.where(mask.unsqueeze(-1), frags.bary_coords[..., 0, :], 0.0).to(dtype)
    depth = torch.where(mask, frags.zbuf[..., 0], 0.0).to(dtype)
    return Fragments(face_idx=face, bary=bary, depth=depth, mask=mask, index=mask.reshape(-1).nonzero().squeeze(1))
