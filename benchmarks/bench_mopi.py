"""Benchmark: a MOPI training step vs seven bare backbone forward+backward passes.

On the course profile's setting (procedural light mesh, 64x64 px, its trunk, B identities x 7
occluded images) times, as medians of a few repetitions in one run:
- bare: the trunk's trainee forward + backward + Adam step on the same B x 7 images (the unit);
- step: MOPI forward on the B x 7 images, render the 7 predictions of each identity and embed
  them (Eq. 7), label loss (Eq. 8), Eq. 9, backward, Adam step; and its two parts timed apart:
  - network: the 7-head network's forward, the label loss, backward and Adam step (no renders);
  - render + embed: Eq. 7's renders of the B x 7 predictions and FaceNet on them, forward and backward
    to the coefficients (a fixed cost that does not depend on the trunk), with FaceNet's BatchNorm folded
    into its convolutions and in the precision the training step runs it (``MopiSettings.embed_precision``:
    bfloat16 on a CPU with native bf16 arithmetic, float32 elsewhere), and for comparison unfolded in
    float32 and, where the step runs bf16, folded in float32 (and the whole step with it so; and the bare
    unit under bf16 autocast, to show whether bf16 would move the unit too);
- labels online: the batch function as an online run calls it (7 occlusions per identity, the
  frozen SOPI on the 7 images, render and embed its 7 predictions and the clean image, Eq. 8 pick);
- labels pooled: serving the same batch from the run's label pool (how the course run trains:
  the labels are selected once and shared by the three Table 7 variants).
Target: a MOPI step <= 3x the bare unit. Prints ratios measured in this run (the functions are timed in
interleaved rounds, so each sees the same load), the online one, the pooled one and the pool's cost
amortised over the three variants; no assertions.

Run: ``.venv/bin/python benchmarks/bench_mopi.py [--profile course] [--reps 5]``.
"""
from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import bench_args, interleaved_medians  # noqa: E402

from occ3d_lib.data.context import make_context  # noqa: E402
from occ3d_lib.nets.facenet import FaceEmbedder, fold_batchnorm  # noqa: E402
from occ3d_lib.nets.models import MultiOcclusionNet, ReconNet, batchnorm_eval, freeze  # noqa: E402
from occ3d_lib.training import embedder as E  # noqa: E402
from occ3d_lib.training import losses, mopi  # noqa: E402


def measure(profile: Any, reps: int) -> dict[str, Any]:
    """Median times (s) of the MOPI step and its label paths for ``profile`` (a name or a Profile)."""
    ctx = make_context(profile, None, progress=False)
    p = ctx.profile
    b, w = p.mopi_batch_identities, p.n_occlusion_variants
    torch.manual_seed(0)
    sopi = ReconNet(p.backbone).eval()
    emb = freeze(FaceEmbedder(input_size=E.embedder_input_size(p)))
    split = ctx.dataset.train
    online = mopi.mopi_batch_fn(split, sopi, emb, ctx.renderer, b, w)
    pool = mopi.build_label_pool(online, reps + 1, seed=0)
    pooled = mopi.pooled_batch_fn(pool, split, b)
    net = MultiOcclusionNet(p.backbone, n_heads=w).init_from_reconnet(sopi)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    folded = fold_batchnorm(emb)  # as train_mopi gives the step
    precision = mopi.resolve_embed_precision(mopi.MopiSettings().embed_precision)
    step_fn = mopi.mopi_step_fn(ctx.renderer, folded, 0.2, 0.8, freeze_bn=True, embed_precision=precision)
    bare = ReconNet(p.backbone)
    opt2 = torch.optim.Adam(bare.parameters(), 1e-4)
    g = torch.Generator().manual_seed(1)
    batch = pooled(0, g)
    flat = batch["images"].flatten(0, 1)

    def step_runner(fn: Callable[[Any, dict[str, Any]], dict[str, Any]]) -> Callable[[], None]:
        def run() -> None:
            terms = fn(net, batch)
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
        return run

    def bare_runner(bf16: bool) -> Callable[[], None]:
        def run() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = bare(flat)
            opt2.zero_grad()
            y.float().square().mean().backward()
            opt2.step()
        return run

    net2 = MultiOcclusionNet(p.backbone, n_heads=w).init_from_reconnet(sopi)
    opt3 = torch.optim.Adam(net2.parameters(), 1e-4)
    coeffs = net(batch["images"]).detach().flatten(0, 1)

    def run_network() -> None:
        batchnorm_eval(net2)  # as the step's freeze_bn
        loss = losses.label_loss(net2(batch["images"]).float(), batch["label"])
        opt3.zero_grad()
        loss.backward()
        opt3.step()

    def render_embed(embedder: torch.nn.Module, prec: str) -> Callable[[], None]:
        def run() -> None:
            v = coeffs.clone().requires_grad_(True)
            losses.perceptual_loss(mopi.render_embed(ctx.renderer, embedder, v, prec).view(b, w, -1)).backward()
        return run

    counter = itertools.count()
    fns = {"bare": bare_runner(False), "step": step_runner(step_fn), "network": run_network,
           "render_embed": render_embed(folded, precision), "render_embed_unfolded": render_embed(emb, "float32"),
           "online": lambda: online(0, g), "pooled": lambda: pooled(next(counter) % (reps + 1), g)}
    if precision != "float32":
        fns["render_embed_float32"] = render_embed(folded, "float32")
        fns["step_float32"] = step_runner(mopi.mopi_step_fn(ctx.renderer, folded, 0.2, 0.8, freeze_bn=True))
        fns["bare_bf16"] = bare_runner(True)  # is the trunk, too, cheaper in bf16? (then the unit would move)
    t = interleaved_medians(fns, reps)
    shared = t["step"] + t["pooled"] + t["online"] / 3
    return {"profile": p, "identities": b, "variants": w, "images": b * w, "precision": precision, **t,
            "pooled_shared": shared, "pooled_shared_ratio": shared / t["bare"]}


