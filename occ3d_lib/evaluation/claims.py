"""Claims checked on measured numbers: one :class:`Claim` type and one markdown table for all of them.

Notebook 03 checks the series' targets for the teacher and SOPI (:func:`sopi_claims`); notebook 05 and
``report.md`` check the paper's claims (:func:`occ3d_lib.evaluation.evaluate.verdicts`), whose "paper"
column is formatted from :data:`occ3d_lib.evaluation.evaluate.PAPER`, the one table of the paper's numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

#: The verdicts a claim can get.
VERDICTS = ("holds", "holds, not significant", "does not hold here", "not measured")


@dataclass(frozen=True)
class Claim:
    """One quantitative claim: what is claimed, the paper's numbers ('' for the series' own targets),
    ours, and the verdict (one of :data:`VERDICTS`)."""

    claim: str
    paper: str
    ours: str
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def holds(self) -> bool:
        return self.verdict.startswith("holds")


def _target(claim: str, holds: bool, ours: str) -> Claim:
    return Claim(claim, "", ours, "holds" if holds else "does not hold here")


def sopi_claims(me: Mapping[str, Mapping[str, float]],
                occluded: tuple[str, ...] = ("dsofi", "dhofi", "shofi")) -> list[Claim]:
    """Check notebook 03's four claims on landmark ME (pixels at 224 scale).

    ``me[model][kind]`` with models 'baseline' (mean face at the true pose), 'teacher', 'sopi' and
    kinds 'clean' plus ``occluded``. Claims: teacher clean <= baseline clean / 3; teacher SHOFI >=
    2 x teacher clean; SOPI on each occluded kind <= 1.5 x SOPI clean and < teacher on that kind;
    SOPI clean <= 1.25 x teacher clean.
    """
    for m in ("baseline", "teacher", "sopi"):
        if m not in me:
            raise KeyError(f"sopi_claims needs ME for model {m!r}; got {sorted(me)}")
    b, t, s = me["baseline"], me["teacher"], me["sopi"]
    out = [_target("teacher clean ME <= 1/3 of the mean-face baseline", t["clean"] <= b["clean"] / 3,
                   f"teacher {t['clean']:.2f} vs baseline {b['clean']:.2f} (limit {b['clean'] / 3:.2f})"),
           _target("teacher degrades under occlusion: SHOFI ME >= 2x clean", t["shofi"] >= 2 * t["clean"],
                   f"SHOFI {t['shofi']:.2f} vs clean {t['clean']:.2f} (ratio {t['shofi'] / t['clean']:.2f})")]
    for k in occluded:
        out.append(_target(f"SOPI on {k.upper()} <= 1.5x its clean ME and below the teacher",
                           s[k] <= 1.5 * s["clean"] and s[k] < t[k],
                           f"SOPI {s[k]:.2f} (clean {s['clean']:.2f}, ratio {s[k] / s['clean']:.2f}); teacher {t[k]:.2f}"))
    out.append(_target("SOPI clean ME within 1.25x of the teacher's", s["clean"] <= 1.25 * t["clean"],
                       f"SOPI {s['clean']:.2f} vs teacher {t['clean']:.2f} (ratio {s['clean'] / t['clean']:.2f})"))
    return out


def claims_markdown(claims: Sequence[Claim]) -> str:
    """A markdown table of claims: claim, paper (omitted when no claim has one), ours, verdict."""
    with_paper = any(c.paper for c in claims)
    head = ["| claim | paper | ours | verdict |", "|---|---|---|---|"] if with_paper else \
        ["| claim | ours | verdict |", "|---|---|---|"]
    rows = [f"| {c.claim} | {c.paper} | {c.ours} | **{c.verdict}** |" if with_paper else
            f"| {c.claim} | {c.ours} | **{c.verdict}** |" for c in claims]
    return "\n".join(head + rows) + "\n"
