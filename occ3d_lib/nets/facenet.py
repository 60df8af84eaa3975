"""The FaceNet wrapper: images in [0, 1] -> unit identity embeddings (paper Sec. 3.2.2, Eqs. 7-8).

Taught in notebook 04, section 2. :class:`FaceEmbedder` wraps facenet-pytorch's ``InceptionResnetV1``
with the package's own preprocessing (bilinear resize to the input size, then
``(x * 255 - 127.5) / 128`` like ``facenet_pytorch.fixed_image_standardization``), so the same object
serves the published weights (:func:`load_pretrained_embedder`) and the embedder trained on
synthetic identities (:mod:`occ3d_lib.training.embedder`). Output: ``(B, 512)`` unit vectors.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from occ3d_lib.core.artifacts import torch_load
from occ3d_lib.core.external import FACENET_RELEASE_URL, FACENET_WEIGHTS, facenet_weights_path
from occ3d_lib.nets.models import freeze

EMBEDDING_DIM = 512
PRETRAINED_INPUT_SIZE = 160
"""Input size of the published FaceNet weights (docs/facts.md §9)."""
MIN_INPUT_SIZE = 80
"""Smallest square input InceptionResnetV1 accepts (at 72 px its ``mixed_7a`` stage has no 3x3 map left)."""

# ------------------------------------------------------------------------------------- preprocessing
def fixed_image_standardization(images: Tensor) -> Tensor:
    """facenet-pytorch's standardisation for images in [0, 1]: ``(x * 255 - 127.5) / 128`` in [-1, 1).

    (B, 3, H, W) -> (B, 3, H, W). Notebook 04, section 2.
    """
    return (images * 255.0 - 127.5) / 128.0


def _check_images(images: Any) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, 3, H, W) in [0, 1], got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        hint = " (for one image use images[None])" if images.ndim == 3 else ""
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}{hint}")
    if not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1], got dtype {images.dtype}")
    return images


class FaceEmbedder(nn.Module):
    """Images ``(B, 3, H, W)`` in [0, 1] -> L2-normalised identity embeddings ``(B, D)`` (D = 512).

    ``net`` maps standardised ``(B, 3, input_size, input_size)`` images to ``(B, D)`` features
    (default: a fresh ``InceptionResnetV1(classify=False)``; any small module works for tests).
    Images of another size are resized bilinearly to ``input_size``. Notebook 04, section 2.
    """

    def __init__(self, net: nn.Module | None = None, input_size: int = PRETRAINED_INPUT_SIZE,
                 dropout_prob: float = 0.0) -> None:
        super().__init__()
        if not isinstance(input_size, int) or input_size < 8:
            raise ValueError(f"input_size must be an int >= 8, got {input_size!r}")
        if net is None:
            if input_size < MIN_INPUT_SIZE:
                raise ValueError(f"InceptionResnetV1 needs inputs of at least {MIN_INPUT_SIZE} px, got {input_size}")
            from facenet_pytorch import InceptionResnetV1

            net = InceptionResnetV1(pretrained=None, classify=False, dropout_prob=dropout_prob)
        self.net = net
        self.input_size = input_size

    def preprocess(self, images: Tensor) -> Tensor:
        """Resize to ``input_size`` and standardise. (B, 3, H, W) in [0, 1] -> (B, 3, s, s)."""
        x = _check_images(images)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return fixed_image_standardization(x)

    def forward(self, images: Tensor) -> Tensor:
        return F.normalize(self.net(self.preprocess(images)), dim=1)


def fold_batchnorm(embedder: nn.Module) -> nn.Module:
    """A frozen copy of ``embedder`` with every eval-mode BatchNorm folded into the layer before it.

    In eval mode a BatchNorm is an affine map per channel, so it can be merged into the weights and bias of
    the convolution (or linear layer) it follows (``torch.nn.utils.fusion``): the same function to float32
    rounding, without the BatchNorm's forward and backward passes. Applied to the conv-BN pairs of
    facenet-pytorch's ``BasicConv2d`` blocks and to its final ``last_linear``-``last_bn`` pair. A speed
    measure for the frozen FaceNet of Eq. 7 (notebook 04, section 5; ``benchmarks/bench_mopi.py``); the
    original keeps its weights, so weight hashes and caches are unchanged.

    Args:
        embedder: a module ``(B, 3, H, W) -> (B, D)``, e.g. a :class:`FaceEmbedder`.

    Returns:
        The folded copy, frozen (:func:`occ3d_lib.nets.models.freeze`); modules without such pairs are
        copied unchanged.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    if not isinstance(embedder, nn.Module):
        raise TypeError(f"embedder must be a torch.nn.Module, got {type(embedder).__name__}")
    folded = copy.deepcopy(embedder).eval()  # fusing reads the running statistics: eval mode first
    for m in folded.modules():
        conv, bn = getattr(m, "conv", None), getattr(m, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            m.conv, m.bn = fuse_conv_bn_eval(conv, bn), nn.Identity()
        lin, bn1 = getattr(m, "last_linear", None), getattr(m, "last_bn", None)
        if isinstance(lin, nn.Linear) and isinstance(bn1, nn.BatchNorm1d):
            m.last_linear, m.last_bn = fuse_linear_bn_eval(lin, bn1), nn.Identity()
    return freeze(folded)


# ------------------------------------------------------------------------------- published weights
def load_pretrained_embedder(name: str, device: str = "cpu") -> FaceEmbedder:
    """The published FaceNet (docs/facts.md §9) as a frozen :class:`FaceEmbedder` at 160 px.

    Never downloads: a missing file raises ``FileNotFoundError`` saying which file to put where.
    """
    path = facenet_weights_path(name)
    fname, n_classes = FACENET_WEIGHTS[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"FaceNet weights {name!r} not found at {path}. Download {FACENET_RELEASE_URL}{fname} on a machine with "
            f"internet and copy it to {path.parent}/ (set TORCH_HOME to use another folder), or use "
            "facenet='synthetic' to train an embedder here.")
    from facenet_pytorch import InceptionResnetV1

    net = InceptionResnetV1(pretrained=None, classify=False)
    net.logits = nn.Linear(512, n_classes)  # present in the file; unused for embeddings
    net.load_state_dict(torch_load(path, f"download {FACENET_RELEASE_URL}{fname} again and copy it to {path.parent}/"))
    return freeze(FaceEmbedder(net, PRETRAINED_INPUT_SIZE).to(device))


# --------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def embed_images(embedder: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Embeddings of many images, in eval mode, without gradients.

    The embedder's training mode is restored afterwards.

    Args:
        embedder: the FaceNet (e.g. :class:`FaceEmbedder`); batches run on the device of its parameters.
        images: ``(M, 3, S, S)`` float in [0, 1].
        batch_size: images per forward pass.

    Returns:
        ``(M, D)`` float32 embeddings on the CPU (D = 512 for :class:`FaceEmbedder`; ``(0, 512)`` for M = 0).
    """
    _check_images(images)
    was = embedder.training
    embedder.eval()
    param = next(iter(embedder.parameters()), None)
    dev = param.device if param is not None else torch.device("cpu")
    out = [embedder(images[i:i + batch_size].to(dev)).float().cpu() for i in range(0, images.shape[0], batch_size)]
    embedder.train(was)
    return torch.cat(out) if out else torch.zeros(0, EMBEDDING_DIM)
