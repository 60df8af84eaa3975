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
# # 02 · Occlusion synthesis
#
# The paper's third contribution is its **artificial-occlusion dataset** (Sec. 1 item 3, Sec. 4):
# faces partially or fully covered by squares, random patterns and natural-looking occluders, with
# arbitrary pixel values. Both of the paper's models learn from it: SOPI sees one occluded (or clean)
# image per face, MOPI sees seven differently occluded images of the same face. This notebook builds
# that dataset with `occ3d_lib.occlusion.occlude` (defined in `occlusion.apply`; the kinds live in
# `occlusion.kinds`, the fixed evaluation sets in `occlusion.eval_sets`), batched, seeded and tested.
#
# **In this notebook you will**
# - see why a regressor trained on clean faces breaks under occlusion (with a regressor that trains in a second);
# - meet the paper's square taxonomy (DSOFI, DHOFI, SHOFI) with exact definitions, plus full occlusion;
# - draw random patterns (stars, crowns, ellipses, polygons, scribbles) and natural occluders
#   (sunglasses, surgical mask, hand, scarf, hair fringe, beard, microphone, cup) placed from the 68 landmarks;
# - understand why the fill colour must vary (the colour-bias argument of Sec. 4);
# - measure how much of the face each kind covers;
# - build the 7-variant multi-occlusion set of one identity (MOPI, Sec. 3.2.1);
# - configure the training-time occluder used by SOPI, and build the fixed evaluation sets every model
#   is scored on in notebook 05;
# - play with an occlusion explorer.

# %% [markdown]
# ## Setup

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from occ3d_lib import occlusion
from occ3d_lib.core import artifacts, metrics, viz
from occ3d_lib.data.context import make_context
from occ3d_lib.teaching import explorers, probes

# %% [markdown]
# The next cell is tagged `parameters` (papermill overrides it). `OCC3D_PROFILE=smoke` makes the
# notebook run in well under a minute; the data tracks are explained in notebook 00.

# %% tags=["parameters"]
# Parameters
profile = os.environ.get("OCC3D_PROFILE", "course")  # smoke | course | paper
run_dir = None
face_model = "procedural"
dataset = "synthetic"
teacher = "train"
facenet = "synthetic"
seed = 0

# %%
ctx = make_context(profile, run_dir, face_model=face_model, dataset=dataset,
                                     teacher=teacher, facenet=facenet, seed=seed,
                                     progress=os.environ.get("OCC3D_PROGRESS", "1") != "0")
test = ctx.dataset.test   # built by notebook 01, or now (cached)
n_show = min(6, len(test))
show_idx = np.linspace(0, len(test) - 1, n_show).round().astype(int)
faces = test.batch(show_idx)
X, LM = faces["image"], faces["landmarks"]   # (B, 3, S, S) in [0, 1], (B, 68, 2) pixels
print(f"profile {ctx.profile.name}: {len(test)} test faces of {X.shape[-1]}x{X.shape[-1]} px")

# %% [markdown]
# ## 1. Why occlusions break a regressor
#
# A reconstruction network such as RNet is a regressor $f_\theta: \mathbf{I} \mapsto \mathbf{v} \in
# \mathbb{R}^{257}$ (paper Eq. 2) trained on clean faces. Everything it knows is a function of the pixels
# it saw during training. A square pasted over the eyes moves the input far from that training
# distribution, and nothing forces the output to stay near the right answer: the paper reports that RNet
# then produces random poses and *ghost-like* faces (Sec. 4.1.1, Fig. 2).
#
# We can watch this happen with the smallest regressor there is: ridge regression from 16x16 grayscale
# pixels to the 68 landmarks (`probes.fit_landmark_probe`, closed form, a second to fit). We fit one
# probe on clean training faces and one on faces occluded by the training-time occluder (section 8),
# then measure the mean landmark error on the test faces, clean and occluded, in pixels at 224 scale
# (`metrics.landmark_me`, the landmark error of every notebook).

# %%
train = ctx.dataset.train
n_fit = min(len(train), 2000)
fit = train.batch(np.linspace(0, len(train) - 1, n_fit).round().astype(int))
probe_clean = probes.fit_landmark_probe(fit["image"], fit["landmarks"], lam=10.0)
aug = occlusion.TrainingOccluder(seed=seed)(fit["image"], fit["landmarks"])
probe_occ = probes.fit_landmark_probe(aug.images, fit["landmarks"], lam=10.0)

