"""Coefficients -> image: the full differentiable face renderer (paper Eqs. 3-5).

Taught in notebook 01, section 5 ("The whole renderer"). :class:`FaceRenderer`
holds a face model and an image size (its state); :func:`render_coeffs`-style
work is done in :meth:`FaceRenderer.render`: Eq. 3 builds shape and albedo,
normals come from point_buf, Eq. 5 poses and projects, Eq. 4 shades the
vertices, and a rasteriser turns the mesh into pixels which are composited over a
background. Two rasterisers give the same :class:`RenderOutput` (``backend``): occ3d's own
pure-PyTorch one (:mod:`occ3d_lib.render.raster`, the CPU default) and PyTorch3D's
(:mod:`occ3d_lib.render.raster_pytorch3d`, the fast path on a GPU); notebook 01, section 5 compares them.
Both sample pixel (r, c) at its centre u = c + 1/2, v = S - 1/2 - r (:mod:`occ3d_lib.render.camera`).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from occ3d_lib.core import metrics
from occ3d_lib.face.coeffs import join_coeffs, split_coeffs, validate_coeffs
from occ3d_lib.face.facemodel import FaceModel
from occ3d_lib.render import camera, lighting
from occ3d_lib.render.raster import Fragments, interpolate, rasterize

#: Rasteriser backends: occ3d's pure-PyTorch rasteriser, PyTorch3D's, or "auto" (PyTorch3D on CUDA, else occ3d).
BACKENDS = ("occ3d", "pytorch3d", "auto")
#: Bump when the pixels a render produces change (pixel-centre convention, shading, compositing): it is part of
#: the cache key of everything rendered and stored (synthetic datasets, the synthetic embedder).
RENDER_VERSION = 2


def resolve_backend(backend: str, device: str | torch.device = "cpu") -> str:
    """The rasteriser ``backend`` means on ``device``: "auto" is "pytorch3d" on CUDA when it imports, else "occ3d"."""
    if backend not in BACKENDS:
        raise ValueError(f"render backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    from occ3d_lib.render.raster_pytorch3d import pytorch3d_available

    return "pytorch3d" if torch.device(device).type == "cuda" and pytorch3d_available() else "occ3d"


def rasterize_vertices(vertices: Tensor, tri: Tensor, image_size: int, cull_backfaces: bool = False,
                       backend: str = "occ3d") -> Fragments:
    """Posed world vertices (B, N, 3) through the camera of Eq. 5 into :class:`~occ3d_lib.render.raster.Fragments`.

    ``backend`` "occ3d" projects with :func:`occ3d_lib.render.camera.project` and runs
    :func:`occ3d_lib.render.raster.rasterize`; "pytorch3d" runs
    :func:`occ3d_lib.render.raster_pytorch3d.rasterize_pytorch3d` with the same camera; "auto" picks by the
    vertices' device (:func:`resolve_backend`). Notebook 01, section 5.

    Args:
        vertices: posed world vertices ``(B, N, 3)``.
        tri: ``(F, 3)`` int64 triangles.
        image_size: the side S of the square image.
        cull_backfaces: skip triangles that face away from the camera.
        backend: "occ3d", "pytorch3d" or "auto".

    Returns:
        :class:`~occ3d_lib.render.raster.Fragments` for B images of S x S pixels (``face_idx (B, S, S)``,
        ``bary (B, S, S, 3)``, ``depth (B, S, S)``, ``mask (B, S, S)``, ``index (M,)``).
    """
    backend = resolve_backend(backend, vertices.device)
    if backend == "pytorch3d":
        from occ3d_lib.render.raster_pytorch3d import rasterize_pytorch3d

        return rasterize_pytorch3d(vertices, tri, image_size, cull_backfaces=cull_backfaces)
    return rasterize(camera.project(vertices, image_size), tri, image_size, cull_backfaces=cull_backfaces)


@dataclass
class RenderOutput:
    """Everything one render produces (B images of size S).

    image (B, 3, S, S) in [0, 1] composited over the background; face (B, 3, S, S) the face
    colours alone (0 outside the mask); mask (B, 1, S, S) float coverage; landmarks (B, 68, 2)
    pixel coordinates (x = column, y = row); vertices (B, N, 3) posed world coordinates;
    shape (B, N, 3) before pose (identity + expression, for dense 3D error); albedo (B, N, 3)
    in [0, 1]; colors (B, N, 3) shaded vertex colours; screen (B, N, 3) projected vertices
    (x, y, depth).
    """

    image: Tensor
    face: Tensor
    mask: Tensor
    landmarks: Tensor
    vertices: Tensor
    shape: Tensor
    albedo: Tensor
    colors: Tensor
    screen: Tensor


class FaceRenderer:
    """A face model plus an image size: ``renderer(coeffs, background)`` -> :class:`RenderOutput`.

    ``backend`` (one of :data:`BACKENDS`) chooses the rasteriser; every backend returns the same
    :class:`RenderOutput`, differentiable with respect to the coefficients.
    """

    def __init__(self, model: FaceModel, image_size: int, cull_backfaces: bool = False,
                 backend: str = "occ3d") -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if backend not in BACKENDS:
            raise ValueError(f"render backend must be one of {BACKENDS}, got {backend!r}")
        self.model = model
        self.image_size = image_size
        self.cull_backfaces = cull_backfaces
        self.backend = backend

    def to(self, device: str | torch.device) -> FaceRenderer:
        """A renderer whose model lives on ``device``."""
        return FaceRenderer(self.model.to(device), self.image_size, self.cull_backfaces, self.backend)

    def geometry(self, coeffs: Tensor) -> dict[str, Tensor]:
        """Eqs. 3-5 without rasterising: shape, posed vertices, colours, screen coords, landmarks."""
        _check_not_empty(coeffs)
        validate_coeffs(coeffs)
        c = split_coeffs(coeffs.to(self.model.dtype))
        shape = self.model.shape(c.id, c.exp)
        albedo = self.model.albedo(c.tex)
        normals = self.model.normals(shape)
        rot = camera.rotation_matrix(c.angle)
        verts = camera.transform(shape, rot, c.trans)
        colors = lighting.shade(albedo, normals @ rot.transpose(1, 2), c.gamma)
        screen = camera.project(verts, self.image_size)
        landmarks = screen[:, self.model.keypoints, :2]
        return {"shape": shape, "albedo": albedo, "vertices": verts, "colors": colors,
                "screen": screen, "landmarks": landmarks}

    def landmarks(self, coeffs: Tensor) -> Tensor:
        """Projected 68 landmarks only (cheap: no rasterisation). (B, 257) -> (B, 68, 2)."""
        validate_coeffs(coeffs)
        c = split_coeffs(coeffs.to(self.model.dtype))
        m = self.model
        rows = (3 * m.keypoints.unsqueeze(1) + torch.arange(3, device=m.device)).reshape(-1)  # (204,)
        offs = c.id @ m.id_base[rows].T + c.exp @ m.exp_base[rows].T  # (B, 204)
        lm3d = m.mean_shape[m.keypoints].unsqueeze(0) + offs.view(-1, 68, 3)
        verts = camera.transform(lm3d, camera.rotation_matrix(c.angle), c.trans)
        return camera.project(verts, self.image_size)[..., :2]

    def landmark_me(self, coeffs: Tensor, landmarks: Tensor) -> Tensor:
        """Landmark ME of coefficients against landmarks: :func:`occ3d_lib.core.metrics.landmark_me` (pixels at
        224) of :meth:`landmarks` ``(B, 257)`` and ``landmarks`` ``(B, 68, 2)`` in pixels of this image
        size -> ``(B,)`` in the face model's dtype (differentiable). Notebooks 03-04 measure models with it."""
        return metrics.landmark_me(self.landmarks(coeffs), landmarks, self.image_size)

    def __call__(self, coeffs: Tensor, background: Tensor | None = None) -> RenderOutput:
        """Render (B, 257) coefficients over ``background`` (B, 3, S, S) in [0, 1] (black if None)."""
        _check_not_empty(coeffs)
        g = self.geometry(coeffs)
        s = self.image_size
        if resolve_backend(self.backend, g["vertices"].device) == "occ3d":
            frags = rasterize(g["screen"], self.model.tri, s, cull_backfaces=self.cull_backfaces)
        else:
            frags = rasterize_vertices(g["vertices"], self.model.tri, s, self.cull_backfaces, "pytorch3d")
        face = interpolate(g["colors"], self.model.tri, frags).permute(0, 3, 1, 2)  # (B, 3, S, S)
        mask = frags.mask.unsqueeze(1).to(face.dtype)
        if background is None:
            background = torch.zeros_like(face)
        else:
            check_background(background, tuple(face.shape))
        image = face.clamp(0, 1) * mask + background.to(face.dtype) * (1 - mask)
        return RenderOutput(image=image, face=face, mask=mask, landmarks=g["landmarks"], vertices=g["vertices"],
                            shape=g["shape"], albedo=g["albedo"], colors=g["colors"], screen=g["screen"])


