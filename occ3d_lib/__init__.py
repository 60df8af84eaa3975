"""occ3d_lib: the tested library behind the occ3d notebook series.

"Occlusion Resistant Network for 3D Face Reconstruction" (Tiwari et al.),
taught, reproduced and extended. Notebooks explain and call this library;
all real logic lives here. Each public name's docstring says which notebook
section teaches it. Submodules are imported lazily so ``import occ3d_lib`` is
cheap and a notebook pulls in only what it uses.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it (the layers of docs/CONVENTIONS.md, bottom to top)
_EXPORTS = {name: module for module, names in {
    "core.config": ("Profile", "get_profile", "profile_names", "config_hash"),
    "core.artifacts": ("cache_dir",),
    "core.metrics": ("landmark_me",),
    "face.facemodel": ("FaceModel", "vertex_normals"),
    "face.coeffs": ("Coeffs", "split_coeffs", "join_coeffs", "N_COEFFS"),
    "face.procedural": ("procedural_face_model", "load_or_build_procedural", "COMPONENT_NAMES"),
    "face.bfm": ("load_bfm_front",),
    "render.camera": ("rotation_matrix", "project", "camera_intrinsics"),
    "render.lighting": ("sh_basis", "shade"),
    "render.raster": ("rasterize", "interpolate"),
    "render.renderer": ("FaceRenderer", "RenderOutput", "rasterize_vertices"),
    "render.raster_pytorch3d": ("rasterize_pytorch3d",),
    "render.raster_reference": ("reference_rasterize",),
    "nets.models": ("ReconNet", "MultiOcclusionNet"),
    "nets.facenet": ("FaceEmbedder",),
    "data.synthetic": ("load_or_build_synthetic",),
    "data.context": ("Context", "make_context"),
    "occlusion.occlude": ("occlude", "multi_occlusion_set", "TrainingOccluder", "load_or_build_eval_sets"),
    "training.embedder": ("get_embedder",),
    "training.stages": ("get_teacher", "get_sopi"),
    "training.mopi": ("get_mopi",),
    "training.train": ("Trainer", "TrainConfig"),
    "training.losses": ("se_loss", "perceptual_loss", "label_loss", "composite_loss"),
    "evaluation.report": ("run_evaluation",),
}.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if not name.startswith("_"):
        try:  # submodules: occ3d_lib.render, occ3d_lib.metrics, ...
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'occ3d_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
