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
# - print a report of your machine, so that when something misbehaves you know what you ran on.

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
# ## Summary
#
# - RNet-style regressors explain occluders as face; the paper fixes this by distillation (SOPI) and
#   by training on several occluded views of one identity (MOPI).
# - The series goes 01 rendering → 02 occlusion → 03 teacher and SOPI → 04 MOPI → 05 evaluation.
# - Profiles trade compute for fidelity; data tracks switch between synthetic faces and the real files.
#
# ## Exercises
#
# 1. Run `python -m occ3d_lib.pipeline --list` and find which parameters notebook 03 takes.
# 2. Create a profile of your own with `config.get_profile("course", teacher_steps=3000)`: which
#    fields does a profile have, and which values does it refuse? Try `image_size=100`.
# 3. Read Sec. 3 of the paper and write down, for each of Eqs. 1-9, which notebook will implement it.
