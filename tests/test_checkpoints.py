"""Deep3DFaceRecon checkpoints (``epoch_20.pth``, key ``net_recon``) into ReconNet."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from occ3d_lib.nets import checkpoints
from occ3d_lib.nets.models import HEAD_SIZES, ReconNet


def _deep3d_state(seed: int = 0) -> tuple[dict[str, torch.Tensor], torchvision.models.ResNet, list]:
    """A random net_recon state dict built independently of ReconNet, in Deep3DFaceRecon's key layout."""
    torch.manual_seed(seed)
    trunk = torchvision.models.resnet50()
    for m in trunk.modules():  # non-trivial BN statistics so eval-mode differences would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {f"backbone.{k}": v.clone() for k, v in trunk.state_dict().items() if not k.startswith("fc.")}
    heads = []
    for i, k in enumerate(HEAD_SIZES):
        w, b = torch.randn(k, 2048, 1, 1) * 0.01, torch.randn(k) * 0.1
        state[f"final_layers.{i}.weight"], state[f"final_layers.{i}.bias"] = w, b
        heads.append((w, b))
    return state, trunk, heads


def _reference_forward(trunk: torchvision.models.ResNet, heads: list, x: torch.Tensor) -> torch.Tensor:
    trunk = trunk.eval()
    t = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))
    t = trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(t))))
    f = t.mean(dim=(2, 3), keepdim=True)
    return torch.cat([F.conv2d(f, w, b) for w, b in heads], 1).flatten(1)


def test_load_epoch20_layout_matches_outputs(tmp_path: Path) -> None:
    state, trunk, heads = _deep3d_state()
    assert "backbone.layer4.2.bn3.running_var" in state and "final_layers.6.bias" in state
    assert state["final_layers.0.weight"].shape == (80, 2048, 1, 1)
    p = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": state, "epoch": 20, "optimizer": {"state": {}, "param_groups": []}}, p)
    net = checkpoints.load_deep3d_checkpoint(p)
    assert net.backbone_name == "resnet50" and not net.training
    assert set(net.state_dict()) == set(state)  # key for key
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = net(x), _reference_forward(trunk, heads, x)
    assert got.shape == (2, 257)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert float(want.abs().max()) > 0.01  # the heads are not zero, so the comparison means something


def test_save_then_load_roundtrip_and_module_prefix(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = ReconNet("resnet18")
    for conv in net.final_layers:
        torch.nn.init.normal_(conv.weight, std=0.05)
    net.eval()
    p = checkpoints.save_deep3d_checkpoint(net, tmp_path / "ck" / "epoch_20.pth")
    raw = torch.load(p, weights_only=True)
    assert set(raw) == {"net_recon", "epoch"} and raw["epoch"] == 20
    x = torch.rand(1, 3, 32, 32)
    back = checkpoints.load_deep3d_checkpoint(p)
    assert back.backbone_name == "resnet18"
    with pytest.warns(UserWarning, match="checkpoint backbone is resnet18, not the requested resnet34"):
        assert checkpoints.load_deep3d_checkpoint(p, backbone="resnet34").backbone_name == "resnet18"
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x))
    # a net saved under DataParallel has a module. prefix; old checkpoints lack num_batches_tracked
    st = {f"module.{k}": v for k, v in raw["net_recon"].items() if not k.endswith("num_batches_tracked")}
    torch.save({"net_recon": st}, tmp_path / "dp.pth")
    with torch.no_grad():
        torch.testing.assert_close(checkpoints.load_deep3d_checkpoint(tmp_path / "dp.pth")(x), net(x))


def test_foreign_keys_listed(tmp_path: Path) -> None:
    st = ReconNet("resnet18").state_dict()
    st["backbone.fc.weight"] = torch.zeros(1000, 512)
    del st["final_layers.6.bias"]
    torch.save({"net_recon": st}, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as ei:
        checkpoints.load_deep3d_checkpoint(tmp_path / "bad.pth")
    msg = str(ei.value)
    assert "missing keys 1 ['final_layers.6.bias']" in msg and "unexpected keys 1 ['backbone.fc.weight']" in msg
    st = ReconNet("resnet18").state_dict()
    with pytest.raises(ValueError, match="shape mismatches 1 .*final_layers.0.weight"):
        st["final_layers.0.weight"] = torch.zeros(81, 512, 1, 1)
        checkpoints.load_state_checked(ReconNet("resnet18"), st)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="epoch_20.pth.*Deep3DFaceRecon_pytorch"):
        checkpoints.load_deep3d_checkpoint(tmp_path / "epoch_20.pth")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="expected a dict with key 'net_recon'.*state_dict"):
        checkpoints.load_deep3d_checkpoint(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00junk" * 20)
    with pytest.raises(ValueError, match="cannot read"):
        checkpoints.load_deep3d_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(TypeError):
        checkpoints.save_deep3d_checkpoint(torch.nn.Linear(2, 2), tmp_path / "x.pth")  # type: ignore[arg-type]