n_stat = min(len(test), 400)   # the test faces used for statistics below
all_test = test.batch(np.linspace(0, len(test) - 1, n_stat).round().astype(int))
image_size = all_test["image"].shape[-1]  # the landmarks are pixels of this image size
rows = []
for kind in ["none", "dsofi", "dhofi", "shofi", "full", "sunglasses", "surgical_mask"]:
    occ = occlusion.occlude(all_test["image"], kind, seed, all_test["landmarks"], fill="solid")
    e_clean = metrics.landmark_me(probe_clean(occ.images), all_test["landmarks"], image_size, "mean").item()
    e_occ = metrics.landmark_me(probe_occ(occ.images), all_test["landmarks"], image_size, "mean").item()
    rows.append((kind, occ.coverage.mean().item(), e_clean, e_occ))
mean_face = fit["landmarks"].mean(0, keepdim=True).expand_as(all_test["landmarks"])
baseline = metrics.landmark_me(mean_face, all_test["landmarks"], image_size, "mean").item()
display(Markdown("| test images | mean coverage | error, probe fit on clean faces (px at 224) | "
                 "error, probe fit on occluded faces (px at 224) |\n|---|---|---|---|\n"
                 + "\n".join(f"| {k} | {c:.2f} | {a:.2f} | {b:.2f} |" for k, c, a, b in rows)
                 + f"\n| *no regressor: the mean training face* | - | {baseline:.2f} | {baseline:.2f} |"))

# %% [markdown]
# The clean-trained probe is best on clean faces, and under occlusion its error jumps; with enough
# training faces (the `course` profile) it becomes worse than not looking at the image at all and
# answering with the average training face (last row): the linear cousin of the paper's ghost faces.
# The probe fitted on occluded faces gives up a little on clean faces and degrades far less. That is
# the idea of SOPI (notebook 03) in miniature: show the trainee occluded inputs, ask for the clean
# answer. (On the tiny `smoke` dataset both probes barely beat the average face; the effect is still visible.)

# %%
errs = {r[0]: (r[2], r[3]) for r in rows}
assert errs["shofi"][0] > errs["none"][0], "occlusion should hurt the clean-trained probe"

# %% [markdown]
# ## 2. The square taxonomy: DSOFI, DHOFI, SHOFI (and full, none)
#
# Sec. 4.1.1 sorts its artificial occlusions by how much of the face they hide, with square (or
# rectangular) occluders "to obtain a common ground for comparison". It gives names but no numbers,
# so we fix them. Every size is a fraction of the **face region**: the pixels inside the landmarks'
# bounding box, raised by 40% of its height to include the forehead, clipped to the image
# (`occlusion.face_boxes_from_landmarks`). Coverage is
# $$\text{coverage} = \frac{|\text{mask} \cap \text{face region}|}{|\text{face region}|}.$$

# %%
display(Markdown(occlusion.kinds_table(["none", "dsofi", "dhofi", "shofi", "full"])))

# %%
rows = {}
for kind in ["dsofi", "dhofi", "shofi", "full"]:
    res = occlusion.occlude(X, kind, seed, LM)
    rows[kind] = res.images
fig = viz.rows_grid({"clean": X, **rows}, col_titles=[f"test face {i}" for i in show_idx],
                    suptitle="the square taxonomy (paper Sec. 4.1.1)")
plt.show()

# %% [markdown]
# `occlude(images, kind, generator, landmarks=..., boxes=..., fill=...)` is the one entry point. It
# returns an `OcclusionResult` with the occluded `images (B, 3, H, W)`, the boolean `masks (B, 1, H, W)`
# of exactly the pixels it changed, and the per-sample `coverage (B,)`. The squares' areas are exact
# pixel counts, so the coverage of a sample always lies in its kind's range:

# %%
res = occlusion.occlude(X, "dhofi", seed, LM, fill="solid")
lo, hi = occlusion.COVERAGE_RANGES["dhofi"]
print("DHOFI coverage per face:", [round(c, 3) for c in res.coverage.tolist()], f"documented {lo:.3f}-{hi:.3f}")
assert bool(((res.coverage >= lo) & (res.coverage <= hi)).all())
assert torch.equal((res.images != X).any(1, keepdim=True), res.masks)   # the mask is what changed

