"""The synthetic face dataset with exact ground truth (notebook 01, section 7).

Identities are sampled from the face model's prior; each identity gets several
views with a random expression, pose (yaw up to +-50 degrees, pitch, roll), SH
light and background (solid colour, gradient, noise or texture, sometimes
skin-coloured, so the face cannot be found by colour alone). Every image keeps
its ground truth: the 257 coefficients, the 68 projected landmarks and its
identity id (so meshes are exact too: ``model.shape(id, exp)``).

Storage (under ``cache_dir()/synthetic/<hash>/``): per split ``images.npy``
uint8 (M, 3, S, S), ``coeffs.npy`` float32 (M, 257), ``landmarks.npy`` float32
(M, 68, 2), ``identity.npy`` int64 (M,), plus ``meta.json`` and ``MANIFEST.json``
(size and hash of every file, checked when the dataset is loaded: a damaged
dataset is rebuilt with a warning). The whole folder is written under a temporary
name and renamed when complete, so an interrupted generation never looks
finished; it is regenerated on the next call.
Splits are by identity: no identity appears in two splits.
"""
from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from occ3d_lib.core.artifacts import DamagedArtifact, atomic_dir, cache_dir, remove_artifact, verify_dir
from occ3d_lib.core.config import Profile, config_hash
from occ3d_lib.core.progress import progress_bar
from occ3d_lib.face.coeffs import join_coeffs
from occ3d_lib.face.facemodel import FaceModel
from occ3d_lib.render.renderer import RENDER_VERSION, FaceRenderer

DATASET_VERSION = 3
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SamplingConfig:
    """The distributions synthetic views are drawn from (documented in notebook 01, section 7).

    Angles in degrees; coefficients in prior standard deviations.
    """

    id_std: float = 1.0
    tex_std: float = 1.0
    exp_std: float = 0.6
    clip: float = 3.0
    yaw_deg: float = 50.0
    pitch_deg: float = 20.0
    roll_deg: float = 15.0
    # faces are aligned crops, as RNet sees them after 5-point alignment (docs/facts.md §8): a small
    # residual shift (+-0.05 units = +-5 px at 224) and scale (+-3 %) remain
    trans_xy: float = 0.05
    trans_z: float = 0.3
    light_dc: tuple[float, float] = (0.0, 0.4)
    light_first: float = 0.2
    light_second: float = 0.08
    light_tint: float = 0.05
    #: named expression components drawn as |N(0, exp_std)| (the procedural model's "mouth open" only
    #: looks right for positive values: a closed mouth cannot close further)
    nonnegative_exp: tuple[str, ...] = ("mouth open",)


def _clipped_normal(shape: tuple[int, ...], std: float, clip: float, g: torch.Generator) -> Tensor:
    return (torch.randn(shape, generator=g) * std).clamp(-clip * std, clip * std)


def sample_identities(n: int, model: FaceModel, g: torch.Generator,
                      cfg: SamplingConfig = SamplingConfig()) -> tuple[Tensor, Tensor]:
    """Identity and albedo coefficients from the prior (clipped at 3 sigma).

    Args:
        n: the number of identities.
        model: the FaceModel (its ``n_id`` and ``n_tex`` give K_id and K_tex).
        g: the CPU generator every draw comes from.
        cfg: the sampling distributions (``id_std``, ``tex_std``, ``clip`` in standard deviations).

    Returns:
        ``(id_coeff, tex_coeff)``: ``(n, K_id)`` and ``(n, K_tex)`` float32.
    """
    return (_clipped_normal((n, model.n_id), cfg.id_std, cfg.clip, g),
            _clipped_normal((n, model.n_tex), cfg.tex_std, cfg.clip, g))


