"""The verdict thresholds have one source, occ3d_lib.core.thresholds: the claims of notebook 03 and the
verdicts of notebook 05 (and report.md) follow it, and no notebook, README or library module types a ratio in."""
from __future__ import annotations

import re
from pathlib import Path

import jupytext

from occ3d_lib.core import thresholds as TH
from occ3d_lib.evaluation import claims as C
from occ3d_lib.evaluation import report

ROOT = Path(__file__).resolve().parents[1]
RATIO_TEXT = re.compile(r"\b(within|limit|target:?|precise|comparable|degrades?)\b[^.\n]{0,30}?\b\d+(\.\d+)?\s*(x|×)(?=[\s,.)])")


def _me(s_dsofi: float) -> dict:
    kinds = ("dsofi", "dhofi", "shofi")
    return {"baseline": {"clean": 9.0}, "teacher": {"clean": 2.0, **dict(zip(kinds, (3.0, 4.0, 5.0)))},
            "sopi": {"clean": 2.0, "dsofi": s_dsofi, "dhofi": 2.1, "shofi": 2.1}}


def _results(s_clean: float, s_dsofi: float) -> dict:
    def st(x):
        return {"me": {"mean": x, "lo": x - 0.01, "hi": x + 0.01, "n": 10}}
    return {"summary": {"sopi": {"none": st(s_clean), "dsofi": st(s_dsofi)}, "teacher": {"none": st(s_clean)}}}


def test_claims_and_verdicts_follow_the_single_source(monkeypatch):
    ratio = 2.6 / 2.0  # between the two settings below
    claim = next(i for i, c in enumerate(C.sopi_claims(_me(2.6))) if "DSOFI" in c.claim)
    dsofi = "SOPI on DSOFI is as precise as on unoccluded faces (Table 1)"
    for limit, holds in ((ratio - 0.1, False), (ratio + 0.1, True)):
        monkeypatch.setattr(TH, "AS_PRECISE", limit)
        assert C.sopi_claims(_me(2.6))[claim].holds is holds
        v = {x.claim: x for x in report.verdicts(_results(2.0, 2.6))}[dsofi]
        assert (v.verdict == "holds") is holds and f"limit {limit}" in v.ours
        assert f"{limit:g} x" in TH.thresholds_markdown()


def test_no_ratio_is_typed_in_elsewhere():
    texts = {"README.md": (ROOT / "README.md").read_text()}
    for src in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        nb = jupytext.read(src, fmt="py:percent")
        texts[src.name] = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    bad = [f"{name}: {m.group(0)!r}" for name, t in texts.items() for m in RATIO_TEXT.finditer(t)]
    assert not bad, "a verdict threshold typed in (read it from occ3d_lib.core.thresholds): " + "; ".join(bad)
    for mod in ("training/stages.py", "evaluation/claims.py", "evaluation/evaluate.py", "evaluation/report.py"):
        code = (ROOT / "occ3d_lib" / mod).read_text()
        assert not re.search(r"(flat_ratio: float = \d|\b1\.25\s*\*|\b1\.5\s*\*|<= [\w\[\]\"']+ / 3\b)", code), mod
