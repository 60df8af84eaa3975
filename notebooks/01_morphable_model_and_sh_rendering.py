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
# # 01 · The morphable face model and SH rendering
#
# Every model in this series predicts 257 numbers per face image: the coefficients of a **3D
# morphable model** (3DMM) plus pose and light (paper Sec. 3.1.2). Those numbers only mean something
# through the **renderer** that turns them back into a face: Eq. 3 builds the shape and skin colour,
# Eq. 4 shades it with spherical-harmonics light, Eq. 5 poses it and projects it into the camera, and a
# rasteriser turns triangles into pixels. Because every step is differentiable, a network can be
# trained by comparing its rendered reconstruction with the input photo (RNet's self-supervision, and
# the perceptual loss of MOPI in notebook 04).
#
# **In this notebook you will**
# - meet the morphable model (Eq. 3): a mean face plus identity, expression and albedo bases, and see
#   what its first components do at $\pm 3\sigma$;
# - pose the face and project it with a pinhole camera (Eq. 5), with its 68 landmarks;
# - light it with 9 spherical harmonics (Eq. 4) and see the basis functions on a sphere;
# - open the pure-PyTorch rasteriser: triangle ids, barycentric coordinates, depth, coverage, and a
#   gradient check;
# - put it all together in one renderer, render the same face through PyTorch3D and compare, and see
#   why each rasteriser wins where it does (CPU vs GPU);
# - play with an interactive face explorer and look at random faces;
# - build the synthetic face dataset, with exact ground truth, that every later notebook trains on.

# %% [markdown]
# ## Setup

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from occ3d_lib.core import viz
from occ3d_lib.data import synthetic
from occ3d_lib.data.context import make_context
from occ3d_lib.face import coeffs
from occ3d_lib.render import camera, lighting, raster, renderer
from occ3d_lib.render.renderer import FaceRenderer, compare_backends
from occ3d_lib.teaching import explorers, probes

# %% [markdown]
# The next cell is tagged `parameters` (papermill overrides it). `OCC3D_PROFILE=smoke` makes the
# notebook run in well under a minute; the data tracks are explained in notebook 00. With
# `face_model="<path to BFM_model_front.mat>"` everything below runs unchanged on the real Basel Face Model.

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
model = ctx.face_model
S_SHOW = 128                       # a larger size for the figures of this notebook
show = FaceRenderer(model, S_SHOW)
gen = torch.Generator().manual_seed(seed)
print(f"profile {ctx.profile.name}: {ctx.profile.mesh} mesh, {model.n_vertices} vertices, "
      f"{model.n_triangles} triangles; training images are {ctx.profile.image_size} px")

# %% [markdown]
# ## 1. The morphable model (Eq. 3)
#
# A 3DMM describes every face as the mean face plus a linear combination of basis vectors (paper Eq. 3):
#
# $$\mathbf S = \bar{\mathbf S} + \mathbf B_{id}\,\boldsymbol\alpha + \mathbf B_{exp}\,\boldsymbol\beta,
# \qquad \mathbf T = \bar{\mathbf T} + \mathbf B_{tex}\,\boldsymbol\delta$$
#
# $\mathbf S \in \mathbb R^{3N}$ stacks the $N$ vertex positions, $\mathbf T$ their albedo (skin colour
# before lighting), $\boldsymbol\alpha \in \mathbb R^{80}$ the identity, $\boldsymbol\beta \in
# \mathbb R^{64}$ the expression and $\boldsymbol\delta \in \mathbb R^{80}$ the albedo coefficients.
# The bases come from PCA of scanned faces (the Basel Face Model) and are stored pre-multiplied by
# their standard deviations, so each coefficient has the prior $\mathcal N(0, 1)$ and the components
# are ordered by decreasing variance. The embedded **procedural** model (`occ3d_lib.face.procedural`) has
# exactly BFM's layout: its first components are hand-written, named deformations (face width, mouth
# open, skin tone, ...) and the rest are smooth random fields, all orthogonalised and given decaying
# standard deviations like a PCA model.
#
# The 257-vector that networks predict is, in RNet's order: identity 0:80, expression 80:144,
# albedo 144:224, angles 224:227, light 227:254, translation 254:257.

# %%
fig, ax = plt.subplots(figsize=(5, 3))
rms = lambda base: base.view(model.n_vertices, 3, -1).norm(dim=1).pow(2).mean(0).sqrt()  # per component
ax.semilogy((rms(model.id_base) * 100).numpy(), label="identity (RMS mm per std)")   # 1 unit = 10 cm
ax.semilogy((rms(model.exp_base) * 100).numpy(), label="expression (RMS mm per std)")
ax.semilogy(rms(model.tex_base).numpy(), label="albedo (RMS of 0..255 per std)")
ax.set_xlabel("component")
ax.legend(fontsize=7)
ax.set_title("standard deviation of each component", fontsize=9)
plt.show()
for name, base in (("identity", model.id_base), ("expression", model.exp_base), ("albedo", model.tex_base)):
    q = base.double() / base.double().norm(dim=0)
    off = (q.T @ q - torch.eye(q.shape[1], dtype=torch.float64)).abs().max().item()
    print(f"{name:<10} basis: {q.shape[1]} columns, max |cos| between two columns = {off:.1e}")
    assert off < 1e-3

