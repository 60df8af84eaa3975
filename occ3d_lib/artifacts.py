"""Atomic writes and config-hash caching of artifacts (datasets, checkpoints, tables).

Taught in notebook 00 ("Where things go"). Every file the series writes goes
through :func:`atomic_path` (write a temp file beside the target, then
``os.replace``), so a killed run never leaves a half-written file that a later
run would read as complete. Directories are finished by :func:`atomic_dir`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent
CACHE_ENV = "OCC3D_CACHE"


def cache_dir() -> Path:
    """Root of the artifact cache: ``$OCC3D_CACHE`` or ``<repo>/data/cache``."""
    d = Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "data" / "cache")
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


RUN_DIR_ENV = "OCC3D_RUN_DIR"


def run_dir(profile: str, override: str | Path | None = None) -> Path:
    """Where a notebook writes this run's outputs: ``override``, else ``$OCC3D_RUN_DIR``
    (set by the pipeline), else ``<repo>/runs/<profile>``. Created if missing."""
    d = Path(override or os.environ.get(RUN_DIR_ENV) or REPO_ROOT / "runs" / profile)
    d.mkdir(parents=True, exist_ok=True)
    return d