def sample_light(n: int, g: torch.Generator, cfg: SamplingConfig = SamplingConfig()) -> Tensor:
    """Random near-white SH light: (n, 27) gamma (the 0.8 DC offset is added by the shader)."""
    lo, hi = cfg.light_dc
    sh = torch.zeros(n, 9)
    sh[:, 0] = lo + (hi - lo) * torch.rand(n, generator=g)
    sh[:, 1:4] = torch.randn(n, 3, generator=g) * cfg.light_first
    sh[:, 4:] = torch.randn(n, 5, generator=g) * cfg.light_second
    tint = 1 + torch.randn(n, 3, 1, generator=g) * cfg.light_tint
    return (sh.unsqueeze(1) * tint).reshape(n, 27)


def sample_views(id_coeff: Tensor, tex_coeff: Tensor, model: FaceModel, g: torch.Generator,
                 cfg: SamplingConfig = SamplingConfig()) -> Tensor:
    """One random view per row: expression, pose, translation and light.

    Args:
        id_coeff: identity coefficients ``(n, K_id)`` (:func:`sample_identities`).
        tex_coeff: albedo coefficients ``(n, K_tex)``.
        model: the FaceModel (``n_exp`` and its named expression components).
        g: the CPU generator every draw comes from.
        cfg: the sampling distributions (expression spread, angle limits in degrees, translation, light).

    Returns:
        ``(n, 257)`` coefficients in RNet order (:func:`occ3d_lib.face.coeffs.join_coeffs`).
    """
    n = id_coeff.shape[0]
    exp = _clipped_normal((n, model.n_exp), cfg.exp_std, cfg.clip, g)
    names = list(model.info.get("component_names", {}).get("exp", []))
    for name in cfg.nonnegative_exp:
        if name in names:
            k = names.index(name)
            exp[:, k] = exp[:, k].abs()
    u = lambda lim: (torch.rand(n, generator=g) * 2 - 1) * lim  # noqa: E731
    angle = torch.stack([u(math.radians(cfg.pitch_deg)), u(math.radians(cfg.yaw_deg)), u(math.radians(cfg.roll_deg))], 1)
    trans = torch.stack([u(cfg.trans_xy), u(cfg.trans_xy), u(cfg.trans_z)], 1)
    return join_coeffs(id=id_coeff, exp=exp, tex=tex_coeff, angle=angle, gamma=sample_light(n, g, cfg), trans=trans)


def _smooth_noise(n: int, size: int, cells: int, g: torch.Generator) -> Tensor:
    z = torch.rand(n, 3, cells, cells, generator=g)
    return F.interpolate(z, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


SKIN_TONES = torch.tensor([[0.95, 0.80, 0.70], [0.85, 0.65, 0.50], [0.65, 0.45, 0.33], [0.45, 0.30, 0.22]])
BACKGROUND_KINDS = ("solid", "gradient", "noise", "texture")


def random_backgrounds(n: int, size: int, g: torch.Generator) -> Tensor:
    """(n, 3, size, size) backgrounds in [0, 1]: solid, gradient, noise or texture, a quarter skin-coloured.

    Skin-coloured backgrounds make sure a network cannot find the face by colour alone.

    Args:
        n: the number of backgrounds.
        size: their side S in pixels.
        g: the CPU generator every draw comes from.

    Returns:
        ``(n, 3, size, size)`` float32 in [0, 1], each of a kind of :data:`BACKGROUND_KINDS` drawn at random.
    """
    kind = torch.randint(0, len(BACKGROUND_KINDS), (n,), generator=g)
    c1 = torch.rand(n, 3, generator=g)
    skin = torch.rand(n, generator=g) < 0.25
    c1[skin] = SKIN_TONES[torch.randint(0, len(SKIN_TONES), (int(skin.sum()),), generator=g)]
    c2 = torch.rand(n, 3, generator=g)
    ys = torch.linspace(0, 1, size).view(1, 1, size, 1)
    xs = torch.linspace(0, 1, size).view(1, 1, 1, size)
    ang = torch.rand(n, generator=g) * 2 * math.pi
    t = (xs * ang.cos().view(-1, 1, 1, 1) + ys * ang.sin().view(-1, 1, 1, 1))
    t = (t - t.amin((2, 3), keepdim=True)) / (t.amax((2, 3), keepdim=True) - t.amin((2, 3), keepdim=True) + 1e-8)
    solid = c1.view(n, 3, 1, 1).expand(n, 3, size, size)
    gradient = c1.view(n, 3, 1, 1) * (1 - t) + c2.view(n, 3, 1, 1) * t
    noise = (solid + (torch.rand(n, 3, size, size, generator=g) - 0.5) * 0.5).clamp(0, 1)
    blobs = _smooth_noise(n, size, 6, g)
    freq = 4 + torch.randint(0, 12, (n,), generator=g).view(-1, 1, 1, 1).float()
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * t)
    texture = (0.6 * blobs + 0.4 * stripes) * c1.view(n, 3, 1, 1) + (1 - 0.6 * blobs - 0.4 * stripes) * c2.view(n, 3, 1, 1)
    out = torch.stack([solid, gradient, noise, texture], 0)  # (4, n, 3, S, S)
    return out[kind, torch.arange(n)].clamp(0, 1).contiguous()


