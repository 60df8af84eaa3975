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
# # 00 · Occlusion-resistant 3D face reconstruction: introduction
#
# This series teaches, reproduces and goes beyond **"Occlusion Resistant Network for 3D Face
# Reconstruction"** (Tiwari, Kurmi, Venkatesh, Chen). It is written for learners who know a little
# PyTorch, for teachers who run a course on it, and for anyone who wants to rerun the whole pipeline
# headlessly. Every notebook runs on a laptop CPU; the real logic lives in the tested library
# `occ3d_lib`, and the notebooks explain it and call it.
#
# **In this notebook you will**
# - see the problem the paper attacks and its two models (SOPI and MOPI) in a few bullets;
# - get the map of notebooks 01-05 and what each one produces;
# - learn how to pick a *profile* (how much compute) and a *data track* (synthetic or real files);
# - print a report of your machine, so that when something misbehaves you know what you ran on;
# - find the glossary and the notation table (paper symbol -> notebook symbol -> `occ3d_lib` name) you
#   can come back to from any notebook.
#
# **Prerequisites.** Python and NumPy-style tensor code; PyTorch basics (a module, a forward pass,
# `loss.backward()`, an optimiser step); linear algebra (matrix-vector products, rotations, norms, a
# least-squares fit); a first course in deep learning (convolutional networks, training and validation
# splits, overfitting). Helpful but taught here: pinhole cameras, spherical harmonics, knowledge
# distillation, contrastive embeddings, bootstrap intervals. Have the paper at hand: the notebooks cite
# its sections, equations and tables.

# %% [markdown]
# ## Setup

# %%
import os

from IPython.display import Markdown, display

from occ3d_lib import pipeline
from occ3d_lib.core import artifacts, config, envinfo
from occ3d_lib.face import coeffs

# %% [markdown]
# The next cell is tagged `parameters`: papermill (and `make run`) overrides these values. Its
# defaults read the environment variable `OCC3D_PROFILE`, so `make test` runs every notebook in the
# fast `smoke` profile while `make run` uses `course`.

# %% tags=["parameters"]
# Parameters
profile = os.environ.get("OCC3D_PROFILE", "course")  # smoke | course | paper
run_dir = None  # default: runs/<profile> at the repository root

# %%
P = config.get_profile(profile)
RUN = artifacts.run_dir(P.name, run_dir)
print(f"profile: {P.name}   outputs go to: {RUN}")

