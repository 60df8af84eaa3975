"""FaceEmbedder, the supervised contrastive loss, ROC/verification and the synthetic batch function."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from occ3d_lib.core import external
from occ3d_lib.nets import facenet
from occ3d_lib.nets.models import freeze
from occ3d_lib.training import embedder as E


def test_standardization_matches_facenet_pytorch():
    from facenet_pytorch import fixed_image_standardization

    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(facenet.fixed_image_standardization(x), fixed_image_standardization(x * 255))
    assert facenet.fixed_image_standardization(torch.zeros(1)).item() == pytest.approx(-127.5 / 128)


def test_embedder_resizes_standardises_and_normalises():
    seen = {}

    class Spy(nn.Module):
        def forward(self, x):
            seen["x"] = x
            return torch.tensor([[3.0, 4.0]]).expand(x.shape[0], 2)

    e = facenet.FaceEmbedder(Spy(), input_size=20)
    out = e(torch.full((3, 3, 12, 12), 0.5))
    assert seen["x"].shape == (3, 3, 20, 20)
    torch.testing.assert_close(seen["x"], torch.full((3, 3, 20, 20), (0.5 * 255 - 127.5) / 128))
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8]]).expand(3, 2))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        e(torch.rand(3, 12, 12))
    with pytest.raises(ValueError, match="at least 80"):
        facenet.FaceEmbedder(input_size=64)


def test_default_net_is_inception_resnet_with_unit_embeddings():
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    e = facenet.FaceEmbedder(input_size=facenet.MIN_INPUT_SIZE).eval()
    assert isinstance(e.net, InceptionResnetV1)
    with torch.no_grad():
        f = e(torch.rand(2, 3, 64, 64))
    assert f.shape == (2, facenet.EMBEDDING_DIM)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(2))


def test_missing_pretrained_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert external.facenet_weights_path("vggface2") == tmp_path / "checkpoints" / "20180402-114759-vggface2.pt"
    with pytest.raises(FileNotFoundError, match=r"20180402-114759-vggface2\.pt.*checkpoints"):
        facenet.load_pretrained_embedder("vggface2")
    with pytest.raises(ValueError, match="unknown FaceNet"):
        external.facenet_weights_path("arcface")


def test_pretrained_weights_are_loaded_from_torch_home(tmp_path, monkeypatch):
    from facenet_pytorch import InceptionResnetV1

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    net = InceptionResnetV1(pretrained=None, classify=False)
    net.logits = nn.Linear(512, 10575)
    (tmp_path / "checkpoints").mkdir()
    torch.save(net.state_dict(), tmp_path / "checkpoints" / "20180408-102900-casia-webface.pt")
    e = facenet.load_pretrained_embedder("casia-webface")
    assert e.input_size == 160 and not e.training
    assert all(not p.requires_grad for p in e.parameters())
    torch.testing.assert_close(e.net.last_linear.weight, net.last_linear.weight)


def test_supcon_loss_hand_computed():
    # two identities, two views each, embeddings on the unit circle
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    t = 0.5
    # anchor 0: positive 1 (cos 1), negatives 2, 3 (cos 0): -log(e^2 / (e^2 + 2))
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert E.supervised_contrastive_loss(emb, y, t).item() == pytest.approx(expected, rel=1e-6)
    # collapsing the identities onto one point is worse
    bad = torch.tensor([[1.0, 0.0]] * 4)
    assert E.supervised_contrastive_loss(bad, y, t).item() == pytest.approx(math.log(3), rel=1e-6)
    assert E.supervised_contrastive_loss(bad, y, t) > E.supervised_contrastive_loss(emb, y, t)
    with pytest.raises(ValueError, match="same label"):
        E.supervised_contrastive_loss(emb, torch.arange(4), t)


def test_supcon_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 3])
    assert torch.autograd.gradcheck(lambda a: E.supervised_contrastive_loss(torch.nn.functional.normalize(a, dim=1), y), (x,))


def test_embedder_uses_the_trainers_cosine_schedule():
    from types import SimpleNamespace

    from occ3d_lib.core.config import get_profile
    from occ3d_lib.training.train import TrainConfig

    # the schedule the embedder trains with is TrainConfig's: same values as the former helper
    cfg = TrainConfig(steps=101, lr=1e-3, schedule="cosine", final_lr_fraction=0.1)
    assert cfg.lr_at(0) == pytest.approx(1e-3)
    assert cfg.lr_at(50) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert cfg.lr_at(100) == pytest.approx(1e-4)
    ctx = SimpleNamespace(profile=get_profile("smoke"), device="cpu", face_model=SimpleNamespace(info={"name": "toy"}))
    ecfg = E.embedder_config(ctx, E.EmbedderSettings(lr=1e-3, lr_final_fraction=0.0))
    assert ecfg.schedule == "cosine" and ecfg.final_lr_fraction == 0.0 and ecfg.lr == 1e-3
    half = (ecfg.steps - 1) / 2
    assert ecfg.lr_at(half) == pytest.approx(5e-4)


def _slow_auc(scores, same):
    pos = [s for s, t in zip(scores, same) if t]
    neg = [s for s, t in zip(scores, same) if not t]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


def test_roc_curve_hand_made():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    same = torch.tensor([True, True, False, True, False, False])
    r = E.roc_curve(scores, same)
    assert r["auc"] == pytest.approx(8 / 9)
    assert r["accuracy"] == pytest.approx((2 / 3 + 1) / 2)  # threshold 0.8: TPR 2/3, TNR 1 (or 0.6: 1, 2/3)
    np.testing.assert_allclose(r["fpr"], [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(r["tpr"], [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    g = torch.Generator().manual_seed(3)
    s = torch.randint(0, 5, (40,), generator=g).float()  # many ties
    t = torch.rand(40, generator=g) < 0.4
    assert E.roc_curve(s, t)["auc"] == pytest.approx(_slow_auc(s.tolist(), t.tolist()))
    with pytest.raises(ValueError):
        E.roc_curve(scores, torch.ones(6, dtype=torch.bool))


def test_verification_report_perfect_separation():
    class Lookup(nn.Module):  # identity k is coded in the first pixel as k * 64 / 255 -> one-hot direction
        def forward(self, x):
            k = ((x[:, 0, 0, 0] * 128 + 127.5) / 64).round().long()
            return torch.nn.functional.one_hot(k, 4).float()

    ident = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    images = torch.zeros(7, 3, 8, 8)
    images[:, 0, 0, 0] = ident.float() * 64 / 255
    r = E.verification_report(facenet.FaceEmbedder(Lookup(), input_size=8), images, ident)
    assert (r["n_same"], r["n_diff"], r["n_images"]) == (3, 18, 7)
    assert r["accuracy"] == 1.0 and r["auc"] == 1.0
    assert r["mean_cos_same"] == pytest.approx(1.0) and r["mean_cos_diff"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="labels"):
        E.verification_report(facenet.FaceEmbedder(Lookup(), input_size=8), images, ident[:5])


def test_synthetic_batch_fn_is_deterministic_and_labelled(toy_face_model):
    fm = toy_face_model()
    s = E.EmbedderSettings(views=3, occluded=0.5, black_background=0.5)
    fn = E.synthetic_identity_batch_fn(fm, 32, 9, s)
    a = fn(0, torch.Generator().manual_seed(5))
    b = fn(0, torch.Generator().manual_seed(5))
    c = fn(0, torch.Generator().manual_seed(6))
    assert a["image"].shape == (9, 3, 32, 32) and a["image"].dtype == torch.float32
    assert a["label"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    assert float(a["image"].min()) >= 0 and float(a["image"].max()) <= 1
    with pytest.raises(ValueError, match="at least 2 identities"):
        E.synthetic_identity_batch_fn(fm, 32, 5, s)


def test_embedder_step_runs_and_learns_direction(toy_face_model, tiny_net):
    """A few steps on a tiny net lower the contrastive loss of a fixed batch (the loss is trainable)."""
    fm = toy_face_model()
    s = E.EmbedderSettings(views=2, occluded=0.0, black_background=0.0)
    batch = E.synthetic_identity_batch_fn(fm, 24, 8, s)(0, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = facenet.FaceEmbedder(tiny_net(), input_size=24)
    step = E.embedder_step_fn(0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        terms = step(model, batch)
        first = first if first is not None else terms["loss"].item()
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    assert set(terms) == {"loss", "cos_same", "cos_diff"}  # no schedule: no lr term
    assert terms["loss"].item() < first


def test_fold_batchnorm_keeps_the_function_and_its_input_gradient():
    torch.manual_seed(0)
    emb = facenet.FaceEmbedder(input_size=80)
    for m in emb.modules():  # non-trivial running statistics and affine parameters, as after training
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    emb = freeze(emb)
    folded = facenet.fold_batchnorm(emb)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in emb.modules())  # the original is untouched
    assert not any(q.requires_grad for q in folded.parameters()) and not folded.training
    x = torch.rand(3, 3, 64, 64, requires_grad=True)
    y = emb(x)
    (g,) = torch.autograd.grad((y * torch.linspace(-1, 1, 512)).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    y2 = folded(x2)
    (g2,) = torch.autograd.grad((y2 * torch.linspace(-1, 1, 512)).sum(), x2)
    torch.testing.assert_close(y2, y, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g2, g, atol=1e-4, rtol=1e-3)
    with pytest.raises(TypeError, match="embedder must be a torch.nn.Module"):
        facenet.fold_batchnorm("facenet.pt")
