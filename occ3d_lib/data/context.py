"""One object that every notebook builds first: profile + data track + where outputs go.

Taught in notebook 00 ("Profiles and data tracks") and used in the setup of
notebooks 01-05. A :class:`Context` knows the profile, the run folder, the
device and the four data-track choices (``face_model``, ``dataset``,
``teacher``, ``facenet``), and builds the shared artifacts lazily and cached:
the face model, the renderer, the synthetic dataset. Later stages (teacher,
SOPI, embedder, MOPI, evaluation sets) live in their own modules and take a
Context, so any notebook can build what an earlier one would have produced.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from occ3d_lib.core.artifacts import run_dir as _run_dir
from occ3d_lib.core.config import Profile, config_hash, get_profile
from occ3d_lib.core.envinfo import best_device
from occ3d_lib.data.synthetic import SyntheticDataset, load_or_build_synthetic
from occ3d_lib.data.tracks import resolve_face_model, validate_specs
from occ3d_lib.face.facemodel import FaceModel
from occ3d_lib.render.renderer import FaceRenderer


@dataclass
class Context:
    """Profile, run folder, device and data-track choices, with lazily built shared artifacts."""

    profile: Profile
    run_dir: Path
    device: str = "cpu"
    face_model_spec: str = "procedural"
    dataset_spec: str = "synthetic"
    teacher_spec: str = "train"
    facenet_spec: str = "synthetic"
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def face_model(self) -> FaceModel:
        """The FaceModel of the chosen track (procedural by default; BFM_model_front.mat by path)."""
        return resolve_face_model(self.face_model_spec, self.profile)

    @cached_property
    def renderer(self) -> FaceRenderer:
        """A FaceRenderer at the profile's image size with the profile's ``render_backend``."""
        return FaceRenderer(self.face_model, self.profile.image_size, backend=self.profile.render_backend)

    @cached_property
    def dataset(self) -> SyntheticDataset:
        """The synthetic dataset (train/val/test split by identity), generated or loaded from cache."""
        if self.dataset_spec != "synthetic":
            raise ValueError(f"dataset {self.dataset_spec!r}: training runs on the synthetic dataset; real datasets "
                             "are evaluation sets (see notebook 05, 'Running on real data')")
        return load_or_build_synthetic(self.profile, self.face_model, progress=self.progress)

    def stage_dir(self, name: str, settings: dict[str, Any]) -> Path:
        """``run_dir/checkpoints/<name>-<hash>``: where a trained stage keeps its files."""
        d = self.run_dir / "checkpoints" / f"{name}-{config_hash(settings)}"
        d.mkdir(parents=True, exist_ok=True)
        return d


def make_context(profile: str | Profile | None = None, run_dir: str | Path | None = None,
                 face_model: str = "procedural", dataset: str = "synthetic", teacher: str = "train",
                 facenet: str = "synthetic", device: str | None = None, progress: bool = True,
                 pretrained: bool | None = None, **overrides: Any) -> Context:
    """Build the Context of a notebook from its parameters (profile name or object, overrides of fields).

    ``pretrained`` (None: the profile's) chooses the shipped pretrained teacher and FaceNet
    (``data/pretrained/``) or networks trained in the run (notebooks 03 and 04).

    Args:
        profile: a profile name (None: ``$OCC3D_PROFILE`` or ``course``) or a :class:`Profile`.
        run_dir: the run folder; None: ``$OCC3D_RUN_DIR``, else ``runs/<profile>``
            (:func:`occ3d_lib.core.artifacts.run_dir`).
        face_model: the face-model track: "procedural" or a path to ``BFM_model_front.mat``.
        dataset: the dataset track: "synthetic", "celeba:<root>", "aflw2000:<root>" or "photos:<folder>".
        teacher: "train" (train RNet here) or a path to a Deep3DFaceRecon checkpoint.
        facenet: "synthetic", "vggface2" or "casia-webface".
        device: the torch device; None picks the best one here (:func:`occ3d_lib.core.envinfo.best_device`).
        progress: show progress bars while artifacts are built.
        pretrained: overrides the profile's ``pretrained`` flag when not None.
        **overrides: further Profile fields to change (:meth:`Profile.replace`).

    Returns:
        The :class:`Context`; the four track values are checked by
        :func:`occ3d_lib.data.tracks.validate_specs` first (``ValueError`` / ``FileNotFoundError``).
    """
    p = profile if isinstance(profile, Profile) else get_profile(profile)
    if pretrained is not None:
        overrides["pretrained"] = pretrained
    if overrides:
        p = p.replace(**overrides)
    validate_specs(face_model=face_model, dataset=dataset, teacher=teacher, facenet=facenet)
    return Context(profile=p, run_dir=_run_dir(p.name, run_dir), device=device or best_device(),
                   face_model_spec=face_model, dataset_spec=dataset, teacher_spec=teacher,
                   facenet_spec=facenet, progress=progress)
