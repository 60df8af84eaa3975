import pytest

from occ3d_lib.core import config


def test_profiles_by_name():
    assert config.profile_names() == ["smoke", "course", "paper"]
    for name in config.profile_names():
        p = config.get_profile(name)
        assert p.name == name


def test_paper_profile_holds_the_papers_settings():
    p = config.get_profile("paper")
    assert (p.image_size, p.backbone, p.sopi_lr, p.sopi_batch_size) == (224, "resnet50", 1e-5, 5)
    assert (p.sopi_steps, p.mopi_steps, p.n_occlusion_variants) == (400_000, 500_000, 7)
    assert p.imagenet_init and p.mesh == "dense"


def test_profiles_get_cheaper():
    s, c, p = (config.get_profile(n) for n in config.profile_names())
    for f in ("teacher_steps", "sopi_steps", "mopi_steps", "n_train_identities", "eval_samples"):
        assert getattr(s, f) < getattr(c, f) < getattr(p, f), f


def test_default_reads_environment(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "smoke")
    assert config.get_profile().name == "smoke"
    monkeypatch.delenv(config.PROFILE_ENV)
    assert config.get_profile().name == "course"


def test_unknown_profile_lists_valid_names():
    with pytest.raises(ValueError, match="valid profiles: smoke, course, paper"):
        config.get_profile("fast")


def test_unknown_override_lists_fields():
    with pytest.raises(ValueError, match="unknown profile field.*valid fields"):
        config.get_profile("smoke", image_sise=64)


@pytest.mark.parametrize("change, message", [
    ({"image_size": 0}, "image_size must be > 0"),
    ({"image_size": 100}, "multiple of 8"),
    ({"backbone": "vgg16"}, "backbone must be one of"),
    ({"mesh": "huge"}, "mesh must be one of"),
    ({"sopi_lr": 2.0}, "sopi_lr must be in"),
    ({"teacher_steps": 1.5}, "teacher_steps must be an int"),
    ({"num_workers": -1}, "num_workers"),
])
def test_bad_values_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        config.get_profile("smoke", **change)


def test_hash_is_stable_and_sensitive():
    a = config.get_profile("smoke")
    assert a.hash() == config.get_profile("smoke").hash()
    assert a.hash() != a.replace(seed=1).hash()
    assert a.hash("image_size") == a.replace(seed=1).hash("image_size")
    assert len(a.hash()) == 16


def test_profiles_table_has_every_profile():
    t = config.profiles_table()
    assert t.splitlines()[0] == "| field | smoke | course | paper |"
    assert "| backbone | efficientnet_lite0 | efficientnet_lite0 | resnet50 |" in t
