"""MultiOcclusionNet (Sec. 3.2.1), its test-time rule, and MOPI training (Eqs. 7-9) end to end on a toy setup."""
from __future__ import annotations

import json

import pytest
import torch

from occ3d_lib.core.config import get_profile
from occ3d_lib.data.context import Context
from occ3d_lib.data.synthetic import load_or_build_synthetic
from occ3d_lib.evaluation import diagnostics
from occ3d_lib.nets.models import MultiOcclusionNet, ReconNet
from occ3d_lib.training import losses, mopi
from occ3d_lib.training.embedder import FaceEmbedder


def _random_heads(net: MultiOcclusionNet | ReconNet, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in (net.heads if isinstance(net, MultiOcclusionNet) else net.final_layers):
            m.weight.copy_(0.01 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.01 * torch.randn(m.bias.shape, generator=g))


def test_forward_routes_image_k_to_head_k():
    torch.manual_seed(0)
    net = MultiOcclusionNet("resnet18", n_heads=3).eval()
    _random_heads(net, 1)
    x = torch.rand(2, 3, 3, 32, 32)
    out = net(x)
    assert out.shape == (2, 3, 257)
    f = net.features(x[:, 1])
    torch.testing.assert_close(out[:, 1], net.heads[1](f))
    with pytest.raises(ValueError, match=r"\(B, 3, 3, H, W\)"):
        net(torch.rand(2, 3, 32, 32))


def test_heads_start_at_zero():
    net = MultiOcclusionNet("resnet18", n_heads=7).eval()
    assert torch.count_nonzero(net(torch.rand(1, 7, 3, 32, 32))) == 0


def test_predict_is_the_mean_of_all_heads():
    torch.manual_seed(0)
    net = MultiOcclusionNet("resnet18", n_heads=7).eval()
    _random_heads(net, 2)
    x = torch.rand(3, 3, 32, 32)
    slow = torch.stack([h(net.features(x)) for h in net.heads]).mean(0)  # every head on the same image
    torch.testing.assert_close(net.predict(x), slow)
    # same as feeding 7 copies through forward and averaging the heads
    torch.testing.assert_close(net.predict(x), net(x[:, None].expand(3, 7, 3, 32, 32)).mean(1))
    # and not simply head 0
    assert not torch.allclose(net.predict(x), net.heads[0](net.features(x)))


def test_init_from_reconnet_reproduces_it():
    torch.manual_seed(0)
    r = ReconNet("resnet18").eval()
    _random_heads(r, 3)
    net = MultiOcclusionNet("resnet18").init_from_reconnet(r).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.predict(x), r(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net(x[:, None].expand(2, 7, 3, 32, 32)), r(x)[:, None].expand(2, 7, 257),
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="backbones differ"):
        MultiOcclusionNet("resnet34").init_from_reconnet(r)


def test_settings_weights_and_validation():
    assert mopi.MopiSettings().weights == (0.2, 0.8)
    assert mopi.MopiSettings("perceptual").weights == (1.0, 0.0)
    assert mopi.MopiSettings("label", x2=0.5).weights == (0.0, 0.5)
    with pytest.raises(ValueError, match="unknown MOPI variant"):
        mopi.MopiSettings("perc")
    with pytest.raises(ValueError, match="not both 0"):
        mopi.MopiSettings("label", x2=0.0)
    with pytest.raises(ValueError, match="embed_precision must be one of"):
        mopi.MopiSettings(embed_precision="float16")


@pytest.mark.parametrize("native", [True, False])
def test_auto_embed_precision_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(mopi, "cpu_has_bf16", lambda: native)
    assert mopi.resolve_embed_precision("auto", "cpu") == ("bfloat16" if native else "float32")
    assert mopi.resolve_embed_precision("auto", "cuda") == "float32"  # the Trainer's amp decides there
    for explicit in ("float32", "bfloat16"):
        assert mopi.resolve_embed_precision(explicit, "cpu") == explicit
    with pytest.raises(ValueError, match="embed_precision must be one of"):
        mopi.resolve_embed_precision("half")


@pytest.fixture(scope="module")
def toy(toy_face_model, tiny_net, tmp_path_factory):
    root = tmp_path_factory.mktemp("mopi")
    fm = toy_face_model()
    prof = get_profile("smoke").replace(backbone="resnet18", imagenet_init=False, image_size=32, n_train_identities=4,
                                        n_val_identities=1, n_test_identities=2,
                                        views_per_identity=2, mopi_steps=3, mopi_batch_identities=2,
                                        n_occlusion_variants=3, checkpoint_every=2, log_every=1, eval_samples=4)
    ctx = Context(profile=prof, run_dir=root / "run", progress=False)
    ctx.__dict__["face_model"] = fm  # cached_property slots: a toy model and dataset instead of the procedural ones
    ctx.__dict__["dataset"] = load_or_build_synthetic(prof, fm, root=root / "data", progress=False)
    torch.manual_seed(0)
    sopi = ReconNet("resnet18")
    _random_heads(sopi, 4)
    emb = FaceEmbedder(tiny_net(), input_size=32)
    return ctx, sopi, emb


def test_select_labels_picks_the_render_closest_to_the_clean_image(toy):
    ctx, sopi, emb = toy
    b = ctx.dataset.train.batch([0, 1])
    occ = torch.rand(2, 3, 3, 32, 32)
    sel = mopi.select_labels(sopi.eval(), emb.eval(), ctx.renderer, occ, b["image"])
    assert sel["sopi_coeffs"].shape == (2, 3, 257) and sel["label"].shape == (2, 257)
    d = 1 - torch.nn.functional.cosine_similarity(sel["sopi_emb"], sel["clean_emb"][:, None], dim=-1)
    torch.testing.assert_close(sel["distance"], d)
    assert sel["choice"].tolist() == d.argmin(1).tolist()
    for i in range(2):
        torch.testing.assert_close(sel["label"][i], sel["sopi_coeffs"][i, sel["choice"][i]])


def test_batch_fn_is_deterministic(toy):
    ctx, sopi, emb = toy
    fn = mopi.mopi_batch_fn(ctx.dataset.train, sopi.eval(), emb.eval(), ctx.renderer, 2, 3)
    a = fn(5, torch.Generator().manual_seed(9))
    b = fn(5, torch.Generator().manual_seed(9))
    c = fn(5, torch.Generator().manual_seed(10))
    assert a["images"].shape == (2, 3, 3, 32, 32) and a["clean"].shape == (2, 3, 32, 32)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["images"], c["images"])
    # occluded variants differ from the clean image and from each other
    assert not torch.equal(a["images"][:, 0], a["clean"]) and not torch.equal(a["images"][:, 0], a["images"][:, 1])


