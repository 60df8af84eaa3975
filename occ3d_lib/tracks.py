"""Data tracks: turn the notebooks' four track parameters into objects (notebook 00, section 4).

Parameters (the same in every notebook's ``parameters`` cell):
  face_model: "procedural" (embedded default) or a path to ``BFM_model_front.mat``;
  dataset:    "synthetic" (embedded default), "celeba:<root>", "aflw2000:<root>" or "photos:<folder>";
  teacher:    "train" (train RNet here on clean synthetic faces) or a path to a Deep3DFaceRecon ``epoch_20.pth``;
  facenet:    "synthetic" (embedder trained here), "vggface2" or "casia-webface" (weights in $TORCH_HOME/checkpoints).
"""
from __future__ import annotations

from .config import Profile

FACE_MODEL_SPECS = ("procedural", "<path to BFM_model_front.mat>")
DATASET_SPECS = ("synthetic", "celeba:<root>", "aflw2000:<root>", "photos:<folder>")
TEACHER_SPECS = ("train", "<path to epoch_20.pth>")
FACENET_SPECS = ("synthetic", "vggface2", "casia-webface")


def validate_specs(face_model: str = "procedural", dataset: str = "synthetic", teacher: str = "train",
                   facenet: str = "synthetic") -> None:
    """Check the four track parameters; a bad value is a ``ValueError`` listing the valid forms."""
    for name, value, valid in (("face_model", face_model, FACE_MODEL_SPECS), ("dataset", dataset, DATASET_SPECS),
                               ("teacher", teacher, TEACHER_SPECS), ("facenet", facenet, FACENET_SPECS)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, one of {valid}; got {value!r}")
    if facenet not in FACENET_SPECS:
        raise ValueError(f"facenet must be one of {FACENET_SPECS}, got {facenet!r}")


def resolve_face_model(spec: str, profile: Profile):
    """The FaceModel for ``spec``: the procedural model at the profile's mesh resolution, or a BFM file."""
    if spec == "procedural":
        from .procedural import load_or_build_procedural

        return load_or_build_procedural(profile.mesh, seed=0)
    from .bfm import load_bfm_front

    return load_bfm_front(spec)
