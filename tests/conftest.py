"""Shared test fixtures: small face models and a small embedding network, built by the tests themselves.

Factories: ``tiny_model(n_id, n_exp, n_tex)`` (a unit square of two triangles), ``toy_face_model(n)`` (a
face-sized dome with RNet's basis sizes) and ``tiny_net()`` (a stand-in for InceptionResnetV1). ``renderer``
renders the evaluation tests' 6 x 6 bump (evaluation_samples) at 32 px; a test module may define its own.
"""
from __future__ import annotations

from collections.abc import Callable

import evaluation_samples
import pytest
import torch
from torch import nn

from occ3d_lib.face.facemodel import FaceModel, build_point_buf
from occ3d_lib.nets.models import seeded
from occ3d_lib.render.renderer import FaceRenderer
from occ3d_lib.training.train import TrainConfig, Trainer


def _tiny_model(n_id=2, n_exp=1, n_tex=2):
    # a unit square in the z = 0 plane split into two triangles (normals along -z with the reference formula)
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    tri = torch.tensor([[0, 2, 1], [0, 3, 2]])
    n = verts.shape[0]
    g = torch.Generator().manual_seed(0)
    kp = torch.tensor([i % n for i in range(68)])
    return FaceModel(mean_shape=verts, id_base=torch.randn(3 * n, n_id, generator=g),
                     exp_base=torch.randn(3 * n, n_exp, generator=g), mean_tex=torch.full((n, 3), 128.0),
                     tex_base=torch.randn(3 * n, n_tex, generator=g), tri=tri,
                     point_buf=build_point_buf(tri, n), keypoints=kp, skin_mask=torch.ones(n),
                     info={"name": "tiny"})


def _toy_face_model(n: int = 9) -> FaceModel:
    """A dome of (n x n) vertices, about the face's size (1.5 units wide), with random bases of RNet's sizes."""
    g = torch.Generator().manual_seed(0)
    u = torch.linspace(-1, 1, n)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    z = 0.4 * (1 - 0.5 * (xx ** 2 + yy ** 2))
    verts = torch.stack([0.75 * xx, 0.9 * yy, z], -1).reshape(-1, 3)
    idx = torch.arange(n * n).view(n, n)
    a, b, c, d = idx[:-1, :-1].flatten(), idx[:-1, 1:].flatten(), idx[1:, 1:].flatten(), idx[1:, :-1].flatten()
    tri = torch.cat([torch.stack([a, b, c], 1), torch.stack([a, c, d], 1)])
    nv = verts.shape[0]
    kp = torch.linspace(0, nv - 1, 68).round().long()
    return FaceModel(mean_shape=verts, id_base=0.01 * torch.randn(3 * nv, 80, generator=g),
                     exp_base=0.005 * torch.randn(3 * nv, 64, generator=g),
                     mean_tex=150 + 40 * torch.rand(nv, 3, generator=g),
                     tex_base=3 * torch.randn(3 * nv, 80, generator=g), tri=tri,
                     point_buf=build_point_buf(tri, nv), keypoints=kp, skin_mask=torch.ones(nv),
                     info={"name": "toy-dome"})


class _TinyNet(nn.Module):
    """A small stand-in for InceptionResnetV1: (B, 3, s, s) -> (B, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.fc = nn.Linear(8, 16)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


@pytest.fixture(scope="session")
def tiny_model() -> Callable[..., FaceModel]:
    """Factory of a 4-vertex, 2-triangle FaceModel with random bases: ``tiny_model(n_id=2, n_exp=1, n_tex=2)``."""
    return _tiny_model


@pytest.fixture(scope="session")
def toy_face_model() -> Callable[..., FaceModel]:
    """Factory of a face-sized dome FaceModel with RNet's basis sizes: ``toy_face_model(n=9)``."""
    return _toy_face_model


@pytest.fixture(scope="session")
def tiny_net() -> Callable[[], nn.Module]:
    """Factory of a small (B, 3, s, s) -> (B, 16) network standing in for InceptionResnetV1."""
    return _TinyNet


def _linear_trainer(out, steps: int) -> Trainer:
    """A Trainer of a seeded 3 -> 1 linear regression (batches of 4, checkpoint and log every 2 steps) in ``out``."""
    with seeded(0):
        model = torch.nn.Linear(3, 1)
    cfg = TrainConfig(steps=steps, lr=0.05, checkpoint_every=2, log_every=2, seed=0)

    def batch_fn(step, g):
        x = torch.randn(4, 3, generator=g)
        return {"x": x, "y": x.sum(1, keepdim=True)}

    return Trainer(model, lambda m, b: {"loss": ((m(b["x"]) - b["y"]) ** 2).mean()}, batch_fn, cfg, out)


@pytest.fixture(scope="session")
def linear_trainer() -> Callable[..., Trainer]:
    """Factory of a tiny seeded Trainer: ``linear_trainer(out_dir, steps)`` (checkpoint and resume tests)."""
    return _linear_trainer


@pytest.fixture(scope="module")
def renderer() -> FaceRenderer:
    """The evaluation tests' renderer: ``tiny_face_model()`` of evaluation_samples at ``S`` = 32 px."""
    return FaceRenderer(evaluation_samples.tiny_face_model(), evaluation_samples.S)