def test_step_fn_terms_and_gradients(toy):
    ctx, sopi, emb = toy
    fn = mopi.mopi_batch_fn(ctx.dataset.train, sopi.eval(), emb.eval(), ctx.renderer, 2, 3)
    batch = fn(0, torch.Generator().manual_seed(0))
    net = MultiOcclusionNet("resnet18", n_heads=3).init_from_reconnet(sopi)
    for p in emb.parameters():
        p.requires_grad_(False)
    for x1, x2 in ((0.2, 0.8), (1.0, 0.0), (0.0, 1.0)):
        net.zero_grad()
        terms = mopi.mopi_step_fn(ctx.renderer, emb, x1, x2)(net, batch)
        torch.testing.assert_close(terms["loss"], x1 * terms["perceptual"] + x2 * terms["label"])
        terms["loss"].backward()
        head_grad = sum(float(h.weight.grad.abs().sum()) for h in net.heads)
        assert head_grad > 0
    # freeze_bn keeps the BatchNorm running statistics (SOPI's) untouched
    bn = net.backbone.bn1
    before = bn.running_mean.clone()
    net.train()
    mopi.mopi_step_fn(ctx.renderer, emb, 0.0, 1.0, freeze_bn=True)(net, batch)
    assert torch.equal(bn.running_mean, before) and not bn.training
    net.train()
    mopi.mopi_step_fn(ctx.renderer, emb, 0.0, 1.0, freeze_bn=False)(net, batch)
    assert not torch.equal(bn.running_mean, before)
    # label loss by hand
    with torch.no_grad():
        v = net(batch["images"])
    hand = sum(float((v[i, j] - batch["label"][i]).norm()) for i in range(2) for j in range(3)) / 2
    assert losses.label_loss(v, batch["label"]).item() == pytest.approx(hand, rel=1e-5)


