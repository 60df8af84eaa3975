"""Teacher and SOPI stages: claims checker, tiny end-to-end training and caching."""
import pytest
import torch
from torch import nn

from occ3d_lib.core.config import get_profile
from occ3d_lib.data.context import Context
from occ3d_lib.evaluation import diagnostics
from occ3d_lib.training import stages
from occ3d_lib.training.stages import SopiSettings


def test_sopi_settings_are_validated():
    with pytest.raises(ValueError, match="loss"):
        SopiSettings(loss="l2")
    with pytest.raises(ValueError, match="init"):
        SopiSettings(init="imagenet21k")
    assert SopiSettings(loss="kl").loss == "kl"
    for bad in (-1e-3, float("nan"), True, "1e-3"):
        with pytest.raises(ValueError, match="landmark_weight"):
            SopiSettings(landmark_weight=bad)
    for bad in (1, "yes"):
        with pytest.raises(ValueError, match="freeze_bn"):
            SopiSettings(freeze_bn=bad)
    for bad in (-1, 1.0, True, "2"):
        with pytest.raises(ValueError, match="frozen_stages"):
            SopiSettings(frozen_stages=bad)


def test_sopi_starts_where_the_profile_says(tmp_path):
    # the CPU profiles start SOPI from the teacher, the paper profile from ImageNet as the paper does (Sec. 4)
    for name, init in (("smoke", "teacher"), ("course", "teacher"), ("paper", "scratch")):
        assert stages.resolve_sopi_settings(get_profile(name)).init == init
    assert stages.resolve_sopi_settings(get_profile("paper"), SopiSettings(init="teacher")).init == "teacher"
    # the paper profile distils with Eq. 6 alone, the CPU profiles add the landmark term unless told otherwise
    for name, w in (("smoke", stages.SOPI_LANDMARK_WEIGHT), ("course", stages.SOPI_LANDMARK_WEIGHT), ("paper", 0.0)):
        assert stages.resolve_sopi_settings(get_profile(name)).landmark_weight == w
    assert stages.resolve_sopi_settings(get_profile("course"), SopiSettings(landmark_weight=0)).landmark_weight == 0
    # an init left to the profile names the same folder as the same init given by name
    ctx = Context(get_profile("course"), tmp_path)
    ctx.__dict__["dataset"] = type("D", (), {"meta": {"key": "data-0"}})()
    assert stages.sopi_config(ctx, "t").hash() == stages.sopi_config(ctx, "t", SopiSettings(init="teacher")).hash()
    assert stages.sopi_config(ctx, "t").hash() != stages.sopi_config(ctx, "t", SopiSettings(init="scratch")).hash()
    assert stages.sopi_config(ctx, "t").hash() != stages.sopi_config(ctx, "t", SopiSettings(landmark_weight=0)).hash()
    # a trainee started from the teacher keeps its BatchNorm statistics unless told otherwise; frozen statistics
    # are a run of their own, trained ones keep the folder they had before the option existed
    for name, frozen in (("smoke", True), ("course", True), ("paper", False)):
        assert stages.resolve_sopi_settings(get_profile(name)).freeze_bn is frozen
    assert stages.resolve_sopi_settings(get_profile("paper"), SopiSettings(init="teacher")).freeze_bn is True
    assert stages.resolve_sopi_settings(get_profile("course"), SopiSettings(freeze_bn=False)).freeze_bn is False
    assert stages.sopi_config(ctx, "t").hash() == stages.sopi_config(ctx, "t", SopiSettings(freeze_bn=True)).hash()
    assert stages.sopi_config(ctx, "t").hash() != stages.sopi_config(ctx, "t", SopiSettings(freeze_bn=False)).hash()
    assert "freeze_bn" not in stages.sopi_config(ctx, "t", SopiSettings(freeze_bn=False)).key["settings"]
    # fixed early stages are a run of their own; none fixed keeps the folder it had before the option existed
    assert "frozen_stages" not in stages.sopi_config(ctx, "t").key["settings"]
    assert stages.sopi_config(ctx, "t").hash() != stages.sopi_config(ctx, "t", SopiSettings(frozen_stages=9)).hash()


