"""The training recipe (occ3d_lib.training.recipe) and the seed table (occ3d_lib.core.seeds).

The configuration hash of a stage names its folder and so keys every cached and shipped result: a
refactoring of how the stages build their settings must leave every hash unchanged. The hashes below
were computed by the stages before they shared one recipe; a change that alters one fails here.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from occ3d_lib.core.config import get_profile
from occ3d_lib.core.seeds import SEED_OFFSETS, stream_seed
from occ3d_lib.data.context import Context
from occ3d_lib.training import embedder, mopi, recipe, stages

#: every profile field a stage's settings read, fixed here so tuning a profile does not move the pins
PIN_FIELDS = dict(
    backbone="resnet18", imagenet_init=False, seed=5, checkpoint_every=50, log_every=5,
    teacher_steps=300, teacher_batch_size=8, teacher_lr=1e-3, teacher_photometric=True,
    sopi_steps=200, sopi_batch_size=8, sopi_lr=5e-4,
    embedder_steps=120, embedder_batch_size=16, embedder_image_size=64,
    mopi_steps=100, mopi_batch_identities=2, mopi_lr=2e-4, n_occlusion_variants=7,
)
#: a change on purpose (a new key field, ``RENDER_VERSION`` bumped) updates these and says what is rebuilt
PINNED = {
    # sopi: the CPU profiles' SOPI gained the landmark term (d8ae0a898ea4c089), then frozen BatchNorm statistics
    # and the heavy-squares mix (its first settings' folder is still 5187f7369f3a8f4d)
    "teacher": "552ebceb5707c01f", "sopi": "9e830a645b35e495", "embedder": "6a4e222eaa80bea8",
    "mopi-both": "9649edf3d650b358", "mopi-label": "ffd0affab4958ccf",
}
#: MOPI on a CPU with native bf16, where Eq. 7's FaceNet runs in bfloat16 (``MopiSettings.embed_precision``
#: "auto"): its own folders; elsewhere the float32 ones above, as before the option existed
PINNED_BF16 = {**PINNED, "mopi-both": "d696fb0f25866c4d", "mopi-label": "ff1f92ab94768450"}


def _ctx(tmp_path: Path, device: str = "cpu") -> Context:
    """A Context whose dataset key and face model are fixed stand-ins (nothing is generated)."""
    ctx = Context(get_profile("smoke").replace(**PIN_FIELDS), tmp_path, device=device)
    ctx.__dict__["dataset"] = SimpleNamespace(meta={"key": "data-0123456789abcdef"})
    ctx.__dict__["face_model"] = SimpleNamespace(info={"name": "procedural", "resolution": 24, "seed": 0,
                                                       "version": 3, "path": None})
    return ctx


def _hashes(ctx: Context) -> dict[str, str]:
    return {"teacher": stages.teacher_config(ctx).hash(),
            "sopi": stages.sopi_config(ctx, "teacher-0123").hash(),
            "embedder": embedder.embedder_config(ctx).hash(),
            "mopi-both": mopi.mopi_config(ctx, mopi.MopiSettings(), "sopi-w", "emb-w").hash(),
            "mopi-label": mopi.mopi_config(ctx, mopi.MopiSettings(variant="label"), "sopi-w", "emb-w").hash()}


@pytest.mark.parametrize("native_bf16", [False, True])
def test_stage_hashes_are_pinned(tmp_path, monkeypatch, native_bf16):
    monkeypatch.setattr(mopi, "cpu_has_bf16", lambda: native_bf16)
    assert _hashes(_ctx(tmp_path)) == (PINNED_BF16 if native_bf16 else PINNED)


def test_sopi_with_eq6_alone_keeps_its_folder(tmp_path):
    # Eq. 6 alone on the first mix with BatchNorm trained: the settings the paper profile's SOPI had, one folder
    ctx = _ctx(tmp_path)
    first = stages.SopiSettings(landmark_weight=0, freeze_bn=False, mix=dict(stages.SOPI_MIXES["squares 10 %"]))
    assert stages.sopi_config(ctx, "teacher-0123", first).hash() == "5187f7369f3a8f4d"


def test_hashes_ignore_device_and_precision(tmp_path):
    cuda = _ctx(tmp_path, device="cuda")
    assert stages.teacher_config(cuda).amp and not stages.teacher_config(_ctx(tmp_path)).amp
    assert _hashes(cuda) == PINNED


def test_seeds_come_from_the_one_table(tmp_path):
    ctx = _ctx(tmp_path)
    seed = ctx.profile.seed
    assert stages.teacher_config(ctx).seed == seed + SEED_OFFSETS["teacher"] == seed
    assert stages.sopi_config(ctx, "t").seed == seed + SEED_OFFSETS["sopi"] == seed + 1
    assert embedder.embedder_config(ctx).seed == seed + SEED_OFFSETS["embedder"] == seed + 31
    assert mopi.mopi_config(ctx, mopi.MopiSettings(), "s", "e").seed == seed + SEED_OFFSETS["mopi"] == seed + 53
    assert stream_seed(seed, "sopi_occluder") == seed + 7 and stream_seed(seed, "eval_faces") == seed + 7919
    assert len(set(SEED_OFFSETS.values())) == len(SEED_OFFSETS), "two streams share a seed"
    with pytest.raises(ValueError, match="unknown random stream"):
        stream_seed(0, "nope")


def test_stage_config_reads_the_profile(tmp_path):
    ctx = _ctx(tmp_path)
    cfg = recipe.stage_config(ctx, "sopi", {"k": 1})
    assert (cfg.steps, cfg.lr, cfg.checkpoint_every, cfg.log_every) == (200, 5e-4, 50, 5)
    assert recipe.stage_config(ctx, "embedder", {}, lr=3e-3).lr == 3e-3
    with pytest.raises(ValueError, match="unknown stage"):
        recipe.stage_config(ctx, "student", {})
