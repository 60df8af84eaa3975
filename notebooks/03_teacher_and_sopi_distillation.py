# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · The teacher and Single-Occlusion-per-Identity (SOPI) distillation
#
# The paper's first model (Sec. 3.1) is a *student that learns from a teacher who never saw an
# occluder*. The teacher is RNet, trained on clean faces. The trainee has the same architecture,
# sees the same faces **occluded** (partially, fully or not at all, at random) and is asked to
# output what the teacher says about the **clean** version of the image (Eq. 1). The teacher's
# weights are frozen (Eq. 2) and the loss is a plain squared error over the 257 coefficients
# (Eq. 6).
#
# **In this notebook you will**
# - build RNet (`ReconNet`): a ResNet trunk with seven zero-initialised 1x1 heads (257 outputs);
# - train the teacher on clean synthetic faces with RNet's weakly supervised losses through the
#   differentiable renderer of notebook 01 (plus a coefficient-supervision term we can afford
#   because synthetic faces have ground truth);
# - see the shared training loop that you can kill at any moment and resume;
# - measure how badly the teacher fails on the fixed occluded evaluation sets of notebook 02;
# - distil SOPI from teacher(clean) with Eq. 6 and check the paper's central claim;
# - compare the SE loss with L1 (the paper's Fig. 6 ablation).

# %% [markdown]
# ## Setup

# %%
import os

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from occ3d_lib.core import viz
from occ3d_lib.data.context import make_context
from occ3d_lib.evaluation.claims import claims_markdown, sopi_claims
from occ3d_lib.occlusion import occlude as occlusion
from occ3d_lib.training import stages

# %% [markdown]
# The next cell is tagged `parameters` (papermill and `make run` override it). `teacher` may be the path of a
# Deep3DFaceRecon `epoch_20.pth` to use the real RNet as the teacher (see `data/README.md`).

# %% tags=["parameters"]
profile = os.environ.get("OCC3D_PROFILE", "course")  # smoke | course | paper
run_dir = None  # default: runs/<profile>
face_model = "procedural"  # or the path of BFM_model_front.mat
dataset = "synthetic"
teacher = "train"  # or the path of a Deep3DFaceRecon epoch_20.pth
facenet = "synthetic"
seed = 0
coeff_weight = 1.0  # teacher: weight of the coefficient supervision term; 0 means RNet losses only
run_l1_ablation = True  # also train SOPI with L1 (Fig. 6)

# %%
ctx = make_context(profile, run_dir, face_model=face_model, dataset=dataset, teacher=teacher, facenet=facenet,
                   seed=seed, progress=os.environ.get("OCC3D_PROGRESS", "1") != "0")
P = ctx.profile
data = ctx.dataset  # built by notebook 01 (or here, cached) from the procedural face model
print(f"profile {P.name}: {P.image_size}px, backbone {P.backbone}, teacher {P.teacher_steps} steps, "
      f"SOPI {P.sopi_steps} steps; {len(data.train)} training images of {len(data.train.identities)} identities")

# %% [markdown]
# ## 1. RNet: a ResNet that outputs 257 numbers
#
# RNet (Deng et al. 2019) is a ResNet-50 whose classifier is replaced by seven 1x1 convolutions,
# one per coefficient group, concatenated to the 257-vector of notebook 01 (identity 80,
# expression 64, albedo 80, angles 3, light 27, translation 3). The heads start at **zero**, so
# an untrained network predicts the mean face, frontal, under ambient light: a sensible start.
# Its parameter names are exactly Deep3DFaceRecon's (`backbone.*`, `final_layers.0..6`), so a
# real `epoch_20.pth` loads key for key. Our CPU profiles use a ResNet-18 trunk; the `paper`
# profile uses ResNet-50.

# %%
net = stages.build_reconnet(P)
print(net.final_layers)
print(f"{sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters")
out = net(torch.rand(2, 3, P.image_size, P.image_size))
assert out.shape == (2, 257) and torch.all(out == 0)  # zero heads: the mean face