def test_bf16_embedder_keeps_the_perceptual_gradient(toy):
    """Eq. 7 with the FaceNet under bf16 autocast: float32 embeddings, and the gradient w.r.t. the predicted
    coefficients points where the float32 one does (the rounding perturbs it by a few per cent)."""
    ctx, sopi, emb = toy
    emb = emb.eval()
    g = torch.Generator().manual_seed(3)
    coeffs = ctx.dataset.train.batch([0, 1, 2, 3])["coeffs"].repeat(2, 1)
    coeffs = coeffs + 0.05 * torch.randn(coeffs.shape, generator=g) * coeffs.abs().mean(0, keepdim=True)

    def grad(precision: str) -> tuple[torch.Tensor, torch.Tensor]:
        v = coeffs.clone().requires_grad_(True)
        e = mopi.render_embed(ctx.renderer, emb, v, precision)
        losses.perceptual_loss(e.view(2, 4, -1)).backward()
        return e.detach(), v.grad

    e32, g32 = grad("float32")
    e16, g16 = grad("bfloat16")
    assert e16.dtype == torch.float32 and not torch.equal(e16, e32)  # it did run in bf16
    torch.testing.assert_close(e16, e32, atol=0.05, rtol=0)
    assert torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0) > 0.99
    with pytest.raises(ValueError, match="precision must be"):
        mopi.render_embed(ctx.renderer, emb, coeffs, "float16")
    with pytest.raises(ValueError, match="resolve 'auto'"):
        mopi.mopi_step_fn(ctx.renderer, emb, embed_precision="auto")


def test_mopi_key_names_the_precision_only_when_it_is_not_float32(toy, monkeypatch):
    ctx, _, _ = toy
    keys = {p: mopi.mopi_config(ctx, mopi.MopiSettings(embed_precision=p), "s", "e").key
            for p in ("float32", "bfloat16")}
    monkeypatch.setattr(mopi, "cpu_has_bf16", lambda: False)
    assert mopi.mopi_config(ctx, mopi.MopiSettings(), "s", "e").key == keys["float32"]
    monkeypatch.setattr(mopi, "cpu_has_bf16", lambda: True)
    assert mopi.mopi_config(ctx, mopi.MopiSettings(), "s", "e").key == keys["bfloat16"] != keys["float32"]
    assert "embed_precision" not in str(keys["float32"])


def test_term_gradient_norms_match_each_term_alone(toy):
    ctx, sopi, emb = toy
    fn = mopi.mopi_batch_fn(ctx.dataset.train, sopi.eval(), emb.eval(), ctx.renderer, 2, 3)
    batch = fn(0, torch.Generator().manual_seed(0))
    net = MultiOcclusionNet("resnet18", n_heads=3).init_from_reconnet(sopi).eval()
    for q in net.parameters():
        q.requires_grad_(False)
    g = mopi.term_gradient_norms(net, batch, ctx.renderer, emb, 0.2, 0.8)
    assert all(not q.requires_grad for q in net.parameters()) and not net.training  # restored
    for q in net.parameters():
        q.requires_grad_(True)
    for name, (x1, x2), w in (("perceptual", (1.0, 0.0), 0.2), ("label", (0.0, 1.0), 0.8)):
        net.zero_grad()
        terms = mopi.mopi_step_fn(ctx.renderer, emb, x1, x2)(net, batch)
        terms["loss"].backward()
        by_hand = sum(float(q.grad.double().pow(2).sum()) for q in net.parameters() if q.grad is not None) ** 0.5
        assert g[name]["value"] == pytest.approx(w * float(terms[name]), rel=1e-5)
        assert g[name]["grad_norm"] == pytest.approx(w * by_hand, rel=1e-4)


