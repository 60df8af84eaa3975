"""The pretrained stand-ins shipped in the repository: compact weight files, their manifest, verified loading.

Taught in notebook 03, section 3 (the teacher) and notebook 04, section 2 (FaceNet). The paper is handed
a pre-trained RNet (Deep3DFaceRecon's ``epoch_20.pth``) and a pre-trained FaceNet (facenet-pytorch's
vggface2 weights). The embedded track ships its own counterparts, trained once by the project on the
synthetic training identities (``make pretrained``, :mod:`occ3d_lib.pretrain`) and committed under
``data/pretrained/``:

- ``teacher.pt``: the course-sized teacher (a :class:`~occ3d_lib.nets.models.ReconNet` state dict, float16);
- ``facenet.pt``: the synthetic FaceNet embedder (an ``InceptionResnetV1`` state dict, float16);
- ``manifest.json``: for each file its size and BLAKE2b, the architecture, what it must be used with
  (``compat``: backbone, image size, face model), and how it was made (command, commit, profile,
  configuration hash, steps, CPU-hours, validation-identity metrics and learning curve).

:func:`load_shipped` checks the file against the manifest before reading it (``torch.load`` with
``weights_only=True``: a shipped file never runs code), and a missing or damaged file is a one-line
error naming the file and the command that rebuilds it.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from occ3d_lib.core.artifacts import (
    REPO_ROOT,
    DamagedArtifact,
    _check,
    atomic_path,
    file_digest,
    torch_load,
    write_json,
)

PRETRAINED_ENV = "OCC3D_PRETRAINED_DIR"
MANIFEST = "manifest.json"
FORMAT = "occ3d-pretrained"
NAMES = ("teacher", "facenet")
#: The command that makes the shipped files again (hours on 2 CPU cores; resumable).
REBUILD = "make pretrained"
#: What to do instead of rebuilding, for a notebook run.
ALTERNATIVE = "-p pretrained=False to train every network in the run"


def pretrained_dir() -> Path:
    """Where the shipped weights live: ``$OCC3D_PRETRAINED_DIR`` or ``<repo>/data/pretrained``."""
    return Path(os.environ.get(PRETRAINED_ENV) or REPO_ROOT / "data" / "pretrained")


def read_manifest(root: str | Path | None = None) -> dict[str, Any]:
    """The manifest of the shipped weights (a one-line error when it is missing or unreadable)."""
    path = Path(root or pretrained_dir()) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"the pretrained weights' manifest {path} is missing: restore it with "
                                f"'git checkout -- {path.parent}', rebuild it with '{REBUILD}', or run with "
                                f"{ALTERNATIVE}") from None
    except (OSError, ValueError) as exc:
        raise DamagedArtifact(path, f"unreadable: {type(exc).__name__}",
                              f"restore it with 'git checkout -- {path}' or rebuild it with '{REBUILD}'") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("networks"), dict):
        raise DamagedArtifact(path, f"not an {FORMAT} manifest",
                              f"restore it with 'git checkout -- {path}' or rebuild it with '{REBUILD}'")
    return data


def shipped_entry(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The manifest entry of one shipped network (``'teacher'`` or ``'facenet'``)."""
    if name not in NAMES:
        raise ValueError(f"unknown pretrained network {name!r}; valid: {', '.join(NAMES)}")
    manifest = read_manifest(root)
    entry = manifest["networks"].get(name)
    if not isinstance(entry, dict) or "file" not in entry:
        raise FileNotFoundError(f"the pretrained manifest in {Path(root or pretrained_dir())} has no {name!r}: "
                                f"rebuild it with '{REBUILD}' or run with {ALTERNATIVE}")
    return entry


def load_shipped(name: str, root: str | Path | None = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Verify and read one shipped network: (state dict in float32, its manifest entry).

    The file's size and BLAKE2b must match the manifest (else :class:`DamagedArtifact` naming the
    file and ``make pretrained``); it is read with ``weights_only=True`` and must hold only tensors.
    """
    entry = shipped_entry(name, root)
    path = Path(root or pretrained_dir()) / str(entry["file"])
    remedy = f"restore it with 'git checkout -- {path}', rebuild it with '{REBUILD}', or run with {ALTERNATIVE}"
    if not path.is_file():
        raise FileNotFoundError(f"pretrained {name} weights {path} are missing: {remedy}")
    problem = _check(path, entry)
    if problem:
        raise DamagedArtifact(path, problem, remedy)
    state = torch_load(path, remedy)
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise DamagedArtifact(path, "not a state dict of tensors", remedy)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}, entry


def compact_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state dict for shipping: floating tensors as float16 (half the bytes), the rest unchanged, contiguous."""
    return {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).cpu().contiguous()
            for k, v in state.items()}


def write_shipped(name: str, state: Mapping[str, Tensor], info: Mapping[str, Any],
                  root: str | Path | None = None) -> dict[str, Any]:
    """Write one network's compact weights atomically and record them (with ``info``) in the manifest.

    Returns the manifest entry. Other networks' entries are kept. Used by :mod:`occ3d_lib.pretrain`.
    """
    if name not in NAMES:
        raise ValueError(f"unknown pretrained network {name!r}; valid: {', '.join(NAMES)}")
    root = Path(root or pretrained_dir())
    path = root / f"{name}.pt"
    buf = io.BytesIO()  # saved through a buffer: the archive's inner folder is then "archive", not the temp
    torch.save(compact_state(state), buf)  # file's random name, so the same weights give the same bytes
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    entry = {**dict(info), "file": path.name, "size": path.stat().st_size, "blake2b": file_digest(path),
             "dtype": "float16"}
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, DamagedArtifact):
        manifest = {"format": FORMAT, "networks": {}}
    manifest["networks"][name] = entry
    write_json(root / MANIFEST, manifest)
    return entry


def check_compat(name: str, entry: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """Refuse shipped weights made for other settings: every key of ``wanted`` must equal the entry's ``compat``.

    One line naming the first difference and what to do (rebuild for these settings, or train in the run).
    """
    compat = entry.get("compat") or {}
    for key, value in wanted.items():
        have = compat.get(key)
        if json.dumps(have, sort_keys=True, default=str) != json.dumps(value, sort_keys=True, default=str):
            raise ValueError(f"the shipped pretrained {name} was made for {key}={have!r}, this run has {value!r}: "
                             f"run with {ALTERNATIVE}, or rebuild it for these settings with '{REBUILD}'")