# %% [markdown]
# ## 2. Training the teacher on clean faces
#
# RNet is trained *weakly*: nobody tells it the coefficients; it renders what it predicted and
# compares with the photo. The terms (docs/facts.md §7, weights as Deep3DFaceRecon):
#
# - photometric: $1.92 \cdot \frac{1}{|M|}\sum_{i\in M} \lVert I_i - \hat I_i \rVert_2$ over the rendered face mask $M$;
# - landmarks: $1.6\cdot10^{-3} \cdot \frac{1}{68}\sum_k w_k \lVert q_k - \hat q_k\rVert^2$ (at 224-pixel scale, $w_k =
#   20$ for the nose and inner mouth);
# - regularisers on identity/expression/albedo coefficients, light colour and skin albedo.
#
# Synthetic faces have ground truth, so we add a **coefficient-supervision** term
# $\lambda_c \sum_g w_g \,\mathrm{mean}_{k\in g}(\hat\alpha_k - \alpha_k)^2$ (`coeff_weight` = $\lambda_c$).
# What it changes: weak supervision alone cannot tell identity from expression or albedo from light
# without many more steps than a laptop affords; with supervision the short course run converges.
# Set `coeff_weight = 0` to train RNet the paper's way (and give it many more steps).

# %%
t_settings = stages.TeacherSettings(coeff_weight=coeff_weight)
teacher_net = stages.get_teacher(ctx, t_settings)
history = stages.stage_history(teacher_net)
if history:
    viz.plot_history(history, keys=[k for k in ("loss", "photo", "landmark", "coeff") if k in history[-1]],
                     title="teacher training")
    plt.show()

# %% [markdown]
# ## 3. A training loop you can kill
#
# Every model of the series trains through `occ3d_lib.training.train.Trainer`. It is seeded (every batch comes
# from the trainer's own `torch.Generator`), writes a checkpoint (model, optimiser, step, generator
# state, the on-the-fly occluder's state, history) atomically every `checkpoint_every` steps, and
# resumes from it after a kill with the **same final weights** as an uninterrupted run
# (`tests/test_train.py` proves it). A NaN or inf in any loss term stops training with the step and
# the term's name. Interrupt the cell above and run it again: it continues where it stopped. When a
# run has finished, `final.pt` is reused and nothing is retrained.

# %%
for f in sorted(teacher_net.out_dir.iterdir()):
    print(f"{f.name:<22} {f.stat().st_size / 1e6:7.2f} MB")

# %% [markdown]
# ## 4. The teacher on clean faces
#
# The fixed evaluation sets of notebook 02 are built from **held-out identities** (the test split);
# every model of the series is measured on the very same images. The error is the 68-landmark mean
# Euclidean error (ME) in pixels at the paper's 224x224 scale. The **mean-face baseline** uses the
# *true* pose, light and translation with the mean identity and expression: it measures how much of
# the error is the face's shape.

# %%
eval_sets = occlusion.load_or_build_eval_sets(ctx, kinds=("none", "dsofi", "dhofi", "shofi"))
test = data.test
clean = eval_sets["none"]
idx = [int(i) for i in clean.params["indices"]][:8]
with torch.no_grad():
    pred = stages.predict_coeffs(teacher_net, clean.images[:8])
    rec = ctx.renderer(pred, background=clean.images[:8])
viz.image_grid(clean.images[:8], ncols=8, landmarks=rec.landmarks, landmarks_gt=test.batch(idx)["landmarks"],
               suptitle="clean inputs: teacher's landmarks (red) and the ground truth (green)")
viz.rows_grid({"input (clean)": clean.images[:8], "teacher": rec.image})
plt.show()

# %% [markdown]
# ### Where does the teacher's error come from?
#
# Swap one group of the teacher's coefficients for the ground truth and measure again
# (`stages.error_with_true_groups`). If the error is mostly pose, the *true pose* row drops to
# near zero; if it is mostly shape, the *true shape* row does. The mean-face baseline is the
# extreme case "true pose, no shape at all".

