"""Progress bars that show in JupyterLab and a terminal and stay quiet in headless runs.

``tqdm.auto`` picks the notebook widget or the terminal bar. Headless runs (the
pipeline, nbval, CI) set ``OCC3D_PROGRESS=0`` so executed notebooks do not fill
with hundreds of bar updates; a terminal without a TTY is quiet too.
"""
from __future__ import annotations

import os
import sys
from typing import Any

PROGRESS_ENV = "OCC3D_PROGRESS"


def progress_enabled() -> bool:
    """False when ``$OCC3D_PROGRESS`` is ``0``/``false`` or CI is set; True in a notebook or a TTY."""
    v = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if v in ("0", "false", "no", "off") or os.environ.get("CI"):
        return False
    if v in ("1", "true", "yes", "on"):
        return True
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr.isatty()


def progress_bar(*args: Any, disable: bool = False, **kwargs: Any):
    """``tqdm.auto.tqdm`` honouring :func:`progress_enabled` (use as a context manager or iterator)."""
    from tqdm.auto import tqdm

    return tqdm(*args, disable=disable or not progress_enabled(), **kwargs)
