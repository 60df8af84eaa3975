"""The 257-dimensional coefficient vector of RNet (Deep3DFaceRecon order).

Taught in notebook 01, section 1 (paper Eqs. 3-5). The order is RNet's, not
the paper's prose order: identity 0:80, expression 80:144, texture 144:224,
angles 224:227, SH gamma 227:254, translation 254:257.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

N_ID, N_EXP, N_TEX, N_ANGLE, N_GAMMA, N_TRANS = 80, 64, 80, 3, 27, 3
N_COEFFS = N_ID + N_EXP + N_TEX + N_ANGLE + N_GAMMA + N_TRANS  # 257

SLICES: dict[str, slice] = {}
_start = 0
for _name, _n in (("id", N_ID), ("exp", N_EXP), ("tex", N_TEX), ("angle", N_ANGLE),
                  ("gamma", N_GAMMA), ("trans", N_TRANS)):
    SLICES[_name] = slice(_start, _start + _n)
    _start += _n
assert _start == N_COEFFS


@dataclass
class Coeffs:
    """A batch of 257-d coefficient vectors split into named parts.

    Shapes: id (B, 80), exp (B, 64), tex (B, 80), angle (B, 3) radians,
    gamma (B, 27) SH coefficients (RGB x 9), trans (B, 3).
    """

    id: Tensor
    exp: Tensor
    tex: Tensor
    angle: Tensor
    gamma: Tensor
    trans: Tensor

    @property
    def batch_size(self) -> int:
        return self.id.shape[0]

    def to_tensor(self) -> Tensor:
        """Concatenate back to (B, 257) in RNet order."""
        return torch.cat([self.id, self.exp, self.tex, self.angle, self.gamma, self.trans], dim=1)


def validate_coeffs(coeffs: Tensor, name: str = "coeffs") -> Tensor:
    """Check a (B, 257) floating tensor of finite values; returns it unchanged.

    Raises ``ValueError`` naming the problem (shape, dtype, NaN/inf).
    """
    if not isinstance(coeffs, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {N_COEFFS}), got {type(coeffs).__name__}")
    if coeffs.ndim != 2 or coeffs.shape[1] != N_COEFFS:
        raise ValueError(f"{name} must have shape (B, {N_COEFFS}), got {tuple(coeffs.shape)}")
    if not coeffs.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {coeffs.dtype}")
    if not torch.isfinite(coeffs).all():
        bad = (~torch.isfinite(coeffs)).nonzero()
        raise ValueError(f"{name} contains NaN or inf (first at batch {int(bad[0, 0])}, index {int(bad[0, 1])})")
    return coeffs


def split_coeffs(coeffs: Tensor) -> Coeffs:
    """Split (B, 257) into :class:`Coeffs` (RNet's ``split_coeff``)."""
    validate_coeffs(coeffs)
    return Coeffs(**{k: coeffs[:, s] for k, s in SLICES.items()})


def join_coeffs(id: Tensor | None = None, exp: Tensor | None = None, tex: Tensor | None = None,
                angle: Tensor | None = None, gamma: Tensor | None = None, trans: Tensor | None = None,
                batch_size: int | None = None) -> Tensor:
    """Build (B, 257) from parts; missing parts are zeros.

    Args:
        id: identity ``(B, 80)``, or None.
        exp: expression ``(B, 64)``, or None.
        tex: albedo ``(B, 80)``, or None.
        angle: pitch, yaw, roll ``(B, 3)`` in radians, or None.
        gamma: SH light ``(B, 27)`` (RGB x 9), or None.
        trans: translation ``(B, 3)``, or None.
        batch_size: B; needed only if all parts are missing (else read from the first part given).

    Returns:
        ``(B, 257)`` in RNet order (:data:`SLICES`), dtype and device of the first part given.
    """
    parts = dict(id=id, exp=exp, tex=tex, angle=angle, gamma=gamma, trans=trans)
    given = [p for p in parts.values() if p is not None]
    if batch_size is None:
        if not given:
            raise ValueError("join_coeffs needs at least one part or batch_size")
        batch_size = given[0].shape[0]
    ref = given[0] if given else torch.zeros(1)
    out = []
    for k, s in SLICES.items():
        n = s.stop - s.start
        p = parts[k]
        if p is None:
            p = torch.zeros(batch_size, n, dtype=ref.dtype, device=ref.device)
        if p.shape != (batch_size, n):
            raise ValueError(f"coefficient part {k!r} must have shape ({batch_size}, {n}), got {tuple(p.shape)}")
        out.append(p)
    return torch.cat(out, dim=1)


def mean_face_like(gt: Tensor) -> Tensor:
    """The mean-face baseline (notebooks 03 and 05): identity, expression and texture zero, the TRUE pose and light.

    Args:
        gt: true coefficients ``(B, 257)``.

    Returns:
        ``(B, 257)``: a copy of ``gt`` with its ``id``, ``exp`` and ``tex`` parts set to 0.
    """
    c = gt.clone()
    for k in ("id", "exp", "tex"):
        c[:, SLICES[k]] = 0
    return c
