"""Pose and perspective projection (paper Eq. 5; docs/facts.md §5).

Taught in notebook 01, section 2. Angles are radians (x = pitch, y = yaw,
z = roll); R = Rz Ry Rx; points are rotated then translated; the camera sits
at (0, 0, 10) looking down -z, so camera depth is z' = 10 - z; a pinhole with
focal 1015 px and centre 112 px at 224x224 (both scaled with the image size)
gives image-plane coordinates u = f x / z' + c, v = f y / z' + c (v up).

Pixels (the renderer's convention, Deep3DFaceRecon's): pixel (r, c) of an S x S
image is the unit square u in [c, c + 1], v in [S - 1 - r, S - r], sampled at its
centre u = c + 1/2, v = S - 1/2 - r. This is how nvdiffrast (Deep3DFaceRecon's
renderer), PyTorch3D and OpenGL sample, and it puts the principal point c = S/2 at
the exact centre of the image. Screen coordinates used everywhere in occ3d_lib are
(x = column, y = row) with pixel (r, c) centred at (c, r), the frame of landmark
detectors, PIL and matplotlib, so

    x = u - 1/2,    y = (S - 1/2) - v,

and the rasteriser samples pixel (r, c) at (x, y) = (c, r). Landmarks are projected
the same way, so a landmark sits exactly where its vertex is drawn. Deep3DFaceRecon
writes its landmarks as (u, S - 1 - v), i.e. :data:`DEEP3D_LANDMARK_OFFSET` = (+1/2, -1/2)
from ours: a constant shift that cancels in every landmark error between two occ3d
projections (notebook 01, section 2).
"""
from __future__ import annotations

import torch
from torch import Tensor

CAMERA_DISTANCE = 10.0
FOCAL_224 = 1015.0
CENTER_224 = 112.0
ZNEAR, ZFAR = 5.0, 15.0
#: Pixel (r, c) is sampled at image-plane u = c + PIXEL_CENTRE, v = S - PIXEL_CENTRE - r (pixel squares, centres
#: at half-integers), as in nvdiffrast, PyTorch3D and OpenGL.
PIXEL_CENTRE = 0.5
#: Deep3DFaceRecon's landmark image coordinates (u, S - 1 - v) minus occ3d_lib's (x, y).
DEEP3D_LANDMARK_OFFSET = (0.5, -0.5)


def rotation_matrix(angles: Tensor) -> Tensor:
    """R = Rz Ry Rx from Euler angles (x, y, z) in radians. (B, 3) -> (B, 3, 3)."""
    if angles.ndim != 2 or angles.shape[1] != 3:
        raise ValueError(f"angles must have shape (B, 3), got {tuple(angles.shape)}")
    x, y, z = angles[:, 0], angles[:, 1], angles[:, 2]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def transform(verts: Tensor, rotation: Tensor, trans: Tensor) -> Tensor:
    """Rigid pose: x' = R x + t. (B, N, 3), (B, 3, 3), (B, 3) -> (B, N, 3)."""
    return verts @ rotation.transpose(1, 2) + trans.unsqueeze(1)


def camera_intrinsics(image_size: int) -> tuple[float, float]:
    """(focal, centre) in pixels for a square image: 1015 and 112 at 224, scaled linearly.

    Args:
        image_size: the side S of the square image (a positive int).

    Returns:
        ``(focal, centre)`` as two floats, ``1015 * S / 224`` and ``112 * S / 224``.
    """
    if not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    s = image_size / 224.0
    return FOCAL_224 * s, CENTER_224 * s


def project(points: Tensor, image_size: int) -> Tensor:
    """Perspective projection of world points to screen (x = column, y = row, depth z') (Eq. 5).

    The camera sits at z = 10 looking down -z, so z' = 10 - z; x = u - 1/2 and y = (S - 1/2) - v:
    pixel (r, c) is centred at (c, r) and covers the image-plane square of which
    u = c + 1/2, v = S - 1/2 - r is the centre (see the module docstring).

    Args:
        points: world points ``(B, N, 3)`` (any leading dims ``(..., 3)``).
        image_size: the side S of the square image.

    Returns:
        ``(B, N, 3)``: x (column), y (row) in pixels and the depth z'.
    """
    focal, centre = camera_intrinsics(image_size)
    depth = CAMERA_DISTANCE - points[..., 2]
    u = focal * points[..., 0] / depth + centre
    v = focal * points[..., 1] / depth + centre
    return torch.stack([u - PIXEL_CENTRE, (image_size - PIXEL_CENTRE) - v, depth], dim=-1)