# %% [markdown]
# What do the components do? Each row below changes one coefficient from $-3\sigma$ through the mean
# to $+3\sigma$ with everything else at zero (the face is turned a little and lit from the upper left
# so that shape changes are visible).

# %%
names = model.info.get("component_names", {})
studio = lighting.white_gamma(torch.tensor([[0.0, -0.2, 0.25, 0.25, 0, 0, 0, 0, 0]]))  # light from upper left

rows = {}
for part, ks in (("id", [0, 1, 2, 9]), ("exp", [0, 1, 2, 7]), ("tex", [0, 1, 4])):
    for k in ks:
        label = names.get(part, [str(i) for i in range(300)])[k]
        rows[f"{part} {k}: {label}"] = explorers.component_sweep(show, part, k, studio,
                                                                 yaw=0.0 if part == "tex" else 0.35)
viz.rows_grid(rows, col_titles=["-3 sigma", "mean", "+3 sigma"], size=1.5)
plt.show()

# %% [markdown]
# ## 2. Pose and perspective projection (Eq. 5)
#
# The face is rotated by $\mathbf R = \mathbf R_z(\gamma)\mathbf R_y(\phi)\mathbf R_x(\theta)$ (roll, yaw,
# pitch, in radians) and translated by $\mathbf t$: $\mathbf v' = \mathbf R\mathbf v + \mathbf t$. A
# pinhole camera at $z = 10$ looking down $-z$ with focal length $f = 1015$ px and centre $c = 112$ px
# (at 224x224; both scale with the image size) projects it (paper Eq. 5):
#
# $$u = f\,\frac{x'}{10 - z'} + c, \qquad v = f\,\frac{y'}{10 - z'} + c .$$
#
# $(u, v)$ are image-plane coordinates with $v$ pointing up. **Which point does a pixel see?** Pixel
# $(r, c)$ (row $r$ from the top, column $c$) of an $H \times H$ image is the unit square
# $u \in [c, c+1]$, $v \in [H-1-r, H-r]$, and a renderer samples it at its centre
#
# $$u = c + \tfrac12, \qquad v = H - \tfrac12 - r .$$
#
# This is how OpenGL, nvdiffrast (the renderer Deep3DFaceRecon trained RNet with) and PyTorch3D sample,
# and with $c = H/2$ it puts the principal point at the exact centre of the image. A network trained
# against such renders (a real RNet checkpoint) predicts coefficients whose renders line up with the
# photo only if we sample the same way: half a pixel matters at 64 px. `occ3d_lib` writes screen positions
# as $(x, y)$ = (column, row) with pixel $(r, c)$ centred at $(c, r)$, the frame of landmark detectors,
# PIL and matplotlib, so
#
# $$x = u - \tfrac12, \qquad y = \left(H - \tfrac12\right) - v .$$
#
# The row flips because $y$ points up in the world and down in an image.
#
# **The paper writes Eq. 5 as $\zeta(\mathbf R^{-1}(\mathbf x - \mathbf t))$**, the inverse of the
# transform above. Both describe the same family of rigid motions, parameterised inversely: the paper's
# $(\mathbf R, \mathbf t)$ is the camera's pose in the face's frame, ours is the face's pose in the
# camera's frame, and $\mathbf R_{paper} = \mathbf R^\top$, $\mathbf t_{paper} = -\mathbf R^\top\mathbf t$
# turn one into the other, since $\mathbf R_{paper}^{-1}(\mathbf x - \mathbf t_{paper}) = \mathbf R\mathbf x +
# \mathbf t$. We implement $\mathbf R\mathbf v + \mathbf t$ because it is what RNet's code does, so a real
# checkpoint's angles and translation mean the same here.
#
# The 68 **landmarks** are 68 fixed vertices of the mesh (iBUG order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth
# 48-67), projected the same way, so a landmark sits exactly where its vertex is drawn; projecting them
# costs nothing: this is the landmark loss's prediction. (Deep3DFaceRecon writes its landmark
# coordinates as $(u, H - 1 - v)$, half a pixel right of and above where its own renderer draws the
# vertex: a shift shared by prediction and ground truth, which changes no landmark error.)

# %%
poses = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, -0.6, 0.0], [0.35, 0.0, 0.0],
                      [-0.3, 0.3, 0.0], [0.0, 0.0, 0.4]])
c = coeffs.join_coeffs(angle=poses, gamma=studio.expand(len(poses), -1))
out = show(c, torch.full((len(poses), 3, S_SHOW, S_SHOW), 0.85))
viz.image_grid(out.image, ncols=6, landmarks=out.landmarks, size=1.8,
               titles=["frontal", "yaw +0.6", "yaw -0.6", "pitch +0.35", "pitch -0.3, yaw 0.3", "roll +0.4"])
plt.show()
by_hand = camera.project(out.vertices[:, model.keypoints], S_SHOW)[..., :2]
assert torch.allclose(out.landmarks, by_hand, atol=1e-4)
assert torch.allclose(show.landmarks(c), out.landmarks, atol=1e-3)   # the cheap path, no rasterisation
centre = camera.project(torch.zeros(1, 1, 3), S_SHOW)[0, 0, :2]    # the world origin, on the optical axis
print(f"the principal point lands at (x, y) = {tuple(centre.tolist())} in a {S_SHOW} px image")
assert torch.allclose(centre, torch.full((2,), (S_SHOW - 1) / 2))

