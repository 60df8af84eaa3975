"""Files the user brings: where they are looked for and where to download them.

A path a notebook parameter names is resolved by :func:`user_path`; a missing file is a
``FileNotFoundError`` from :func:`require_file` that says what the file is, where to download it and
where to put it. What each real-track file is and where it comes from is written in data/README.md.
"""
from __future__ import annotations

import os
from pathlib import Path

from occ3d_lib.core.artifacts import REPO_ROOT


def user_path(path: str | Path) -> Path:
    """A path a user passed as a notebook parameter: ``~`` expanded; a relative path that does not exist
    from the working directory is taken from the repository root (notebooks run in ``notebooks/``)."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def require_file(path: str | Path, what: str, where_from: str, put_at: str | Path | None = None) -> Path:
    """``path`` if it exists; else a ``FileNotFoundError`` saying what it is, where to get it and where to put it."""
    path = Path(path)
    if path.exists():
        return path
    where = f" and put it at {put_at}" if put_at is not None else f" and put it at {path}"
    raise FileNotFoundError(f"{what} not found at {path}. Download it from {where_from}{where}. See data/README.md.")


# ------------------------------------------------------------------------------------------ FaceNet
#: Published weights: file name in ``$TORCH_HOME/checkpoints`` and the size of its logits layer.
FACENET_WEIGHTS: dict[str, tuple[str, int]] = {
    "vggface2": ("20180402-114759-vggface2.pt", 8631),
    "casia-webface": ("20180408-102900-casia-webface.pt", 10575),
}
FACENET_RELEASE_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"



def torch_home() -> Path:
    """``$TORCH_HOME`` or ``$XDG_CACHE_HOME/torch`` or ``~/.cache/torch`` (facenet-pytorch's rule)."""
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))))


def facenet_weights_path(name: str, must_exist: bool = False) -> Path:
    """``$TORCH_HOME/checkpoints/<file>`` of the published FaceNet weights ``name`` ('vggface2':
    20180402-114759-vggface2.pt, 'casia-webface': 20180408-102900-casia-webface.pt; facenet-pytorch's
    release files). With ``must_exist`` a missing file is a ``FileNotFoundError`` naming the download
    URL and the folder."""
    if name not in FACENET_WEIGHTS:
        raise ValueError(f"unknown FaceNet weights {name!r}; valid: {sorted(FACENET_WEIGHTS)}")
    path = torch_home() / "checkpoints" / FACENET_WEIGHTS[name][0]
    if must_exist:
        require_file(path, f"FaceNet weights {name!r} ({FACENET_WEIGHTS[name][0]})",
                     f"{FACENET_RELEASE_URL}{FACENET_WEIGHTS[name][0]} (facenet-pytorch release, MIT licence; trained "
                     f"on {'VGGFace2' if name == 'vggface2' else 'CASIA-WebFace'})",
                     f"{path} (set TORCH_HOME to use another folder), or use facenet = \"synthetic\"")
    return path