# %% [markdown]
# ## 3. Random patterns
#
# MOPI is trained and evaluated on "random patterns such as stars, crown (no specific standard shape)"
# (Sec. 4.2.2, Tables 5 and 7). We draw stars, crowns, circles/ellipses, random star-shaped polygons
# and thick scribbles, each scaled to a drawn fraction of the face region and placed inside it;
# `random_pattern` puts 1-3 of them on one face.
#
# Every shape is a closed polygon. The masks come from a batched scan-line rasteriser
# (`occluders.rasterize_edges`): for every edge and pixel row it computes where the edge crosses the
# row, scatters $\pm 1$ into a difference array and sums along the row, giving the nonzero-winding
# number of every pixel centre in one pass for the whole batch. Scribbles use a distance field
# whose stroke width is set to cover exactly the drawn fraction.

# %%
display(Markdown(occlusion.kinds_table(list(occlusion.PATTERN_KINDS))))
rows = {k: occlusion.occlude(X, k, seed, LM).images for k in occlusion.PATTERN_KINDS}
fig = viz.rows_grid(rows, suptitle="random patterns (paper Sec. 4.2.2, Table 5)")
plt.show()

# %% [markdown]
# ## 4. Natural-looking occluders
#
# The paper counts "goggles, facial hair, noise, etc." as natural occlusions (Sec. 1) and evaluates on
# naturally occluded CelebA and AFLW2000-3D faces (Table 4). We cannot ship photos of sunglasses, so
# we draw them procedurally and **place them from the 68 landmarks**: lenses centred on the eyes
# (36-41, 42-47) sized by the inter-eye distance, a surgical mask from the nose bridge (27-30) down the
# jaw (0-16), a fringe from above the face down over the brows (17-26), a beard along the jaw that
# always covers the chin (8), a hand, a scarf, a microphone and a cup near the mouth (48-67). Each comes
# in a plausible colour with a soft shading (`fill="natural"`, the default).

# %%
display(Markdown(occlusion.kinds_table(list(occlusion.NATURAL_KINDS))))
rows = {k: occlusion.occlude(X, k, seed, LM).images for k in occlusion.NATURAL_KINDS}
fig = viz.rows_grid(rows, suptitle="natural occluders placed from the 68 landmarks")
plt.show()


# %% [markdown]
# Placement is checked, not eyeballed: on the test faces the sunglasses cover every eye landmark and
# the surgical mask covers the nose tip and the whole mouth (the test-suite checks the same on
# jittered frontal layouts).

# %%
sun = occlusion.occlude(all_test["image"], "sunglasses", seed, all_test["landmarks"])
msk = occlusion.occlude(all_test["image"], "surgical_mask", seed, all_test["landmarks"])
eyes = occlusion.landmarks_covered(sun.masks, all_test["landmarks"], list(range(36, 48))).float().mean().item()
mouth = occlusion.landmarks_covered(msk.masks, all_test["landmarks"], [30] + list(range(48, 68))).float().mean().item()
print(f"eye landmarks under the sunglasses: {eyes:.1%}; nose tip + mouth under the mask: {mouth:.1%}")
assert eyes > 0.95 and mouth > 0.95

# %% [markdown]
# ## 5. Fills and the colour-bias argument
#
# If every training occluder were black, a network could learn the shortcut "black pixels = ignore"
# and fail on a white cup or a skin-coloured hand. The paper therefore occludes "with arbitrary pixel
# values" so that "the varying pixel values of the occluded region force the proposed models to learn
# without developing pixel-value bias" (Sec. 4), and later shows its model is invariant to the
# occluder's colour (Fig. 3; we measure that in notebook 05). Our fills:

# %%
display(Markdown("\n".join(f"- `{k}`: {v}" for k, v in occlusion.FILL_DESCRIPTIONS.items())))
face, lm = X[:1].expand(5, -1, -1, -1), LM[:1].expand(5, -1, -1)
rows = {}
for fill in ["solid", "uniform", "gaussian", "texture", "natural"]:
    # the same generator seed gives the same geometry whatever the fill
    rows[fill] = occlusion.occlude(face, ["shofi", "star", "scribble", "sunglasses", "hand"], seed, lm,
                                   fill=fill, textures=X).images