# %% [markdown]
# Positive yaw rotates $+z$ (where the nose points) towards $+x$, so the nose turns towards the image's
# right. $R_x$ rotates $+y$ towards $+z$, so positive pitch brings the forehead towards the camera and
# the face looks down (compare the "pitch" panels). Red dots are the projected
# landmarks; in a frontal view the image-left eye is 36-41.
#
# ## 3. Spherical-harmonics lighting (Eq. 4)
#
# The faces are Lambertian: a vertex with albedo $\mathbf t$ and unit normal $\mathbf n$ has colour
#
# $$\mathbf C(\mathbf n, \mathbf t \mid \boldsymbol\gamma) = \mathbf t \odot \sum_{b=1}^{9}
# \boldsymbol\gamma_b\, \Psi_b(\mathbf n) \qquad \text{(paper Eq. 4)}$$
#
# where the $\Psi_b$ are the first 9 real spherical harmonics (bands 0, 1, 2), pre-multiplied by the
# Lambertian kernel's factors, and $\boldsymbol\gamma \in \mathbb R^{9 \times 3}$ (27 numbers, one set
# per colour channel). Nine numbers per channel describe any distant light environment to within a
# few percent, because the diffuse reflection blurs away higher frequencies. The paper says it assumes
# white light, $\gamma \in \mathbb R^9$, which contradicts its own total of 257 coefficients:
# $80 + 64 + 80 + 3 + 27 + 3 = 257$ needs 27 light values, and RNet's checkpoints hold 27 (coloured
# light). The series keeps RNet's 27 so a real checkpoint loads; white light is the special case of
# equal values in the three channels (`lighting.white_gamma`). As in RNet, 0.8 is added
# to the constant term so that $\boldsymbol\gamma = 0$ is a soft white ambient light. Below, the 9
# basis functions on a sphere seen from the camera (red positive, blue negative):

# %%
t = torch.linspace(-1, 1, 96)
yy, xx = torch.meshgrid(-t, t, indexing="ij")                 # y up
inside = xx ** 2 + yy ** 2 <= 1
normals = torch.stack([xx, yy, (1 - xx ** 2 - yy ** 2).clamp_min(0).sqrt()], -1)
psi = lighting.sh_basis(normals)                               # (96, 96, 9)
fig, axes = plt.subplots(1, 9, figsize=(13, 1.8))
titles = ["1", "-y", "z", "-x", "xy", "-yz", "3z²-1", "-xz", "x²-y²"]   # signs as in RNet's basis
for b, ax in enumerate(axes):
    v = psi[..., b].masked_fill(~inside, float("nan"))
    ax.imshow(v, cmap="coolwarm", vmin=-psi.abs().max(), vmax=psi.abs().max())
    ax.set_title(f"b={b}: {titles[b]}", fontsize=8)
    ax.axis("off")
plt.show()


# %% [markdown]
# The same face under a few lights: the white ambient default, light from the image's left, from above,
# from behind-right (a rim light), and a warm coloured light (different $\gamma$ per channel).

# %%
lights = {
    "ambient (gamma = 0)": torch.zeros(1, 27),
    "from the left": lighting.white_gamma(torch.tensor([[0.0, 0.0, 0.1, 0.45, 0, 0, 0, 0, 0]])),
    "from above": lighting.white_gamma(torch.tensor([[0.0, -0.45, 0.1, 0.0, 0, 0, 0, 0, 0]])),
    "rim, right": lighting.white_gamma(torch.tensor([[-0.3, 0.0, -0.3, -0.4, 0, 0, 0.1, 0, 0]])),
    "warm": lighting.tinted_gamma(torch.tensor([[0.1, -0.1, 0.2, 0.1, 0, 0, 0, 0, 0]]), torch.tensor([1.2, 0.9, 0.6])),
}
c = coeffs.join_coeffs(angle=torch.tensor([[0.0, 0.3, 0.0]]).expand(5, -1), gamma=torch.cat(list(lights.values())))
out = show(c, torch.full((5, 3, S_SHOW, S_SHOW), 0.2))
viz.image_grid(out.image, ncols=5, titles=list(lights), size=1.8)
plt.show()
irr = lighting.irradiance(torch.tensor([[[0.0, 0.0, 1.0]]]), torch.zeros(1, 27))
assert torch.allclose(irr, torch.full_like(irr, 0.8 * lighting.A0 * lighting.C0))   # 0.8 * pi / sqrt(4 pi)

