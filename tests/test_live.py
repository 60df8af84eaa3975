"""Tests of occ3d_lib.teaching.live: the live training aids of notebooks 03 and 04 (loss plot, runtime note)."""
from __future__ import annotations

import matplotlib
import pytest

from occ3d_lib.teaching import live

matplotlib.use("Agg")


def test_live_loss_plot_is_off_headless_and_records_on():
    assert live.loss_plot("SOPI") is None or not live.viz.headless()
    plot = live.LossPlot("SOPI", every=10**9, total=30)  # never redraws here: no display needed
    for step in (5, 10, 15):
        plot(None, {"step": step, "loss": 1.0 / step})
    assert [r["step"] for r in plot.records] == [5, 10, 15]
    fig = plot.figure()
    assert "step 15 of 30" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="every"):
        live.LossPlot("x", every=0)


def test_runtime_note_reads_the_published_run():
    summary = {"machine": {"cpus": 2, "cuda": False}, "stages": [{"stage": "sopi", "s_per_step": 0.6, "steps": 300}]}
    note = live.runtime_note(summary, "sopi", 500, "SOPI")
    assert "0.60 s a step" in note and "about 5.0 min" in note and "2 CPU cores, no GPU" in note
    assert "no record" in live.runtime_note(summary, "mopi-both", 10)
    assert "no record" in live.runtime_note(None, "sopi", 10)
    summary["machine"].update(cpu_capability="AVX512", cpu_bf16=True)
    assert "2 CPU cores (AVX512 with bf16), no GPU" in live.runtime_note(summary, "sopi", 500)
    summary["machine"].update(cpu_capability="AVX2", cpu_bf16=False)
    assert "2 CPU cores (AVX2), no GPU" in live.runtime_note(summary, "sopi", 500)