# %%
gt_clean = test.batch([int(i) for i in clean.params["indices"]])
pred_clean = stages.predict_coeffs(teacher_net, clean.images.float(), device=ctx.device)
parts = stages.error_with_true_groups(pred_clean, gt_clean["coeffs"], gt_clean["landmarks"], ctx.renderer)
display(Markdown("| teacher's prediction with ... | ME (px @224) |\n|---|---|\n" +
                 "\n".join(f"| {'nothing changed' if k == 'prediction' else 'true ' + k} | {v:.2f} |"
                            for k, v in parts.items())))

# %% [markdown]
# This notebook asks for a teacher at most one third of the baseline's error.
# On the course budget (ResNet-18, 64 px, 1200 steps on two CPU cores) it does not get there; what
# was tried, always measured on the **validation** identities, never on the test set:
#
# | teacher variant (course profile) | validation ME | mean face at true pose |
# |---|---|---|
# | constant learning rate, 600 steps | 5.32 | 4.25 |
# | cosine decay, 600 steps | 4.21 | 4.25 |
# | cosine decay, landmark weight x10, 600 steps | 4.77 | 4.25 |
# | cosine decay, 1200 steps (the course default) | 3.44 (train 3.24) | 4.24 |
# | no max-pool in the stem (4x4 final feature map), 1200 steps | 4.51 | 4.24 |
#
# The error on training faces is close to the error on held-out faces, so the teacher underfits
# rather than overfits, and in the course run the swap table above shows no single group that
# carries most of it (no swap, not even true pose or true shape, removes more than about a quarter of it): a
# longer run, a larger input and a larger network (the paper profile: 224 px, ResNet-50, 200K
# steps) are what it needs. Exercise 5 asks you to measure one of them.

# %% [markdown]
# ## 5. The teacher under occlusion
#
# Now the same faces behind the paper's square occluders (DSOFI: two slight squares, DHOFI: two
# heavy squares, SHOFI: one heavy square; definitions in notebook 02). A network that never saw an
# occluder reads the square *as part of the face* and bends pose, shape and colour to explain it.

# %%
kinds = ["dsofi", "dhofi", "shofi"]
rows = {}
for k in kinds:
    x = eval_sets[k].images[:8]
    with torch.no_grad():
        r = ctx.renderer(stages.predict_coeffs(teacher_net, x), background=x)
    rows[k.upper()] = x
    rows[f"teacher on {k.upper()}"] = r.image
viz.rows_grid(rows)
plt.show()

# %% [markdown]
# ## 6. SOPI: distilling from teacher(clean) (Eqs. 1, 2, 6)
#
# For a training image $I$ and its occluded version $\tilde I$ (partially, fully or not occluded,
# drawn at random by `occlusion.TrainingOccluder`), the frozen teacher gives the label
# $y = T(I)$ (Eq. 2) and the trainee $S$ minimises the SE loss of Eq. 6,
#
# $$L_{SE} = \frac{1}{M}\sum_{m=1}^{M}\big(S(\tilde I)_m - T(I)_m\big)^2,\qquad M = 257.$$
#
# The teacher's clean outputs are computed once for the whole training split (they are Eq. 1's
# labels). The paper does not say how the trainee is initialised; on a CPU budget we start it from
# the teacher's weights, so it begins by reproducing the teacher on clean faces and only has to
# learn to ignore occluders (`stages.SopiSettings(init="scratch")` is the alternative).

# %%
sopi_net = stages.get_sopi(ctx, stages.SopiSettings(loss="se"), teacher=teacher_net)
viz.plot_history(stages.stage_history(sopi_net), keys=["loss"], title="SOPI (SE loss, Eq. 6)")
plt.show()