# %% [markdown]
# ## 4. The rasteriser
#
# After Eqs. 3-5 every vertex has a screen position $(x, y)$ (column, row), a camera depth $z'$ and a
# colour. The rasteriser decides, for every pixel centre, which triangle is visible there and where
# inside it. `occ3d_lib.render.raster` does it in pure PyTorch, batched and without Python loops over pixels
# or triangles:
#
# 1. **Bounding boxes.** Each triangle's box is clipped to the image; every (triangle, pixel-in-its-box)
#    pair becomes a candidate (`repeat_interleave`).
# 2. **Edge functions.** For edge $a \to b$ and pixel $p$, $e_{ab}(p) = (b_x - a_x)(p_y - a_y) -
#    (b_y - a_y)(p_x - a_x)$ is twice the signed area of triangle $(a, b, p)$: a pixel is inside when
#    all three have the triangle's sign. Their ratios to the triangle's area are the **barycentric
#    coordinates** $\lambda_i$. A pixel exactly on an edge shared by two triangles is given to exactly
#    one of them (a tie rule), so meshes have no cracks and no double-covered pixels.
# 3. **Z-buffer.** Depth is interpolated perspective-correctly ($1/z'$ is linear on screen), packed with
#    the triangle id into one 64-bit integer, and `scatter_reduce(..., "amin")` keeps the nearest
#    triangle per pixel.
# 4. **Differentiability.** For the winning pixels, the barycentrics are recomputed from the vertex
#    positions with autograd on, so gradients flow to colours (through `interpolate`) and to positions,
#    hence to shape, pose and camera. The coverage mask itself is a hard decision.
#
# The tests check it against two references: a plain-loop rasteriser that is obviously right and
# hopelessly slow (`occ3d_lib.render.raster_reference`), and PyTorch3D's rasteriser through the same camera
# (section 5) on random meshes and on the face mesh: triangle ids per pixel, barycentrics and depth.
#
# First on two overlapping triangles in a 16x16 image (the blue one is nearer):

# %%
two = torch.tensor([[[1.3, 2.2, 4.0], [13.6, 0.7, 4.0], [4.1, 14.4, 4.0],       # far (z' = 4)
                     [6.2, 4.3, 2.0], [15.5, 9.1, 2.5], [5.4, 15.8, 3.0]]])     # near (z' = 2 .. 3)
two_tri = torch.tensor([[0, 2, 1], [3, 5, 4]])
fr = raster.rasterize(two, two_tri, 16)
buffers = {"face id (-1 = empty)": fr.face_idx[0], "barycentrics as RGB": fr.bary[0],
           "depth z' (0 = empty)": fr.depth[0], "mask": fr.mask[0]}
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
for ax, (name, img) in zip(axes, buffers.items()):
    ax.imshow(img.float().numpy(), interpolation="nearest", cmap="viridis")
    ax.plot(*two[0, [0, 1, 2, 0], :2].T, "w-", lw=0.8)
    ax.plot(*two[0, [3, 4, 5, 3], :2].T, "c-", lw=0.8)
    ax.set_xlim(-0.5, 15.5); ax.set_ylim(15.5, -0.5)
    ax.set_title(name, fontsize=9)
    ax.set_xticks([]); ax.set_yticks([])
plt.show()
print("covered pixels per triangle:", torch.bincount(fr.face_idx[fr.mask], minlength=2).tolist())

# %% [markdown]
# The same buffers for a face (the barycentric image shows the mesh's triangles; the depth is smallest
# at the nose tip):

# %%
c = coeffs.join_coeffs(angle=torch.tensor([[0.0, 0.5, 0.0]]), gamma=studio)
g = show.geometry(c)
fr = raster.rasterize(g["screen"], model.tri, S_SHOW)
depth = fr.depth[0].masked_fill(~fr.mask[0], float("nan"))
face_id = (fr.face_idx[0] % 997).float().masked_fill(~fr.mask[0], float("nan"))   # ids modulo a prime, for contrast
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
for ax, (name, img, cmap) in zip(axes, [("face id", face_id, "tab20"), ("barycentrics", fr.bary[0], None),
                                        ("depth z'", depth, "magma"), ("mask", fr.mask[0], "gray")]):
    ax.imshow(img.float().numpy(), interpolation="nearest", cmap=cmap)
    ax.set_title(name, fontsize=9)
    ax.axis("off")
plt.show()
nose = int(model.keypoints[30])
print(f"nose tip depth {g['screen'][0, nose, 2]:.3f}, nearest rendered depth {fr.depth[0][fr.mask[0]].min():.3f}")

# %% [markdown]
# **Gradient check.** `torch.autograd.gradcheck` compares the analytic gradients of the interpolated
# colours and depth with finite differences, in float64, with respect to both the vertex colours and
# the vertex screen positions (no pixel centre is within the finite-difference step of an edge, so the
# coverage does not change):

# %%
scr = torch.tensor([[[0.37, 0.21, 3.0], [6.63, 0.84, 4.0], [1.12, 6.71, 5.0], [7.33, 6.58, 3.5]]],
                   dtype=torch.float64, requires_grad=True)
tri2 = torch.tensor([[0, 1, 2], [1, 3, 2]])
col = torch.rand(1, 4, 3, dtype=torch.float64, generator=gen, requires_grad=True)

ok = torch.autograd.gradcheck(lambda scr, col: probes.raster_colours_and_depth(scr, tri2, 8, col), (scr, col),
                              eps=1e-6, atol=1e-6)
print("gradcheck passed:", ok)

# %% [markdown]
# Gradients through the renderer are what make analysis-by-synthesis possible. A small demonstration:
# start from the frontal mean face under ambient light and recover the pose and light of a target
# image by gradient descent on the photometric error plus a small landmark term (the two losses RNet
# is trained with). Only pose and light are free here.

# %%
S_FIT = 64
fit_r = FaceRenderer(model, S_FIT)
target_c = coeffs.join_coeffs(angle=torch.tensor([[0.1, 0.35, -0.1]]), gamma=lights["from the left"],
                              trans=torch.tensor([[0.05, -0.03, 0.0]]))
with torch.no_grad():
    target = fit_r(target_c, torch.zeros(1, 3, S_FIT, S_FIT))
free = {k: torch.zeros(1, v.stop - v.start, requires_grad=True) for k, v in coeffs.SLICES.items()
        if k in ("angle", "gamma", "trans")}
