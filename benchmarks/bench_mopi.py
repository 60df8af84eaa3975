"""MOPI step time vs 7*B bare backbone forward+backward passes (issue 6 speed target: ratio <= 3)."""
import time, torch
from occ3d_lib.context import make_context
from occ3d_lib import mopi, embedder as E
from occ3d_lib.models import ReconNet, MultiOcclusionNet
torch.set_num_threads(1)
ctx = make_context("course", None, progress=False)
P = ctx.profile
B, W = P.mopi_batch_identities, P.n_occlusion_variants
torch.manual_seed(0)
sopi = ReconNet(P.backbone).eval()
emb = E.freeze_embedder(E.FaceEmbedder(input_size=E.embedder_input_size(P)))
split = ctx.dataset.train
bfn = mopi.mopi_batch_fn(split, sopi, emb, ctx.renderer, B, W)
net = MultiOcclusionNet(P.backbone, n_heads=W).init_from_reconnet(sopi)
opt = torch.optim.Adam(net.parameters(), 1e-4)
sfn = mopi.mopi_step_fn(ctx.renderer, emb, 0.2, 0.8, freeze_bn=True)
bare = ReconNet(P.backbone); opt2 = torch.optim.Adam(bare.parameters(), 1e-4)
g = torch.Generator().manual_seed(0)
def t_batch():
    t = time.perf_counter(); b = bfn(0, g); return time.perf_counter() - t, b
def t_step(b):
    t = time.perf_counter(); terms = sfn(net, b); opt.zero_grad(); terms["loss"].backward(); opt.step(); return time.perf_counter() - t
def t_bare(x):
    t = time.perf_counter(); y = bare(x); opt2.zero_grad(); y.square().mean().backward(); opt2.step(); return time.perf_counter() - t
_, b = t_batch(); t_step(b); t_bare(b["images"].flatten(0, 1))
tb, ts, tr = [], [], []
for i in range(5):
    a, b = t_batch(); tb.append(a); ts.append(t_step(b)); tr.append(t_bare(b["images"].flatten(0, 1)))
med = lambda v: sorted(v)[len(v) // 2]
print(f"B={B} identities x W={W}: batch_fn (occlusion + SOPI labels) {med(tb):.3f}s, step_fn fwd+bwd {med(ts):.3f}s, "
      f"bare backbone fwd+bwd on {B*W} images {med(tr):.3f}s")
print(f"ratio MOPI step (batch+step) / bare = {(med(tb)+med(ts))/med(tr):.2f}; step_fn only / bare = {med(ts)/med(tr):.2f}")
