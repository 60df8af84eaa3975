"""Fixed evaluation sets: model inputs plus ground truth, synthetic or real (notebook 05, section 2).

:class:`EvalSet` is one set; :func:`get_eval_sets` builds them from the run's cached occlusion sets
(:func:`occ3d_lib.occlusion.eval_sets.load_or_build_eval_sets`), :func:`eval_set_from_arrays` and
:func:`real_eval_sets` from real photos (occluded by :mod:`occ3d_lib.occlusion.eval_sets` too, so every
evaluation set is built in one place), and :func:`assert_no_identity_leak` checks that no test
identity was trained on. :mod:`occ3d_lib.evaluation.evaluate` runs the models on them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from occ3d_lib.data import real
from occ3d_lib.data.context import Context
from occ3d_lib.data.landmarks import batch_landmarks68
from occ3d_lib.face.coeffs import validate_coeffs
from occ3d_lib.occlusion.eval_sets import EVAL_KINDS, load_or_build_eval_sets, make_kind_sets


# ------------------------------------------------------------------------------------ data
@dataclass
class EvalSet:
    """One fixed evaluation set: the model inputs and what they are compared with.

    images (B, 3, S, S) model inputs in [0, 1] (occluded); clean (B, 3, S, S) the unoccluded
    originals or None (real data); landmarks (B, 68, 2) ground truth in pixels at S (synthetic:
    the exact projection; real: a detector's output); coeffs (B, 257) ground-truth coefficients
    or None (real data: no 3D ground truth); coverage (B,) occluded fraction of the face region;
    identity (B,) identity ids or None; masks (B, 1, S, S) occluder pixels or None; yaw_deg (B,)
    the true yaw where known without coefficients (AFLW2000-3D's pose), else taken from ``coeffs``.
    """

    kind: str
    images: Tensor
    landmarks: Tensor
    clean: Tensor | None = None
    coeffs: Tensor | None = None
    coverage: Tensor | None = None
    identity: Tensor | None = None
    masks: Tensor | None = None
    dataset: str = "synthetic"
    yaw_deg: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"EvalSet {self.kind!r}: images must have shape (B, 3, S, S), got {tuple(self.images.shape)}")
        b = self.images.shape[0]
        if self.landmarks.shape != (b, 68, 2):
            raise ValueError(f"EvalSet {self.kind!r}: landmarks must have shape ({b}, 68, 2), got {tuple(self.landmarks.shape)}")
        if self.clean is not None and self.clean.shape != self.images.shape:
            raise ValueError(f"EvalSet {self.kind!r}: clean must have the images' shape {tuple(self.images.shape)}")
        if self.coeffs is not None:
            validate_coeffs(self.coeffs, "EvalSet.coeffs")
            if self.coeffs.shape[0] != b:
                raise ValueError(f"EvalSet {self.kind!r}: coeffs must have {b} rows, got {self.coeffs.shape[0]}")
        if self.coverage is None:
            self.coverage = torch.zeros(b)
        if self.coverage.shape != (b,):
            raise ValueError(f"EvalSet {self.kind!r}: coverage must have shape ({b},), got {tuple(self.coverage.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])


def eval_sets_from_occlusion(sets: Mapping[str, Any], split: Any, dataset: str = "synthetic") -> dict[str, EvalSet]:
    """Attach ground truth to the occlusion module's sets. ``sets[kind]`` is an
    :class:`occ3d_lib.occlusion.apply.OcclusionResult` whose ``params['indices']`` are rows of ``split``
    (a SyntheticSplit with ``.batch(idx)`` -> image, coeffs, landmarks, identity)."""
    out = {}
    for kind, res in sets.items():
        idx = res.params.get("indices")
        if idx is None:
            raise ValueError(f"occlusion set {kind!r} has no params['indices']: cannot find its ground truth")
        b = split.batch(np.asarray(idx, dtype=np.int64))
        out[kind] = EvalSet(kind=kind, images=res.images.float(), clean=b["image"], landmarks=b["landmarks"].float(),
                            coeffs=b["coeffs"].float(), coverage=res.coverage.float(), identity=b["identity"],
                            masks=res.masks, dataset=dataset, info={"path": res.params.get("path"), "indices": list(idx)})
    return out


def get_eval_sets(ctx: Context, kinds: Sequence[str] | None = None, n: int | None = None,
                   split: str = "test") -> dict[str, EvalSet]:
    """The run's fixed evaluation sets with ground truth (notebook 05, section 2).

    Args:
        ctx: the run's Context (its synthetic dataset's ``split``).
        kinds: occlusion kinds (default :data:`occ3d_lib.occlusion.eval_sets.EVAL_KINDS`).
        n: faces per set (default ``profile.eval_samples``).
        split: the dataset split the faces come from.

    Returns:
        ``{kind: EvalSet}`` with images ``(n, 3, S, S)``, clean ``(n, 3, S, S)``, landmarks ``(n, 68, 2)``,
        coeffs ``(n, 257)``; the occluded images are built once and cached by
        :func:`occ3d_lib.occlusion.eval_sets.load_or_build_eval_sets`.
    """
    sets = load_or_build_eval_sets(ctx, tuple(kinds or EVAL_KINDS), n=n, split=split)
    return eval_sets_from_occlusion(sets, ctx.dataset.split(split))



def eval_set_from_arrays(kind: str, images: Tensor, landmarks: Tensor, dataset: str, **kw: Any) -> EvalSet:
    """An evaluation set from real data: images (B, 3, S, S), detector landmarks (B, 68, 2)."""
    return EvalSet(kind=kind, images=images.float(), landmarks=landmarks.float(), dataset=dataset, **kw)


REAL_KINDS: tuple[str, ...] = ("none", "dsofi", "dhofi", "shofi", "random_pattern")


def real_eval_sets(spec: str, image_size: int, kinds: Sequence[str] = REAL_KINDS, n: int = 200, seed: int = 0,
                   split: str = "test", progress: bool = False, max_pixels: int = real.MAX_PIXELS) -> dict[str, EvalSet]:
    """Occluded evaluation sets from real photos (notebook 05 section "Running on real data").

    Ground-truth landmarks: the set's own where it has them (AFLW2000-3D's 68 points), else dlib's
    68-point detector on the clean crop, as the paper does; faces where dlib finds nothing are dropped
    and the rate is kept in ``info['dlib_failure_rate']`` (report it). Each kind is occluded as the
    synthetic sets are (:func:`occ3d_lib.occlusion.eval_sets.make_kind_sets`). No 3D ground truth: the
    3D metrics are absent for these sets.

    Args:
        spec: a dataset spec of :mod:`occ3d_lib.data.real` (``"celeba:<root>"``, ``"aflw2000:<root>"``,
            ``"photos:<folder>"``); "synthetic" is a ``ValueError``.
        image_size: the side S of the aligned crops.
        kinds: the occlusion kinds, one set each.
        n: at most this many faces are loaded.
        seed: the occlusion seed.
        split: the dataset split.
        progress: show a progress bar while the photos load.
        max_pixels: the pixel budget of one photo (:data:`occ3d_lib.data.real.MAX_PIXELS`; larger photos
            are skipped as 'too large').

    Returns:
        ``{kind: EvalSet}``, the same B faces in each: images ``(B, 3, S, S)``, clean ``(B, 3, S, S)``,
        landmarks ``(B, 68, 2)``, coverage ``(B,)``, identity, masks ``(B, 1, S, S)``, ``yaw_deg (B,)`` or
        None, coeffs None, and ``info`` (``load_report``, ``skipped``, ``landmarks`` 'dataset' or 'dlib',
        ``dlib_failure_rate`` and ``dlib_found`` when dlib ran, ``names``).
    """
    ds = real.open_dataset(spec, size=image_size, split=split, max_pixels=max_pixels)
    if isinstance(ds, str):
        raise ValueError("real_eval_sets needs a real dataset spec, got 'synthetic' (use get_eval_sets)")
    batch = ds.collect(limit=n, progress=progress)
    if batch.images.shape[0] == 0:
        raise ValueError(f"no usable image in {spec!r}: {batch.report()}")
    images, lm = batch.images.float(), batch.landmarks.float()
    info: dict[str, Any] = {"load_report": batch.report(), "skipped": len(batch.skipped), "landmarks": "dataset"}
    have = torch.isfinite(lm).all(dim=(1, 2))
    if not bool(have.all()):
        det = batch_landmarks68(images)
        found = torch.from_numpy(det.found)
        lm = torch.where(have.view(-1, 1, 1), lm, torch.from_numpy(det.landmarks).float())
        info.update(landmarks="dlib", dlib_failure_rate=det.failure_rate, dlib_found=int(found.sum()))
        keep = have | found
    else:
        keep = have
    if not bool(keep.any()):
        raise ValueError(f"no face with landmarks in {spec!r} (dlib failure rate {info.get('dlib_failure_rate')})")
    idx = keep.nonzero().view(-1)
    images, lm = images[idx], lm[idx]
    yaw = batch.yaw_deg[idx].float()
    name = real.parse_dataset_spec(spec)[0]
    out = {}
    for kind, res in make_kind_sets(images, lm, kinds, seed).items():
        out[kind] = EvalSet(kind=kind, images=res.images.float(), clean=images, landmarks=lm, coverage=res.coverage.float(),
                            identity=batch.identity[idx], masks=res.masks, dataset=name,
                            yaw_deg=yaw if bool(torch.isfinite(yaw).any()) else None,
                            info={**info, "names": [batch.names[i] for i in idx.tolist()]})
    return out


def assert_no_identity_leak(eval_identities: Any, train_identities: Any) -> None:
    """Raise ``AssertionError`` naming the shared ids if any evaluation identity was seen in training.

    Args:
        eval_identities: the evaluation set's identity ids (a tensor, array or sequence of any shape).
        train_identities: the training split's identity ids.

    Returns:
        None; the first five shared ids are named in the ``AssertionError``.
    """
    ev = set(np.asarray(eval_identities).reshape(-1).tolist())
    tr = set(np.asarray(train_identities).reshape(-1).tolist())
    shared = sorted(ev & tr)
    if shared:
        raise AssertionError(f"identity leak: {len(shared)} evaluation identit{'y' if len(shared) == 1 else 'ies'} "
                             f"also in the training split (first: {shared[:5]})")
