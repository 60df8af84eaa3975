"""Benchmark: teacher and SOPI training steps vs the bare trainee forward+backward.

On the course profile's setting (procedural light mesh, 64x64 px, batch 32, ResNet-18) times,
as medians of a few repetitions in one run:
- bare: trainee forward + backward + Adam step on a batch (the unit);
- teacher step: forward, render (Eq. 3-5), RNet losses + coefficient supervision, backward, step;
- SOPI step as trained here: batch from the dataset, on-the-fly occlusion, label lookup (teacher
  outputs cached once per training image, Eq. 1), trainee forward/backward/step;
- SOPI step with the teacher forward done every step instead of cached (for comparison).
Target: SOPI step <= 1.5x bare. Prints ratios measured in this run; no assertions.

Run: ``.venv/bin/python benchmarks/bench_stages.py [--profile course] [--reps 5]``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import bench_args, median_time  # noqa: E402

from occ3d_lib.core.config import get_profile  # noqa: E402
from occ3d_lib.data import synthetic as datasets  # noqa: E402
from occ3d_lib.face.procedural import load_or_build_procedural  # noqa: E402
from occ3d_lib.occlusion.apply import TrainingOccluder  # noqa: E402
from occ3d_lib.render.renderer import FaceRenderer  # noqa: E402
from occ3d_lib.training import losses, stages


def main(argv: list[str] | None = None) -> None:
    a = bench_args(__doc__, argv, extra=[("--no-mopi", "skip the MOPI step (benchmarks/bench_mopi.py)")])
    p = get_profile(a.profile)
    model = load_or_build_procedural(p.mesh)
    r = FaceRenderer(model, p.image_size)
    g = torch.Generator().manual_seed(0)
    n = p.sopi_batch_size
    ids, tex = datasets.sample_identities(4 * n, model, g)
    c = datasets.sample_views(ids, tex, model, g)
    with torch.no_grad():
        out = r(c, datasets.random_backgrounds(4 * n, p.image_size, g))

    class Split:  # the dataset interface the stages use, in memory
        def __len__(self):
            return 4 * n

        def batch(self, idx):
            idx = torch.as_tensor(idx)
            return {"image": out.image[idx], "landmarks": out.landmarks[idx], "coeffs": c[idx]}

    split = Split()
    batch_fn = stages.random_batches(split, n)
    teacher = stages.freeze(stages.make_reconnet(p))
    labels = torch.randn(4 * n, 257) * 0.1
    trainee = stages.make_reconnet(p)
    opt = torch.optim.Adam(trainee.parameters(), 1e-4)
    occ = TrainingOccluder(seed=0)
    b0 = batch_fn(0, g)

    def bare():
        loss = trainee(b0["image"]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def teacher_step_with(photometric: bool):
        t_step = stages.teacher_step_fn(r, stages.TeacherSettings(photometric=photometric))

        def teacher_step():
            loss = t_step(trainee, b0)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return teacher_step

    s_step = stages.sopi_step_fn(labels, occ, "se")

    def sopi_step():
        loss = s_step(trainee, batch_fn(0, g))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sopi_live_teacher():
        b = batch_fn(0, g)
        with torch.no_grad():
            target = teacher(b["image"])
        x = occ(b["image"], landmarks=b["landmarks"]).images
        loss = losses.se_loss(trainee(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    tb = median_time(bare, a.reps)
    chosen = "all RNet losses" if p.teacher_photometric else "no photometric"
    rows = [("bare trainee fwd+bwd+step", tb),
            (f"teacher step, {chosen} (the profile's)", median_time(teacher_step_with(p.teacher_photometric), a.reps)),
            (f"teacher step, {'no photometric' if p.teacher_photometric else 'all RNet losses'}",
             median_time(teacher_step_with(not p.teacher_photometric), a.reps)),
            ("SOPI step (cached labels)", median_time(sopi_step, a.reps)),
            ("SOPI step (teacher forward every step)", median_time(sopi_live_teacher, a.reps))]
    print(f"profile {p.name}: batch {n} at {p.image_size}px, {p.backbone}, {model.n_triangles} triangles, "
          f"{torch.get_num_threads()} threads")
    for name, t in rows:
        print(f"  {name:<48s} {t * 1000:8.1f} ms  {t / tb:5.2f}x bare  {n / t:6.1f} images/s")
    print("target: SOPI step <= 1.5x bare")
    if not a.no_mopi:
        from bench_mopi import measure

        m = measure(p, a.reps)
        print(f"  MOPI step, labels pooled, pool shared by the Table 7 variants: {m['pooled_shared'] * 1000:8.1f} ms  "
              f"{m['pooled_shared_ratio']:5.2f}x seven bare passes ({m['images']} images)  "
              f"{m['images'] / m['pooled_shared']:6.1f} images/s   (target <= 3x)")


if __name__ == "__main__":
    main()