def _check_not_empty(coeffs: Tensor) -> None:
    if isinstance(coeffs, Tensor) and coeffs.ndim == 2 and coeffs.shape[0] == 0:
        raise ValueError(f"coeffs is an empty batch {tuple(coeffs.shape)}: there is nothing to render; "
                         "skip the call when there are no faces")


#: A background pixel may leave [0, 1] by this much (resampling) before it is refused.
BACKGROUND_TOLERANCE = 0.01


def check_background(background: Tensor, shape: tuple[int, ...]) -> None:
    """A render's background: a float tensor of ``shape`` (B, 3, S, S), finite, in [0, 1]. One-line errors
    say what to do (a 0-255 image is divided by 255, NaN is replaced). Notebook 01, section 5."""
    if not isinstance(background, Tensor):
        raise TypeError(f"background must be a torch.Tensor (B, 3, S, S) in [0, 1], got {type(background).__name__}")
    if tuple(background.shape) != tuple(shape):
        raise ValueError(f"background must have shape {tuple(shape)}, got {tuple(background.shape)}")
    if not background.is_floating_point():
        raise TypeError(f"background is {background.dtype}; the renderer takes float RGB in [0, 1]: "
                        "pass background.float() / 255")
    bg = background.detach()
    if not bool(torch.isfinite(bg).all()):
        raise ValueError("background holds NaN or inf values; the renderer takes finite RGB in [0, 1] "
                         "(replace them, e.g. background.nan_to_num(0.0))")
    lo, hi = (float(v) for v in torch.aminmax(bg))
    if lo < -BACKGROUND_TOLERANCE or hi > 1 + BACKGROUND_TOLERANCE:
        hint = " (they look like 0-255 values: divide by 255)" if hi > 2 else ""
        raise ValueError(f"background holds values in [{lo:.4g}, {hi:.4g}]; the renderer takes RGB in [0, 1]{hint}")