fig = viz.rows_grid(rows, col_titles=["shofi", "star", "scribble", "sunglasses", "hand"],
                    suptitle="one geometry, five fills")
plt.show()

# %% [markdown]
# The geometry is drawn before the colour, from the same generator, so a fixed `color=` changes only
# the pixel values. This is how notebook 05 tests colour invariance: the same occluder in many colours.

# %%
colours = [(0, 0, 0), (1, 1, 1), (0.9, 0.1, 0.1), (0.1, 0.7, 0.2), (0.95, 0.8, 0.7)]
variants = [occlusion.occlude(X[:1], "shofi", seed, LM[:1], color=c) for c in colours]
assert all(torch.equal(v.masks, variants[0].masks) for v in variants)
fig = viz.image_grid(torch.cat([v.images for v in variants]), ncols=5,
                     titles=[str(c) for c in colours], suptitle="same occluder, five colours")
plt.show()

# %% [markdown]
# ## 6. Coverage statistics
#
# How much of the face does each kind hide on *our* faces (random pose up to 50 degrees of yaw)? We
# occlude the test faces of section 1 a few times per kind and histogram the coverage; the green band is the
# documented range. The squares, full occlusion and the patterns are sized as fractions of the face
# region, so they stay in range by construction; the natural occluders follow the face and their
# ranges were measured on frontal faces, so turned heads can leave them.

# %%
hist_kinds = ["dsofi", "dhofi", "shofi", "full", "star", "crown", "ellipse", "polygon", "scribble",
              "random_pattern", *occlusion.NATURAL_KINDS]
repeats = 2 if ctx.profile.name == "smoke" else 4
cov = occlusion.coverage_samples(all_test["image"], all_test["landmarks"], hist_kinds, seed=seed, repeats=repeats)
fig = occlusion.coverage_histograms(cov, ncols=6)
plt.show()
for k in ["dsofi", "dhofi", "shofi", "full"]:
    lo, hi = occlusion.COVERAGE_RANGES[k]
    assert bool(((cov[k] >= lo - 1e-6) & (cov[k] <= hi + 1e-6)).all()), k

# %% [markdown]
# ## 7. Seven occluded variants per identity (MOPI)
#
# MOPI "takes 7 images per person (partially (or fully) occluded) with random patterns" (Sec. 3.2.1),
# and the training data uses "7 random occlusion patterns to occlude each face image" (Sec. 4).
# `multi_occlusion_set` gives each identity image 7 variants whose pattern kinds come from a random
# permutation of the pattern kinds (so the first six differ), each with its own colour and place,
# all deterministic from the seed.

# %%
n_var = ctx.profile.n_occlusion_variants
mset = occlusion.multi_occlusion_set(X[:2], LM[:2], n_var, seed)
rows = {f"face {i}": mset.images[i] for i in range(2)}
fig = viz.rows_grid(rows, col_titles=mset.params["kinds"][0], suptitle=f"{n_var} variants per identity")
plt.show()
again = occlusion.multi_occlusion_set(X[:2], LM[:2], n_var, seed)
assert torch.equal(again.images, mset.images)                       # deterministic
flat = mset.masks[0].flatten(1)
assert all(not torch.equal(flat[p], flat[q]) for p in range(n_var) for q in range(p + 1, n_var))  # distinct
print("coverage of the variants of face 0:", [round(c, 2) for c in mset.coverage[0].tolist()])

# %% [markdown]
# ## 8. The training-time occluder
#
# The SOPI trainee gets "partial/fully/unoccluded face data on a random basis" (Fig. 1a).
# `TrainingOccluder` does this on the fly: per sample it draws *none*, *partial* (then one of the
# square, pattern and natural kinds) or *full* from a mix, and a random fill. The mix comes from the
# profile (`profile.extra["occlusion_mix"]`, default below). It owns its random generator and has
# `state_dict()` / `load_state_dict()`, so the resumable training loop (`train.Trainer(...,
# stateful={"occluder": occ})`) restarts a killed run with exactly the occlusions it would have drawn.

# %%
occ = occlusion.TrainingOccluder.from_profile(ctx.profile, seed=seed)
print("mix:", occ.mix)
kinds = occ.sample_kinds(2000)
groups = {"none": sum(k == "none" for k in kinds), "full": sum(k == "full" for k in kinds)}
groups["partial"] = len(kinds) - groups["none"] - groups["full"]
print({k: round(v / len(kinds), 3) for k, v in groups.items()}, "over", len(kinds), "draws")