@dataclass
class SyntheticSplit:
    """One split held in memory-mapped arrays; index it like a dataset.

    images (M, 3, S, S) uint8, coeffs (M, 257) float32, landmarks (M, 68, 2) float32,
    identity (M,) int64.
    """

    name: str
    images: np.ndarray
    coeffs: np.ndarray
    landmarks: np.ndarray
    identity: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"image": torch.from_numpy(np.array(self.images[i])).float() / 255.0,
                "coeffs": torch.from_numpy(np.array(self.coeffs[i])),
                "landmarks": torch.from_numpy(np.array(self.landmarks[i])),
                "identity": torch.tensor(int(self.identity[i]))}

    def batch(self, index: Tensor | np.ndarray | list[int]) -> dict[str, Tensor]:
        """A batch by indices: image (B, 3, S, S) float in [0, 1], coeffs, landmarks, identity."""
        idx = np.asarray(index, dtype=np.int64)
        return {"image": torch.from_numpy(np.ascontiguousarray(self.images[idx])).float() / 255.0,
                "coeffs": torch.from_numpy(np.ascontiguousarray(self.coeffs[idx])),
                "landmarks": torch.from_numpy(np.ascontiguousarray(self.landmarks[idx])),
                "identity": torch.from_numpy(np.ascontiguousarray(self.identity[idx]))}

    @property
    def identities(self) -> np.ndarray:
        return np.unique(self.identity)


@dataclass
class SyntheticDataset:
    """The three splits plus the settings that made them."""

    root: Path
    meta: dict[str, Any]
    train: SyntheticSplit
    val: SyntheticSplit
    test: SyntheticSplit

    def split(self, name: str) -> SyntheticSplit:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; valid: {SPLITS}")
        return getattr(self, name)


def dataset_settings(profile: Profile, model: FaceModel, sampling: SamplingConfig = SamplingConfig()) -> dict[str, Any]:
    """Everything that determines the dataset's bytes (its cache key)."""
    return {
        "version": DATASET_VERSION,
        "render": RENDER_VERSION,
        "image_size": profile.image_size,
        "identities": {"train": profile.n_train_identities, "val": profile.n_val_identities, "test": profile.n_test_identities},
        "views_per_identity": profile.views_per_identity,
        "seed": profile.seed,
        "face_model": {k: model.info.get(k) for k in ("name", "resolution", "seed", "version", "path")},
        "sampling": sampling.__dict__,
    }


