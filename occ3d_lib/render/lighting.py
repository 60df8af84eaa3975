"""Spherical-harmonics Lambertian shading (paper Eq. 4; docs/facts.md §4).

Taught in notebook 01, section 2. Nine real SH basis functions of the unit
normal, pre-multiplied by the Lambertian kernel's band factors a_l and the
normalisation constants c_l, exactly as in RNet. The 27 gamma coefficients
are read as (RGB, 9) and 0.8 is added to each channel's DC term, so gamma = 0
means a soft white ambient light.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

A0, A1, A2 = math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0)
C0, C1, C2 = 1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi)
DC_OFFSET = 0.8


def sh_basis(normals: Tensor) -> Tensor:
    """The 9 scaled SH basis values psi_b(n) of Eq. 4 for unit normals.

    Args:
        normals: unit normals ``(..., 3)``.

    Returns:
        ``(..., 9)`` basis values.
    """
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    return torch.stack([
        torch.full_like(x, A0 * C0),
        -A1 * C1 * y,
        A1 * C1 * z,
        -A1 * C1 * x,
        A2 * C2 * x * y,
        -A2 * C2 * y * z,
        A2 * C2 * 0.5 / math.sqrt(3.0) * (3 * z * z - 1),
        -A2 * C2 * x * z,
        A2 * C2 * 0.5 * (x * x - y * y),
    ], dim=-1)


def gamma_matrix(gamma: Tensor) -> Tensor:
    """(B, 27) -> (B, 3, 9) RGB x SH coefficients with the 0.8 DC offset added."""
    if gamma.ndim != 2 or gamma.shape[1] != 27:
        raise ValueError(f"gamma must have shape (B, 27), got {tuple(gamma.shape)}")
    g = gamma.view(-1, 3, 9).clone()
    g[:, :, 0] = g[:, :, 0] + DC_OFFSET
    return g


def irradiance(normals: Tensor, gamma: Tensor) -> Tensor:
    """Per-vertex RGB irradiance sum_b gamma_b psi_b(n).

    Args:
        normals: unit vertex normals ``(B, N, 3)``.
        gamma: SH light ``(B, 27)`` (RGB x 9; the 0.8 DC offset is added here, :func:`gamma_matrix`).

    Returns:
        ``(B, N, 3)`` RGB irradiance.
    """
    return torch.einsum("bnk,bck->bnc", sh_basis(normals), gamma_matrix(gamma))


def shade(albedo: Tensor, normals: Tensor, gamma: Tensor) -> Tensor:
    """Lambertian SH colour C = K * sum_b gamma_b psi_b(n) (Eq. 4). (B, N, 3) x2, (B, 27) -> (B, N, 3)."""
    return albedo * irradiance(normals, gamma)


def white_gamma(sh9: Tensor) -> Tensor:
    """The paper's white light (gamma in R^9) as RNet's 27 values (equal RGB rows).

    Args:
        sh9: nine SH coefficients ``(B, 9)``.

    Returns:
        ``(B, 27)``: ``sh9`` repeated for R, G and B.
    """
    return sh9.unsqueeze(1).expand(-1, 3, -1).reshape(-1, 27)


def tinted_gamma(sh9: Tensor, tint: Tensor) -> Tensor:
    """A coloured light: the nine coefficients ``sh9`` scaled per colour by ``tint``.

    ``tint = (1, 1, 1)`` is :func:`white_gamma`. Notebook 01, section 3.

    Args:
        sh9: nine SH coefficients ``(B, 9)``.
        tint: RGB scale ``(B, 3)`` or ``(3,)`` (a tensor or a sequence).

    Returns:
        ``(B, 27)``: the R, G and B rows of nine, each ``sh9`` times its tint.
    """
    tint = torch.as_tensor(tint, dtype=sh9.dtype).reshape(-1, 3)
    return (sh9.unsqueeze(1) * tint.unsqueeze(-1)).reshape(-1, 27)
