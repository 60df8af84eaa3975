"""GPU check: a short paper-profile teacher and SOPI run on one CUDA device, and the rasteriser on CUDA vs CPU.

Reports, for each stage, the training speed (steps per second, measured between the first and the
last logged step so that start-up and cuDNN autotuning are left out), the peak GPU memory, and the
time the paper profile's full step count would take at that speed; then renders the same
coefficients on the CPU and on the GPU and reports how far apart the images, masks and landmarks
are. Skips cleanly (exit code 0) where there is no CUDA device. Usage::

    python benchmarks/bench_gpu.py [--steps 60] [--identities 16] [--json out.json]

The paper profile is used as it is except: a small training split (``--identities`` identities x
8 views, enough for speed), few steps, and no ImageNet initialisation (the weights may not be in
``$TORCH_HOME``; speed does not depend on them). Everything is written to a temporary run folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch


def _speed(history: list[dict[str, float]]) -> float:
    """Steps per second between the first and the last logged step."""
    if len(history) < 2:
        raise ValueError("need at least two logged steps to measure a speed (raise --steps)")
    a, b = history[0], history[-1]
    return (b["step"] - a["step"]) / max(b["seconds"] - a["seconds"], 1e-9)


def rasteriser_agreement(face_model: Any, coeffs: torch.Tensor, image_size: int,
                         device: str = "cuda") -> dict[str, float]:
    """Render ``coeffs`` (B, 257) on the CPU and on ``device``: max |image difference| where both face
    masks cover the pixel, fraction of pixels whose face mask differs, max landmark difference (px)."""
    from occ3d_lib.render.renderer import FaceRenderer

    cpu = FaceRenderer(face_model, image_size)(coeffs.cpu())
    dev = FaceRenderer(face_model, image_size).to(device)(coeffs.to(device))
    m_cpu, m_dev = cpu.mask[:, 0] > 0.5, dev.mask[:, 0].cpu() > 0.5
    both = m_cpu & m_dev
    diff = (cpu.image - dev.image.cpu()).abs().amax(1)  # (B, S, S)
    return {"image_max_abs_diff_inside_both_masks": float(diff[both].max()) if bool(both.any()) else 0.0,
            "mask_disagreement_fraction": float((m_cpu != m_dev).float().mean()),
            "landmark_max_diff_px": float((cpu.landmarks - dev.landmarks.cpu()).abs().max())}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; returns the exit code (0 also when skipped for want of CUDA)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="training steps per stage (default 60)")
    ap.add_argument("--identities", type=int, default=16, help="training identities (x 8 views)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # "cpu": a dry run of the script
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("bench_gpu: skipped: no CUDA device here")
        return 0
    from occ3d_lib.core.config import get_profile
    from occ3d_lib.data.context import make_context
    from occ3d_lib.training import stages

    paper = get_profile("paper")
    log_every = max(1, args.steps // 6)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if cuda else args.device, "torch": torch.__version__,
                               "steps": args.steps, "profile": "paper"}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = make_context("paper", tmp, device=args.device, progress=False, imagenet_init=False,
                           n_train_identities=args.identities, n_val_identities=2, n_test_identities=2,
                           teacher_steps=args.steps, sopi_steps=args.steps, checkpoint_every=args.steps,
                           log_every=log_every)
        t0 = time.time()
        _ = ctx.dataset  # built on the CPU (cached under data/cache for the next run)
        results["dataset_seconds"] = round(time.time() - t0, 1)
        for name, full_steps in (("teacher", paper.teacher_steps), ("sopi", paper.sopi_steps)):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            model = stages.train_teacher(ctx) if name == "teacher" else stages.train_sopi(ctx)
            sps = _speed(stages.stage_history(model))
            results[name] = {"steps_per_second": round(sps, 3),
                             "batch": getattr(ctx.profile, f"{name}_batch_size"),
                             "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
                             "paper_steps": full_steps, "paper_hours_one_gpu": round(full_steps / sps / 3600, 1)}
        coeffs = ctx.dataset.train.batch(list(range(min(8, len(ctx.dataset.train)))))["coeffs"]
        results["rasteriser_cuda_vs_cpu"] = rasteriser_agreement(ctx.face_model, coeffs, ctx.profile.image_size,
                                                                 args.device)
    print(f"bench_gpu: {results['device']}, torch {results['torch']}, paper profile, {args.steps} steps per stage")
    print("| stage | batch | steps/s | peak GPU memory (GiB) | paper steps | hours on one GPU |")
    print("|---|---|---|---|---|---|")
    for name in ("teacher", "sopi"):
        r = results[name]
        print(f"| {name} | {r['batch']} | {r['steps_per_second']} | {r['peak_gpu_memory_gib']} | {r['paper_steps']} "
              f"| {r['paper_hours_one_gpu']} |")
    print("rasteriser CUDA vs CPU:", json.dumps(results["rasteriser_cuda_vs_cpu"]))
    if args.json:
        from occ3d_lib.core.artifacts import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