def test_train_mopi_end_to_end_and_cache(toy):
    ctx, sopi, emb = toy
    net = mopi.train_mopi(ctx, "both", sopi=sopi, embedder=emb)
    assert isinstance(net, MultiOcclusionNet) and not net.training
    assert [h["step"] for h in net.history] == [1, 2, 3]
    assert {"loss", "perceptual", "label"} <= set(net.history[0])
    assert (net.out_dir / "final.pt").exists()
    hist = json.loads((net.out_dir / "history.json").read_text())["history"]
    assert len(hist) == 3
    # second call loads final.pt: same weights, no training
    again = mopi.get_mopi(ctx, "both", sopi=sopi, embedder=emb)
    for (k, a), (_, b) in zip(net.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    # another variant trains in its own folder
    lab = mopi.train_mopi(ctx, "label", sopi=sopi, embedder=emb)
    assert lab.out_dir != net.out_dir
    res = diagnostics.compare_models(ctx, {"sopi": sopi, "mopi": net}, n=2)
    assert set(res) == {"sopi", "mopi"} and all(v["occluded"] >= 0 and v["clean"] >= 0 for v in res.values())
    faces = diagnostics.per_face_me(ctx, {"sopi": sopi, "mopi": net}, n=2)
    for name in ("sopi", "mopi"):
        for tag in ("occluded", "clean"):
            assert faces[name][tag].shape == (2,)
            assert res[name][tag] == pytest.approx(float(faces[name][tag].mean()))
    # the clean error of the first face, by hand
    from occ3d_lib.core.metrics import landmark_me
    from occ3d_lib.nets.predict import predict_coeffs

    b = ctx.dataset.test.batch([0])
    lm = ctx.renderer.landmarks(predict_coeffs(sopi, b["image"]).to(ctx.renderer.model.dtype)).float()
    assert float(faces["sopi"]["clean"][0]) == pytest.approx(float(landmark_me(lm, b["landmarks"], 32)[0]), rel=1e-5)


def test_selection_quality_on_hand_made_rankings():
    me = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 1.0, 3.0, 2.0]])
    # distances that rank exactly like the errors: the choice is the oracle, rho = 1
    q = diagnostics.selection_quality(me, me * 0.01)
    assert q["selected"] == pytest.approx(1.0) and q["oracle"] == pytest.approx(1.0)
    assert q["spearman"] == pytest.approx(1.0)
    assert q["mean"] == pytest.approx(me.mean().item()) and q["worst"] == pytest.approx(4.5)
    # reversed ranking: the choice is the worst one, rho = -1
    q = diagnostics.selection_quality(me, -me)
    assert q["selected"] == pytest.approx(4.5) and q["spearman"] == pytest.approx(-1.0)
    # hand-computed: identity 0 picks index 2 (ME 3), identity 1 picks index 0 (ME 5)
    d = torch.tensor([[0.3, 0.2, 0.1, 0.4], [0.1, 0.2, 0.3, 0.4]])
    q = diagnostics.selection_quality(me, d)
    assert q["selected"] == pytest.approx(4.0)
    # ranks of identity 0: me (0,1,2,3), d (2,1,0,3) -> rho = 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 6*8/60 = 0.2
    # identity 1: me ranks (3,0,2,1), d (0,1,2,3) -> sum d^2 = 9+1+0+4 = 14 -> rho = 1 - 84/60 = -0.4
    assert q["spearman"] == pytest.approx((0.2 - 0.4) / 2)


def test_selection_quality_skips_constant_rows_and_checks_shapes():
    me = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    q = diagnostics.selection_quality(me, torch.tensor([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]))
    assert q["spearman"] == pytest.approx(1.0)  # only identity 1 counts
    with pytest.raises(ValueError, match=r"\(B, W\)"):
        diagnostics.selection_quality(me, me[:, :2])
    with pytest.raises(ValueError, match="W >= 2"):
        diagnostics.selection_quality(me[:, :1], me[:, :1])


def test_label_pool_serves_the_online_batches(toy):
    ctx, sopi, emb = toy
    fn = mopi.mopi_batch_fn(ctx.dataset.train, sopi.eval(), emb.eval(), ctx.renderer, 2, 3)
    pool = mopi.build_label_pool(fn, 2, seed=5)
    assert pool["images"].dtype == torch.uint8 and pool["images"].shape[:2] == (4, 3)
    pooled = mopi.pooled_batch_fn(pool, ctx.dataset.train, 2)
    g = torch.Generator().manual_seed(5)
    for step in range(2):
        online = fn(step, g)
        served = pooled(step, torch.Generator())
        assert set(served) == set(online)
        for k in online:
            torch.testing.assert_close(served[k], online[k], rtol=0, atol=1e-6, msg=k)
    with pytest.raises(IndexError, match="past its end"):
        pooled(2, torch.Generator())
    assert mopi.label_pool_bytes(1200, 7, 64) == 1200 * 7 * 3 * 64 * 64
    with pytest.raises(ValueError, match="labels must be one of"):
        mopi.MopiSettings(labels="cached")


