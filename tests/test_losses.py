"""Losses: RNet teacher terms, Eq. 6 SE / L1, Eq. 7 perceptual, Eq. 8 label selection, Eq. 9 composite."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from occ3d_lib.face.coeffs import SLICES, join_coeffs
from occ3d_lib.training import losses as L


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- RNet teacher losses
def test_photometric_loss_hand_value():
    rendered = torch.zeros(1, 3, 2, 2)
    target = torch.zeros(1, 3, 2, 2)
    target[0, :, 0, 0] = torch.tensor([0.3, 0.4, 0.0])  # distance 0.5
    target[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # distance 1.0
    target[0, :, 1, 1] = 5.0                            # outside the mask
    mask = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    got = L.photometric_loss(rendered, target, mask, eps=0.0)
    assert got.item() == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # empty mask: no division by zero
    assert L.photometric_loss(rendered, target, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(ValueError, match="mask must have shape"):
        L.photometric_loss(rendered, target, torch.ones(1, 3, 2, 2))


def test_landmark_weights_and_resolution_independence():
    w = L.LANDMARK_WEIGHTS
    assert w.shape == (68,) and w.sum().item() == 57 + 11 * 20
    assert w[28].item() == w[30].item() == w[60].item() == w[67].item() == 20 and w[27].item() == w[31].item() == 1
    gt = torch.zeros(2, 68, 2)
    pred = gt.clone()
    pred[0, 0, 0] = 1.0      # weight 1, 1 px at S=224
    pred[1, 29, 1] = 2.0     # weight 20, 2 px
    got = L.landmark_loss(pred, gt, 224)
    assert got.item() == pytest.approx((1.0 + 20 * 4.0) / (2 * 68))
    # the same error at half resolution is half the pixels: same loss at the 224 scale
    assert L.landmark_loss(pred / 2, gt, 112).item() == pytest.approx(got.item())


def test_coeff_regularizer_and_gamma_loss_hand_values():
    idc = torch.zeros(2, 80)
    idc[0, 0] = 2.0  # |id|^2 sum = 4
    exp = torch.zeros(2, 64)
    exp[1, 3] = 1.0  # 1
    tex = torch.zeros(2, 80)
    tex[0, 5] = 10.0  # 100
    c = join_coeffs(id=idc, exp=exp, tex=tex)
    assert L.coeff_regularizer(c).item() == pytest.approx((4 + 0.8 * 1 + 1.7e-2 * 100) / 2)
    gamma = torch.zeros(2, 27)
    assert L.gamma_loss(join_coeffs(gamma=gamma)).item() == 0.0
    gamma[0, 0] = 3.0  # red DC 3, green and blue 0 -> mean 1, squared deviations 4 + 1 + 1 = 6
    assert L.gamma_loss(join_coeffs(gamma=gamma)).item() == pytest.approx(6 / (2 * 27))
    white = torch.randn(2, 9, generator=_gen()).repeat(1, 3)
    assert L.gamma_loss(join_coeffs(gamma=white)).item() == pytest.approx(0.0, abs=1e-12)


def test_reflectance_loss_hand_value():
    albedo = torch.tensor([[[0.2, 0.2, 0.2], [0.4, 0.4, 0.4], [9.0, 9.0, 9.0]]])
    skin = torch.tensor([1.0, 1.0, 0.0])
    # skin mean 0.3; deviations 0.1 in 3 channels x 2 vertices -> 6 * 0.01 / (1 * 2)
    assert L.reflectance_loss(albedo, skin).item() == pytest.approx(0.03)
    with pytest.raises(ValueError, match="skin_mask"):
        L.reflectance_loss(albedo, torch.ones(2))


def test_coeff_supervision_loss_groups():
    pred = torch.zeros(1, 257)
    gt = torch.zeros(1, 257)
    gt[0, SLICES["id"]] = 1.0      # mean sq 1 over id
    gt[0, SLICES["trans"]] = 2.0   # mean sq 4 over trans
    assert L.coeff_supervision_loss(pred, gt).item() == pytest.approx(5.0)
    assert L.coeff_supervision_loss(pred, gt, {"id": 0.5}).item() == pytest.approx(0.5)
    assert L.coeff_supervision_loss(pred, gt, {"trans": 1.0, "exp": 3.0}).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="unknown coefficient group"):
        L.coeff_supervision_loss(pred, gt, {"pose": 1.0})


def _fake_render(b=2, s=8, n=5, seed=0):
    g = _gen(seed)
    return SimpleNamespace(face=torch.rand(b, 3, s, s, generator=g), mask=(torch.rand(b, 1, s, s, generator=g) > 0.3).float(),
                           landmarks=torch.rand(b, 68, 2, generator=g) * s, albedo=torch.rand(b, n, 3, generator=g))


def test_teacher_losses_terms_sum_and_weights():
    out = _fake_render()
    g = _gen(1)
    images = torch.rand(2, 3, 8, 8, generator=g)
    gt_lm = torch.rand(2, 68, 2, generator=g) * 8
    coeffs = torch.randn(2, 257, generator=g)
    skin = torch.tensor([1.0, 1, 0, 1, 0])
    w = L.RNetLossWeights()
    t = L.teacher_losses(out, images, gt_lm, coeffs, skin)
    assert set(t) == {"photo", "landmark", "reg", "gamma", "reflectance", "total"}
    assert t["photo"].item() == pytest.approx(1.92 * L.photometric_loss(out.face, images, out.mask).item())
    assert t["landmark"].item() == pytest.approx(1.6e-3 * L.landmark_loss(out.landmarks, gt_lm, 8).item())
    assert t["reg"].item() == pytest.approx(3e-4 * L.coeff_regularizer(coeffs).item())
    assert t["gamma"].item() == pytest.approx(10 * L.gamma_loss(coeffs).item())
    assert t["reflectance"].item() == pytest.approx(5 * L.reflectance_loss(out.albedo, skin).item())
    assert t["total"].item() == pytest.approx(sum(v.item() for k, v in t.items() if k != "total"))
    t2 = L.teacher_losses(out, images, gt_lm, coeffs, skin, weights=w, gt_coeffs=torch.zeros(2, 257), coeff_weight=2.0)
    assert t2["coeff"].item() == pytest.approx(2.0 * L.coeff_supervision_loss(coeffs, torch.zeros(2, 257)).item())
    assert t2["total"].item() == pytest.approx(t["total"].item() + t2["coeff"].item())
    with pytest.raises(AttributeError):
        w.photo = 1.0  # frozen


def test_teacher_losses_gradcheck_float64():
    g = _gen(2)
    s, n = 4, 3
    images = torch.rand(1, 3, s, s, generator=g, dtype=torch.float64)
    gt_lm = torch.rand(1, 68, 2, generator=g, dtype=torch.float64) * s
    mask = torch.ones(1, 1, s, s, dtype=torch.float64)
    skin = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)

    def f(face, lm, albedo, coeffs):
        out = SimpleNamespace(face=face, mask=mask, landmarks=lm, albedo=albedo)
        return L.teacher_losses(out, images, gt_lm, coeffs, skin)["total"]

    args = (torch.rand(1, 3, s, s, generator=g, dtype=torch.float64, requires_grad=True),
            (torch.rand(1, 68, 2, generator=g, dtype=torch.float64) * s).requires_grad_(),
            torch.rand(1, n, 3, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(1, 257, generator=g, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(f, args)


# ----------------------------------------------------------------------------- Eq. 6 and the L1 ablation
def test_se_and_l1_hand_values():
    pred = torch.zeros(2, 257)
    target = torch.zeros(2, 257)
    target[0, 0] = 2.0   # c = 4 in one of 257 entries
    target[1, :] = 1.0   # c = 1 everywhere
    assert L.se_loss(pred, target).item() == pytest.approx((4 / 257 + 1.0) / 2)
    assert L.l1_loss(pred, target).item() == pytest.approx((2 / 257 + 1.0) / 2)
    assert L.distill_loss(pred, target, "se").item() == L.se_loss(pred, target).item()
    assert L.distill_loss(pred, target, "l1").item() == L.l1_loss(pred, target).item()
    with pytest.raises(ValueError, match="unknown distillation loss"):
        L.distill_loss(pred, target, "huber")
    with pytest.raises(ValueError, match=r"shape \(B, 257\)"):
        L.se_loss(torch.zeros(2, 256), torch.zeros(2, 256))


def test_kl_loss_hand_value_and_its_blind_spot():
    pred, target = torch.zeros(1, 257), torch.zeros(1, 257)
    target[0, SLICES["angle"]] = torch.tensor([math.log(2.0), 0.0, 0.0])  # p = (1/2, 1/4, 1/4) against uniform q
    # KL(p || uniform) = sum p log(3 p) over the angle group; every other group agrees and adds 0
    expected = 0.5 * math.log(1.5) + 2 * 0.25 * math.log(0.75)
    assert L.kl_loss(pred, target).item() == pytest.approx(expected, rel=1e-5)
    assert L.distill_loss(pred, target, "kl").item() == L.kl_loss(pred, target).item()
    # a softmax ignores one constant added to a whole group: a translation moved as a whole costs nothing
    shifted = target.clone()
    shifted[0, SLICES["trans"]] += 5.0
    assert L.kl_loss(shifted, target).item() == pytest.approx(0.0, abs=1e-6)
    assert L.se_loss(shifted, target).item() > 0
    g = _gen(4)
    p = torch.randn(2, 257, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 257, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: L.kl_loss(x, t), (p,))
    with pytest.raises(ValueError, match="temperature"):
        L.kl_loss(pred, target, temperature=0.0)


def test_se_gradcheck():
    g = _gen(3)
    p = torch.randn(2, 257, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 257, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: L.se_loss(x, t), (p,))
    # analytic gradient: 2 (v - v_u) / (M B)
    L.se_loss(p, t).backward()
    assert torch.allclose(p.grad, 2 * (p.detach() - t) / (257 * 2))


# ----------------------------------------------------------------------------- Eq. 7
def test_perceptual_similarity_literal_formula():
    # rows f1 = (1, 0), f2 = (0, 1): Gram sum = 2; row norms sum = 2; column norms sum = 2 -> 0.5
    emb = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert L.perceptual_similarity(emb).item() == pytest.approx(0.5)
    # literal Eq. 7 for 7 identical rows f = (3, 4): sqrt(7) |f|_2 / |f|_1 = sqrt(7) * 5 / 7
    f = torch.tensor([3.0, 4.0])
    emb7 = f.expand(1, 7, 2)
    assert L.perceptual_similarity(emb7).item() == pytest.approx(math.sqrt(7) * 5 / 7)
    # slow reference: the formula built from an explicit Gram matrix and L2,1 norms
    chi = torch.randn(7, 5, generator=_gen(4))
    gram = chi @ chi.T
    l21 = lambda a: a.norm(dim=0).sum()  # noqa: E731  sum of column norms
    ref = gram.sum() / (l21(chi) * l21(chi.T))
    assert L.perceptual_similarity(chi.unsqueeze(0)).item() == pytest.approx(ref.item(), rel=1e-5)


def test_perceptual_loss_minimum_orthogonal_order_and_scale():
    g = _gen(5)
    f = torch.randn(1, 1, 16, generator=g)
    same = f.expand(1, 7, 16).clone()
    assert L.perceptual_loss(same).item() == pytest.approx(0.0, abs=1e-6)
    ortho = torch.eye(16)[:7].unsqueeze(0)
    assert L.perceptual_loss(ortho).item() == pytest.approx(1 - 1 / 7)
    rnd = torch.randn(3, 7, 16, generator=g)
    perm = rnd[:, torch.randperm(7, generator=g)]
    assert L.perceptual_loss(perm).item() == pytest.approx(L.perceptual_loss(rnd).item(), rel=1e-6)
    scales = torch.rand(3, 7, 1, generator=g) + 0.5
    assert L.perceptual_loss(rnd * scales).item() > 0  # not identical rows
    assert L.perceptual_loss(same * 3.0).item() == pytest.approx(0.0, abs=1e-6)
    # batch: mean over identities
    both = torch.cat([same, ortho[:, :, :16]], dim=0)
    assert L.perceptual_loss(both).item() == pytest.approx((1 - 1 / 7) / 2)
    with pytest.raises(ValueError, match=r"emb must have shape \(B, W, D\)"):
        L.perceptual_loss(torch.zeros(7, 16))


def test_perceptual_gradcheck():
    emb = torch.randn(2, 7, 6, generator=_gen(6), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(L.perceptual_loss, (emb,))
    assert torch.autograd.gradcheck(L.perceptual_similarity, (emb,))


# ----------------------------------------------------------------------------- Eq. 8 and Eq. 9
def test_select_sopi_labels_picks_closest_by_cosine():
    b, w = 2, 7
    coeffs = torch.arange(b * w, dtype=torch.float32).view(b, w, 1).expand(b, w, 257).clone()
    clean = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    emb = torch.zeros(b, w, 3)
    emb[:, :, 1] = 1.0                                   # all orthogonal to both clean embeddings ...
    emb[0, 4] = torch.tensor([10.0, 1.0, 0.0])           # ... except: nearly parallel (long vector: cosine, not L2)
    emb[0, 2] = torch.tensor([0.1, 0.1, 0.0])            # closer in L2 but 45 degrees off
    emb[1, 6] = torch.tensor([0.0, 1.0, 1.0])            # 45 degrees
    emb[1, 1] = torch.tensor([0.0, -1.0, 1.0])           # also 45 degrees: tie -> lowest index (1)
    idx = L.sopi_label_index(emb, clean)
    assert idx.tolist() == [4, 1]
    labels = L.select_sopi_labels(coeffs, emb, clean)
    assert labels.shape == (2, 257)
    assert labels[0, 0].item() == 4 and labels[1, 0].item() == 7 + 1
    with pytest.raises(ValueError, match="clean_emb must have shape"):
        L.select_sopi_labels(coeffs, emb, torch.zeros(2, 4))


def test_label_loss_hand_value_and_gradcheck():
    mopi = torch.zeros(2, 7, 257)
    label = torch.zeros(2, 257)
    mopi[0, 0, :2] = torch.tensor([3.0, 4.0])  # distance 5
    mopi[0, 3, 10] = -2.0                      # distance 2
    mopi[1, :, 0] = 1.0                        # 7 heads at distance 1
    assert L.label_loss(mopi, label).item() == pytest.approx((7 + 7) / 2)
    with pytest.raises(ValueError, match="label must have shape"):
        L.label_loss(mopi, torch.zeros(2, 256))
    m = torch.randn(2, 7, 257, generator=_gen(7), dtype=torch.float64, requires_grad=True)
    lab = torch.randn(2, 257, generator=_gen(8), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: L.label_loss(x, lab), (m,))


def test_composite_loss_and_ablations():
    p, lab = torch.tensor(0.5), torch.tensor(2.0)
    assert L.composite_loss(p, lab).item() == pytest.approx(0.2 * 0.5 + 0.8 * 2.0)
    assert L.MOPI_ABLATIONS == {"both": (0.2, 0.8), "perceptual": (1.0, 0.0), "label": (0.0, 1.0)}
    x1, x2 = L.MOPI_ABLATIONS["perceptual"]
    assert L.composite_loss(p, lab, x1, x2).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="non-negative"):
        L.composite_loss(p, lab, -1.0, 1.0)
