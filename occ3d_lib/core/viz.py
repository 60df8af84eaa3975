"""Figures the notebooks show: image grids, landmark overlays, loss curves, widgets with a fallback.

Used throughout notebooks 01-05. Every function returns the matplotlib Figure
so a test can check it without a display; notebooks end their cells with
``plt.show()``.
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _np_image(img: Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] or (H, W, 3) array -> (H, W, 3) float array for imshow."""
    if isinstance(img, Tensor):
        img = img.detach().float().cpu()
        if img.ndim == 3 and img.shape[0] in (1, 3):
            img = img.permute(1, 2, 0)
        img = img.numpy()
    img = np.asarray(img, dtype=np.float32)
    if img.max() > 1.5:
        img = img / 255.0
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return np.clip(img, 0, 1)


def image_grid(images: Tensor | Sequence[Tensor], ncols: int = 8, titles: Sequence[str] | None = None,
               landmarks: Tensor | None = None, landmarks_gt: Tensor | None = None, size: float = 1.6,
               suptitle: str | None = None):
    """A grid of images (B, 3, H, W) with optional titles and landmark overlays (B, 68, 2).

    Args:
        images: ``(B, 3, H, W)`` in [0, 1], or a sequence of ``(3, H, W)`` tensors (or ``(H, W, 3)``
            arrays); values above 1.5 are read as 0-255.
        ncols: columns of the grid (at most the number of images).
        titles: one title per image, or None.
        landmarks: ``(B, 68, 2)`` pixels drawn in red (e.g. a reconstruction's), or None.
        landmarks_gt: ``(B, 68, 2)`` pixels drawn in green (the ground truth), or None.
        size: inches per cell.
        suptitle: a title over the whole grid, or None.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(_np_image(images[k]), interpolation="nearest")
        if landmarks_gt is not None:
            p = landmarks_gt[k].detach().cpu()
            ax.scatter(p[:, 0], p[:, 1], s=3, c="lime", linewidths=0)
        if landmarks is not None:
            p = landmarks[k].detach().cpu()
            ax.scatter(p[:, 0], p[:, 1], s=3, c="red", linewidths=0)
        if titles is not None:
            ax.set_title(titles[k], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def rows_grid(rows: Mapping[str, Tensor], col_titles: Sequence[str] | None = None, size: float = 1.6,
              suptitle: str | None = None):
    """Named rows of images, each (K, 3, H, W): e.g. input / teacher / SOPI / MOPI side by side.

    Args:
        rows: ``{row label: (K, 3, H, W)}`` (or a sequence of K ``(3, H, W)`` images); rows may differ in K.
        col_titles: titles of the first row's columns, or None.
        size: inches per cell.
        suptitle: a title over the whole grid, or None.

    Returns:
        The matplotlib Figure (one row per key, as many columns as the longest row).
    """
    import matplotlib.pyplot as plt

    names = list(rows)
    ncols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(names), ncols, figsize=(size * ncols + 0.8, size * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(rows[name]):
                ax.imshow(_np_image(rows[name][c]), interpolation="nearest")
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def plot_history(history: Sequence[Mapping[str, float]], keys: Sequence[str] | None = None, title: str = "",
                 logy: bool = True, ax=None):
    """Loss curves from a training history (list of {'step', term: value}); one line per term.

    Each curve is smoothed by a trailing mean over 5 points.

    Args:
        history: one dict per logged step with ``step`` and one float per loss term (``seconds`` is ignored).
        keys: the terms to draw; None draws every key of the first entry but ``step`` and ``seconds``.
        title: the axes title.
        logy: a log-scaled y axis.
        ax: matplotlib Axes to draw into; None makes a new figure.

    Returns:
        The matplotlib Figure (the one holding ``ax`` when given).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3))
    else:
        fig = ax.figure
    if history:
        keys = keys or [k for k in history[0] if k not in ("step", "seconds")]
        steps = [h["step"] for h in history]
        for k in keys:
            ax.plot(steps, smooth([h[k] for h in history], 5), label=k)
        if logy:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(curves: Mapping[str, Sequence[Mapping[str, float]]], key: str = "loss", title: str = "",
                ax=None):
    """One loss term of several training histories on shared log-log axes (step vs ``key``).

    E.g. the live teacher beside the shipped pretrained teacher's recorded curve (notebook 03, section 2).
    Each curve is smoothed by a trailing mean over 3 points; steps <= 0 and entries without ``key`` are
    left out.

    Args:
        curves: ``{label: history}``, each history a list of dicts with ``step`` and ``key``.
        key: the loss term to draw.
        title: the axes title.
        ax: matplotlib Axes to draw into; None makes a new figure.

    Returns:
        The matplotlib Figure (the one holding ``ax`` when given).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.2))
    else:
        fig = ax.figure
    for label, history in curves.items():
        pts = [(h["step"], h[key]) for h in history if key in h and h["step"] > 0]
        if pts:
            ax.plot([s for s, _ in pts], smooth([v for _, v in pts], 3), label=f"{label} ({pts[-1][0]:.0f} steps)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def headless() -> bool:
    """True in papermill/nbval/CI runs (no widget front end): show static figures instead of widgets."""
    if os.environ.get("CI") or os.environ.get("OCC3D_PROGRESS", "").strip() == "0":
        return True
    if os.environ.get("OCC3D_INTERACTIVE", "").strip() == "0":
        return True
    return "ipykernel" not in sys.modules


def interactive_or_static(make_widget: Callable[[], Any], make_static: Callable[[], Any]) -> Any:
    """Return ``make_widget()`` when a front end can show widgets, else ``make_static()`` (a figure).

    Set ``OCC3D_INTERACTIVE=0`` to force the static version.
    """
    if headless():
        return make_static()
    try:
        import ipywidgets  # noqa: F401
    except ImportError:  # pragma: no cover - ipywidgets is installed by make setup
        return make_static()
    return make_widget()


def show_figure(fig: Any) -> None:
    """Display ``fig`` once in the current output (a notebook cell, or the ``Output`` widget an explorer
    redraws into) and close it, so that later ``plt.show()`` calls do not show it again.

    Args:
        fig: a matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(fig)
    plt.close(fig)


def to_uint8(images: Tensor) -> Tensor:
    """(B, 3, H, W) float [0, 1] -> uint8, for compact storage."""
    return (images.detach().clamp(0, 1) * 255).round().to(torch.uint8)


def smooth(values: list[float], window: int = 10) -> list[float]:
    """Trailing moving average for loss curves (notebook figures)."""
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc) if all(math.isfinite(a) for a in acc) else float("nan"))
    return out
