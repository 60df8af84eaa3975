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
    "Profile": "config", "get_profile": "config", "profile_names": "config", "config_hash": "config",
    "cache_dir": "artifacts",
    # face model, coefficients, geometry, lighting
    "FaceModel": "facemodel", "vertex_normals": "facemodel",
    "Coeffs": "coeffs", "split_coeffs": "coeffs", "join_coeffs": "coeffs", "N_COEFFS": "coeffs",
    "rotation_matrix": "geometry", "project": "geometry", "camera_intrinsics": "geometry",
    "sh_basis": "lighting", "shade": "lighting",
    "procedural_face_model": "procedural", "load_or_build_procedural": "procedural", "COMPONENT_NAMES": "procedural",
    "load_bfm_front": "bfm",
    # rendering and data
    "rasterize": "raster", "interpolate": "raster", "FaceRenderer": "render", "RenderOutput": "render",
    "rasterize_vertices": "render", "rasterize_pytorch3d": "raster_pytorch3d", "reference_rasterize": "raster_reference",
    "load_or_build_synthetic": "datasets", "Context": "context", "make_context": "context",
    # occlusion
    "occlude": "occlusion", "multi_occlusion_set": "occlusion", "TrainingOccluder": "occlusion",
    "load_or_build_eval_sets": "occlusion",
    # networks and stages
    "ReconNet": "models", "MultiOcclusionNet": "models", "FaceEmbedder": "embedder",
    "get_teacher": "stages", "get_sopi": "stages", "get_mopi": "mopi", "get_embedder": "embedder",
    # training, losses, metrics, evaluation
    "Trainer": "train", "TrainConfig": "train", "se_loss": "losses", "perceptual_loss": "losses",
    "label_loss": "losses", "composite_loss": "losses", "landmark_me": "metrics", "run_evaluation": "evaluation",
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