@pytest.fixture()
def tiny_ctx(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("OCC3D_CACHE", str(tmp_path / "cache"))
    p = get_profile("smoke").replace(image_size=32, n_train_identities=4, n_val_identities=1, n_test_identities=1,
                                     views_per_identity=2, teacher_steps=3, teacher_batch_size=4, sopi_steps=3,
                                     sopi_batch_size=4, checkpoint_every=2, log_every=1)
    ctx = Context(profile=p, run_dir=tmp_path / "run", progress=False)
    m = tiny_model(n_id=80, n_exp=64, n_tex=80)
    m.mean_shape = (m.mean_shape - 0.5) * 1.5  # a 1.5-unit square around the origin, facing the camera
    m.id_base, m.exp_base = m.id_base * 0.005, m.exp_base * 0.005  # small shape variation: stays in view
    ctx.__dict__["face_model"] = m  # override the cached property: no procedural model needed
    return ctx


def test_teacher_and_sopi_train_cache_and_freeze(tiny_ctx):
    teacher = stages.train_teacher(tiny_ctx)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    hist = stages.stage_history(teacher)
    assert [h["step"] for h in hist] == [1, 2, 3]
    assert {"loss", "photo", "landmark", "coeff"} <= set(hist[0])
    assert (teacher.out_dir / "final.pt").exists()
    # the heads moved away from their zero init
    assert any(float(c.weight.abs().sum()) > 0 for c in teacher.final_layers)

    again = stages.train_teacher(tiny_ctx)  # loaded from final.pt: same weights, no new training
    for a, b in zip(teacher.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)

    labels = stages.teacher_labels(tiny_ctx, teacher)
    imgs = tiny_ctx.dataset.train.batch(list(range(len(tiny_ctx.dataset.train))))["image"]
    assert torch.allclose(labels, teacher(imgs), atol=1e-5)
    assert (teacher.out_dir / "labels-train.pt").exists()

    sopi = stages.train_sopi(tiny_ctx, teacher=teacher)
    assert [h["step"] for h in stages.stage_history(sopi)] == [1, 2, 3]
    assert all(0.0 <= h["coverage"] <= 1.0 for h in stages.stage_history(sopi))
    # the smoke profile adds the landmark term: its two parts are logged and add up to the loss
    for h in stages.stage_history(sopi):
        assert h["loss"] == pytest.approx(h["distill"] + h["landmark"], rel=1e-4)
    # started from the teacher, then trained: weights differ from the teacher's
    diff = sum(float((a.float() - b.float()).abs().sum()) for a, b in
               zip(teacher.state_dict().values(), sopi.state_dict().values()))
    assert diff > 0
    assert sopi.out_dir != teacher.out_dir


def test_sopi_step_adds_the_weighted_landmark_term(tiny_ctx):
    from types import SimpleNamespace

    from occ3d_lib.face.coeffs import SLICES
    from occ3d_lib.training import losses

    r = tiny_ctx.renderer
    b = tiny_ctx.dataset.train.batch([0, 1, 2])
    labels = b["coeffs"].clone()  # the teacher's labels: here the ground truth of the three faces
    pred = labels.clone()
    pred[:, SLICES["trans"]] += torch.tensor([0.04, -0.02, 0.0])  # the trainee gets only the position wrong

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.shift = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return pred + self.shift

    def occluder(images, landmarks):
        return SimpleNamespace(images=images, coverage=torch.zeros(images.shape[0]))

    batch = {"image": b["image"], "landmarks": b["landmarks"], "index": torch.tensor([0, 1, 2])}
    with_lm = stages.sopi_step_fn(labels, occluder, landmark_weight=0.5, renderer=r)
    plain = stages.sopi_step_fn(labels, occluder)(Fixed(), batch)
    out = with_lm(Fixed(), batch)
    se = float(((pred - labels) ** 2).mean())  # Eq. 6 by hand: 6 of 771 entries are off
    assert plain["loss"].item() == pytest.approx(se, rel=1e-5) and "landmark" not in plain
    lm = 0.5 * float(losses.landmark_loss(r.landmarks(pred), r.landmarks(labels), r.image_size))
    assert lm > 100 * se  # a few pixels of landmark error against squared hundredths of a unit
    assert out["landmark"].item() == pytest.approx(lm, rel=1e-5)
    assert out["loss"].item() == pytest.approx(se + lm, rel=1e-5)
    out["loss"].backward()  # the term reaches the network
    pred = labels.clone()  # a trainee that reproduces the teacher pays nothing
    assert with_lm(Fixed(), batch)["loss"].item() == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="renderer"):
        stages.sopi_step_fn(labels, occluder, landmark_weight=0.5)
    with pytest.raises(ValueError, match="landmark_weight"):
        stages.sopi_step_fn(labels, occluder, landmark_weight=-1.0, renderer=r)