def generate_split(model: FaceModel, n_identities: int, views: int, image_size: int, g: torch.Generator,
                   id_offset: int = 0, sampling: SamplingConfig = SamplingConfig(), batch_size: int = 64,
                   progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Render ``n_identities * views`` images; returns the split's arrays (see module docstring)."""
    renderer = FaceRenderer(model, image_size)
    ids, tex = sample_identities(n_identities, model, g, sampling)
    id_rep, tex_rep = ids.repeat_interleave(views, 0), tex.repeat_interleave(views, 0)
    identity = torch.arange(id_offset, id_offset + n_identities).repeat_interleave(views)
    m = id_rep.shape[0]
    images = np.zeros((m, 3, image_size, image_size), np.uint8)
    coeffs = np.zeros((m, 257), np.float32)
    landmarks = np.zeros((m, 68, 2), np.float32)
    for s in range(0, m, batch_size):
        e = min(m, s + batch_size)
        c = sample_views(id_rep[s:e], tex_rep[s:e], model, g, sampling)
        bg = random_backgrounds(e - s, image_size, g)
        with torch.no_grad():
            out = renderer(c, bg)
        images[s:e] = (out.image * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        coeffs[s:e] = c.numpy()
        landmarks[s:e] = out.landmarks.numpy()
        if progress:
            progress(e - s)
    return {"images": images, "coeffs": coeffs, "landmarks": landmarks, "identity": identity.numpy()}


def _load(root: Path) -> SyntheticDataset:
    meta = json.loads((root / "meta.json").read_text())
    splits = {}
    for name in SPLITS:
        d = root / name
        splits[name] = SyntheticSplit(name=name, images=np.load(d / "images.npy", mmap_mode="r"),
                                      coeffs=np.load(d / "coeffs.npy"), landmarks=np.load(d / "landmarks.npy"),
                                      identity=np.load(d / "identity.npy"))
    return SyntheticDataset(root=root, meta=meta, **splits)


def is_complete(root: Path, key: str) -> bool:
    """True when ``root`` holds a finished dataset whose meta.json carries ``key``."""
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("key") == key and all((root / s / f).exists() for s in SPLITS
                                           for f in ("images.npy", "coeffs.npy", "landmarks.npy", "identity.npy"))


def load_or_build_synthetic(profile: Profile, model: FaceModel, root: str | Path | None = None,
                            sampling: SamplingConfig = SamplingConfig(), progress: bool = True,
                            _interrupt_after: int | None = None) -> SyntheticDataset:
    """The synthetic dataset for ``profile``: reused when its settings hash matches, else generated.

    Deterministic from ``profile.seed``. ``_interrupt_after`` (tests only) raises after that many
    images to simulate a killed generation.
    """
    settings = dataset_settings(profile, model, sampling)
    key = config_hash(settings)
    base = Path(root) if root is not None else cache_dir() / "synthetic"
    final = base / key
    if is_complete(final, key):
        try:
            return _load(verify_dir(final, settings=settings))
        except (DamagedArtifact, ValueError, OSError) as exc:  # truncated / changed arrays: rebuilt, and said so
            import warnings

            warnings.warn(f"synthetic dataset {getattr(exc, 'path', final)} is damaged ({getattr(exc, 'problem', exc)}); "
                          f"deleting {final} and rebuilding", stacklevel=2)
            remove_artifact(final, "synthetic dataset", str(getattr(exc, "problem", exc)))
    if final.exists():  # an unfinished or foreign folder under our name: redo it
        shutil.rmtree(final)
    n_ids = settings["identities"]
    total = sum(n_ids.values()) * profile.views_per_identity
    done = [0]

    def tick(k: int) -> None:
        bar.update(k)
        done[0] += k
        if _interrupt_after is not None and done[0] >= _interrupt_after:
            raise KeyboardInterrupt("simulated interruption")

    with atomic_dir(final, manifest=True, settings=settings) as tmp, \
            progress_bar(total=total, desc="rendering synthetic faces", disable=not progress) as bar:
        offset = 0
        for i, name in enumerate(SPLITS):
            g = torch.Generator().manual_seed(profile.seed * 1000 + 17 + i)
            arrays = generate_split(model, n_ids[name], profile.views_per_identity, profile.image_size, g,
                                    id_offset=offset, sampling=sampling, progress=tick)
            offset += n_ids[name]
            (tmp / name).mkdir()
            for k, a in arrays.items():
                np.save(tmp / name / f"{k}.npy", a)
        (tmp / "meta.json").write_text(json.dumps({"key": key, "settings": settings}, indent=2, default=str))
    return _load(final)
