"""Running a trained reconstruction network over many images (notebook 03, section 3; notebooks 04-05).

Every stage that consumes a network (the teacher's labels, evaluation, the comparer of notebook 05)
calls :func:`predict_coeffs`, so it lives here, below training, evaluation and teaching alike.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from occ3d_lib.face.coeffs import N_COEFFS


@torch.no_grad()
def predict_coeffs(model: nn.Module | Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 64,
                   device: str = "cpu") -> Tensor:
    """Run a reconstruction model over many images without gradients (notebook 03, section 3).

    Args:
        model: a ReconNet, a MultiOcclusionNet (its ``predict``, the single-image rule, is used when
            the model has one) or any callable ``(B, 3, S, S) -> (B, 257)``.
        images: ``(M, 3, S, S)`` in [0, 1].
        batch_size: images per forward pass.
        device: where the batches run.

    Returns:
        ``(M, 257)`` float32 coefficients on the CPU (RNet order, :mod:`occ3d_lib.face.coeffs`).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (M, 3, S, S), got {tuple(images.shape)}")
    fn = getattr(model, "predict", model)
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    outs = [fn(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, images.shape[0], batch_size)]
    if isinstance(model, nn.Module) and was_training:
        model.train()
    return torch.cat(outs) if outs else torch.zeros(0, N_COEFFS)