def test_sopi_step_with_frozen_batchnorm_leaves_the_running_statistics(tiny_ctx):
    from types import SimpleNamespace

    b = tiny_ctx.dataset.train.batch([0, 1, 2, 3])
    labels = torch.zeros(4, 257)
    batch = {"image": b["image"], "landmarks": b["landmarks"], "index": torch.arange(4)}

    def occluder(images, landmarks):
        return SimpleNamespace(images=images, coverage=torch.zeros(images.shape[0]))

    for freeze_bn in (True, False):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(4, 257)).train()
        before = net[1].running_mean.clone()
        out = stages.sopi_step_fn(labels, occluder, freeze_bn=freeze_bn)(net, batch)
        out["loss"].backward()
        assert torch.equal(net[1].running_mean, before) == freeze_bn
        assert net[1].training != freeze_bn and net[0].training  # only the BatchNorm layers change mode
        assert net[1].weight.grad is not None  # frozen statistics, trained affine parameters


def test_landmark_me_by_kind_is_zero_for_the_truth_and_names_clean(tiny_ctx):
    from types import SimpleNamespace

    test = tiny_ctx.dataset.test
    idx = list(range(len(test)))
    b = test.batch(idx)

    class Oracle(nn.Module):  # returns the ground truth of the image it is given (looked up by content)
        def forward(self, x):
            d = ((x[:, None] - b["image"][None]) ** 2).flatten(2).sum(-1)
            return b["coeffs"][d.argmin(1)]

    sets = {"none": SimpleNamespace(images=b["image"], params={"indices": idx}),
            "shofi": SimpleNamespace(images=b["image"].clone(), params={"indices": idx})}
    me = diagnostics.landmark_me_by_kind({"oracle": Oracle()}, sets, test, tiny_ctx.renderer)
    assert set(me) == {"zero", "baseline", "oracle"} and set(me["oracle"]) == {"clean", "shofi"}
    assert me["oracle"]["clean"] < 1e-3 and me["oracle"]["shofi"] < 1e-3
    assert me["zero"]["clean"] > 0
    # the baseline keeps the true pose: its error is only the (small) shape difference of this model
    assert me["baseline"]["clean"] <= me["zero"]["clean"]


def test_error_with_true_groups_locates_the_wrong_group(tiny_ctx):
    from occ3d_lib.face.coeffs import SLICES

    b = tiny_ctx.dataset.test.batch(list(range(len(tiny_ctx.dataset.test))))
    gt = b["coeffs"]
    r = tiny_ctx.renderer
    lm = r.landmarks(gt)  # exact landmarks of the ground truth
    pred = gt.clone()
    pred[:, SLICES["trans"]] += torch.tensor([0.05, -0.03, 0.0])  # only the translation is wrong
    out = diagnostics.error_with_true_groups(pred, gt, lm, r)
    assert out["prediction"] > 0.5
    assert out["translation"] < 1e-3 and out["pose (rotation + translation)"] < 1e-3
    for row in ("identity", "expression", "rotation", "shape (identity + expression)"):
        assert out[row] == pytest.approx(out["prediction"], rel=1e-5)  # swapping a correct group changes nothing
    assert diagnostics.error_with_true_groups(gt, gt, lm, r, rows={})["prediction"] < 1e-3


def test_error_with_true_groups_validates(tiny_ctx):
    gt = torch.zeros(2, 257)
    lm = torch.zeros(2, 68, 2)
    with pytest.raises(ValueError, match="unknown coefficient group"):
        diagnostics.error_with_true_groups(gt, gt, lm, tiny_ctx.renderer, rows={"x": ("pose",)})
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        diagnostics.error_with_true_groups(gt, gt, lm[:, :5], tiny_ctx.renderer)
