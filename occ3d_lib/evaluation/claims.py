"""Claims checked on measured numbers: one :class:`Claim` type and one markdown table for all of them.

Notebook 03 checks the series' targets for the teacher and SOPI (:func:`sopi_claims`); notebook 05 and
``report.md`` check the paper's claims (:func:`occ3d_lib.evaluation.report.verdicts`), whose "paper"
column is formatted from :data:`occ3d_lib.evaluation.report.PAPER`, the one table of the paper's numbers.
Both judge with the thresholds of :mod:`occ3d_lib.core.thresholds`, their only definition.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from occ3d_lib.core import thresholds

#: The verdicts a claim can get. "too small to count": the difference is below the measure's minimum effect;
#: "fails the sanity floor": the model the claim favours does not follow its input
#: (:data:`occ3d_lib.core.thresholds.MIN_EFFECT`, :data:`~occ3d_lib.core.thresholds.SANITY_ME`).
VERDICTS = ("holds", "holds, not significant", "too small to count", "fails the sanity floor", "does not hold here",
            "not measured")


@dataclass(frozen=True)
class Claim:
    """One quantitative claim: what is claimed, the paper's numbers ('' for the series' own targets),
    ours, the verdict (one of :data:`VERDICTS`) and what the claim compares with (``against``: 'teacher',
    'mean face', 'clean', 'ablation', 'SOPI'; :func:`occ3d_lib.evaluation.report.verdict_counts`)."""

    claim: str
    paper: str
    ours: str
    verdict: str
    against: str = "teacher"

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def holds(self) -> bool:
        return self.verdict.startswith("holds")


def _target(claim: str, holds: bool, ours: str, against: str = "teacher", verdict: str | None = None) -> Claim:
    return Claim(claim, "", ours, verdict or ("holds" if holds else "does not hold here"), against)


def judge(holds: bool, counts: bool = True, sane: bool = True) -> str:
    """The verdict of a claim without intervals: 'does not hold here' when it does not hold, else 'fails the
    sanity floor' when the model it favours does not follow its input, else 'too small to count' when the
    difference is below the minimum effect, else 'holds' (:mod:`occ3d_lib.core.thresholds`)."""
    if not holds:
        return "does not hold here"
    if not sane:
        return "fails the sanity floor"
    return "holds" if counts else "too small to count"


def sopi_claims(me: Mapping[str, Mapping[str, float]],
                occluded: tuple[str, ...] = ("dsofi", "dhofi", "shofi")) -> list[Claim]:
    """Check notebook 03's claims on landmark ME (pixels at 224 scale), notebook 03 section 7.

    The thresholds are :mod:`occ3d_lib.core.thresholds` (their only definition): our sanity check that
    the teacher learned shape (clean ME <= ``LEARNED_SHAPE`` x the baseline's; not a claim of the paper);
    teacher SHOFI >= ``DEGRADES`` x teacher clean; SOPI on each occluded kind <= ``AS_PRECISE`` x SOPI
    clean and < teacher on that kind; SOPI clean comparable to the teacher's (within ``AS_PRECISE``);
    SOPI below the mean face at the true pose on every kind. A difference below ``MIN_EFFECT['me']``
    does not count: a "below" or a "degrades" is then 'too small to count' and an "as precise" or a
    "comparable" holds; a SOPI whose clean ME is above ``SANITY_ME`` x the baseline's 'fails the sanity
    floor' on every claim in its favour.

    Args:
        me: ``me[model][kind]`` landmark ME (px at 224) with models 'baseline' (mean face at the true
            pose), 'teacher' and 'sopi' and kinds 'clean', 'shofi' (the teacher's degradation) and
            ``occluded``; a kind the baseline lacks takes its clean ME (it does not see the image).
        occluded: the occluded kinds SOPI is checked on.

    Returns:
        A list of :class:`Claim` (paper ''): the teacher's sanity check, the teacher's degradation, one
        claim per kind of ``occluded``, SOPI clean comparable to the teacher, SOPI below the mean face.
        A missing model raises ``KeyError``.
    """
    for m in ("baseline", "teacher", "sopi"):
        if m not in me:
            raise KeyError(f"sopi_claims needs ME for model {m!r}; got {sorted(me)}")
    b, t, s = me["baseline"], me["teacher"], me["sopi"]
    counts = thresholds.effect_counts
    sane = thresholds.passes_sanity_floor(s["clean"], b["clean"])
    lim = thresholds.LEARNED_SHAPE * b["clean"]
    out = [_target(f"our sanity check: teacher clean ME <= {thresholds.LEARNED_SHAPE:.2f}x the mean face at the true pose",
                   t["clean"] <= lim, f"teacher {t['clean']:.2f} vs baseline {b['clean']:.2f} (limit {lim:.2f})",
                   "mean face"),
           _target(f"teacher degrades under occlusion: SHOFI ME >= {thresholds.DEGRADES:g}x clean",
                   t["shofi"] >= thresholds.DEGRADES * t["clean"],
                   f"SHOFI {t['shofi']:.2f} vs clean {t['clean']:.2f} (ratio {t['shofi'] / t['clean']:.2f})", "clean",
                   judge(t["shofi"] >= thresholds.DEGRADES * t["clean"], counts(t["shofi"], t["clean"], "me")))]
    for k in occluded:
        precise = s[k] <= thresholds.AS_PRECISE * s["clean"] or not counts(s[k], s["clean"], "me")
        out.append(_target(f"SOPI on {k.upper()} as precise as unoccluded (<= {thresholds.AS_PRECISE:g}x its clean ME) "
                           "and below the teacher", False,
                           f"SOPI {s[k]:.2f} (clean {s['clean']:.2f}, ratio {s[k] / s['clean']:.2f}); teacher {t[k]:.2f}",
                           verdict=judge(precise and s[k] < t[k], counts(s[k], t[k], "me"), sane)))
    comparable = (s["clean"] <= thresholds.AS_PRECISE * t["clean"] and t["clean"] <= thresholds.AS_PRECISE * s["clean"]) \
        or not counts(s["clean"], t["clean"], "me")
    out.append(_target(f"SOPI clean ME comparable to the teacher's (within {thresholds.AS_PRECISE:g}x)", False,
                       f"SOPI {s['clean']:.2f} vs teacher {t['clean']:.2f} (ratio {s['clean'] / t['clean']:.2f})",
                       "teacher (clean)", judge(comparable, True, sane)))
    bk = {k: b.get(k, b["clean"]) for k in ("clean", *occluded)}  # the mean face does not see the image
    worst = max(bk, key=lambda k: s[k] - bk[k])
    out.append(_target("baseline: SOPI below the mean face at the true pose on every kind", False,
                       f"worst kind {worst}: SOPI {s[worst]:.2f} vs mean face {bk[worst]:.2f}", "mean face",
                       judge(all(s[k] < bk[k] for k in bk), counts(s[worst], bk[worst], "me"), sane)))
    return out


def claims_markdown(claims: Sequence[Claim]) -> str:
    """A markdown table of claims: claim, paper (omitted when no claim has one), ours, verdict.

    Args:
        claims: the :class:`Claim` items, one row each.

    Returns:
        The markdown table as a str ending in a newline, the verdicts in bold.
    """
    with_paper = any(c.paper for c in claims)
    head = ["| claim | paper | ours | verdict |", "|---|---|---|---|"] if with_paper else \
        ["| claim | ours | verdict |", "|---|---|---|"]
    rows = [f"| {c.claim} | {c.paper} | {c.ours} | **{c.verdict}** |" if with_paper else
            f"| {c.claim} | {c.ours} | **{c.verdict}** |" for c in claims]
    return "\n".join(head + rows) + "\n"
