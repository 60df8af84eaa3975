"""Watching a training run: a loss curve redrawn while a stage trains, and what the published run says it costs.

Notebooks 03 and 04 pass :func:`loss_plot` as the ``callback`` of a stage (``stages.get_sopi(ctx, callback=...)``,
``mopi.get_mopi(ctx, ..., callback=...)``): in a live JupyterLab session the figure under the cell is redrawn
every few logged steps; headless (papermill, nbval, CI; :func:`occ3d_lib.core.viz.headless`) it is ``None`` and
the notebooks draw the finished history instead. :func:`runtime_note` turns the published course run's
``summary.json`` (its ``stages`` entries: seconds and steps per stage) into a sentence in minutes.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from occ3d_lib.core import viz


class LossPlot:
    """A :class:`~occ3d_lib.training.train.Trainer` callback ``(trainer, record)`` that keeps the logged records
    and redraws ``keys`` against the step every ``every`` records, in one display slot (notebooks 03 and 04)."""

    def __init__(self, title: str, keys: tuple[str, ...] = ("loss",), every: int = 1, total: int | None = None) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every!r}")
        self.title, self.keys, self.every, self.total = title, tuple(keys), int(every), total
        self.records: list[dict[str, float]] = []
        self._handle: Any = None

    def __call__(self, trainer: Any, record: Mapping[str, float]) -> None:
        self.records.append(dict(record))
        if len(self.records) % self.every == 0:
            self.draw()

    def figure(self):
        """The current curve as a matplotlib figure (not shown)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 2.8))
        steps = [r["step"] for r in self.records]
        for k in self.keys:
            pts = [(s, r[k]) for s, r in zip(steps, self.records) if k in r and r[k] > 0]
            if pts:
                ax.plot([s for s, _ in pts], [v for _, v in pts], label=k)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        if self.total:
            ax.set_xlim(0, self.total)
        done = f", step {steps[-1]}" + (f" of {self.total}" if self.total else "") if steps else ""
        ax.set_title(f"{self.title} (live{done})", fontsize=9)
        if self.keys and len(self.keys) > 1:
            ax.legend(fontsize=7)
        fig.tight_layout()
        plt.close(fig)  # shown through the display slot only
        return fig

    def draw(self) -> None:
        """Redraw the curve in this plot's display slot (created on the first call)."""
        from IPython.display import display

        fig = self.figure()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


def loss_plot(title: str, keys: tuple[str, ...] = ("loss",), every: int = 1, total: int | None = None) -> LossPlot | None:
    """A live loss curve for a stage's ``callback`` in a JupyterLab session.

    ``None`` headless, where nothing would watch it (the notebooks draw the finished history after the cell).

    Args:
        title: the figure's title.
        keys: the logged loss terms drawn.
        every: redraw every ``every`` logged records (>= 1).
        total: the stage's steps (the x axis' end), or None.

    Returns:
        A :class:`LossPlot`, or None headless (:func:`occ3d_lib.core.viz.headless`).
    """
    if viz.headless():
        return None
    return LossPlot(title, keys, every, total)


def stage_record(summary: Mapping[str, Any] | None, stage: str) -> dict[str, Any] | None:
    """The published run's record of one training stage (``seconds``, ``steps``, ``s_per_step``), or None."""
    for entry in (summary or {}).get("stages") or []:
        if isinstance(entry, Mapping) and entry.get("stage") == stage:
            return dict(entry)
    return None


def runtime_note(summary: Mapping[str, Any] | None, stage: str, steps: int, what: str | None = None) -> str:
    """One sentence, in minutes, on what ``steps`` steps of ``stage`` cost in the published course run.

    Its seconds per step times ``steps``; says so when the run has no record of the stage. Notebooks 03
    and 04, before each training cell.

    Args:
        summary: the run's ``summary.json`` dict (e.g. ``pipeline.read_summary(required=False)``), or None.
        stage: the stage's name in the summary's ``stages`` entries.
        steps: the steps trained here.
        what: how the sentence names the stage (default ``stage``).

    Returns:
        The sentence as a markdown str (it starts with ``*Runtime:*``).
    """
    what = what or stage
    rec = stage_record(summary, stage)
    if rec is None or not rec.get("s_per_step"):
        return f"*Runtime:* the published course run has no record of {what}; it trains {steps} steps here."
    machine = (summary or {}).get("machine") or {}
    cap = machine.get("cpu_capability")
    vector = f" ({cap}{' with bf16' if machine.get('cpu_bf16') else ''})" if cap else ""
    where = f"{machine.get('cpus', '?')} CPU cores{vector}" + (", a GPU" if machine.get("cuda") else ", no GPU")
    minutes = float(rec["s_per_step"]) * steps / 60
    return (f"*Runtime:* {what} took {float(rec['s_per_step']):.2f} s a step in the published course run ({where}), "
            f"so the {steps} steps here take about {minutes:.1f} min the first time the cell runs; afterwards the "
            "cell only loads the result.")