opt = torch.optim.Adam(free.values(), lr=0.02)
losses = []
steps = 60 if ctx.profile.name == "smoke" else 150
for step in range(steps):
    out = fit_r(coeffs.join_coeffs(**free), torch.zeros(1, 3, S_FIT, S_FIT))
    loss = (out.image - target.image).pow(2).mean() + 1e-4 * (out.landmarks - target.landmarks).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(loss.item())
fig, axes = plt.subplots(1, 4, figsize=(10, 2.6))
axes[0].semilogy(losses); axes[0].set_title("loss", fontsize=9); axes[0].set_xlabel("step")
for ax, img, name in zip(axes[1:], [target.image[0], out.image[0].detach(), (out.image - target.image).abs()[0].detach()],
                         ["target", "fit", "|difference|"]):
    ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy()); ax.set_title(name, fontsize=9); ax.axis("off")
plt.show()
print("angles: target", target_c[0, 224:227].numpy().round(3), "fitted", free["angle"][0].detach().numpy().round(3))
assert losses[-1] < 0.2 * losses[0]

# %% [markdown]
# ## 5. The whole renderer
#
# `FaceRenderer` chains everything: coefficients $(B, 257)$ → Eq. 3 shape and albedo → normals → Eq. 5
# pose and projection → Eq. 4 shading → rasterisation → interpolated colours, composited over a
# background. It returns the image, the face alone, the coverage mask, the 68 landmarks, and the
# vertices (posed and unposed) for 3D metrics. Random faces from the prior, over random backgrounds:

# %%
ids, tex = synthetic.sample_identities(6, model, gen)
c = synthetic.sample_views(ids, tex, model, gen)
bg = synthetic.random_backgrounds(6, S_SHOW, gen)
out = show(c, bg)
viz.rows_grid({"face": out.face.clamp(0, 1), "mask": out.mask.expand(-1, 3, -1, -1), "background": bg,
               "image": out.image}, size=1.5)
plt.show()

# %% [markdown]
# ### The same face through PyTorch3D
#
# PyTorch3D is the differentiable renderer most people in this field learn on. Here it has two jobs: it
# is the reference our rasteriser is tested against, and it is the rendering backend on a GPU.
# `FaceRenderer(model, S, backend="pytorch3d")` returns the same `RenderOutput`, gradients included
# (`backend="auto"`, the paper profile's choice, means PyTorch3D on CUDA and our rasteriser on a CPU).
#
# Only the rasterisation changes hands, so the camera of Eq. 5 has to be said in PyTorch3D's terms
# (`occ3d_lib.render.raster_pytorch3d.cameras`): a `PerspectiveCameras` in screen space (`in_ndc=False`) with
# focal length $f$ and principal point $(c, H - c)$. PyTorch3D's view frame has $+X$ left, $+Y$ up and
# $+Z$ into the scene, and maps world points as $X_{view} = X_{world} R + T$, so $R = \mathrm{diag}(-1, 1, -1)$
# and $T = (0, 0, 10)$ give $X_{view} = (-x, y, 10 - z)$: its depth is our $z'$. Its screen frame has $x$ to
# the right, $y$ down and pixel $(r, c)$ centred at $(c + \tfrac12, r + \tfrac12)$: the pixel-centre
# convention of section 2, shifted by half a pixel from our $(x, y)$.
#
# A case to check by hand first: one triangle in the plane $z = 0$ whose image has legs on $u = 1.2$ and
# $v = 1.2$ and its hypotenuse on $u + v = 6.9$, in an $8 \times 8$ image. Pixel $(r, c)$ is covered when
# $c + \tfrac12 \ge 1.2$, $7.5 - r \ge 1.2$ and $c + \tfrac12 + 7.5 - r \le 6.9$: columns from 1, rows up to 6,
# and $c \le r - 2$, so rows 3 to 6 hold 1, 2, 3 and 4 pixels. Both rasterisers must draw exactly that:

# %%
# NBVAL_CHECK_OUTPUT
S_HAND = 8
f_hand, c_hand = camera.camera_intrinsics(S_HAND)
uv = torch.tensor([[1.2, 1.2], [5.7, 1.2], [1.2, 5.7]])                  # image-plane corners (v up)
tri_world = torch.cat([(uv - c_hand) * 10 / f_hand, torch.zeros(3, 1)], 1)[None]   # z' = 10
masks = {b: renderer.rasterize_vertices(tri_world, torch.tensor([[0, 1, 2]]), S_HAND, backend=b).mask[0]
         for b in ("occ3d", "pytorch3d")}
for b, m in masks.items():
    print(f"{b:<9}", " ".join("".join(str(int(v)) for v in row) for row in m.tolist()))
assert torch.equal(masks["occ3d"], masks["pytorch3d"]) and int(masks["occ3d"].sum()) == 10

# %% [markdown]
# Two faces rendered by both, at a small size (PyTorch3D's rasteriser is slow on a CPU, see below), their
# difference (magnified), and where the two agree on the visible triangle:

# %%
S_CMP = 48
c = coeffs.join_coeffs(angle=torch.tensor([[0.1, 0.5, 0.05], [-0.1, -0.9, 0.0]]), gamma=studio.expand(2, -1))
cmp = compare_backends(model, c, S_CMP, torch.full((2, 3, S_CMP, S_CMP), 0.85),
                       repeats=3 if model.n_triangles < 20000 else 1)
