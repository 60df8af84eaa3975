"""The shared training loop: seeded, resumable with identical results, NaN guard, history on disk."""
import json

import pytest
import torch
from torch import nn

from occ3d_lib.nets.models import seeded
from occ3d_lib.training.train import TrainConfig, Trainer, TrainingDiverged, load_history

W_TRUE = torch.tensor([[1.0, -2.0, 0.5]])


def make(tmp_path, steps=20, seed=0, **kw):
    with seeded(123):  # model init from its own seed (no global seeding); batches from the trainer's generator
        model = nn.Linear(3, 1)

    def batch_fn(step, g):
        x = torch.randn(8, 3, generator=g)
        return {"x": x, "y": x @ W_TRUE.T}

    def step_fn(m, b):
        err = m(b["x"]) - b["y"]
        return {"loss": (err ** 2).mean(), "mae": err.abs().mean()}

    cfg = TrainConfig(steps=steps, lr=0.05, checkpoint_every=5, log_every=2, seed=seed, **kw)
    return Trainer(model, step_fn, batch_fn, cfg, tmp_path)


class Kill(Exception):
    pass


def test_training_reduces_loss_and_logs(tmp_path):
    t = make(tmp_path, steps=60)
    hist = t.fit(progress=False)
    assert hist[-1]["loss"] < 0.1 * hist[0]["loss"]
    assert [h["step"] for h in hist][:3] == [2, 4, 6]
    assert load_history(tmp_path) == hist
    assert (tmp_path / "final.pt").exists()


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_after_kill_gives_identical_weights(tmp_path, schedule):
    ref = make(tmp_path / "ref", schedule=schedule)
    ref.fit(progress=False)

    torch.rand(7)  # a different global generator state: the run must not depend on it
    run = make(tmp_path / "run", schedule=schedule)

    def killer(tr, rec):
        if tr.step == 12:  # after the checkpoint at step 10, before the one at 15
            raise Kill()

    with pytest.raises(Kill):
        run.fit(progress=False, callback=killer)
    assert not (tmp_path / "run" / "final.pt").exists()
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 10

    resumed = make(tmp_path / "run", schedule=schedule)  # a fresh process would build everything again
    resumed.fit(progress=False)
    for a, b in zip(ref.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in ref.history]


def test_finished_run_is_reused_not_retrained(tmp_path):
    make(tmp_path).fit(progress=False)
    again = make(tmp_path)
    calls = []
    again.batch_fn = lambda s, g: calls.append(s)
    again.fit(progress=False)
    assert calls == [] and again.step == 20


def test_checkpoint_of_another_config_is_not_resumed(tmp_path):
    make(tmp_path, steps=10).fit(progress=False)
    other = make(tmp_path, steps=10, seed=1)
    assert not other.try_resume()
    other.fit(progress=False)
    assert json.loads((tmp_path / "history.json").read_text())["key"] == other.cfg.hash()


def test_different_seeds_differ(tmp_path):
    a, b = make(tmp_path / "a", seed=0), make(tmp_path / "b", seed=1)
    a.fit(progress=False)
    b.fit(progress=False)
    assert not torch.equal(a.model.weight, b.model.weight)


def test_nan_guard_names_step_and_term(tmp_path):
    t = make(tmp_path)
    inner = t.step_fn

    def bad(m, b):
        terms = dict(inner(m, b))
        if t.step == 3:
            terms["mae"] = torch.tensor(float("nan"))
        return terms

    t.step_fn = bad
    with pytest.raises(TrainingDiverged, match="step 3: loss term 'mae'"):
        t.fit(progress=False)


def test_config_validation():
    with pytest.raises(ValueError):
        TrainConfig(steps=0, lr=1e-3)
    with pytest.raises(ValueError):
        TrainConfig(steps=5, lr=3.0)


def test_cosine_schedule_values_and_use():
    cfg = TrainConfig(steps=11, lr=0.1, schedule="cosine", final_lr_fraction=0.1)
    assert cfg.lr_at(0) == pytest.approx(0.1)
    assert cfg.lr_at(5) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))  # half way: mean of start and end
    assert cfg.lr_at(10) == pytest.approx(0.01) and cfg.lr_at(99) == pytest.approx(0.01)
    assert TrainConfig(steps=5, lr=0.1).lr_at(3) == 0.1
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(steps=5, lr=0.1, schedule="step")


def test_trainer_applies_the_schedule(tmp_path):
    seen = []
    t = make(tmp_path, steps=6, schedule="cosine")
    inner = t.step_fn
    t.step_fn = lambda m, b: (seen.append(t.optimizer.param_groups[0]["lr"]), inner(m, b))[1]
    t.fit(progress=False)
    # the lr in effect for step k is set before the optimiser step; seen[k] is the value of step k-1
    assert seen[1:] == pytest.approx([t.cfg.lr_at(k) for k in range(5)])


def test_history_seconds_count_across_a_resume(tmp_path):
    run = make(tmp_path)

    def killer(tr, rec):
        if tr.step == 12:
            raise Kill()

    with pytest.raises(Kill):
        run.fit(progress=False, callback=killer)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["history"][-1]["step"] == 10
    ck["history"][-1]["seconds"] = 1000.0  # as if the first 10 steps had taken 1000 s
    from occ3d_lib.core import artifacts
    artifacts.torch_save(ck, tmp_path / "checkpoint.pt")  # with its manifest, as the Trainer writes it
    resumed = make(tmp_path)
    resumed.fit(progress=False)
    secs = [h["seconds"] for h in resumed.history]
    after = secs[[h["step"] for h in resumed.history].index(10) + 1:]
    assert after and all(s >= 1000.0 for s in after) and after == sorted(after)