state = occ.state_dict()                      # what a checkpoint stores
batch_a = occ(X, LM)
occ.load_state_dict(state)                    # resume from the checkpoint
batch_b = occ(X, LM)
assert torch.equal(batch_a.images, batch_b.images)
fig = viz.image_grid(batch_a.images, ncols=n_show, titles=batch_a.params["kinds"],
                     suptitle="one training batch, occluded on the fly")
plt.show()

# %% [markdown]
# It is cheap: `benchmarks/bench_occlusion.py` times it against one ResNet-50 training step on the
# same batch and prints the share (the series' target is at most 5%); run
# `.venv/bin/python benchmarks/bench_occlusion.py` to see it on your machine.
#
# ## 9. Fixed evaluation sets
#
# To compare models fairly every model must see the *very same* occluded test images.
# `occlusion.load_or_build_eval_sets(ctx)` picks `profile.eval_samples` test faces (the same faces
# for every kind), occludes them per kind with a seed derived from the profile seed and the kind's
# name, stores them as 8-bit images with masks and coverage, and caches them under a hash of the
# faces and settings. Notebook 05 calls the same function and loads these files.

# %%
eval_sets = occlusion.load_or_build_eval_sets(ctx)
cache = artifacts.cache_dir()
display(Markdown(f"cached under `{cache}`:\n\n| kind | images | mean coverage | file |\n|---|---|---|---|\n"
                 + "\n".join(f"| {k} | {len(s)} | {s.coverage.mean():.2f} | `{os.path.relpath(s.params['path'], cache)}` |"
                              for k, s in eval_sets.items())))
fig = viz.rows_grid({k: s.images[:n_show] for k, s in eval_sets.items()}, suptitle="the fixed evaluation sets")
plt.show()
reloaded = occlusion.load_or_build_eval_sets(ctx)
assert all(torch.equal(reloaded[k].images, eval_sets[k].images) for k in eval_sets)

# %% [markdown]
# ## 10. Occlusion explorer
#
# Pick a kind, its size (area fraction of each shape), colour, position in the face region and seed.
# In a headless run (papermill, nbval) a static figure of a few settings is shown instead.

# %%
explorer = explorers.occlusion_explorer(X[0], LM[0])
if isinstance(explorer, plt.Figure):
    plt.show()
else:
    display(explorer)