# %% [markdown]
# **What SOPI sees, and for how long.** The paper occludes its training faces "partially or fully
# with arbitrary pixel values" and compares on squares. Our occluder draws *partial* kinds
# uniformly from the 18 of notebook 02, so the three square kinds would be only a sixth of them;
# the default mix (`stages.SOPI_TRAINING_MIX`) gives each square kind its own 10 %. Both choices,
# the mix and the course's 7200 steps, were made on the **validation** identities (ME in px @224,
# the course teacher; ratio to SOPI's clean error in brackets):
#
# | SOPI variant | clean | DSOFI | DHOFI | SHOFI | random patterns |
# |---|---|---|---|---|---|
# | 1200 steps, uniform partial kinds | 3.76 | 5.25 (1.40) | 6.76 (1.80) | 6.38 (1.70) | 5.54 |
# | 1200 steps, square-heavy mix | 3.83 | 5.16 (1.35) | 6.43 (1.68) | 6.18 (1.61) | 5.50 |
# | 3600 steps, uniform partial kinds | 3.65 | 4.75 (1.30) | 5.88 (1.61) | 5.63 (1.54) | 4.96 |
# | 3600 steps, square-heavy mix | 3.67 | 4.62 (1.26) | 5.58 (1.52) | 5.46 (1.49) | 4.91 |
# | 7200 steps, square-heavy mix (the course default) | 3.52 | 4.30 (1.22) | 5.11 (1.45) | 4.93 (1.40) | 4.52 |
#
# Longer training helps every kind and keeps the clean error; the mix moves the squares' error
# down at no cost elsewhere.

# %% [markdown]
# ## 7. Does the claim hold?
#
# The paper's central claim, in the numbers this run can check (held-out identities, the same
# fixed occluded images for every model): the teacher is far better than the mean face on clean
# faces, fails under heavy occlusion, and the SOPI trainee keeps close to its clean accuracy under
# occlusion while staying as good as the teacher on clean faces.

# %%
models = {"teacher": teacher_net, "sopi": sopi_net}
me = stages.landmark_me_by_kind(models, eval_sets, test, ctx.renderer, device=ctx.device)
table = ["| model | clean | DSOFI | DHOFI | SHOFI |", "|---|---|---|---|---|"]
for m, row in me.items():
    table.append(f"| {m} | " + " | ".join(f"{row.get(k, float('nan')):.2f}" for k in ("clean", *kinds)) + " |")
display(Markdown("Landmark ME (pixels at 224x224), held-out identities. *zero*: all-zero coefficients (mean "
                 "face, frontal, centred: an untrained RNet); *baseline*: mean face at the **true** pose, "
                 "light and position\n\n" + "\n".join(table)))
claims = sopi_claims(me)
display(Markdown(claims_markdown(claims)))
if P.name == "smoke":
    print("smoke profile: a few steps only, the claims are not expected to hold here (run the course profile)")

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
names = ["clean", *kinds]
for j, m in enumerate(["baseline", "teacher", "sopi"]):
    ax.bar([i + 0.27 * (j - 1) for i in range(len(names))], [me[m].get(k, float("nan")) for k in names],
           width=0.27, label=m)
ax.set_xticks(range(len(names)), [n.upper() if n != "clean" else n for n in names])
ax.set_ylabel("landmark ME (px @224)")
ax.legend()
plt.show()

# %% [markdown]
# ### Side by side (the paper's Fig. 2)
#
# The same six held-out faces, clean and under each square kind; below each input, the teacher's and
# SOPI's reconstructions rendered over it. Watch the teacher's face bend, darken or take the
# occluder's colour ("ghost-like faces") where SOPI's stays a face.

# %%
rows = {}
for k in ["none", *kinds]:
    x = eval_sets[k].images[:6]
    label = "clean" if k == "none" else k.upper()
    rows[label] = x
    for name, net_ in models.items():
        with torch.no_grad():
            rows[f"{name} on {label}"] = ctx.renderer(stages.predict_coeffs(net_, x), background=x).image
