"""occ3d_lib: the tested library behind the occ3d notebook series.

"Occlusion Resistant Network for 3D Face Reconstruction" (Tiwari et al.),
taught, reproduced and extended. Notebooks explain and call this library;
all real logic lives here. Each public name's docstring says which notebook
section teaches it.

The package exports the entry points a notebook starts from (its profile, its
Context, the artifact cache); everything else is imported from the module that
defines it (``from occ3d_lib.render.renderer import FaceRenderer``; the layers and
their modules are drawn in docs/CONVENTIONS.md). A subpackage is also reachable as
an attribute (``occ3d_lib.render``), imported on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from occ3d_lib.core.artifacts import cache_dir
from occ3d_lib.core.config import Profile, config_hash, get_profile, profile_names
from occ3d_lib.data.context import Context, make_context

__version__ = "0.1.0"

__all__ = ["Context", "Profile", "cache_dir", "config_hash", "get_profile", "make_context", "profile_names"]


def __getattr__(name: str) -> Any:
    """A subpackage or command module on first use (``occ3d_lib.render``, ``occ3d_lib.pipeline``)."""
    if not name.startswith("_"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'occ3d_lib' has no attribute {name!r}")
