"""The model comparer of notebook 05: per-model renders and landmark errors of one occluded face, static grid."""
from __future__ import annotations

import matplotlib
import pytest
import torch

from occ3d_lib.face import coeffs
from occ3d_lib.face.procedural import procedural_face_model
from occ3d_lib.render.renderer import FaceRenderer
from occ3d_lib.teaching import compare

matplotlib.use("Agg")
S = 64


@pytest.fixture(scope="module")
def scene():
    renderer = FaceRenderer(procedural_face_model("light"), S)
    truth = torch.zeros(2, coeffs.N_COEFFS)
    truth[:, coeffs.SLICES["angle"]] = torch.tensor([[0.0, 0.3, 0.0], [0.1, -0.2, 0.0]])
    out = renderer(truth, background=torch.full((2, 3, S, S), 0.5))
    return renderer, truth, out.image.float(), out.landmarks.float()


def test_compare_one_measures_each_model(scene):
    renderer, truth, images, lms = scene
    exact = lambda x: truth[:1].expand(len(x), -1)  # noqa: E731  (knows face 0's coefficients)
    mean = lambda x: torch.zeros(len(x), coeffs.N_COEFFS)  # noqa: E731  (frontal mean face)
    r = compare.compare_one({"exact": exact, "mean": mean}, images[0], lms[0], renderer, "shofi", seed=3)
    assert r["me"]["exact"] < 1e-3 < r["me"]["mean"]
    assert r["renders"]["exact"].shape == (3, S, S) and 0.3 <= r["coverage"] <= 0.6
    again = compare.compare_one({"exact": exact}, images[0], lms[0], renderer, "shofi", seed=3)
    assert torch.equal(again["occluded"], r["occluded"])  # the occluder comes from the seed
    with pytest.raises(ValueError, match="landmarks"):
        compare.compare_one({"exact": exact}, images[0], lms[0, :10], renderer)


def test_static_comparer_has_a_difference_column(scene, monkeypatch):
    renderer, truth, images, lms = scene
    models = {"sopi": lambda x: torch.zeros(len(x), coeffs.N_COEFFS), "mopi": lambda x: truth[:1].expand(len(x), -1)}
    monkeypatch.setenv("OCC3D_INTERACTIVE", "0")
    fig = compare.model_comparer(models, images, lms, renderer, n_static=2)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 2 * 4  # input, two models, their difference; two faces
    assert any("ME" in a.get_title() for a in shown) and any("|sopi - mopi|" in a.get_title() for a in shown)
    import matplotlib.pyplot as plt

    plt.close(fig)
