"""The Trainer under DistributedDataParallel on CPU (two gloo processes on 127.0.0.1) and the launch checks.

Two processes with a global batch of 8 must end with the weights of one process with a batch of 8
made of the same two shards; a two-process run killed mid-way and resumed must end with the
weights of an uninterrupted one; a bad launch must be a one-line error.
"""
import os
import shutil
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from occ3d_lib.core.artifacts import manifest_path
from occ3d_lib.training import distributed
from occ3d_lib.training.train import TrainConfig, Trainer

GLOBAL_BATCH = 8
STEPS = 6
W_TRUE = torch.tensor([[1.0, -2.0, 0.5, 0.25], [0.0, 1.0, -1.0, 2.0]], dtype=torch.float64)


def _config() -> TrainConfig:
    # weight decay makes Adam's update depend on the gradients' scale: a sum instead of a mean over
    # the ranks (or a missing average) changes the weights, Adam alone would hide it
    return TrainConfig(steps=STEPS, lr=0.05, checkpoint_every=2, log_every=1, seed=3, weight_decay=0.1)


def _model() -> nn.Module:
    torch.manual_seed(123)  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def _draw(n: int, g: torch.Generator) -> dict:
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return {"x": x, "y": x @ W_TRUE.T + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)}


def _step(m, b):
    err = m(b["x"]) - b["y"]
    return {"loss": (err ** 2).mean(), "mae": err.abs().mean()}


def _trainer(out_dir, kill_at: int | None = None) -> Trainer:
    per = distributed.shard_batch_size(GLOBAL_BATCH, "batch")

    def batch_fn(step, g):
        if kill_at is not None and step == kill_at:
            os._exit(3)  # a killed process: no clean-up, no exception
        return _draw(per, g)

    return Trainer(_model(), _step, batch_fn, _config(), out_dir)


