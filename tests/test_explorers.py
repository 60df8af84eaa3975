"""Tests of occ3d_lib.teaching.explorers: the occlusion explorer of notebook 02 and the face knobs and component
sweep of notebook 01."""
from __future__ import annotations

import matplotlib
import pytest
import torch

from occ3d_lib.face import coeffs
from occ3d_lib.face.procedural import procedural_face_model
from occ3d_lib.occlusion.kinds import canonical_landmarks
from occ3d_lib.render import lighting
from occ3d_lib.render.renderer import FaceRenderer
from occ3d_lib.teaching import explorers

matplotlib.use("Agg")
S = 64
LM = canonical_landmarks(S)[None]  # one frontal face in the iBUG-68 layout
X = 0.02 + 0.96 * torch.rand(1, 3, S, S, generator=torch.Generator().manual_seed(0))


def test_explore_one_and_static_explorer(monkeypatch):
    r = explorers.explore_one(X[0], LM[0], "shofi", size=0.4, color=(0.0, 1.0, 0.0), position=(0, 0), seed=1)
    assert r.coverage.item() == pytest.approx(0.4, abs=0.02)
    assert bool((r.images[0, 1][r.masks[0, 0]] == 1).all())
    monkeypatch.setenv("OCC3D_INTERACTIVE", "0")
    fig = explorers.occlusion_explorer(X[0], LM[0])
    assert len([a for a in fig.axes if a.images]) == 9
    import matplotlib.pyplot as plt

    plt.close(fig)



def test_face_coeffs_put_each_knob_in_its_component():
    c = explorers.face_coeffs(smile=2.0, skin_tone=-1.0, yaw=0.5, light_x=0.0, light_y=0.0)
    assert c.shape == (1, coeffs.N_COEFFS)
    assert c[0, coeffs.SLICES["exp"].start + 1] == 2.0 and c[0, coeffs.SLICES["tex"].start] == -1.0
    assert torch.equal(c[0, coeffs.SLICES["angle"]], torch.tensor([0.0, 0.5, 0.0]))
    gamma = c[0, coeffs.SLICES["gamma"]].view(3, 9)
    assert torch.equal(gamma[0], gamma[1]) and gamma[0, 2] == pytest.approx(0.2)  # white light, only z
    assert int((c != 0).sum()) == 2 + 1 + 3  # two knobs, yaw, the light's z term in three colours


def test_component_sweep_and_tinted_gamma():
    model = procedural_face_model("light")
    r = FaceRenderer(model, 24)
    imgs = explorers.component_sweep(r, "id", 0, torch.zeros(1, 27), yaw=0.0, background=0.5)
    assert imgs.shape == (3, 3, 24, 24)
    assert not torch.allclose(imgs[0], imgs[2])  # -3 and +3 sigma differ
    sh = torch.tensor([[0.1, 0.2, 0.3, 0, 0, 0, 0, 0, 0.5]])
    assert torch.equal(lighting.tinted_gamma(sh, torch.ones(3)), lighting.white_gamma(sh))
    warm = lighting.tinted_gamma(sh, torch.tensor([2.0, 1.0, 0.0])).view(3, 9)
    assert torch.equal(warm[0], 2 * sh[0]) and torch.equal(warm[2], torch.zeros(9))