viz.rows_grid(rows)
plt.show()

# %% [markdown]
# ### Does the occluder's colour leak into the skin? (the paper's Fig. 3)
#
# One face, one SHOFI square from one seed, six colours: only the colour changes (the occlusion
# module draws the geometry before the colour). Below, each model's reconstruction on a black
# background, so you see the skin tone it inferred. The number is the spread of the reconstructed
# mean skin albedo over the six colours, in 8-bit levels (0 = perfectly invariant), with a bootstrap
# interval over the evaluation faces (`evaluation.colour_invariance`; notebook 05 reports it for
# every model).

# %%
from occ3d_lib.evaluation import evaluate as evaluation

clean_b = test.batch([int(i) for i in clean.params["indices"]])
evaluation.colour_grid(models, clean_b["image"][0], clean_b["landmarks"][0], ctx.renderer, seed=P.seed)
plt.show()
n_ci = min(len(clean_b["image"]), 32)
ci = evaluation.colour_invariance(models, clean_b["image"][:n_ci], clean_b["landmarks"][:n_ci], ctx.renderer,
                                  seed=P.seed, bootstrap=min(P.bootstrap, 200), device=ctx.device)
for name, d in ci["models"].items():
    print(f"{name:8s} skin-tone spread over occluder colours: {d['spread']['mean']:5.2f} "
          f"[{d['spread']['lo']:.2f}, {d['spread']['hi']:.2f}] levels")

# %% [markdown]
# ## 8. SE versus L1 (the paper's Fig. 6)
#
# The paper reports that the squared error works better than L1 for distillation. Both losses have
# their minimum at the teacher's output; L1's gradient has constant size, SE's shrinks as the
# trainee approaches the label. Same data, same steps, same seed; only the loss differs.

# %%
if run_l1_ablation:
    sopi_l1 = stages.get_sopi(ctx, stages.SopiSettings(loss="l1"), teacher=teacher_net)
    me_l1 = stages.landmark_me_by_kind({"sopi (L1)": sopi_l1}, eval_sets, test, ctx.renderer, device=ctx.device)
    rows = ["| loss | clean | DSOFI | DHOFI | SHOFI |", "|---|---|---|---|---|"]
    for name, row in (("SE (Eq. 6)", me["sopi"]), ("L1", me_l1["sopi (L1)"])):
        rows.append(f"| {name} | " + " | ".join(f"{row[k]:.2f}" for k in ("clean", *kinds)) + " |")
    display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Summary
#
# - RNet maps an image to the 257 coefficients of notebook 01; trained only on clean faces it is
#   accurate on clean faces and **fails under occlusion**: it explains the occluder with the face.
# - SOPI keeps the teacher's architecture, sees occluded images and regresses teacher(clean) with
#   the SE loss of Eq. 6; the occluder becomes something to ignore.
# - The training loop is seeded, checkpointed atomically and resumable with identical results;
#   every later model (embedder, MOPI) uses it.
# - Next: notebook 04 trains the Multi-Occlusion-per-Identity model on top of SOPI.
#
# ## Exercises
#
# 1. Set `coeff_weight = 0` (RNet's weak supervision only) and compare the teacher's clean ME and
#    its loss curves. Which coefficients does it get wrong?
# 2. Change the SOPI occlusion mix (`stages.SopiSettings(mix=...)`) to only squares. Does SOPI
#    still handle the natural occluders of notebook 02?
# 3. Train SOPI from scratch (`init="scratch"`) with the same number of steps. How much of SOPI's
#    accuracy comes from starting at the teacher?
# 4. Kill the SOPI training cell half way and re-run it. Check in `history.json` that no step was
#    repeated or lost.
# 5. Train the teacher twice as long (add `teacher_steps=2400` to the `make_context` call) and fill
#    in one more row of the table in section 4, measured on `data.val`. How does the validation
#    error scale with the steps?
