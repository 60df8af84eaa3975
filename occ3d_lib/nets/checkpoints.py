"""A Deep3DFaceRecon ``epoch_20.pth`` as the teacher RNet (paper Eq. 2; docs/facts.md §6).

Taught in notebook 03, section 1 (the teacher) and notebook 00, section 4 (data
tracks: ``teacher = "<path to epoch_20.pth>"``). Deep3DFaceRecon saves a dict
whose ``net_recon`` entry is the state dict of its ``ReconNetWrapper``: a
torchvision-layout ResNet-50 under ``backbone.*`` (no ``fc``) and seven 1x1
convolution heads ``final_layers.{0..6}.weight`` of shapes [k, 2048, 1, 1]
(k = 80, 64, 80, 3, 27, 2, 1) plus ``.bias``. :class:`occ3d_lib.nets.models.ReconNet`
has exactly that layout, so the keys match one for one; the only mapping done
here is dropping a ``module.`` prefix (a net saved under DataParallel) and
filling BatchNorm ``num_batches_tracked`` counters that very old PyTorch
versions did not save.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from occ3d_lib.core.artifacts import torch_load, torch_save
from occ3d_lib.core.external import TEACHER_HELP, user_path
from occ3d_lib.nets.models import ReconNet

CHECKPOINT_KEY = "net_recon"
DEFAULT_TEACHER_PATH = Path("data/deep3d/epoch_20.pth")


def _strip_module(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def read_deep3d_state(path: str | Path) -> dict[str, Tensor]:
    """The ``net_recon`` state dict of a Deep3DFaceRecon checkpoint (CPU tensors).

    Loaded with ``torch.load(weights_only=True)`` (no arbitrary code from the file).
    Missing file -> ``FileNotFoundError`` saying where to get it; a file without a
    ``net_recon`` dict -> ``ValueError`` listing the keys it has.
    """
    path = user_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint not found at {path}. {TEACHER_HELP}")
    obj = torch_load(path, "download epoch_20.pth again and replace it (see data/README.md)")
    if not isinstance(obj, Mapping) or CHECKPOINT_KEY not in obj:
        keys = sorted(map(str, obj.keys()))[:20] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{path}: not a Deep3DFaceRecon checkpoint: expected a dict with key "
                         f"{CHECKPOINT_KEY!r} (the ReconNet state dict), got {keys}")
    state = obj[CHECKPOINT_KEY]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: {CHECKPOINT_KEY!r} must be a state dict of tensors")
    return _strip_module(state)


def infer_backbone(state: Mapping[str, Tensor], source: str = "state dict") -> str:
    """The torchvision ResNet name that a ``net_recon`` state dict was built with (resnet18/34/50)."""
    bottleneck = "backbone.layer1.0.conv3.weight" in state
    blocks3 = len({k.split(".")[2] for k in state if k.startswith("backbone.layer3.")})
    name = {(True, 6): "resnet50", (False, 2): "resnet18", (False, 6): "resnet34"}.get((bottleneck, blocks3))
    if name is None:
        keys = sorted(map(str, state))
        raise ValueError(f"{source}: cannot tell the backbone (bottleneck={bottleneck}, {blocks3} blocks in layer3; "
                         f"{len(keys)} keys such as {keys[:4]}); expected Deep3DFaceRecon's net_recon keys "
                         "backbone.* and final_layers.* of a resnet18, resnet34 or resnet50")
    return name


def check_finite(state: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Raise ``ValueError`` naming ``source`` and the first keys whose tensors hold NaN or inf."""
    bad = [k for k, v in state.items() if isinstance(v, Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{source}: {len(bad)} tensor(s) hold NaN or inf (e.g. {bad[:3]}); the weights are "
                         "unusable: use another checkpoint or retrain")


def load_state_checked(net: ReconNet, state: Mapping[str, Tensor], source: str = "checkpoint") -> ReconNet:
    """Load ``state`` into ``net`` key for key; missing / unexpected / mis-shaped keys are a ``ValueError``."""
    state = _strip_module(state)
    check_finite(state, source)
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def show(xs: list[str]) -> str:
            return f"{len(xs)} {xs[:8]}{' ...' if len(xs) > 8 else ''}"
        raise ValueError(f"{source} does not match ReconNet({net.backbone_name}): missing keys {show(missing)}; "
                         f"unexpected keys {show(unexpected)}; shape mismatches {show(shapes)}. A Deep3DFaceRecon "
                         "net_recon has keys backbone.* (torchvision ResNet, no fc) and final_layers.{0..6}.*")
    full = dict(state)
    for k in own:
        if k not in full:  # num_batches_tracked, absent from very old checkpoints
            full[k] = own[k]
    net.load_state_dict(full, strict=True)
    return net


def load_deep3d_checkpoint(path: str | Path, backbone: str | None = None, device: str | torch.device = "cpu") -> ReconNet:
    """A :class:`ReconNet` with the weights of Deep3DFaceRecon's ``epoch_20.pth`` (teacher, paper Eq. 2).

    The backbone is the one the checkpoint was trained with (resnet50 for the published
    model); ``backbone`` is only a hint (e.g. the profile's): when it differs, the
    checkpoint wins and a warning says so, since a frozen teacher need not match the
    student's trunk. Returned in eval mode on ``device``, with ``landmark_convention = "deep3d"``: its
    landmarks were fitted in Deep3DFaceRecon's convention, (+1/2, -1/2) px at 224 from where its renderer
    draws them, which the evaluation adds before scoring it (docs/facts.md §5). Notebook 03, section 1.
    """
    import warnings

    state = read_deep3d_state(path)
    name = infer_backbone(state, source=str(path))
    if backbone is not None and backbone != name:
        warnings.warn(f"{path}: checkpoint backbone is {name}, not the requested {backbone}; using {name}",
                      stacklevel=2)
    net = ReconNet(name, imagenet_init=False)
    load_state_checked(net, state, source=str(path))
    net.landmark_convention = "deep3d"  # type: ignore[attr-defined]
    return net.to(device).eval()


def save_deep3d_checkpoint(net: ReconNet, path: str | Path, epoch: int = 20) -> Path:
    """Write ``net`` in Deep3DFaceRecon's layout ``{'net_recon': state_dict, 'epoch': epoch}`` atomically."""
    if not isinstance(net, ReconNet):
        raise TypeError(f"net must be a ReconNet, got {type(net).__name__}")
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    payload: dict[str, Any] = {CHECKPOINT_KEY: state, "epoch": int(epoch)}
    return torch_save(payload, path)
