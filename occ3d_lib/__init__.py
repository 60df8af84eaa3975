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

# public name -> submodule that defines it
_EXPORTS = {
    # config / artifacts
    "Profile": "core.config", "get_profile": "core.config", "profile_names": "core.config", "config_hash": "core.config",
    "cache_dir": "core.artifacts",
    # face model, coefficients, geometry, lighting
    "FaceModel": "face.facemodel", "vertex_normals": "face.facemodel",
    "Coeffs": "face.coeffs", "split_coeffs": "face.coeffs", "join_coeffs": "face.coeffs", "N_COEFFS": "face.coeffs",
    "rotation_matrix": "render.camera", "project": "render.camera", "camera_intrinsics": "render.camera",
    "sh_basis": "render.lighting", "shade": "render.lighting",
    "procedural_face_model": "face.procedural", "load_or_build_procedural": "face.procedural", "COMPONENT_NAMES": "face.procedural",
    "load_bfm_front": "face.bfm",
    # rendering and data
    "rasterize": "render.raster", "interpolate": "render.raster", "FaceRenderer": "render.renderer", "RenderOutput": "render.renderer",
    "rasterize_vertices": "render.renderer", "rasterize_pytorch3d": "render.raster_pytorch3d", "reference_rasterize": "render.raster_reference",
    "load_or_build_synthetic": "data.synthetic", "Context": "data.context", "make_context": "data.context",
    # occlusion
    "occlude": "occlusion.occlude", "multi_occlusion_set": "occlusion.occlude", "TrainingOccluder": "occlusion.occlude",
    "load_or_build_eval_sets": "occlusion.occlude",
    # networks and stages
    "ReconNet": "nets.models", "MultiOcclusionNet": "nets.models", "FaceEmbedder": "training.embedder",
    "get_teacher": "training.stages", "get_sopi": "training.stages", "get_mopi": "training.mopi", "get_embedder": "training.embedder",
    # training, losses, metrics, evaluation
    "Trainer": "training.train", "TrainConfig": "training.train", "se_loss": "training.losses", "perceptual_loss": "training.losses",
    "label_loss": "training.losses", "composite_loss": "training.losses", "landmark_me": "core.metrics", "run_evaluation": "evaluation.evaluate",
}


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