diff = (cmp["occ3d"].image - cmp["pytorch3d"].image).abs()
same = (cmp["face_idx"]["occ3d"] == cmp["face_idx"]["pytorch3d"]).unsqueeze(1).expand(-1, 3, -1, -1).float()
viz.rows_grid({"occ3d": cmp["occ3d"].image, "PyTorch3D": cmp["pytorch3d"].image,
               "|difference| x 1000": (diff * 1000).clamp(0, 1), "same triangle": same}, size=1.5)
plt.show()
print(f"same triangle on {100 * cmp['same_face']:.3f} % of the covered pixels; "
      f"largest colour difference {cmp['max_abs_diff']:.1e} (colours in [0, 1])")
t = cmp["seconds"]
print(f"one render of 2 images at {S_CMP} px, {model.n_triangles} triangles, on the CPU: occ3d "
      f"{1e3 * t['occ3d']:.1f} ms, PyTorch3D {1e3 * t['pytorch3d']:.1f} ms -> PyTorch3D / occ3d = "
      f"{t['pytorch3d'] / t['occ3d']:.0f}x")
assert cmp["same_face"] > 0.999


# %% [markdown]
# The two renders agree to float32 rounding: same triangles, same barycentrics, same colours. The
# timing tells the other half of the story. **Why is our rasteriser so much faster on a CPU?** A face
# mesh has thousands of small triangles, each covering a few pixels. Ours enumerates, for each
# triangle, only the pixels of its bounding box, so the work grows with the covered area plus the
# number of triangles, and it is done as a handful of large vectorised tensor operations. On a CPU,
# PyTorch3D only has its *naive* rasteriser (`bin_size=0`; binning is not implemented on the CPU): every
# pixel tests every triangle, work proportional to pixels × triangles, so the gap widens with both
# the mesh and the image size.
#
# **Why does PyTorch3D win on a GPU?** There its coarse-to-fine rasteriser first sorts the triangles
# into bins (tiles of e.g. 16 × 16 pixels), then runs one thread per pixel that tests only its bin's
# triangles and keeps its nearest faces in registers: no large intermediate tensors, no scatter into
# memory, thousands of pixels in parallel, one fused kernel. Ours, run on a GPU, still writes every
# (triangle, pixel) candidate to memory and resolves the z-buffer with a scatter-min: memory-bound work
# spread over many kernel launches. So the series uses each where it is strong: our rasteriser on a
# CPU (the default of every profile) and PyTorch3D on CUDA (`render_backend="auto"` in the paper
# profile). `benchmarks/bench_raster.py --pytorch3d` measures both in one run: on the CPU, and on CUDA
# (the dense mesh at 224 px) when a GPU is present.

# %% [markdown]
# ## 6. Interactive explorer
#
# Move the sliders to change identity, expression, albedo, light and pose (in a live JupyterLab
# session). When the notebook runs headless (papermill, nbval, CI) a static grid of a few settings is
# shown instead.

# %%
widget = explorers.face_explorer(show)
if widget is not None:
    display(widget)

# %% [markdown]
# ## 7. Sixteen random faces
#
# Identities, albedos and expressions drawn from the prior (clipped at $3\sigma$), frontal under a
# soft studio light. They should look like sixteen different people: if they do not, the bases are
# too weak or too similar, and a network trained on them would learn little about real faces.

# %%
ids, tex = synthetic.sample_identities(16, model, gen)
exp = (torch.randn(16, coeffs.N_EXP, generator=gen) * 0.6).clamp(-1.8, 1.8)
c = coeffs.join_coeffs(id=ids, exp=exp, tex=tex, gamma=studio.expand(16, -1),
                       angle=torch.tensor([[0.0, 0.25, 0.0]]).expand(16, -1))
faces16 = show(c, torch.full((16, 3, S_SHOW, S_SHOW), 0.9)).image
viz.image_grid(faces16, ncols=8, size=1.6)
plt.show()

# %% [markdown]
# ## 8. The synthetic dataset
#
# Every later notebook trains on faces rendered from this model, with exact ground truth. The
# dataset (`occ3d_lib.data.synthetic`) draws identities from the prior and gives each several **views**:
# a random expression, pose (yaw up to $\pm 50°$, pitch $\pm 20°$, roll $\pm 15°$), a small translation,
# a random near-white SH light, and a background that is a solid colour, a gradient, noise or a
# texture — a quarter of them skin-coloured, so that a network cannot find the face by colour alone.
# Each image keeps its 257 coefficients, its 68 projected landmarks and its identity id. Splits are
# **by identity**: no person appears in two of train / val / test. The dataset is generated once per
# setting (the profile's sizes and seed, the face model), written atomically (an interrupted run
# leaves nothing that looks complete), and reused from the cache afterwards.

# %%
ds = ctx.dataset
for name in synthetic.SPLITS:
    sp = ds.split(name)
    print(f"{name:<5}: {len(sp):>5} images of {len(sp.identities):>4} identities, "
          f"{sp.images.shape[-1]}x{sp.images.shape[-1]} px")
print("cached at", ds.root)
split_ids = [set(ds.split(n).identities.tolist()) for n in synthetic.SPLITS]
assert not (split_ids[0] & split_ids[1] or split_ids[0] & split_ids[2] or split_ids[1] & split_ids[2])