def main(argv: list[str] | None = None) -> None:
    a = bench_args(__doc__, argv)
    m = measure(a.profile, a.reps)
    p, b, w = m["profile"], m["identities"], m["variants"]
    t_bare, t_step, t_online, t_pooled = m["bare"], m["step"], m["online"], m["pooled"]
    print(f"profile {p.name}: {b} identities x {w} images, {p.image_size}px, {p.backbone}, "
          f"torch threads {torch.get_num_threads()}, CPU {torch.backends.cpu.get_cpu_capability()}, "
          f"Eq. 7's FaceNet in {m['precision']}")
    print(f"bare backbone fwd+bwd+step on {b * w} images: {t_bare * 1e3:.0f} ms (the unit)")
    print(f"MOPI step (fwd, 7 renders + embeddings, Eqs. 7-9, bwd, step): {t_step * 1e3:.0f} ms = {t_step / t_bare:.2f}x")
    print(f"  of which the 7-head network (fwd, Eq. 8, bwd, step): {m['network'] * 1e3:.0f} ms = "
          f"{m['network'] / t_bare:.2f}x")
    print(f"  of which Eq. 7's render + embed of {b * w} predictions (fwd + bwd): {m['render_embed'] * 1e3:.0f} ms = "
          f"{m['render_embed'] / t_bare:.2f}x (FaceNet's BatchNorm folded into its convolutions, in {m['precision']}, "
          f"as train_mopi runs it; unfolded in float32: {m['render_embed_unfolded'] * 1e3:.0f} ms = "
          f"{m['render_embed_unfolded'] / t_bare:.2f}x)")
    if "render_embed_float32" in m:
        print(f"  folded in float32 instead: {m['render_embed_float32'] * 1e3:.0f} ms = "
              f"{m['render_embed_float32'] / t_bare:.2f}x; the whole step with it in float32: "
              f"{m['step_float32'] * 1e3:.0f} ms = {m['step_float32'] / t_bare:.2f}x")
        print(f"  (the bare unit under bf16 autocast: {m['bare_bf16'] * 1e3:.0f} ms = {m['bare_bf16'] / t_bare:.2f}x; "
              "the unit stays float32, as the trunk trains)")
    print(f"labels online (occlusion, SOPI, renders, embeddings, Eq. 8 pick): {t_online * 1e3:.0f} ms = "
          f"{t_online / t_bare:.2f}x")
    print(f"labels from the pool: {t_pooled * 1e3:.1f} ms = {t_pooled / t_bare:.3f}x")
    print(f"whole step, labels online: {(t_step + t_online) / t_bare:.2f}x; pooled: {(t_step + t_pooled) / t_bare:.2f}x; "
          f"pooled with the pool's cost shared by the 3 Table 7 variants: "
          f"{(t_step + t_pooled + t_online / 3) / t_bare:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
