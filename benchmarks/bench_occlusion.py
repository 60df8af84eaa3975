"""Benchmark: on-the-fly occlusion vs one ResNet-50 training step on the same batch.

Occluding a batch with the random mix (``occlude(..., 'mixed', fill='random')``, i.e. a kind
drawn per sample from squares / full / patterns / natural occluders and a fill drawn from
solid / uniform / gaussian / texture) and with the default :class:`TrainingOccluder` is timed
against one training step of the trainee backbone (torchvision ``resnet50(weights=None)`` with a
257-output fc: forward + backward + Adam step) on the same batch at the same resolution:
32 images at 96x96 and 8 images at 224x224 (paper Sec. 4 uses 224x224). Target: occlusion
<= 5 % of the training step. Prints ratios measured in this run; no assertions.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_occlusion.py`` (threads follow
OMP_NUM_THREADS, default 2). Taught in notebook 02, section 8 (the training-time occluder).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time  # noqa: E402

from occ3d_lib.occlusion.apply import TrainingOccluder, occlude  # noqa: E402
from occ3d_lib.occlusion.kinds import canonical_landmarks  # noqa: E402

TARGET = 0.05


def jittered_landmarks(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Canonical frontal landmarks with random scale, roll and shift. -> (n, 68, 2)."""
    base = canonical_landmarks(size)
    c = base.mean(0)
    sc = 0.9 + 0.2 * torch.rand(n, 1, 1, generator=g)
    a = (torch.rand(n, generator=g) - 0.5) * 0.3
    rot = torch.stack([torch.stack([a.cos(), -a.sin()], 1), torch.stack([a.sin(), a.cos()], 1)], 1)
    shift = (torch.rand(n, 1, 2, generator=g) - 0.5) * 0.08 * size
    return ((base - c)[None] * sc) @ rot.transpose(1, 2) + c + shift


def bench(batch: int, size: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    lm = jittered_landmarks(batch, size, g)

    gen = torch.Generator().manual_seed(1)
    t_mixed = median_time(lambda: occlude(x, "mixed", gen, lm, fill="random"), reps=20)
    occ = TrainingOccluder(seed=2)
    t_train_occ = median_time(lambda: occ(x, lm), reps=20)

    model = torchvision.models.resnet50(weights=None, num_classes=257)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    target = torch.randn(batch, 257, generator=g)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = (model(x) - target).square().mean()
        loss.backward()
        opt.step()

    t_step = median_time(step, reps=3, warmup=1)
    print(f"batch {batch} at {size}x{size}: ResNet-50 train step {t_step * 1e3:8.1f} ms")
    for name, t in (("occlude(mixed, fill=random)", t_mixed), ("TrainingOccluder()", t_train_occ)):
        ratio = t / t_step
        verdict = "meets" if ratio <= TARGET else "MISSES"
        print(f"  {name:30s} {t * 1e3:7.2f} ms = {ratio:6.2%} of the step ({verdict} the <= {TARGET:.0%} target)")


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()} (OMP_NUM_THREADS), CPU")
    bench(32, 96)
    bench(8, 224)


if __name__ == "__main__":
    main()
