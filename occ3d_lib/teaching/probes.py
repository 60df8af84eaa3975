"""Small probes for the notebooks: models that take a second to fit and show an idea.

:class:`LandmarkProbe` is a ridge-regression landmark regressor on downsampled grey pixels (notebook 02,
section 1): fitted on clean faces it fails on occluded ones, fitted on occluded ones it degrades less,
the idea behind SOPI (paper Sec. 3.1.1). Its error is measured with
:func:`occ3d_lib.core.metrics.landmark_me` at 224 scale, like every landmark error of the series.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from occ3d_lib.occlusion.apply import _as_rgb_float
from occ3d_lib.render import raster


def _grey(images: Tensor) -> Tensor:
    """(B, C, H, W) float in [0, 1] or uint8 -> (B, 1, H, W) float grey levels."""
    return _as_rgb_float(images).float().mean(1, keepdim=True)


@dataclass
class LandmarkProbe:
    """A ridge-regression landmark regressor on downsampled grayscale pixels: the smallest
    "regressor trained on faces" there is. ``(B, 3, H, W)`` -> ``(B, 68, 2)`` pixels.
    Fit with :func:`fit_landmark_probe`. Taught in notebook 02, section 1."""

    weights: Tensor  # (F + 1, 136)
    mean: Tensor  # (F,)
    std: Tensor  # (F,)
    size: int

    def features(self, images: Tensor) -> Tensor:
        x = _grey(images)
        x = F.adaptive_avg_pool2d(x, self.size).flatten(1)
        return (x - self.mean) / self.std

    def __call__(self, images: Tensor) -> Tensor:
        f = self.features(images)
        f = torch.cat([f, torch.ones(len(f), 1)], 1)
        return (f @ self.weights).view(-1, 68, 2)


def fit_landmark_probe(images: Tensor, landmarks: Tensor, lam: float = 1.0, size: int = 16) -> LandmarkProbe:
    """Fit a :class:`LandmarkProbe` by ridge regression (closed form, ``(F^T F + lam I) W = F^T Y``).

    A stand-in for RNet that takes a second to train: notebook 02, section 1 shows it fails on occluded
    faces when trained on clean ones and degrades less when trained on occluded ones (the idea behind
    SOPI, paper Sec. 3.1.1). The bias is not shrunk.

    Args:
        images: ``(B, C, H, W)`` float in [0, 1] or uint8; features are their grey levels pooled to
            ``size x size``, standardised.
        landmarks: ``(B, 68, 2)`` pixels, the targets.
        lam: the ridge weight (>= 0).
        size: the side of the pooled grey image (F = size^2 features).

    Returns:
        The fitted :class:`LandmarkProbe` (``weights (F + 1, 136)``, ``mean (F,)``, ``std (F,)``, ``size``).
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if landmarks.shape != (images.shape[0], 68, 2):
        raise ValueError(f"landmarks must be (B, 68, 2) for {images.shape[0]} images, got {tuple(landmarks.shape)}")
    lm = landmarks
    x = _grey(images)
    feats = F.adaptive_avg_pool2d(x, size).flatten(1).double()
    mean = feats.mean(0)
    std = feats.std(0).clamp_min(1e-3) if len(feats) > 1 else torch.ones(feats.shape[1], dtype=torch.float64)
    f = torch.cat([(feats - mean) / std, torch.ones(len(feats), 1, dtype=torch.float64)], 1)
    reg = lam * torch.eye(f.shape[1], dtype=torch.float64)
    reg[-1, -1] = 0.0  # do not shrink the bias
    w = torch.linalg.solve(f.T @ f + reg, f.T @ lm.double().flatten(1))
    return LandmarkProbe(weights=w.float(), mean=mean.float(), std=std.float(), size=size)


def raster_colours_and_depth(screen: Tensor, tri: Tensor, image_size: int, colours: Tensor) -> tuple[Tensor, Tensor]:
    """Rasterise ``screen`` and interpolate per-vertex ``colours``.

    The function notebook 01, section 4 gradchecks through the rasteriser.

    Args:
        screen: projected vertices ``(B, N, 3)`` (x = column, y = row, depth z').
        tri: ``(F, 3)`` int64 triangles.
        image_size: the side S of the image.
        colours: per-vertex attributes ``(B, N, C)``.

    Returns:
        ``(image, depth)``: ``(B, S, S, C)`` (zeros where no triangle covers the pixel) and ``(B, S, S)``.
    """
    frags = raster.rasterize(screen, tri, image_size)
    return raster.interpolate(colours, tri, frags), frags.depth