# %% [markdown]
# ## Summary
#
# - `occlusion.occlude(images, kind, generator, landmarks=..., boxes=..., fill=...)` is the single entry
#   point: occluded images, exact masks and per-sample coverage of the face region, reproducible from a seed.
# - The paper's taxonomy has numbers here: DSOFI two squares of 5-15% of the face region each, DHOFI
#   two of 15-30%, SHOFI one of 30-60%, full 60-80%; the `random_pattern` kind of Tables 5-7 puts 1-3
#   shapes of 5-15% each on a face (`occlusion.KIND_DESCRIPTIONS` holds every kind's ranges).
# - Natural occluders are placed from the 68 landmarks and verified (sunglasses on the eyes, mask on
#   the nose tip and mouth).
# - Fill colours vary so a model cannot learn a colour shortcut (Sec. 4); geometry and colour are
#   drawn separately, so colour invariance can be measured later.
# - MOPI's 7 variants per identity, SOPI's on-the-fly occluder (resumable) and the fixed evaluation
#   sets are all built by the library and cached.
#
# ## Recap questions
#
# 1. What separates DSOFI, DHOFI and SHOFI?
#    <details><summary>Answer</summary>The number of squares and their size as a fraction of the face region:
#    two slight, two heavy, one heavy (up to 60 %).</details>
# 2. Why are the occluder's geometry and colour drawn separately?
#    <details><summary>Answer</summary>So that the same occluder can be redrawn in another colour: colour
#    invariance (the paper's Fig. 3) becomes measurable.</details>
# 3. Why are the evaluation sets fixed and built from the test identities only?
#    <details><summary>Answer</summary>Every model is measured on the very same images, so differences come from
#    the models; identities seen in training would flatter every model.</details>
#
# ## Exercises
#
# All of these take seconds on the `course` profile (the probe fits in closed form) and retrain no network.
#
# 1. Fit the landmark probe of section 1 on faces occluded only by `dsofi` and evaluate it on `shofi`.
#    Does training on light occlusion transfer to heavy occlusion?
#    <details><summary>Hint</summary>Occlude <code>fit["image"]</code> with <code>occlusion.occlude</code>
#    and kind <code>"dsofi"</code>, then reuse section 1's loop.</details>
#    <details><summary>Solution</summary>
#
#    ```python
#    d = occlusion.occlude(fit["image"], "dsofi", seed, fit["landmarks"], fill="solid")
#    probe_d = probes.fit_landmark_probe(d.images, fit["landmarks"], lam=10.0)
#    sh = occlusion.occlude(all_test["image"], "shofi", seed, all_test["landmarks"], fill="solid")
#    for name, pr in (("clean", probe_clean), ("dsofi", probe_d), ("training mix", probe_occ)):
#        print(name, metrics.landmark_me(pr(sh.images), all_test["landmarks"], image_size, "mean").item())
#    ```
#    Light occlusion helps on heavy occlusion somewhat, less than the training mix that includes heavy
#    squares.</details>
# 2. Change `FOREHEAD_FRACTION` (the forehead added to the landmark box) to 0 and recompute the
#    coverage histograms. Which kinds change, and why do the squares' histograms not?
#    <details><summary>Hint</summary>It is <code>occlusion.FOREHEAD_FRACTION</code>; set it, rebuild the
#    sets of the coverage section, set it back.</details>
#    <details><summary>Solution</summary>The squares are sized as a fraction of the face region, so their
#    coverage stays in the same range by construction; occluders placed from landmarks (sunglasses, masks)
#    cover a larger fraction of the smaller region.</details>
# 3. Write a new natural occluder (say, a face-shield visor or a medical eye patch) in
#    `occ3d_lib/occlusion/shapes.py` placed from the landmarks, and add a test that it covers the landmarks it should.
#    <details><summary>Hint</summary>Copy <code>_sunglasses</code>: it builds its polygon from the eye
#    landmarks 36-47; register the new name where <code>NATURAL_TYPES</code> is defined.</details>
#    <details><summary>Solution</summary>An eye patch: an ellipse centred on the mean of landmarks 36-41, with
#    axes 1.3 times the eye's width and height; the test occludes canonical landmarks and asserts that the mask
#    is set at every point 36-41 and at none of 42-47.</details>
# 4. Using `color=`, build SHOFI sets that differ only in colour (black, white, skin) and compare the
#    clean-trained and occlusion-trained probes on them: which one shows a colour bias?
#    <details><summary>Hint</summary><code>occlusion.occlude(..., "shofi", seed, ..., fill="solid",
#    color=(0, 0, 0))</code>: the same seed gives the same square.</details>
#    <details><summary>Solution</summary>
#
#    ```python
#    for col in ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.85, 0.65, 0.5)):
#        o = occlusion.occlude(all_test["image"], "shofi", seed, all_test["landmarks"], fill="solid", color=col)
#        print(col, [round(metrics.landmark_me(p(o.images), all_test["landmarks"], image_size, "mean").item(), 2)
#                    for p in (probe_clean, probe_occ)])
#    ```
#    The clean-trained probe's error moves with the colour (a skin-coloured square looks like face to it); the
#    occlusion-trained one, which saw varied fills, moves less.</details>
# 5. Set `profile.extra["occlusion_mix"]` to `{"none": 1.0}` and `{"full": 1.0}` and refit the probe of
#    section 1 with each. Plot the error on each evaluation set: what does the mix trade off?
#    <details><summary>Hint</summary>A <code>TrainingOccluder</code> takes the mix; build one per mix and refit
#    as section 1 does.</details>
#    <details><summary>Solution</summary>No occlusion is best on clean faces and worst under heavy occlusion;
#    only full occlusion teaches the probe to predict the mean landmarks whatever it sees (good on "full", poor
#    on clean). A mix trades clean accuracy for robustness.</details>
#
# ## References
#
# - H. Tiwari et al. Occlusion Resistant Network for 3D Face Reconstruction (Sec. 4.1.1: the square taxonomy).
# - Y. Deng et al. Accurate 3D face reconstruction with weakly-supervised learning. CVPR Workshops 2019.
# - C. Sagonas et al. 300 Faces in-the-wild challenge. 2013 (the iBUG 68-landmark layout).