def compare_backends(model: FaceModel, coeffs: Tensor, image_size: int, background: Tensor | None = None,
                     repeats: int = 3) -> dict[str, Any]:
    """Render the same coefficients with occ3d's rasteriser and with PyTorch3D's (notebook 01, section 5).

    Args:
        model: the FaceModel both renderers use.
        coeffs: ``(B, 257)`` on the model's device.
        image_size: the side S of the renders.
        background: ``(B, 3, S, S)`` in [0, 1], or None (black).
        repeats: timed renders per backend (a positive int).

    Returns:
        A dict: ``"occ3d"`` and ``"pytorch3d"`` (each that backend's :class:`RenderOutput`), ``"face_idx"``
        ({backend: ``(B, S, S)`` visible triangle per pixel}), ``"same_face"`` (float: the fraction of the
        pixels covered by either backend where both see the same triangle), ``"max_abs_diff"`` (float: the
        largest |image difference|) and ``"seconds"`` ({backend: median wall time of one render without
        gradients over ``repeats``, after one untimed warm-up: the rasterisation that fills ``face_idx``}).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    out: dict[str, Any] = {"face_idx": {}, "seconds": {}}
    for backend in ("occ3d", "pytorch3d"):
        r = FaceRenderer(model, image_size, backend=backend)
        times = []
        with torch.no_grad():
            verts = r.geometry(coeffs)["vertices"]
            out["face_idx"][backend] = rasterize_vertices(verts, model.tri, image_size, backend=backend).face_idx
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = r(coeffs, background)
                times.append(time.perf_counter() - t0)
        out[backend], out["seconds"][backend] = res, statistics.median(times)
    a, b = out["face_idx"]["occ3d"], out["face_idx"]["pytorch3d"]
    either = (a >= 0) | (b >= 0)
    out["same_face"] = float((a == b)[either].float().mean()) if bool(either.any()) else 1.0
    out["max_abs_diff"] = float((out["occ3d"].image - out["pytorch3d"].image).abs().max())
    return out


def mean_face_coeffs(batch_size: int = 1, angle: Tensor | None = None, trans: Tensor | None = None,
                     gamma: Tensor | None = None) -> Tensor:
    """(B, 257) coefficients of the mean face (zeros) with optional pose and light."""
    return join_coeffs(angle=angle, trans=trans, gamma=gamma, batch_size=batch_size)