# %% [markdown]
# ## 1. The problem
#
# Reconstructing a 3D face from one photo is ill-posed: depth, albedo and light are all unknown.
# Deep regressors such as **RNet** (Deng et al. 2019) solve it by predicting the 257 coefficients of
# a 3D morphable model (3DMM) from the image, trained with weak supervision (photometric and landmark
# losses through a differentiable renderer). They work well on clean faces, but an occluder
# (sunglasses, a hand, a mask, a random square) is read *as part of the face*: the network bends the
# shape, pose and skin colour to explain it, and the paper calls the result **ghost-like faces**.
#
# ## 2. The paper's two models (its Fig. 1)
#
# Fig. 1 of the paper shows two training diagrams side by side:
#
# - **(a) SOPI — Single-Occlusion per Identity (Sec. 3.1).** A *trainer* (the frozen RNet, Eq. 2)
#   sees the **clean** image and outputs coefficients $\mathbf v_u$. A *trainee* with the same
#   architecture (Eq. 1) sees the **same image occluded** — partially, fully, or not at all, at random
#   — and is trained to output the same coefficients with a squared-error loss (Eq. 6). This is
#   knowledge distillation where the student must learn the face *from its context*.
# - **(b) MOPI — Multi-Occlusion per Identity (Sec. 3.2).** One ResNet-50 backbone with **seven**
#   heads takes seven differently occluded copies of one face. It is trained with a *composite loss*
#   (Eq. 9): a perceptual loss (Eq. 7) that makes the seven rendered reconstructions look like the
#   same person to FaceNet, plus a label loss (Eq. 8) that pulls all seven towards the best SOPI
#   prediction.
#
# The paper's headline numbers: landmark error 0.77 (SOPI) against 5.84 (RNet) on naturally
# occluded CelebA faces, and 1.24 (MOPI) against 7.91 (RNet) on random-pattern occlusions.
# Notebook 05 re-measures them on one set of faces and reads the paper's tables critically: they do
# not all add up (its section 12).
#
# ## 3. The map of the series
#
# | notebook | teaches | produces |
# |---|---|---|
# | `01_morphable_model_and_sh_rendering` | the 3DMM (Eq. 3), SH lighting (Eq. 4), pose and projection (Eq. 5), a differentiable rasteriser and the same face through PyTorch3D (its test reference and the GPU backend), an interactive face explorer | the synthetic face dataset with exact ground truth |
# | `02_occlusion_synthesis` | the paper's occlusion taxonomy (DSOFI, DHOFI, SHOFI), random patterns, natural occluders, fills, coverage statistics | fixed occluded evaluation sets, 7-variant MOPI sets |
# | `03_teacher_and_sopi_distillation` | RNet and its losses, the teacher's failure under occlusion, distillation with the SE loss (Eq. 6) | teacher and SOPI checkpoints |
# | `04_mopi_multi_occlusion` | FaceNet embeddings, perceptual (Eq. 7), label (Eq. 8) and composite (Eq. 9) losses, the 7-head network | FaceNet embedder and MOPI checkpoints, ablations |
# | `05_evaluation` | the paper's Tables 1-7 regenerated, dense 3D error, error-vs-occlusion curves, real photos | `metrics.json`, tables, figures, `report.md` |
#
# Every notebook can be opened first: when an artifact of an earlier notebook is missing, it builds
# it through the library (and caches it, keyed by a hash of its settings).
#
# <div style="border-left: 4px solid #2e86c1; padding: 0.3em 1em; background: #eef6fc">
#
# **What to expect from a run.** The series reproduces the paper's *experiments*, not its numbers.
#
# - **Sizes, not only orderings, differ.** The paper measures RNet, trained for days on real photos, on
#   CelebA; a CPU profile trains small networks for minutes on synthetic faces at 64 px. Expect larger
#   landmark errors than the paper's; notebook 05 prints ours beside the paper's in every table, and the
#   question to ask of each is whether the *ordering* the paper claims holds.
# - **Beating the teacher under occlusion is the easy part.** The teacher never saw an occluder; a model
#   trained on occluders should beat it. The hard bar is the mean face placed at the true pose, which is
#   handed the pose: on landmarks, whose error is mostly pose, it can beat every network; in 3D it cannot
#   cheat (notebooks 03 and 05 measure both).
# - **Some of the paper's claims will not hold here**, and some will hold by less than a difference that
#   counts. Notebook 05 gives every claim a verdict with its numbers: "does not hold here", "too small to
#   count" or "fails the sanity floor" are results, read them as such.
# - **Time.** The table below gives minutes per notebook; the trainings of notebooks 03 and 04 are most of
#   it, and each training cell says beforehand what it cost in the published run.
#
# </div>
#
# **How long each notebook takes.** Reading time is estimated from each notebook's length; running
# time is what the recorded `course` run measured (section 4 says on which machine). Notebooks 04
# sections 7b-8 are optional research sections and can be skipped in class.

# %%
display(Markdown(pipeline.time_table_markdown()))

# %% [markdown]
# The coefficient vector every network in the series predicts has RNet's layout:

# %%
# NBVAL_CHECK_OUTPUT
for name, s in coeffs.SLICES.items():
    print(f"{name:<6} {s.start:>3}:{s.stop:<3} ({s.stop - s.start} values)")
print("total", coeffs.N_COEFFS)

# %% [markdown]
# ## 4. Profiles and data tracks
#
# A **profile** says how much compute a run spends. `smoke` runs the whole series in a few minutes
# (CI and `make test` use it), `course` is sized for a class on a 2-core CPU (the default of
# `make run`; its measured time is below), and `paper` holds the paper's settings (224x224 inputs,
# ResNet-50, Adam 1e-5, batch 5, 400K SOPI / 500K MOPI iterations) for a GPU and the real data.

# %%
display(Markdown(config.profiles_table()))

# %% [markdown]
# How long the `course` run took on the reference machine (2 CPU cores, no GPU, a fresh clone,
# `make run` after `make setup`), read from that run's `summary.json` (kept as
# `docs/course_summary.json`):

# %%
if pipeline.COURSE_SUMMARY.is_file():
    display(Markdown(pipeline.summary_markdown()))
else:
    print(f"no course run is recorded in {pipeline.COURSE_SUMMARY} yet; `make run` writes runs/course/summary.json")

# %% [markdown]
# A **data track** says where faces come from. The *embedded default* needs no downloads: a
# procedural morphable model in exactly the Basel Face Model's layout and synthetic faces rendered
# from it, with exact ground truth (coefficients, mesh, landmarks), so every metric is exact. The
# *real track* uses the paper's files — `BFM_model_front.mat`, a Deep3DFaceRecon checkpoint as the
# teacher, CelebA, AFLW2000-3D, FaceNet weights — which you download yourself (licences forbid
# redistribution); `data/README.md` says what goes where, and the notebook parameters `face_model`,
# `dataset`, `teacher` and `facenet` switch to them.
#
# ## 5. Your machine