def test_pooled_and_online_training_give_the_same_weights(toy, tmp_path):
    import copy

    base, sopi, emb = toy
    nets = {}
    for mode in ("online", "pool"):
        ctx = copy.copy(base)  # shares the cached face model and dataset, not the run folder
        ctx.run_dir = tmp_path / mode
        nets[mode] = mopi.train_mopi(ctx, "both", sopi=sopi, embedder=emb, settings=mopi.MopiSettings("both", labels=mode))
    assert (tmp_path / "pool" / "checkpoints").exists()
    assert any(d.name.startswith("mopi-labels-") for d in (tmp_path / "pool" / "checkpoints").iterdir())
    assert not any(d.name.startswith("mopi-labels-") for d in (tmp_path / "online" / "checkpoints").iterdir())
    for (k, a), (_, b) in zip(nets["online"].state_dict().items(), nets["pool"].state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_oracle_label_index_picks_the_prediction_with_the_true_landmarks(toy):
    from occ3d_lib.face.coeffs import SLICES

    ctx, _, _ = toy
    true = ctx.dataset.train.batch([0, 1])["coeffs"].float()  # (2, 257)
    lm = ctx.renderer.landmarks(true.to(ctx.renderer.model.dtype)).float()
    preds = true[:, None].repeat(1, 4, 1)
    # shifts of 0.3, 0.1, 0.2, 0.4 units in x for identity 0 (best: index 1); identity 1: the truth at index 3
    shifts = torch.tensor([[0.3, 0.1, 0.2, 0.4], [0.2, 0.3, 0.1, 0.0]])
    preds[:, :, SLICES["trans"].start] += shifts
    assert mopi.oracle_label_index(ctx.renderer, preds, lm).tolist() == [1, 3]
    with pytest.raises(ValueError, match=r"\(B, W, 257\)"):
        mopi.oracle_label_index(ctx.renderer, preds[0], lm)


def test_batch_fn_selection_rules(toy):
    from occ3d_lib.core.metrics import landmark_me

    ctx, sopi, emb = toy
    args = (ctx.dataset.train, sopi.eval(), emb.eval(), ctx.renderer, 2, 3)
    eq8 = mopi.mopi_batch_fn(*args)(0, torch.Generator().manual_seed(3))
    orc = mopi.mopi_batch_fn(*args, selection="oracle")(0, torch.Generator().manual_seed(3))
    assert torch.equal(eq8["images"], orc["images"])  # same sets, only the choice differs
    # the oracle's label has the lowest landmark error of the three SOPI predictions
    b = ctx.dataset.train.batch(orc["index"].numpy())
    with torch.no_grad():
        pred = sopi(orc["images"].flatten(0, 1)).view(2, 3, -1)
    lm = ctx.renderer.landmarks(pred.flatten(0, 1).to(ctx.renderer.model.dtype)).float()
    me = landmark_me(lm, b["landmarks"].repeat_interleave(3, 0), 32).view(2, 3)
    assert orc["choice"].tolist() == me.argmin(1).tolist()
    for i in range(2):
        torch.testing.assert_close(orc["label"][i], pred[i, orc["choice"][i]].float(), rtol=1e-5, atol=1e-6)
    rnd = mopi.mopi_batch_fn(*args, selection="random")
    a, c = rnd(0, torch.Generator().manual_seed(3)), rnd(0, torch.Generator().manual_seed(3))
    assert torch.equal(a["choice"], c["choice"]) and torch.equal(a["label"], c["label"])
    assert ((a["choice"] >= 0) & (a["choice"] < 3)).all()
    with pytest.raises(ValueError, match="selection must be one of"):
        mopi.mopi_batch_fn(*args, selection="best")
    with pytest.raises(ValueError, match="selection must be one of"):
        mopi.MopiSettings(selection="best")


def test_comparison_markdown_pairs_the_faces():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    faces = {"ref": {"occluded": a, "clean": a / 2},
             "plus": {"occluded": a + 0.5, "clean": a},  # worse by exactly 0.5 on every face
             "noisy": {"occluded": a + torch.tensor([1.0, -1.0, 1.0, -1.0]), "clean": a}}
    md = diagnostics.comparison_markdown(faces, "ref", n_boot=200)
    lines = md.splitlines()
    assert lines[0] == "| model | ME occluded | ME clean | occluded minus ref, same faces [95 % CI] |"
    assert lines[2] == "| ref | 2.50 | 1.25 | |"
    # a constant difference has a zero-width interval; its unpaired means would overlap widely
    assert lines[3] == "| plus | 3.00 | 2.50 | +0.500 [+0.500, +0.500] |"
    lo, hi = (float(x) for x in lines[4].split("[")[1].rstrip(" |]").split(", "))
    assert lo < 0 < hi and "+0.000 [" in lines[4]
    assert diagnostics.comparison_markdown(faces).splitlines()[0] == "| model | ME occluded | ME clean |"
    with pytest.raises(ValueError, match="reference 'teacher'"):
        diagnostics.comparison_markdown(faces, "teacher")
