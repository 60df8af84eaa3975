"""Benchmark: the pure-PyTorch renderer vs one ResNet training step on the same batch.

Times :class:`occ3d_lib.render.renderer.FaceRenderer` (Eqs. 3-5 + rasterisation + interpolation,
forward and forward+backward) and :func:`occ3d_lib.render.raster.rasterize` alone, against
torchvision ResNets with a 257-output fc (one training step = forward + backward + Adam):

* 32 images at 64 px, light mesh vs a ResNet-18 step (the course profile);
* 8 images at 224 px, dense mesh vs a ResNet-50 step (the paper profile);
* 1 image at 224 px, dense mesh vs one ResNet-50 forward (targets: render forward
  <= 0.5x, forward+backward <= 1x);
* synthetic-dataset generation (:func:`occ3d_lib.data.synthetic.generate_split`, 512 images at the
  course resolution) extrapolated to the course profile's size (target: < 10 % of the course run);
* PyTorch3D beside occ3d (``FaceRenderer(backend="pytorch3d")`` vs ``"occ3d"``, same camera, same
  output): on the CPU one image of the light mesh at 64 px (PyTorch3D's CPU rasteriser is the naive
  one, so the mesh and image stay small), and on CUDA when a GPU is present 8 images of the dense
  mesh at 224 px (the paper's size), where PyTorch3D's binned coarse-to-fine rasteriser runs. Without
  CUDA the GPU part prints that it was skipped.

The mesh is the procedural face model when ``occ3d_lib.face.procedural`` exists, else a
face-sized hemisphere grid of similar size (light ~8k, dense ~70k triangles). Prints the
ratios measured in this run; no assertions. Run with one thread for fair ratios:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_raster.py`` (notebook 01, section 4);
``--pytorch3d`` runs only the PyTorch3D comparison (notebook 01, section 5).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time  # noqa: E402

from occ3d_lib.face.coeffs import N_EXP, N_ID, N_TEX, join_coeffs  # noqa: E402
from occ3d_lib.face.facemodel import FaceModel, build_point_buf  # noqa: E402
from occ3d_lib.render.raster import rasterize  # noqa: E402
from occ3d_lib.render.renderer import FaceRenderer  # noqa: E402


def hemisphere_model(n: int) -> FaceModel:
    """An (n+1)^2-vertex grid on a face-sized cap facing +z, wound outward; ~2 n^2 triangles."""
    t = torch.linspace(-0.85, 0.85, n + 1)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    zz = (1.2 ** 2 - xx ** 2 - yy ** 2).clamp_min(0).sqrt() - 0.6
    verts = torch.stack([xx, yy, zz], -1).reshape(-1, 3)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    a = (i * (n + 1) + j).reshape(-1)
    b, c, d = a + 1, a + n + 2, a + n + 1
    tri = torch.cat([torch.stack([a, b, c], 1), torch.stack([a, c, d], 1)])
    nv = verts.shape[0]
    g = torch.Generator().manual_seed(0)

    def smooth_base(k: int, amp: float) -> torch.Tensor:  # low-frequency displacement fields, like a PCA model's
        freq = torch.randn(k, 3, 2, generator=g) * 2
        phase = torch.rand(k, 3, generator=g) * 2 * math.pi
        f = torch.cos(torch.einsum("nd,kcd->nkc", verts[:, :2], freq) + phase)  # (N, K, 3)
        return (amp * f / (1 + torch.arange(k)).view(1, k, 1).sqrt()).permute(0, 2, 1).reshape(3 * nv, k)

    return FaceModel(mean_shape=verts, id_base=smooth_base(N_ID, 0.02), exp_base=smooth_base(N_EXP, 0.01),
                     mean_tex=torch.full((nv, 3), 150.0), tex_base=smooth_base(N_TEX, 20.0),
                     tri=tri, point_buf=build_point_buf(tri, nv), keypoints=torch.arange(68) * (nv // 68),
                     skin_mask=torch.ones(nv), info={"name": f"hemisphere-{n}"})


def face_model(kind: str) -> FaceModel:
    if "--hemisphere" not in sys.argv:
        try:
            from occ3d_lib.face.procedural import load_or_build_procedural

            return load_or_build_procedural(kind, 0)
        except Exception as e:  # noqa: BLE001 - the procedural model may be missing or broken
            print(f"(procedural face model unavailable: {type(e).__name__}: {e}; using a hemisphere grid)")
    return hemisphere_model(62 if kind == "light" else 188)


def coeffs(batch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return join_coeffs(id=torch.randn(batch, N_ID, generator=g), exp=torch.randn(batch, N_EXP, generator=g) * 0.5,
                       tex=torch.randn(batch, N_TEX, generator=g),
                       angle=(torch.rand(batch, 3, generator=g) - 0.5) * torch.tensor([0.5, 1.6, 0.4]),
                       gamma=torch.randn(batch, 27, generator=g) * 0.1)


def train_step_fn(arch: str, x: torch.Tensor):
    net = getattr(torchvision.models, arch)(weights=None, num_classes=257)
    opt = torch.optim.Adam(net.parameters(), 1e-4)

    def step():
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()

    return step, net


def render_fns(model: FaceModel, batch: int, size: int):
    r = FaceRenderer(model, size)
    c = coeffs(batch)
    bg = torch.full((batch, 3, size, size), 0.3)

    def fwd():
        with torch.no_grad():
            r(c, bg)

    def fwd_bwd():
        cc = c.clone().requires_grad_(True)
        r(cc, bg).image.mean().backward()

    screen = r.geometry(c)["screen"].detach()

    def rast():
        rasterize(screen, model.tri, size)

    return fwd, fwd_bwd, rast


def bench(label: str, kind: str, batch: int, size: int, arch: str, reps: int) -> None:
    model = face_model(kind)
    fwd, fwd_bwd, rast = render_fns(model, batch, size)
    x = torch.rand(batch, 3, size, size)
    step, _ = train_step_fn(arch, x)
    t_r, t_f, t_fb = median_time(rast, reps), median_time(fwd, reps), median_time(fwd_bwd, reps)
    t_step = median_time(step, max(2, reps // 3))
    print(f"{label}: {model.info.get('name')} ({model.n_vertices} vertices, {model.n_triangles} triangles), "
          f"batch {batch} at {size} px, {torch.get_num_threads()} thread(s)")
    print(f"  rasterize only        {1e3 * t_r:8.1f} ms   ratio to {arch} step {t_r / t_step:.3f}")
    print(f"  render forward        {1e3 * t_f:8.1f} ms   ratio to {arch} step {t_f / t_step:.3f}")
    print(f"  render fwd+bwd        {1e3 * t_fb:8.1f} ms   ratio to {arch} step {t_fb / t_step:.3f}")
    print(f"  {arch} train step      {1e3 * t_step:8.1f} ms")


def bench_single_dense(reps: int) -> None:
    model = face_model("dense")
    fwd, fwd_bwd, _ = render_fns(model, 1, 224)
    net = torchvision.models.resnet50(weights=None, num_classes=257).eval()
    x = torch.rand(1, 3, 224, 224)

    def net_fwd():
        with torch.no_grad():
            net(x)

    t_f, t_fb, t_n = median_time(fwd, reps), median_time(fwd_bwd, reps), median_time(net_fwd, reps)
    print(f"single 224 px image, dense mesh ({model.n_triangles} triangles) vs one ResNet-50 forward:")
    print(f"  render forward {1e3 * t_f:.1f} ms = {t_f / t_n:.3f}x (target <= 0.5x); "
          f"fwd+bwd {1e3 * t_fb:.1f} ms = {t_fb / t_n:.3f}x (target <= 1x); resnet50 fwd {1e3 * t_n:.1f} ms")


def _synced(fn, cuda: bool):
    def run():
        fn()
        if cuda:
            torch.cuda.synchronize()
    return run


def bench_backends(label: str, kind: str, batch: int, size: int, device: str, reps: int) -> None:
    """occ3d's rasteriser and PyTorch3D's on the same renders: times and the PyTorch3D / occ3d ratios."""
    from occ3d_lib.render.renderer import rasterize_vertices

    model = face_model(kind).to(device)
    c = coeffs(batch).to(device)
    bg = torch.full((batch, 3, size, size), 0.3, device=device)
    verts = FaceRenderer(model, size).geometry(c)["vertices"].detach()
    cuda = device.startswith("cuda")
    t: dict[str, dict[str, float]] = {}
    for backend in ("occ3d", "pytorch3d"):
        r = FaceRenderer(model, size, backend=backend)

        def fwd(r: FaceRenderer = r) -> None:
            with torch.no_grad():
                r(c, bg)

        def fwd_bwd(r: FaceRenderer = r) -> None:
            cc = c.clone().requires_grad_(True)
            r(cc, bg).image.mean().backward()

        def rast(backend: str = backend) -> None:
            with torch.no_grad():
                rasterize_vertices(verts, model.tri, size, backend=backend)

        t[backend] = {name: median_time(_synced(fn, cuda), reps) for name, fn in
                      (("rasterize", rast), ("forward", fwd), ("fwd+bwd", fwd_bwd))}
    print(f"PyTorch3D vs occ3d, {label}: {model.info.get('name')} {kind} mesh ({model.n_triangles} triangles), "
          f"batch {batch} at {size} px on {device}, {torch.get_num_threads()} thread(s)")
    for name in ("rasterize", "forward", "fwd+bwd"):
        a, b = t["occ3d"][name], t["pytorch3d"][name]
        print(f"  {name:<10} occ3d {1e3 * a:9.1f} ms   pytorch3d {1e3 * b:9.1f} ms   pytorch3d / occ3d = {b / a:8.2f}")


def bench_pytorch3d(quick: bool) -> None:
    """The PyTorch3D comparison: CPU on the light mesh; CUDA at the paper's size when a GPU is present."""
    bench_backends("CPU", "light", 1, 64, "cpu", reps=2 if quick else 3)
    if torch.cuda.is_available():
        bench_backends("CUDA", "dense", 8, 224, "cuda", reps=5 if quick else 20)
    else:
        print("PyTorch3D vs occ3d, CUDA: skipped (no CUDA device here); on a GPU this compares 8 images of the "
              "dense mesh at 224 px")


def bench_dataset(n_ids: int = 64) -> None:
    from occ3d_lib.core.config import get_profile
    from occ3d_lib.data.synthetic import generate_split

    p = get_profile("course")
    model = face_model(p.mesh)
    t = time.perf_counter()
    generate_split(model, n_ids, p.views_per_identity, p.image_size, torch.Generator().manual_seed(0))
    dt = time.perf_counter() - t
    n = n_ids * p.views_per_identity
    total = (p.n_train_identities + p.n_val_identities + p.n_test_identities) * p.views_per_identity
    print(f"dataset: {n} images at {p.image_size} px in {dt:.1f} s -> course profile's {total} images "
          f"~ {dt * total / n:.0f} s")


if __name__ == "__main__":
    torch.manual_seed(0)
    quick = "--quick" in sys.argv
    if "--pytorch3d" in sys.argv:
        bench_pytorch3d(quick)
        sys.exit(0)
    bench("course", "light", 32, 64, "resnet18", reps=3 if quick else 7)
    bench_single_dense(reps=3 if quick else 5)
    bench_dataset(32 if quick else 64)
    bench("paper", "dense", 8, 224, "resnet50", reps=2 if quick else 4)
    bench_pytorch3d(quick)