# %%
print(envinfo.format_report(envinfo.environment_report(P.name)))

# %% [markdown]
# ## 6. Running the whole series
#
# ```bash
# make run                                   # all notebooks, course profile, into runs/course/
# make test                                  # library tests + every notebook under nbval (smoke)
# python -m occ3d_lib.pipeline --profile smoke --only 03      # one notebook
# python -m occ3d_lib.pipeline --profile course --from 04     # resume from a notebook
# python -m occ3d_lib.pipeline --profile course -p seed=1     # change a parameter
# ```
#
# The pipeline checks every `-p` name against the notebooks' `parameters` cells before running
# anything, writes each executed notebook to `runs/<profile>/` only once it has finished, keeps a
# `summary.json` with the status and time of each, and on an error stops with the notebook and cell.
#
# ## Glossary
#
# | term | meaning |
# |---|---|
# | 3DMM | 3D morphable model: a mean face plus linear bases of shape, expression and albedo (Blanz and Vetter) |
# | BFM | Basel Face Model, the 3DMM RNet uses (35,709 vertices in Deep3DFaceRecon's front-face crop); the series ships a procedural model in its layout |
# | SH | spherical harmonics: 9 basis functions (bands 0-2) that describe distant Lambertian lighting (Eq. 4) |
# | RNet | the reconstruction network of Deng et al. 2019 (Deep3DFaceRecon): a ResNet-50 that outputs the 257 coefficients; the paper's trainer |
# | teacher / trainer | the frozen RNet whose outputs on clean images are SOPI's labels (Eq. 2) |
# | SOPI | Single-Occlusion per Identity: a trainee that sees one occluded image and regresses teacher(clean) (Eqs. 1, 6) |
# | MOPI | Multi-Occlusion per Identity: one backbone, seven heads, seven occluded images of one face (Eqs. 7-9) |
# | DSOFI | Double Slightly Occluded Face Image: two small squares |
# | DHOFI | Double Heavily Occluded Face Image: two large squares |
# | SHOFI | Single Heavily Occluded Face Image: one square of up to 60 % of the face |
# | random pattern | stars, crowns, ellipses, polygons, scribbles (Tables 5-7) |
# | ME | landmark mean error: mean Euclidean distance over 68 landmarks, pixels at 224x224 |
# | MSE (x, y) | landmark mean squared error along x and along y (Table 1's pairs) |
# | normalised ME (`nme`) | ME with the coordinates divided by 224, the paper's definition (its AFLW2000-3D columns) |
# | AFLW NME (`aflw_nme`) | ME divided by a face size, the square root of the ground-truth landmark box's area (the 3DDFA protocol for AFLW2000-3D) |
# | histogram dissimilarity | the paper's texture metric; here the Hellinger distance of masked colour histograms |
# | FaceNet | a network mapping a face to a unit vector whose cosine similarity says "same person" (Schroff et al.) |
# | Eq. 8 label | the SOPI prediction, among seven, whose render FaceNet finds closest to the clean face |
# | mean face at the true pose | the baseline: zero identity and expression, the true pose, light and position |
# | minimum effect | the smallest difference of a measure that counts in a verdict; below it a "better" is *too small to count* |
# | sanity floor | a model far worse than the mean face on clean faces does not follow its input; nothing in its favour counts |
# | profile | how much compute a run spends (`smoke`, `course`, `paper`) |
#
# ## Notation
#
# | paper | notebooks | `occ3d_lib` |
# |---|---|---|
# | $\mathbf v \in \mathbb R^{257}$ (Eq. 1), $\mathbf v_u$ (Eq. 2) | coefficients, teacher(clean) | `face.coeffs` (`SLICES`, `N_COEFFS`), `nets.predict.predict_coeffs` |
# | $s, e, k$ (Eq. 3) | $\boldsymbol\alpha$ (identity), $\boldsymbol\beta$ (expression), $\boldsymbol\delta$ (albedo) | `coeffs` slices `id`, `exp`, `tex` |
# | $\bar{\mathbf S}, \mathbf B_s, \mathbf B_e$; $\bar{\mathbf K}, \mathbf B_k$ (Eq. 3) | $\bar{\mathbf S}$, bases; $\mathbf T$ (albedo) | `face.facemodel.FaceModel` |
# | $\gamma$ (Eq. 4; printed $\in\mathbb R^9$) | $\boldsymbol\gamma \in \mathbb R^{9\times 3}$ (27 values) | `coeffs` slice `gamma`, `render.lighting` |
# | $\mathbf R, \mathbf t$, $\zeta$ (Eq. 5) | $\mathbf R = \mathbf R_z\mathbf R_y\mathbf R_x$, $\mathbf v' = \mathbf R\mathbf v + \mathbf t$, projection | `coeffs` slices `angle`, `trans`; `render.camera` |
# | trainee, $\theta$ (Eq. 1) | SOPI, `ReconNet` | `nets.models.ReconNet`, `training.stages.get_sopi` |
# | RNet (Eq. 2) | teacher | `training.stages.get_teacher` |
# | $L_{SE}$ (Eq. 6) | SE loss | `training.losses` (SOPI loss), `stages.SopiSettings(loss="se")` |
# | (not in the paper) | SOPI's landmark term: RNet's landmark loss against the teacher's landmarks, added in the CPU profiles | `losses.landmark_loss`, `stages.SopiSettings(landmark_weight=...)` |
# | $\chi$, $L_{perc}$ (Eq. 7) | embeddings of seven renders, perceptual loss | `losses.perceptual_loss`, `losses.perceptual_similarity` |
# | $\mathbf f_s^i, \mathbf f, i^*$, $L_{label}$ (Eq. 8) | FaceNet embeddings, chosen label | `losses.select_sopi_labels`, `losses.label_loss`, `training.mopi.select_labels` |
# | $x_1, x_2$ (Eq. 9) | weights 0.2, 0.8 | `losses.composite_loss`, `training.mopi.MopiSettings` |
# | $\mathbf v_m \in \mathbb R^{257\times 7}$ | MOPI's seven outputs | `nets.models.MultiOcclusionNet` |
#
# ## Summary
#
# - RNet-style regressors explain occluders as face; the paper fixes this by distillation (SOPI) and
#   by training on several occluded views of one identity (MOPI).
# - The series goes 01 rendering → 02 occlusion → 03 teacher and SOPI → 04 MOPI → 05 evaluation.
# - Profiles trade compute for fidelity; data tracks switch between synthetic faces and the real files.
#
# ## Recap questions
#
# 1. What does an occluder do to an RNet-style regressor, and what does the paper call the result?
#    <details><summary>Answer</summary>The network reads the occluder as part of the face and bends
#    shape, pose and skin colour to explain it: "ghost-like faces".</details>
# 2. What does SOPI learn from, and what does MOPI add?
#    <details><summary>Answer</summary>SOPI regresses the frozen teacher's coefficients of the clean
#    image from an occluded copy (Eqs. 1, 2, 6). MOPI reads seven occluded copies of one face and is
#    trained to make their renders agree (Eq. 7) and to match the best SOPI prediction (Eq. 8).</details>
# 3. Why does the default data track need no downloads, and what does it give that real photos do not?
#    <details><summary>Answer</summary>It uses a procedural morphable model in BFM's layout and renders
#    synthetic faces from it; every face has exact coefficients, mesh and landmarks, so the 3D error
#    can be measured.</details>
#
# ## Exercises
#
# All four are about the paper's ideas; they take seconds and retrain nothing.
#
# 1. How large is a pixel of error on a face? The paper reports landmark errors in pixels of a 224 x 224
#    image. For the series' camera, how many millimetres on the face is one such pixel, and what do the
#    paper's 0.77 px (SOPI) and 5.84 px (RNet) on naturally occluded faces mean in millimetres?
#    <details><summary>Hint</summary>The camera sits 10 model units (1 m; one unit is 100 mm) from the face
#    with a focal length of 1015 px at 224 px (<code>occ3d_lib.render.camera</code>): a step of d mm
#    sideways at that distance moves the image by 1015 d / 1000 px.</details>
#    <details><summary>Solution</summary>
#
#    ```python
#    from occ3d_lib.render import camera
#    f, _ = camera.camera_intrinsics(224)
#    mm_per_px = camera.CAMERA_DISTANCE * 100 / f
#    print(f"1 px at 224 is {mm_per_px:.2f} mm on the face;", {e: f"{e * mm_per_px:.1f} mm" for e in (0.77, 5.84)})
#    ```
#    About a millimetre per pixel: seen through our camera, SOPI's landmarks would sit under a millimetre
#    from dlib's on average and RNet's several millimetres away, on a face some 150 mm wide. Landmarks are 68 points of the outline, though:
#    notebooks 03 and 05 show why a small landmark error does not yet mean an accurate 3D shape.</details>
# 2. Why should SOPI's label be the teacher's output on the **clean** image (Eq. 2), not on the occluded
#    image the trainee sees? Score, with Eq. 6, a trainee that ignores the occluder perfectly against both
#    labels, on toy 3-number "coefficient" vectors.
#    <details><summary>Hint</summary>An occluded teacher explains the occluder with the face (a
#    "ghost-like face"), so its output moves away from the clean one; Eq. 6 is the mean squared
#    difference.</details>
#    <details><summary>Solution</summary>
#
#    ```python
#    import torch
#    clean_label = torch.tensor([1.0, 0.5, -0.2])  # teacher on the clean face
#    ghost_label = torch.tensor([1.4, 0.1, 0.3])  # teacher on the occluded face: bent by the occluder
#    ignores_occluder = clean_label.clone()  # the trainee we want
#    se = lambda a, b: ((a - b) ** 2).mean().item()  # noqa: E731
#    print("Eq. 6 against teacher(clean):", se(ignores_occluder, clean_label),
#          "| against teacher(occluded):", round(se(ignores_occluder, ghost_label), 3))
#    ```
#    Against teacher(clean) the trainee that ignores the occluder scores 0; against teacher(occluded) it is
#    penalised, and the best trainee would copy the ghost face. The clean label is what turns the occluder
#    into something to ignore.</details>
# 3. MOPI reads seven occluded copies of one face. If each occluder hides a random 30 % of the face,
#    independently, what share of the face is hidden in all seven copies, and what share in at least
#    one? What does that say about what seven views can show that one cannot?
#    <details><summary>Hint</summary>A pixel is hidden in all seven with probability 0.3 to the power 7,
#    and visible in all seven with probability 0.7 to the power 7.</details>
#    <details><summary>Solution</summary>
#
#    ```python
#    p = 0.3
#    print(f"hidden in all seven: {p ** 7:.3%};  hidden in at least one: {1 - (1 - p) ** 7:.1%}")
#    ```
#    Almost no pixel is hidden in all seven, while most are hidden in at least one: together the views
#    show nearly the whole face, which one view cannot. Real occluders are not independent (they sit on
#    the face, not anywhere); notebook 04 section 1 measures the two shares on a real multi-occlusion
#    set.</details>
# 4. Read Sec. 3 of the paper and write down, for each of Eqs. 1-9, which notebook will implement it.
#    <details><summary>Hint</summary>The map in section 3 and the notation table name the
#    equations.</details>
#    <details><summary>Solution</summary>Eq. 3 (3DMM), Eq. 4 (SH light), Eq. 5 (pose and
#    projection): notebook 01. Eq. 1 (the trainee), Eq. 2 (the frozen trainer), Eq. 6 (SE loss):
#    notebook 03. Eq. 7 (perceptual), Eq. 8 (label), Eq. 9 (composite): notebook 04. Notebook 02
#    builds the occlusions of Sec. 4, notebook 05 the evaluation of Sec. 4.2.</details>
#
# ## References
#
# - H. Tiwari, V. K. Kurmi, K. S. Venkatesh, Y.-S. Chen. Occlusion Resistant Network for 3D Face Reconstruction
#   (the paper this series follows).
# - V. Blanz, T. Vetter. A morphable model for the synthesis of 3D faces. SIGGRAPH 1999.
# - P. Paysan, R. Knothe, B. Amberg, S. Romdhani, T. Vetter. A 3D face model for pose and illumination invariant
#   face recognition. AVSS 2009 (the Basel Face Model).
# - Y. Deng, J. Yang, S. Xu, D. Chen, Y. Jia, X. Tong. Accurate 3D face reconstruction with weakly-supervised
#   learning: from single image to image set. CVPR Workshops 2019 (RNet).
# - R. Ramamoorthi, P. Hanrahan. An efficient representation for irradiance environment maps. SIGGRAPH 2001.
# - G. Hinton, O. Vinyals, J. Dean. Distilling the knowledge in a neural network. 2015 (soft targets; SOPI
#   differs: it regresses the teacher's coefficients of the clean image from an occluded copy).
# - F. Schroff, D. Kalenichenko, J. Philbin. FaceNet: a unified embedding for face recognition and clustering.
#   CVPR 2015.
# - P. Khosla et al. Supervised contrastive learning. NeurIPS 2020.
# - S. Umeyama. Least-squares estimation of transformation parameters between two point patterns. IEEE TPAMI 1991.