# %% [markdown]
# Sixteen training samples with their ground-truth landmarks (green):

# %%
idx = np.linspace(0, len(ds.train) - 1, 16).round().astype(int)
b = ds.train.batch(idx)
viz.image_grid(b["image"], ncols=8, landmarks_gt=b["landmarks"], size=1.6,
               titles=[f"id {int(i)}" for i in b["identity"]])
plt.show()
# the stored coefficients reproduce the stored landmarks exactly
assert torch.allclose(ctx.renderer.landmarks(b["coeffs"]), b["landmarks"], atol=1e-3)

# %% [markdown]
# ## Summary
#
# - A 3DMM (Eq. 3) is a mean face plus orthogonal identity, expression and albedo bases with decaying
#   standard deviations; coefficients are in units of one standard deviation.
# - Pose is $R = R_z R_y R_x$ plus a translation; a pinhole camera at $z = 10$ (focal 1015 px at 224 px)
#   projects the mesh and its 68 landmark vertices (Eq. 5).
# - Nine spherical harmonics per colour channel light a Lambertian face (Eq. 4); $\gamma = 0$ is a soft
#   ambient light because of the 0.8 offset.
# - Pixel $(r, c)$ is sampled at $u = c + \tfrac12$, $v = H - \tfrac12 - r$, as in Deep3DFaceRecon's renderer
#   and PyTorch3D; landmarks are projected in the same frame, so they sit where their vertex is drawn.
# - The rasteriser is pure PyTorch: bounding boxes, edge functions with a tie rule, a scatter-min
#   z-buffer, and barycentrics recomputed with autograd so gradients reach colours and positions.
# - PyTorch3D, with the same camera, renders the same pixels: it is the rasteriser's test reference and
#   the backend on a GPU, where its binned rasteriser wins; on a CPU the bounding-box rasteriser wins.
# - The synthetic dataset has exact ground truth, is split by identity, and is built once and cached.
#   Speed: `benchmarks/bench_raster.py` compares a render with a ResNet training step.
#
# ## Recap questions
#
# 1. In what units are the identity, expression and albedo coefficients, and what does a zero vector give?
#    <details><summary>Answer</summary>Standard deviations of each component; zero is the mean face with the
#    mean albedo.</details>
# 2. The paper writes Eq. 5 with $\mathbf R^{-1}(\mathbf x - \mathbf t)$; the series uses $\mathbf R\mathbf v +
#    \mathbf t$. Are they different cameras?
#    <details><summary>Answer</summary>No: the same rigid motions, parameterised inversely
#    ($\mathbf R_{paper} = \mathbf R^\top$, $\mathbf t_{paper} = -\mathbf R^\top \mathbf t$). We follow RNet's
#    code.</details>
# 3. Why 27 light values when the paper says $\gamma \in \mathbb R^9$?
#    <details><summary>Answer</summary>9 SH coefficients per colour channel; only 27 make the paper's total of
#    257, and RNet's checkpoints hold 27. White light is the case of three equal channels.</details>
# 4. Why must a renderer sample pixel centres the way the teacher's renderer did?
#    <details><summary>Answer</summary>A network trained against such renders predicts coefficients whose
#    renders line up with the photo only in that convention; half a pixel is visible at 64 px.</details>
#
# ## Exercises
#
# All of these take seconds to a minute on the `course` profile and retrain no network.
#
# 1. Which identity component changes the face most in 3D? Rank the first ten by the RMS vertex
#    displacement of a $+3\sigma$ change (`model.id_base`), then check visually with `explorers.component_sweep`.
#    <details><summary>Hint</summary>Section 1's <code>rms</code> gives the RMS displacement of one standard
#    deviation per component; a $+3\sigma$ change is three times that.</details>
#    <details><summary>Solution</summary>
#
#    ```python
#    disp = 3 * rms(model.id_base[:, :10]) * 100  # mm
#    order = disp.argsort(descending=True)
#    print([(int(k), round(float(disp[k]), 1)) for k in order])
#    viz.rows_grid({f"id {int(k)}": explorers.component_sweep(fit_r, "id", int(k), studio) for k in order[:2]})
#    ```
#    Components are ordered by decaying standard deviation, so the first ones move the face most.</details>
# 2. Light a face from below (a "flashlight under the chin") by choosing $\gamma$; which basis function's
#    sign do you need to flip?
#    <details><summary>Hint</summary>Compare the lights "from above" and "from the left" of section 3: which of
#    the nine entries differs?</details>
#    <details><summary>Solution</summary>
#
#    ```python
#    below = lighting.white_gamma(torch.tensor([[0.0, 0.45, 0.1, 0.0, 0, 0, 0, 0, 0]]))
#    c = coeffs.join_coeffs(angle=torch.tensor([[0.0, 0.3, 0.0]]), gamma=below)
#    viz.image_grid(FaceRenderer(model, 96)(c, torch.full((1, 3, 96, 96), 0.85)).image, ncols=1)
#    ```
#    The band-1 function along $y$ (the second entry): "from above" uses a negative value, from below a
#    positive one.</details>
# 3. Render the mean face at yaw $90°$ with `FaceRenderer(model, 128, cull_backfaces=True)` and without:
#    what changes, and why does a front-only face mask not need culling at moderate yaw?
#    <details><summary>Hint</summary>Render both with <code>angle=[[0, pi/2, 0]]</code> and show the
#    difference.</details>
#    <details><summary>Solution</summary>At $90°$ some rays first meet the *inside* of the open mask (a back
#    face); culling drops those triangles, so the background shows there instead. At moderate yaw every ray that
#    meets the mask meets a front face first, and the z-buffer alone keeps it: culling changes nothing.</details>
# 4. Rasterise two triangles that share an edge passing exactly through pixel centres and check with
#    `fr.face_idx` that every pixel on the edge is claimed once. Then break the tie rule (accept a pixel
#    exactly on an edge, `e >= 0`, for both triangles) and count the double-covered pixels.
#    <details><summary>Hint</summary>Section 4's pair (<code>two</code>) overlaps but shares no edge. Split a
#    square whose corners sit on pixel centres along its diagonal: corners (1, 1), (9, 1), (9, 9), (1, 9) in a
#    12-pixel image, triangles (0, 1, 2) and (0, 2, 3); the diagonal from (1, 1) to (9, 9) passes through the
#    centres (k, k). Rasterise each triangle alone to see which pixels each one accepts.</details>
#    <details><summary>Solution</summary>
#
#    ```python
#    sq = torch.tensor([[[1.0, 1.0, 4.0], [9.0, 1.0, 4.0], [9.0, 9.0, 4.0], [1.0, 9.0, 4.0]]])
#    halves = torch.tensor([[0, 1, 2], [0, 2, 3]])  # they share the diagonal (1, 1)-(9, 9)
#    print("owners of the diagonal's inner pixels:", raster.rasterize(sq, halves, 12).face_idx[0].diagonal()[2:9].tolist())
#    tie_rule = raster._oriented_edge
#    def no_tie_rule(ia, ib, xa, ya, xb, yb, px, py, neg):  # also accept every pixel exactly on the edge
#        return tie_rule(ia, ib, xa, ya, xb, yb, px, py, neg) | ((xb - xa) * (py - ya) - (yb - ya) * (px - xa) == 0)
#    for name, rule in (("tie rule", tie_rule), ("e >= 0", no_tie_rule)):
#        raster._oriented_edge = rule
#        try:
#            a, b = (raster.rasterize(sq, halves[i:i + 1], 12).mask[0] for i in range(2))
#        finally:
#            raster._oriented_edge = tie_rule
#        print(f"{name}: claimed by both {int((a & b).sum())}, inner pixels claimed by neither {int((~a & ~b)[2:9, 2:9].sum())}")
#    ```
#    With the tie rule every pixel on the shared edge belongs to exactly one triangle (its
#    <code>face_idx</code> is one of the two, never both, and none inside is left empty). With
#    <code>e >= 0</code> both triangles accept the edge pixels: the double-covered count equals the number of
#    pixel centres on the edge, and blending would draw them twice.</details>
# 5. Extend the fitting demo in section 4 to also fit the identity coefficients. Does the photometric loss
#    alone recover them? What about the landmark loss alone?
#    <details><summary>Hint</summary>Add <code>"id"</code> to the keys of <code>free</code>, give the target a
#    random identity, and run the loop twice: once without the landmark term, once without the photometric
#    term.</details>
#    <details><summary>Solution</summary>Shading constrains the surface orientation, so the photometric loss
#    recovers the large identity components roughly; the landmark loss alone sees 68 points and recovers the
#    outline-related components only; neither pins down the small ones. This is why RNet adds priors.</details>
# 6. Time `compare_backends` at 24, 48 and 96 px. How does each backend's time grow with the image size?
#    Predict it from the two algorithms before you run it.
#    <details><summary>Hint</summary><code>cmp</code> holds the timings; loop over the sizes as section 5
#    does for one.</details>
#    <details><summary>Solution</summary>
#
#    ```python
#    pair_c = coeffs.join_coeffs(angle=torch.tensor([[0.1, 0.5, 0.05], [-0.1, -0.9, 0.0]]), gamma=studio.expand(2, -1))
#    for size in (24, 48, 96):
#        t = compare_backends(model, pair_c, size, torch.full((2, 3, size, size), 0.85), repeats=1)["seconds"]
#        print(f"{size} px: occ3d {1e3 * t['occ3d']:.1f} ms, PyTorch3D {1e3 * t['pytorch3d']:.1f} ms")
#    ```
#    The bounding-box rasteriser tests the pixels of each triangle's box: a per-triangle cost that dominates
#    at small sizes, then roughly proportional to the covered pixels (x4 per doubling of the size) once
#    triangles cover several pixels each, so it grows *less* than x4 per doubling at first. On a CPU
#    PyTorch3D runs its naive rasteriser (section 5): every pixel tests every triangle, work proportional to
#    pixels x triangles, so its time grows about x4 per doubling from the start, and the gap between the two
#    widens with the image size.</details>
#
# ## References
#
# - V. Blanz, T. Vetter. A morphable model for the synthesis of 3D faces. SIGGRAPH 1999.
# - P. Paysan et al. A 3D face model for pose and illumination invariant face recognition. AVSS 2009 (BFM).
# - Y. Deng et al. Accurate 3D face reconstruction with weakly-supervised learning. CVPR Workshops 2019 (RNet).
# - R. Ramamoorthi, P. Hanrahan. An efficient representation for irradiance environment maps. SIGGRAPH 2001.
# - N. Ravi et al. Accelerating 3D deep learning with PyTorch3D. 2020.
