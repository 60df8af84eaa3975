"""Networks: RNet-style ReconNet (paper Eqs. 1, 2) and the MOPI network (Sec. 3.2.1).

Taught in notebook 03 (ReconNet, teacher and SOPI) and notebook 04
(MultiOcclusionNet). ReconNet follows Deep3DFaceRecon's layout key for key
(reference sec. 6): a torchvision ResNet trunk under ``backbone.*`` and seven
zero-initialised 1x1 convolution heads ``final_layers.{0..6}`` of sizes
80, 64, 80, 3, 27, 2, 1 concatenated to 257 outputs. Input is RGB / 255
(images in [0, 1], no mean/std normalisation).
"""
from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn

from .coeffs import N_COEFFS

HEAD_SIZES = (80, 64, 80, 3, 27, 2, 1)
_FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


def make_backbone(name: str, imagenet_init: bool = False) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier (``fc = Identity``) and its feature width.

    ``imagenet_init`` loads torchvision's ImageNet weights, which must already be in
    ``$TORCH_HOME/hub/checkpoints`` (no downloads here); otherwise a clear error says so.
    """
    if name not in _FEATURES:
        raise ValueError(f"unknown backbone {name!r}; valid: {sorted(_FEATURES)}")
    weights = None
    if imagenet_init:
        weights = {"resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
                   "resnet34": torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
                   "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1}[name]
        fname = weights.url.rsplit("/", 1)[-1]
        path = torch.hub.get_dir() + "/checkpoints/" + fname
        import os
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"ImageNet weights for {name} not found at {path}. Download {weights.url} on a machine "
                f"with internet and copy it there, or set imagenet_init=False.")
    net = getattr(torchvision.models, name)(weights=weights)
    net.fc = nn.Identity()
    return net, _FEATURES[name]


class ReconNet(nn.Module):
    """RNet: image (B, 3, H, W) in [0, 1] -> 257 coefficients (B, 257) (paper Eqs. 1, 2).

    Used for the teacher (frozen after training, Eq. 2) and for the SOPI trainee (Eq. 1).
    """

    def __init__(self, backbone: str = "resnet50", imagenet_init: bool = False) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.backbone, width = make_backbone(backbone, imagenet_init)
        self.final_layers = nn.ModuleList([nn.Conv2d(width, k, 1) for k in HEAD_SIZES])
        for conv in self.final_layers:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def features(self, images: Tensor) -> Tensor:
        """Pooled backbone features. (B, 3, H, W) -> (B, C, 1, 1)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        return self.backbone(images).view(images.shape[0], -1, 1, 1)

    def forward(self, images: Tensor) -> Tensor:
        f = self.features(images)
        out = torch.cat([conv(f) for conv in self.final_layers], dim=1)
        return out.flatten(1)


assert sum(HEAD_SIZES) == N_COEFFS