def _worker(rank: int, world: int, port: int, out_dir: str, kill_at: int | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init("cpu")
    try:
        _trainer(out_dir, kill_at if rank == 1 else None).fit(progress=False)
    finally:
        distributed.shutdown()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(out_dir, kill_at: int | None = None) -> None:
    # fork on Linux: the children inherit the imported modules (no torch import per process; they use
    # one thread each); spawn elsewhere (fork is unsafe on macOS)
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    mp.start_processes(_worker, args=(2, _free_port(), str(out_dir), kill_at), nprocs=2, join=True,
                       start_method=method)


def _final(out_dir) -> dict:
    return torch.load(out_dir / "final.pt", weights_only=False)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """An uninterrupted two-process run (global batch 8 = two shards of 4)."""
    d = tmp_path_factory.mktemp("ddp") / "run"
    _spawn(d)
    return d


def test_two_processes_match_one_process_with_the_global_batch(two_process_run, tmp_path):
    # one process, batch 8 = rank 0's shard (the trainer's own generator, seeded derive_seed(seed, 0))
    # followed by rank 1's shard (a generator seeded derive_seed(seed, 1))
    g1 = torch.Generator().manual_seed(distributed.derive_seed(_config().seed, 1))

    def batch_fn(step, g):
        a, b = _draw(GLOBAL_BATCH // 2, g), _draw(GLOBAL_BATCH // 2, g1)
        return {k: torch.cat([a[k], b[k]]) for k in a}

    ref = Trainer(_model(), _step, batch_fn, _config(), tmp_path)
    ref.fit(progress=False)
    ddp = _final(two_process_run)
    # float64 everywhere; the runs differ only in the order of the gradient sums (two half-batch means
    # averaged vs one mean), ~1e-16 relative per step; a wrong shard, seed or averaging differs by >1e-3
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=0, atol=1e-10)
    # the logged losses are the global batch's (means over the ranks of equal shards)
    assert [h["step"] for h in ddp["history"]] == list(range(1, STEPS + 1))
    for a, b in zip(ddp["history"], ref.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)  # logged in float32
        assert a["mae"] == pytest.approx(b["mae"], rel=1e-6)
    # and a shard drawn from rank 0's generator twice would not match (the test can fail)
    assert not torch.equal(_draw(4, torch.Generator().manual_seed(3))["x"], _draw(4, g1)["x"])


def test_killed_two_process_run_resumes_to_the_same_weights(two_process_run, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(mp.ProcessExitedException):
        _spawn(run, kill_at=3)  # rank 1 dies in step 3, after the checkpoint of step 2
    assert not (run / "final.pt").exists()
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 2 and saved["world_size"] == 2 and len(saved["ranks"]) == 2
    # the ranks' generators were saved apart: rank 1's differs from rank 0's
    assert not torch.equal(saved["ranks"][0]["generator"], saved["ranks"][1]["generator"])
    other = tmp_path / "one-process"
    other.mkdir()
    shutil.copy(run / "checkpoint.pt", other / "checkpoint.pt")  # with its manifest, or it counts as damaged
    shutil.copy(manifest_path(run / "checkpoint.pt"), manifest_path(other / "checkpoint.pt"))

    _spawn(run)  # a fresh launch resumes every rank from step 2
    resumed, ref = _final(run), _final(two_process_run)
    assert resumed["history"] == [
        {**h, "seconds": r["seconds"]} for h, r in zip(ref["history"], resumed["history"])]
    for k, v in ref["model"].items():
        assert torch.equal(resumed["model"][k], v), k

    # a two-process checkpoint cannot be resumed by one process: a one-line error that says what to do
    with pytest.raises(ValueError, match=r"written by 2 process\(es\), this run has 1: relaunch with 2") as e:
        _trainer(other).fit(progress=False)
    assert "\n" not in str(e.value)


def test_single_process_state_and_helpers():
    st = distributed.current()
    assert (st.rank, st.world_size, st.enabled, st.is_main) == (0, 1, False, True)
    assert distributed.derive_seed(5, 0) == 5 and distributed.derive_seed(5, 1) != distributed.derive_seed(5, 2)
    assert distributed.derive_seed(5, 1) == distributed.derive_seed(5, 1)
    assert distributed.shard_batch_size(10, "x", 2) == 5
    with pytest.raises(distributed.LaunchError, match="sopi_batch_size 5 is not divisible by the world size 2"):
        distributed.shard_batch_size(5, "sopi_batch_size", 2)
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_mean(t) is t and distributed.all_gather(7) == [7]
    with distributed.main_first():
        pass
    assert distributed.launch_env({}) == (0, 1, 0)
    assert distributed.launch_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (1, 4, 1)
    for env in ({"RANK": "4", "WORLD_SIZE": "4"}, {"WORLD_SIZE": "two"}):
        with pytest.raises(distributed.LaunchError):
            distributed.launch_env(env)


def test_run_identity_ignores_device_precision_and_world_size():
    # a model trained with torchrun on GPUs in bf16 is found by a notebook on one CPU
    base = TrainConfig(steps=5, lr=0.01, key={"stage": "x"})
    gpu = TrainConfig(steps=5, lr=0.01, key={"stage": "x"}, device="cuda:3", amp=True, checkpoint_every=7)
    assert base.hash() == gpu.hash()
    assert base.hash() != TrainConfig(steps=5, lr=0.01, key={"stage": "x"}, seed=1).hash()


def test_label_pool_serves_each_rank_its_rows_of_the_global_batch():
    from occ3d_lib.training.mopi import pooled_batch_fn

    class Split:
        def batch(self, idx):
            return {"image": torch.as_tensor(idx, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 2, 2)}

    n = 8  # 2 steps of 4 identities
    pool = {"images": torch.zeros(n, 2, 3, 2, 2, dtype=torch.uint8), "index": torch.arange(100, 100 + n),
            "label": torch.arange(n, dtype=torch.float32)[:, None].expand(-1, 257), "choice": torch.zeros(n, dtype=torch.long)}
    g = torch.Generator()
    rows = {r: [pooled_batch_fn(pool, Split(), 4, (r, 2))(step, g)["index"].tolist() for step in (0, 1)] for r in (0, 1)}
    assert rows == {0: [[100, 101], [104, 105]], 1: [[102, 103], [106, 107]]}
    whole = pooled_batch_fn(pool, Split(), 4)(1, g)
    assert whole["index"].tolist() == [104, 105, 106, 107] and whole["clean"][:, 0, 0, 0].tolist() == [104, 105, 106, 107]
    with pytest.raises(IndexError, match="step 2 is past its end"):
        pooled_batch_fn(pool, Split(), 4, (1, 2))(2, g)
    with pytest.raises(distributed.LaunchError, match="mopi_batch_identities 4 is not divisible by the world size 3"):
        pooled_batch_fn(pool, Split(), 4, (0, 3))
