"""Data tracks: turn the notebooks' four track parameters into objects (notebook 00, section 4).

Parameters (the same in every notebook's ``parameters`` cell):
  face_model: "procedural" (embedded default) or a path to ``BFM_model_front.mat``;
  dataset:    "synthetic" (embedded default), "celeba:<root>", "aflw2000:<root>" or "photos:<folder>";
  teacher:    "train" (train RNet here on clean synthetic faces) or a path to a Deep3DFaceRecon ``epoch_20.pth``;
  facenet:    "synthetic" (embedder trained here), "vggface2" or "casia-webface" (weights in $TORCH_HOME/checkpoints).

:func:`validate_specs` runs in every notebook's first cell (through
``context.make_context``): a malformed value is a ``ValueError`` listing the
valid forms, a file that is missing a ``FileNotFoundError`` saying what to
download, from where, and where to put it (see ``data/README.md``), and a file
in the wrong format a ``ValueError`` naming what is wrong. Relative paths are
taken from the working directory, else from the repository root (notebooks
run inside ``notebooks/``), so ``face_model = "data/BFM/BFM_model_front.mat"``
works from anywhere. These checks read
only headers and index files, so they take well under a second.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from occ3d_lib.core.config import Profile
from occ3d_lib.core.external import facenet_weights_path, user_path
from occ3d_lib.data.real import MAX_PIXELS, check_dataset_spec, open_dataset, parse_dataset_spec
from occ3d_lib.face.bfm import check_bfm_front_file, load_bfm_front
from occ3d_lib.face.procedural import load_or_build_procedural
from occ3d_lib.nets.checkpoints import TEACHER_HELP, infer_backbone, read_deep3d_state

FACE_MODEL_SPECS = ("procedural", "<path to BFM_model_front.mat>")
DATASET_SPECS = ("synthetic", "celeba:<root>", "aflw2000:<root>", "photos:<folder>")
TEACHER_SPECS = ("train", "<path to epoch_20.pth>")
FACENET_SPECS = ("synthetic", "vggface2", "casia-webface")


def _check_teacher_file(path: Path) -> None:
    """The checkpoint exists, loads, and has Deep3DFaceRecon's net_recon layout (keys only)."""
    state = read_deep3d_state(path)
    heads = [f"final_layers.{i}.weight" for i in range(7)]
    missing = [k for k in ["backbone.conv1.weight", *heads] if k not in state]
    if missing:
        raise ValueError(f"{path}: 'net_recon' lacks {missing}; expected Deep3DFaceRecon's layout "
                         "(backbone.* torchvision ResNet, final_layers.0..6)")
    infer_backbone(state)


def validate_specs(face_model: str = "procedural", dataset: str = "synthetic", teacher: str = "train",
                   facenet: str = "synthetic", check_files: bool = True) -> None:
    """Check the four track parameters (notebook 00, section 4).

    A bad value is a ``ValueError`` listing the valid forms; with ``check_files`` every
    file a real-track value names must exist (``FileNotFoundError`` with what to get and
    where to put it) and parse (``ValueError``).
    """
    for name, value, valid in (("face_model", face_model, FACE_MODEL_SPECS), ("dataset", dataset, DATASET_SPECS),
                               ("teacher", teacher, TEACHER_SPECS), ("facenet", facenet, FACENET_SPECS)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, one of {valid}; got {value!r}")
    if facenet not in FACENET_SPECS:
        raise ValueError(f"facenet must be one of {FACENET_SPECS}, got {facenet!r}")
    parse_dataset_spec(dataset)  # form only
    if not check_files:
        return
    if face_model != "procedural":
        check_bfm_front_file(user_path(face_model))
    check_dataset_spec(dataset)
    if teacher != "train":
        _check_teacher_file(user_path(teacher))
    resolve_facenet(facenet)


def resolve_face_model(spec: str, profile: Profile):
    """The FaceModel for ``spec``: the procedural model at the profile's mesh resolution, or a BFM file."""
    if spec == "procedural":
        return load_or_build_procedural(profile.mesh, seed=0)
    return load_bfm_front(spec)


def resolve_dataset(spec: str, size: int = 224, template: Any = None, split: str = "test",
                    max_pixels: int = MAX_PIXELS):
    """The dataset of ``spec``: the string ``"synthetic"`` or an aligned real image set
    (:class:`occ3d_lib.data.real.CelebA`, ``AFLW2000`` or ``PhotoFolder``) at crop ``size``.

    ``template`` (5, 3) is the 3D 5-point template to align to (e.g.
    ``align.template_from_face_model(ctx.face_model)``); None = Deep3DFaceRecon's standard points.
    ``max_pixels``: the pixel budget of one photo (:data:`occ3d_lib.data.real.MAX_PIXELS`).
    """
    return open_dataset(spec, size=size, template=template, split=split, max_pixels=max_pixels)


def resolve_teacher_checkpoint(spec: str) -> Path | None:
    """None for ``"train"``; else the checkpoint path, which must exist (FileNotFoundError says where to get it)."""
    if spec == "train":
        return None
    path = user_path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint not found at {path}. {TEACHER_HELP}")
    return path


def resolve_facenet(spec: str) -> Path | None:
    """None for ``"synthetic"``; else the published weights' path in $TORCH_HOME/checkpoints, which must exist."""
    if spec == "synthetic":
        return None
    if spec not in FACENET_SPECS:
        raise ValueError(f"facenet must be one of {FACENET_SPECS}, got {spec!r}")
    return facenet_weights_path(spec, must_exist=True)
