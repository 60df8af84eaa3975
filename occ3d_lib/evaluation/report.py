"""The evaluation's account: Tables 1-7 beside the paper's numbers (:data:`PAPER`), verdicts, figures and
``report.md``; :func:`run_evaluation` evaluates a run's models and writes all of it (notebook 05, pipeline).

The metrics come from :func:`occ3d_lib.evaluation.evaluate.evaluate`; the thresholds of the verdicts from
:mod:`occ3d_lib.core.thresholds`; the claims' form from :mod:`occ3d_lib.evaluation.claims`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from occ3d_lib.core import thresholds
from occ3d_lib.core.artifacts import atomic_path, write_text
from occ3d_lib.core.viz import _np_image, rows_grid
from occ3d_lib.data.context import Context
from occ3d_lib.evaluation.claims import Claim, claims_markdown
from occ3d_lib.evaluation.evaluate import (
    DEFAULT_COLOURS,
    DEFAULT_ROLES,
    GROUND_TRUTH,
    MEAN_FACE,
    METRICS,
    colour_invariance,
    evaluate,
    jsonable,
    write_metrics,
)
from occ3d_lib.evaluation.sets import EvalSet, get_eval_sets
from occ3d_lib.nets.predict import predict_coeffs
from occ3d_lib.occlusion.eval_sets import make_eval_set

# ------------------------------------------------------------------------------------ the paper's numbers
#: Paper Tables 1-7 (Tiwari et al.). ME px, MSE (x, y), normalised ME, normalised MSE (x, y);
#: None where the paper prints "--". CelebA columns -> our ME / MSE; AFLW2000-3D -> normalised.
PAPER: dict[str, Any] = {
    "table1": {  # SOPI ("Ours") vs RNet
        "none": {"sopi": (1.24, (3.25, 1.66), 0.68, (0.26, 0.43)), "teacher": (1.24, (3.23, 1.69), 0.68, (0.26, 0.43))},
        "dsofi": {"sopi": (1.25, (3.27, 1.68), 0.68, (0.26, 0.43)), "teacher": None},
        "dhofi": {"sopi": (1.24, (3.20, 1.66), 0.68, (0.26, 0.43)), "teacher": None},
        "shofi": {"sopi": (1.26, (3.26, 1.70), 0.69, (0.26, 0.44)), "teacher": None},
    },
    "table2": {  # histogram dissimilarity (CelebA, AFLW2000-3D)
        "none": {"sopi": (4.76, 3.82), "teacher": (4.74, 3.81)},
        "dsofi": {"sopi": (4.77, 3.82), "teacher": (4.90, 4.02)},
        "dhofi": {"sopi": (4.79, 3.84), "teacher": (7.98, 5.36)},
        "shofi": {"sopi": (4.83, 3.88), "teacher": None},
    },
    "table3": {"teacher": 5.84, "sopi": 0.77},  # ME, 54 naturally occluded CelebA images
    "table4": {"teacher": 5.01, "sopi": 4.76},  # histogram dissimilarity, same images
    "table5": {"teacher": (7.91, (5.65, 3.94), 0.87, (0.64, 0.93)), "mopi": (1.24, (3.21, 1.67), 0.68, (0.26, 0.44))},
    "table6": {"teacher": (6.93, 4.74), "mopi": (4.76, 3.82)},
    "table7": {"mopi_perceptual": (41.0, (32.84, 23.97), 0.94, (0.75, 0.88)),
               "mopi_label": (2.11, (3.10, 2.23), 0.71, (0.32, 0.46)),
               "mopi": (1.24, (3.21, 1.67), 0.68, (0.26, 0.44))},
    # numbers the paper's text states: the introduction's factor by which MOPI's landmark error is lower than
    # RNet's, and the conclusion's margin (notebook 05, section 12 checks them against the tables)
    "text": {"intro_factor": 5.59, "conclusion_margin": 6.67},
}
TABLE1_KINDS = ("none", "dsofi", "dhofi", "shofi")
NATURAL_KIND = "natural"
PATTERN_KIND = "random_pattern"
KIND_LABELS = {"none": "Unoccluded", "dsofi": "DSOFI", "dhofi": "DHOFI", "shofi": "SHOFI", "full": "Full",
               "random_pattern": "Random patterns", "natural": "Natural occluders"}


def _get(results: Mapping[str, Any] | None, model: str | None, kind: str, metric: str) -> dict[str, float] | None:
    if results is None or model is None:
        return None
    return results.get("summary", {}).get(model, {}).get(kind, {}).get(metric)


def _f(x: float | None, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{nd}f}" if abs(x) >= 10 ** -nd or x == 0 else f"{x:.2e}"


def _fci(s: dict[str, float] | None, nd: int = 2) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{_f(s['mean'], nd)} [{_f(s['lo'], nd)}, {_f(s['hi'], nd)}]"


def _pair(a: dict | None, b: dict | None, nd: int = 2) -> str:
    if not a or not b or a.get("mean") is None or b.get("mean") is None:
        return "n/a"
    return f"({_f(a['mean'], nd)}, {_f(b['mean'], nd)})"


def _paper_pair(p: Any) -> str:
    return "--" if p is None else f"({p[0]:.2f}, {p[1]:.2f})"


def _paper(x: Any) -> str:
    return "--" if x is None else f"{x:.2f}"


def _landmark_cells(res: Mapping[str, Any] | None, norm_res: Mapping[str, Any] | None, model: str | None, kind: str) -> list[str]:
    return [_fci(_get(res, model, kind, "me")),
            _pair(_get(res, model, kind, "mse_x"), _get(res, model, kind, "mse_y")),
            _fci(_get(norm_res, model, kind, "nme"), 4),
            _pair(_get(norm_res, model, kind, "nmse_x"), _get(norm_res, model, kind, "nmse_y"), 6)]


def _landmark_table(rows: list[tuple[str, str | None, str, Any]], res: Mapping[str, Any],
                    norm_res: Mapping[str, Any]) -> list[str]:
    head = ["| row | ME ours | ME paper | MSE (x, y) ours | MSE paper | norm. ME ours | norm. ME paper "
            "| norm. MSE (x, y) ours | norm. MSE paper |", "|---|---|---|---|---|---|---|---|---|"]
    for label, model, kind, p in rows:
        c = _landmark_cells(res, norm_res, model, kind)
        pp = (None, None, None, None) if p is None else p
        head.append(f"| {label} | {c[0]} | {_paper(pp[0])} | {c[1]} | {_paper_pair(pp[1])} | {c[2]} | {_paper(pp[2])} "
                    f"| {c[3]} | {_paper_pair(pp[3])} |")
    return head


#: The reference rows of the histogram tables (Tables 2, 4, 6): what the metric gives for the true coefficients
#: rendered (its floor) and for the mean face placed at the true pose and light.
HIST_REFERENCES: dict[str, str] = {"reference: ground truth rendered": GROUND_TRUTH,
                                   "reference: mean face at the true pose": MEAN_FACE}


def hist_reading(results: Mapping[str, Any], kind: str = "none") -> str:
    """One paragraph, read from ``results``, on where the histogram dissimilarities sit and why (notebook 05
    section 6, report.md): the ground truth's value (the floor), the mean face's, and the models' range on
    ``kind``; when every model sits above the mean face, which is handed the true light, the sentence says that
    the metric then measures the estimate of light and skin tone, not the occluder."""
    gt, mf = _mean(results, GROUND_TRUTH, kind, "hist"), _mean(results, MEAN_FACE, kind, "hist")
    vals = {m: _mean(results, m, kind, "hist") for m in results.get("models", []) if m != MEAN_FACE}
    vals = {m: v for m, v in vals.items() if v is not None}
    if not vals:
        return "No model has a histogram dissimilarity in these results."
    lo, hi = min(vals.values()), max(vals.values())
    text = (f"How to read the histogram tables: on {KIND_LABELS.get(kind, kind)} faces the models score between "
            f"{lo:.3f} and {hi:.3f}")
    if gt is not None:
        text += (f"; the true coefficients rendered score {gt:.3f}, the metric's floor (the input is rounded to 8 bits, "
                 "the render is not)")
    if mf is not None:
        text += f"; the mean face, handed the true pose and light but no identity, scores {mf:.3f}"
        if lo > mf:
            text += (". Every model is further from the input's colours than the mean face is: a colour histogram of a "
                     "smooth Lambertian face is a few narrow peaks, which the estimated light and skin tone move "
                     "between bins, so the metric measures that estimate more than the shape or the occluder. "
                     f"Compare orderings only where they differ by more than the minimum effect of "
                     f"{thresholds.min_effect('hist'):g}")
    return text + "."


def tables_markdown(results: Mapping[str, Any], roles: Mapping[str, str] | None = None,
                    aflw_results: Mapping[str, Any] | None = None, natural_results: Mapping[str, Any] | None = None) -> str:
    """Tables 1-7 in the paper's layouts, our numbers (mean [95 % CI]) beside the paper's (notebook 05 section 6).

    Histogram dissimilarity: ours is a Hellinger distance in [0, 1]; the paper does not define its scale,
    so compare orderings, not values. Ends with a table of the 3D metrics (beyond the paper).

    Args:
        results: :func:`evaluate`'s dict on the main (synthetic or CelebA-like) sets: the ME / MSE
            columns (the paper's CelebA columns).
        roles: role -> model name overrides of :data:`DEFAULT_ROLES`, or None.
        aflw_results: optional results supplying the normalised columns (the paper's AFLW2000-3D
            columns) and the second histogram column; None takes them from ``results``.
        natural_results: optional results supplying Tables 3-4 (real naturally occluded faces); None
            uses our 'natural' occluder set of ``results``.

    Returns:
        The markdown str (a line on the sources, then one ``###`` section per table), ending in a newline.
    """
    r = {**DEFAULT_ROLES, **(roles or {})}
    norm = aflw_results if aflw_results is not None else results
    nat = natural_results if natural_results is not None else results
    t, s, m = r["teacher"], r["sopi"], r["mopi"]
    P = PAPER
    src = results.get("meta", {}).get("dataset", "?")
    nsrc = norm.get("meta", {}).get("dataset", "?")
    out = [f"ME / MSE columns: {src} sets (paper: CelebA). Normalised columns: {nsrc} sets (paper: AFLW2000-3D). "
           "Ours: mean [95 % bootstrap CI]; MSE pairs are means. '--' = the paper printed no number; "
           "'n/a' = not measured here.", ""]
    out += ["### Table 1: landmark errors, SOPI (Ours) vs teacher (RNet)", ""]
    rows = []
    for k in TABLE1_KINDS:
        rows.append((f"{KIND_LABELS[k]} / Ours (SOPI)", s, k, P["table1"][k]["sopi"]))
        rows.append((f"{KIND_LABELS[k]} / RNet (teacher)", t, k, P["table1"][k]["teacher"]))
    out += _landmark_table(rows, results, norm) + [""]
    out += ["### Table 2: histogram dissimilarity (lower is better)", "",
            f"| occlusion | method | ours ({src}) | paper CelebA | ours ({nsrc}) | paper AFLW2000-3D |",
            "|---|---|---|---|---|---|"]
    for k in TABLE1_KINDS:
        for label, model, role in (("Ours (SOPI)", s, "sopi"), ("RNet (teacher)", t, "teacher")):
            p = P["table2"][k][role]
            out.append(f"| {KIND_LABELS[k]} | {label} | {_fci(_get(results, model, k, 'hist'), 3)} | "
                       f"{_paper(None if p is None else p[0])} | {_fci(_get(norm, model, k, 'hist'), 3)} | "
                       f"{_paper(None if p is None else p[1])} |")
    for label, ref in HIST_REFERENCES.items():
        out.append(f"| all kinds | {label} | {_fci(_get(results, ref, 'none', 'hist'), 3)} | -- | "
                   f"{_fci(_get(norm, ref, 'none', 'hist'), 3)} | -- |")
    out += ["", hist_reading(results)]
    nsrc_nat = nat.get("meta", {}).get("dataset", "?")
    out += ["", f"### Table 3: landmark ME on naturally occluded faces ({nsrc_nat}, kind '{NATURAL_KIND}')", "",
            "| method | ME ours | ME paper |", "|---|---|---|"]
    for label, model, role in (("RNet (teacher)", t, "teacher"), ("Ours (SOPI)", s, "sopi")):
        out.append(f"| {label} | {_fci(_get(nat, model, NATURAL_KIND, 'me'))} | {_paper(P['table3'][role])} |")
    out += ["", "### Table 4: histogram dissimilarity on naturally occluded faces", "",
            "| method | ours | paper |", "|---|---|---|"]
    for label, model, role in (("RNet (teacher)", t, "teacher"), ("Ours (SOPI)", s, "sopi")):
        out.append(f"| {label} | {_fci(_get(nat, model, NATURAL_KIND, 'hist'), 3)} | {_paper(P['table4'][role])} |")
    for label, ref in HIST_REFERENCES.items():
        out.append(f"| {label} | {_fci(_get(nat, ref, NATURAL_KIND, 'hist'), 3)} | -- |")
    out += ["", "### Table 5: landmark errors on random patterns, MOPI (Ours) vs RNet", ""]
    out += _landmark_table([("RNet (teacher)", t, PATTERN_KIND, P["table5"]["teacher"]),
                            ("Ours (MOPI)", m, PATTERN_KIND, P["table5"]["mopi"])], results, norm) + [""]
    out += ["### Table 6: histogram dissimilarity on random patterns", "",
            f"| method | ours ({src}) | paper CelebA | ours ({nsrc}) | paper AFLW2000-3D |", "|---|---|---|---|---|"]
    for label, model, role in (("RNet (teacher)", t, "teacher"), ("Ours (MOPI)", m, "mopi")):
        p = P["table6"][role]
        out.append(f"| {label} | {_fci(_get(results, model, PATTERN_KIND, 'hist'), 3)} | {_paper(p[0])} | "
                   f"{_fci(_get(norm, model, PATTERN_KIND, 'hist'), 3)} | {_paper(p[1])} |")
    for label, ref in HIST_REFERENCES.items():
        out.append(f"| {label} | {_fci(_get(results, ref, PATTERN_KIND, 'hist'), 3)} | -- | "
                   f"{_fci(_get(norm, ref, PATTERN_KIND, 'hist'), 3)} | -- |")
    out += ["", "### Table 7: MOPI loss ablation (Eq. 9) on random patterns", ""]
    out += _landmark_table([("L_perc only", r["mopi_perceptual"], PATTERN_KIND, P["table7"]["mopi_perceptual"]),
                            ("L_label only", r["mopi_label"], PATTERN_KIND, P["table7"]["mopi_label"]),
                            ("L_perc + L_label", m, PATTERN_KIND, P["table7"]["mopi"])], results, norm) + [""]
    out += ["### Beyond the paper: 3D error against the ground-truth mesh (synthetic sets only)", ""]
    kinds = list(results.get("kinds", []))
    out += ["| model | " + " | ".join(f"{KIND_LABELS.get(k, k)} mm / deg" for k in kinds) + " |",
            "|---|" + "---|" * len(kinds)]
    for name in results.get("models", []):
        cells = []
        for k in kinds:
            v, n = _get(results, name, k, "vertex_mm"), _get(results, name, k, "normal_deg")
            cells.append(f"{_fci(v)} / {_f(n['mean'], 1) if n and n.get('mean') is not None else 'n/a'}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def share_removed(results: Mapping[str, Any], metric: str = "vertex_mm") -> dict[str, dict[str, float]]:
    """The share of the mean face's error (at the true pose) each model removes: ``1 - model / mean face`` of
    ``metric``, per model and kind ({model: {kind: share}}; negative: the model is worse than the mean face).
    Notebook 05 section 10, where the dense 3D error is the measure that is not handed the pose."""
    out: dict[str, dict[str, float]] = {}
    for name in results.get("models", []):
        if name == MEAN_FACE:
            continue
        for kind in results.get("kinds", []):
            a, b = _mean(results, name, kind, metric), _mean(results, MEAN_FACE, kind, metric)
            if a is not None and b:
                out.setdefault(name, {})[kind] = 1.0 - a / b
    return out


def share_removed_markdown(results: Mapping[str, Any], metric: str = "vertex_mm") -> str:
    """:func:`share_removed` as a markdown table (models x kinds, in percent), with one sentence.

    The sentence names the model and kind that removes the most, read from ``results``. Notebook 05 section 10.

    Args:
        results: :func:`evaluate`'s dict (with the mean face among its models).
        metric: the measure: "vertex_mm", "me" or "hist".

    Returns:
        The markdown str (table, blank line, sentence) ending in a newline, or one sentence when no model
        and mean face share a measured kind.
    """
    shares = share_removed(results, metric)
    if not shares:
        return "No model and mean face share a measured kind: nothing to compare."
    kinds = [k for k in results.get("kinds", []) if any(k in v for v in shares.values())]
    lines = ["| model | " + " | ".join(KIND_LABELS.get(k, k) for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for name, row in shares.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[k]:+.0f} %" if k in row else "n/a" for k in kinds) + " |")
    best = max(((n, k, v) for n, row in shares.items() for k, v in row.items()), key=lambda t: t[2])
    what = {"vertex_mm": "dense 3D error", "me": "landmark ME", "hist": "histogram dissimilarity"}.get(metric, metric)
    where = f"{best[0]} on {KIND_LABELS.get(best[1], best[1])}, {100 * best[2]:+.0f} %"
    lines += ["", f"Share of the mean face's {what} that each model removes (+: better than the mean face at the true "
              "pose, -: worse). " + (f"The most: {where}." if best[2] > 0 else
                                     f"No model removes any of it here; the closest: {where}.")]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ the paper's own tables
def _landmark_rows() -> dict[str, tuple]:
    rows = {f"Table 1, {KIND_LABELS[k]}, {m}": PAPER["table1"][k][m] for k in TABLE1_KINDS for m in ("sopi", "teacher")}
    rows.update({f"Table 5, {m}": v for m, v in PAPER["table5"].items()})
    rows.update({f"Table 7, {m}": v for m, v in PAPER["table7"].items()})
    return {k: v for k, v in rows.items() if v is not None}


def paper_checks() -> list[dict[str, Any]]:
    """Consistency checks of the paper's own tables (:data:`PAPER`), notebook 05 section 12. Each item:
    ``check``, ``numbers`` (the paper's, as printed) and ``result`` (what the check finds).

    - Mean error and MSE: for any errors, mean(|d|) <= sqrt(mean(dx^2) + mean(dy^2)) (Jensen), so a row's ME
      cannot exceed sqrt(MSE_x + MSE_y) under the caption's definitions; the rows that do are listed.
    - The introduction's factor (``PAPER['text']``): which ratio of two printed numbers gives it.
    - Table 5's MOPI row against Table 1's clean SOPI row, cell by cell.
    - Repeated histogram values across Tables 2, 4 and 6.
    """
    out: list[dict[str, Any]] = []
    broken = []
    for name, (me, mse, *_rest) in _landmark_rows().items():
        bound = math.sqrt(mse[0] + mse[1])
        if me > bound + 5e-3:
            broken.append(f"{name}: ME {me:.2f} > sqrt({mse[0]:.2f} + {mse[1]:.2f}) = {bound:.2f}")
    out.append({"check": "ME <= sqrt(MSE_x + MSE_y) in every landmark row (Tables 1, 5, 7)",
                "numbers": f"{len(_landmark_rows())} rows",
                "result": "; ".join(broken) if broken else "every row passes"})
    mopi_me = PAPER["table5"]["mopi"][0]
    candidates = {"Table 5 RNet ME / MOPI ME": PAPER["table5"]["teacher"][0] / mopi_me,
                  "Table 6 RNet histogram (CelebA) / MOPI ME": PAPER["table6"]["teacher"][0] / mopi_me,
                  "Table 6 RNet histogram / MOPI histogram": PAPER["table6"]["teacher"][0] / PAPER["table6"]["mopi"][0]}
    factor = PAPER["text"]["intro_factor"]
    hits = [f"{k} = {v:.3f}" for k, v in candidates.items() if round(v, 2) == factor]
    out.append({"check": f"the introduction's factor {factor:.2f} (MOPI's landmark error against RNet's)",
                "numbers": "; ".join(f"{k} = {v:.2f}" for k, v in candidates.items()),
                "result": ("it equals " + " and ".join(hits) + ": a histogram value over a landmark error") if hits
                else "no ratio of the printed numbers gives it"})
    a, b = PAPER["table5"]["mopi"], PAPER["table1"]["none"]["sopi"]
    cells = [("ME", a[0], b[0]), ("MSE x", a[1][0], b[1][0]), ("MSE y", a[1][1], b[1][1]), ("norm. ME", a[2], b[2]),
             ("norm. MSE x", a[3][0], b[3][0]), ("norm. MSE y", a[3][1], b[3][1])]
    differ = [f"{n} {x:.2f} vs {y:.2f}" for n, x, y in cells if x != y]
    out.append({"check": "Table 5's MOPI row (random patterns) against Table 1's clean SOPI row",
                "numbers": f"{sum(x == y for _, x, y in cells)} of {len(cells)} cells equal",
                "result": "nearly the same row; it differs in " + ", ".join(differ) if differ else "the same row"})
    hist = {"Table 2 SOPI clean": PAPER["table2"]["none"]["sopi"][0], "Table 4 SOPI": PAPER["table4"]["sopi"],
            "Table 6 MOPI": PAPER["table6"]["mopi"][0]}
    values = list(hist.values())
    repeated = sorted({v for v in values if values.count(v) > 1})
    out.append({"check": "histogram dissimilarity on CelebA: SOPI clean, SOPI natural, MOPI random patterns",
                "numbers": "; ".join(f"{k} {v:.2f}" for k, v in hist.items()),
                "result": ("the same value " + ", ".join(f"{v:.2f}" for v in repeated) + " in different tables")
                if repeated else "all different"})
    return out


def paper_checks_markdown() -> str:
    """:func:`paper_checks` as a markdown table (notebook 05 section 12).

    Returns:
        The markdown table (check, the paper's numbers, result) as a str ending in a newline.
    """
    rows = ["| check | the paper's numbers | result |", "|---|---|---|"]
    rows += [f"| {c['check']} | {c['numbers']} | {c['result']} |" for c in paper_checks()]
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------------ verdicts
def _mean(results: Mapping[str, Any], model: str, kind: str, metric: str) -> float | None:
    s = _get(results, model, kind, metric)
    return None if not s or s.get("mean") is None or not math.isfinite(s["mean"]) else float(s["mean"])


def _sane(results: Mapping[str, Any], model: str) -> bool:
    """Whether ``model`` passes the sanity floor (:func:`occ3d_lib.core.thresholds.passes_sanity_floor`): its clean
    landmark ME against the mean face's at the true pose, both from ``results`` (True when either is missing)."""
    if model == MEAN_FACE:
        return True
    return thresholds.passes_sanity_floor(_mean(results, model, "none", "me"), _mean(results, MEAN_FACE, "none", "me"))


def _floor_note(results: Mapping[str, Any], model: str) -> str:
    a, b = _mean(results, model, "none", "me"), _mean(results, MEAN_FACE, "none", "me")
    return f"; {model}'s clean ME {_f(a)} px is above {thresholds.SANITY_ME:g} x the mean face's {_f(b)} px"


def _judged(lower: bool, sep: bool, counts: bool, sane: bool) -> str:
    if not lower:
        return "does not hold here"
    if not sane:
        return "fails the sanity floor"
    if not counts:
        return "too small to count"
    return "holds" if sep else "holds, not significant"


def _better(results: Mapping[str, Any], a: str, b: str, kind: str, metric: str) -> tuple[str, str] | None:
    """(verdict, numbers) for 'a has a lower metric than b on kind': CI separation noted, a difference below the
    metric's minimum effect 'too small to count', a model ``a`` below the sanity floor 'fails the sanity floor'
    (:mod:`occ3d_lib.core.thresholds`)."""
    sa, sb = _get(results, a, kind, metric), _get(results, b, kind, metric)
    if not sa or not sb or sa.get("mean") is None or sb.get("mean") is None:
        return None
    lower = sa["mean"] < sb["mean"]
    sep = sa["hi"] < sb["lo"] if lower else sb["hi"] < sa["lo"]
    counts, sane = thresholds.effect_counts(sa["mean"], sb["mean"], metric), _sane(results, a)
    note = "CIs separate" if sep else "CIs overlap"
    if lower and not counts:
        note += f"; difference below the minimum effect of {thresholds.min_effect(metric):g}"
    if lower and not sane:
        note += _floor_note(results, a)
    return _judged(lower, sep, counts, sane), f"{a} {_fci(sa)} vs {b} {_fci(sb)} ({note})"


def verdicts(results: Mapping[str, Any], roles: Mapping[str, str] | None = None,
             colour: Mapping[str, Any] | None = None, flat_ratio: float | None = None) -> list[Claim]:
    """One verdict per quantitative claim of the paper, on our numbers (notebook 05 section 10).

    The thresholds are :mod:`occ3d_lib.core.thresholds`: "as precise as unoccluded" is ME(occluded) <=
    ``AS_PRECISE`` x ME(unoccluded) (``flat_ratio`` overrides it); "comparable" within that factor;
    "better" a lower mean ("holds" when the 95 % CIs separate, "holds, not significant" when they
    overlap). A difference below the measure's minimum effect (``MIN_EFFECT``) is 'too small to count'
    for a "better" and no difference for an "as precise" or a "comparable"; a claim in favour of a model
    below the sanity floor (clean ME above ``SANITY_ME`` x the mean face's) 'fails the sanity floor'.
    Beyond the paper, SOPI and MOPI (and Table 7's ablations, where evaluated) are compared with the mean
    face at the true pose (:data:`MEAN_FACE`) on landmarks and in 3D.

    Args:
        results: :func:`evaluate`'s dict.
        roles: role -> model name overrides of :data:`DEFAULT_ROLES`, or None.
        colour: :func:`colour_invariance`'s dict; when given, the Fig. 3 claim on the skin tone is added.
        flat_ratio: the "as precise" / "comparable" factor; None: ``AS_PRECISE``.

    Returns:
        A list of :class:`~occ3d_lib.evaluation.claims.Claim`: claim, paper (its numbers, formatted from
        :data:`PAPER`), ours (our numbers, 'n/a' when not measured), verdict (one of
        :data:`~occ3d_lib.evaluation.claims.VERDICTS`) and against (what the claim compares with:
        'teacher', 'mean face', 'clean', 'ablation', 'SOPI').
    """
    flat_ratio = thresholds.AS_PRECISE if flat_ratio is None else flat_ratio
    r = {**DEFAULT_ROLES, **(roles or {})}
    t, s, m = r["teacher"], r["sopi"], r["mopi"]
    out: list[Claim] = []

    def add(claim: str, paper: str, res: tuple[str, str] | None, against: str = "teacher") -> None:
        out.append(Claim(claim, paper, res[1] if res else "n/a", res[0] if res else "not measured", against))

    def me(table: str, *keys: str) -> float:  # the paper's ME (px) of a table cell
        cell = PAPER[table]
        for k in keys:
            cell = cell[k]
        return cell[0] if isinstance(cell, tuple) else cell

    def hist(table: str, *keys: str) -> float:  # the paper's histogram dissimilarity on CelebA
        return me(table, *keys)

    def within(x: float, y: float) -> bool:  # "as precise" / "comparable": ratio within the limit, or no effect
        return x <= flat_ratio * y or not thresholds.effect_counts(x, y, "me")

    sopi_sane = _sane(results, s)
    # Table 1: SOPI comparable to RNet on clean faces
    a, b = _mean(results, s, "none", "me"), _mean(results, t, "none", "me")
    add("SOPI's landmark error on unoccluded faces is comparable to the teacher's (Table 1)",
        f"ME {me('table1', 'none', 'sopi')} vs {me('table1', 'none', 'teacher')}",
        None if a is None or b is None else
        (_judged(within(a, b) and within(b, a), True, True, sopi_sane),
         f"SOPI {a:.2f} vs teacher {b:.2f} px (ratio {a / b if b else float('nan'):.2f}, limit {flat_ratio})"),
        against="teacher (clean)")
    for k in ("dsofi", "dhofi", "shofi"):
        ak = _mean(results, s, k, "me")
        add(f"SOPI on {KIND_LABELS[k]} is as precise as on unoccluded faces (Table 1)",
            f"ME {me('table1', k, 'sopi')} vs {me('table1', 'none', 'sopi')}",
            None if ak is None or a is None else
            (_judged(within(ak, a), True, True, sopi_sane),
             f"SOPI {ak:.2f} vs clean {a:.2f} px (ratio {ak / a if a else float('nan'):.2f}, limit {flat_ratio})"),
            against="clean")
        add(f"SOPI beats the teacher on {KIND_LABELS[k]} (Table 1: RNet '--', no reliable result)", "RNet --",
            _better(results, s, t, k, "me"))
    for k in ("dsofi", "dhofi"):
        add(f"SOPI's histogram dissimilarity is below the teacher's on {KIND_LABELS[k]} (Table 2)",
            f"{hist('table2', k, 'sopi')} vs {hist('table2', k, 'teacher')} (CelebA)",
            _better(results, s, t, k, "hist"))
    add("SOPI beats the teacher on natural occlusions (Table 3)",
        f"ME {me('table3', 'sopi')} vs {me('table3', 'teacher')}", _better(results, s, t, NATURAL_KIND, "me"))
    add("SOPI's histogram dissimilarity is below the teacher's on natural occlusions (Table 4)",
        f"{hist('table4', 'sopi')} vs {hist('table4', 'teacher')}", _better(results, s, t, NATURAL_KIND, "hist"))
    add("MOPI beats the teacher on random patterns (Table 5)",
        f"ME {me('table5', 'mopi')} vs {me('table5', 'teacher')}", _better(results, m, t, PATTERN_KIND, "me"))
    add("MOPI's histogram dissimilarity is below the teacher's on random patterns (Table 6)",
        f"{hist('table6', 'mopi')} vs {hist('table6', 'teacher')}", _better(results, m, t, PATTERN_KIND, "hist"))
    add("MOPI is more accurate than SOPI on occluded faces (Sec. 5)", "stated, no table",
        _better(results, m, s, PATTERN_KIND, "me"), against="SOPI")
    add("Full Eq. 9 loss beats the label-only ablation (Table 7)",
        f"ME {me('table7', 'mopi')} vs {me('table7', 'mopi_label')}",
        _better(results, m, r["mopi_label"], PATTERN_KIND, "me"), against="ablation")
    add("Full Eq. 9 loss beats the perceptual-only ablation (Table 7)",
        f"ME {me('table7', 'mopi')} vs {me('table7', 'mopi_perceptual')}",
        _better(results, m, r["mopi_perceptual"], PATTERN_KIND, "me"), against="ablation")
    baseline_rows = [(s, "none"), (s, "shofi"), (m, PATTERN_KIND)]
    baseline_rows += [(r[v], PATTERN_KIND) for v in ("mopi_label", "mopi_perceptual") if r[v] in results.get("summary", {})]
    for model, kind in baseline_rows:
        for metric, what in (("me", "landmark error"), ("vertex_mm", "dense 3D error")):
            add(f"Baseline: {model.upper()}'s {what} on {KIND_LABELS.get(kind, kind)} is below the mean face at the "
                "true pose", "not measured in the paper", _better(results, model, MEAN_FACE, kind, metric),
                against="mean face")
    add("Beyond the paper: SOPI's dense 3D error under SHOFI is below the teacher's", "not measured in the paper",
        _better(results, s, t, "shofi", "vertex_mm"))
    if colour is not None:
        cm = colour.get("models", {})
        if t in cm and s in cm:
            st, ss = cm[t]["spread"], cm[s]["spread"]
            lower = ss["mean"] < st["mean"]
            sep = ss["hi"] < st["lo"] if lower else st["hi"] < ss["lo"]
            counts = thresholds.effect_counts(ss["mean"], st["mean"], "colour")
            note = ("CIs separate" if sep else "CIs overlap") + \
                ("" if counts or not lower else f"; difference below the minimum effect of {thresholds.min_effect('colour'):g}")
            add("SOPI's reconstructed skin tone ignores the occluder colour better than the teacher's (Fig. 3)",
                "qualitative (Fig. 3)",
                (_judged(lower, sep, counts, sopi_sane),
                 f"albedo spread across {len(colour.get('colours', []))} colours: SOPI {_fci(ss)} vs teacher {_fci(st)} "
                 f"8-bit levels ({note})"))
        else:
            add("SOPI ignores the occluder colour better than the teacher (Fig. 3)", "qualitative (Fig. 3)", None)
    return out


def verdict_counts(items: Sequence[Claim]) -> dict[str, dict[str, int]]:
    """Verdicts counted by what each claim compares with (``against``): {against: {verdict: n}}."""
    out: dict[str, dict[str, int]] = {}
    for v in items:
        row = out.setdefault(v.against, {})
        row[v.verdict] = row.get(v.verdict, 0) + 1
    return out


def verdict_counts_markdown(items: Sequence[Claim]) -> str:
    """One sentence with the verdict counts overall and split by what the claims compare with.

    So that a reader sees how many 'holds' are wins over a teacher that never saw an occluder (notebook 05
    section 10).

    Args:
        items: the claims, e.g. :func:`verdicts`'s list.

    Returns:
        The sentence as a markdown str.
    """
    def n(verdict: str, rows: Mapping[str, int]) -> int:
        return rows.get(verdict, 0)

    total: dict[str, int] = {}
    counts = verdict_counts(items)
    for rows in counts.values():
        for k, c in rows.items():
            total[k] = total.get(k, 0) + c
    parts = [f"{a}: {n('holds', rows)} of {sum(rows.values())}" for a, rows in counts.items()]
    return (f"Holds: {n('holds', total)} (plus {n('holds, not significant', total)} with overlapping 95 % intervals), "
            f"too small to count: {n('too small to count', total)}, fails the sanity floor: "
            f"{n('fails the sanity floor', total)}, does not hold here: {n('does not hold here', total)}, "
            f"not measured: {n('not measured', total)}. "
            f"Holds by what the claim compares with: {'; '.join(parts)}.")


# ------------------------------------------------------------------------------------ figures
@torch.no_grad()
def qualitative_grid(models: Mapping[str, Any], es: EvalSet, renderer: Any, n: int = 6, batch_size: int = 32,
                     device: str = "cpu"):
    """Figs. 2-5 style grid for one set: rows input, clean (if known), then each model's reconstruction
    rendered over the input image. Returns a matplotlib Figure."""
    n = min(n, len(es))
    imgs = es.images[:n].float()
    rows = {"input": imgs}
    if es.clean is not None:
        rows["clean"] = es.clean[:n].float()
    for name, model in models.items():
        c = predict_coeffs(model, imgs, batch_size, device).to(renderer.model.dtype)
        rows[name] = renderer(c, imgs.to(renderer.model.dtype)).image.float()
    return rows_grid(rows, suptitle=f"{KIND_LABELS.get(es.kind, es.kind)} ({es.dataset})")


def worst_cases(results: Mapping[str, Any], model: str, kind: str, metric: str = "me", k: int = 4) -> list[int]:
    """Indices (into the ``kind`` set) of the ``k`` samples where ``model`` has the largest ``metric``.

    The failure cases of notebook 05 section 9. NaNs are ignored (ranked last).

    Args:
        results: :func:`evaluate`'s dict (its ``per_sample``).
        model: the model's name.
        kind: the evaluation set's kind.
        metric: the per-sample metric (a key of :data:`METRICS`).
        k: how many samples.

    Returns:
        A list of at most ``k`` int indices, the largest value first. A missing model, kind or metric
        raises ``KeyError``.
    """
    vals = results.get("per_sample", {}).get(model, {}).get(kind, {}).get(metric)
    if vals is None:
        raise KeyError(f"no per-sample {metric!r} for model {model!r} on {kind!r}")
    v = torch.tensor([x if x is not None else float("nan") for x in vals], dtype=torch.float64)
    v = torch.where(torch.isfinite(v), v, torch.full_like(v, -float("inf")))
    return torch.argsort(v, descending=True)[: min(k, v.numel())].tolist()


@torch.no_grad()
def failure_grid(models: Mapping[str, Any], es: EvalSet, renderer: Any, indices: Sequence[int], device: str = "cpu",
                 errors: Sequence[float] | None = None):
    """The chosen samples of ``es``: the input, then each model's render over it (notebook 05 section 9).

    Every panel shows the ground-truth landmarks in green; a model's row also shows its projected
    landmarks in red. ``errors`` (one per index, landmark ME in px) title the columns.

    Args:
        models: ``{name: model}``, one row each.
        es: the :class:`~occ3d_lib.evaluation.sets.EvalSet` the samples come from.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` at the set's size.
        indices: the samples' indices in ``es`` (e.g. :func:`worst_cases`).
        device: where the models run.
        errors: one landmark ME per index for the column titles, or None.

    Returns:
        The matplotlib Figure (rows: input, then the models; one column per index).
    """
    import matplotlib.pyplot as plt

    idx = torch.as_tensor(list(indices), dtype=torch.long)
    imgs = es.images[idx].float()
    rows = [("input", imgs, None)]
    for name, model in models.items():
        c = predict_coeffs(model, imgs, 32, device).to(renderer.model.dtype)
        out = renderer(c, imgs.to(renderer.model.dtype))
        rows.append((name, out.image.float(), out.landmarks.float()))
    fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.7 * len(idx) + 0.6, 1.7 * len(rows)), squeeze=False)
    gt = es.landmarks[idx]
    for r, (name, im, lm) in enumerate(rows):
        for c in range(len(idx)):
            ax = axes[r, c]
            ax.imshow(_np_image(im[c]), interpolation="nearest")
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
            ax.scatter(gt[c, :, 0], gt[c, :, 1], s=2, c="lime", linewidths=0)
            if lm is not None:
                ax.scatter(lm[c, :, 0], lm[c, :, 1], s=2, c="red", linewidths=0)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and errors is not None:
                ax.set_title(f"face {int(idx[c])}: ME {float(errors[c]):.1f} px", fontsize=7)
    fig.suptitle(f"{KIND_LABELS.get(es.kind, es.kind)}: green = ground-truth landmarks, red = reconstruction", fontsize=9)
    fig.tight_layout()
    return fig


@torch.no_grad()
def colour_grid(models: Mapping[str, Any], image: Tensor, landmarks: Tensor, renderer: Any, kind: str = "shofi",
                seed: int = 0, colours: Sequence[Sequence[float]] = DEFAULT_COLOURS, device: str = "cpu"):
    """Fig. 3 style: one face occluded by the same occluder in each colour (columns), each model's reconstruction below.

    The reconstructions are rendered on black, so the skin tone shows alone. Notebook 05 section 8.

    Args:
        models: ``{name: model}``, one row each.
        image: one face ``(3, S, S)`` in [0, 1].
        landmarks: its landmarks ``(68, 2)`` in pixels.
        renderer: a :class:`~occ3d_lib.render.renderer.FaceRenderer` at size S.
        kind: the occlusion kind.
        seed: the occlusion seed, the same for every colour.
        colours: RGB colours in [0, 1], one column each.
        device: where the models run.

    Returns:
        The matplotlib Figure (:func:`occ3d_lib.core.viz.rows_grid`: rows "input" and the models).
    """
    imgs = torch.cat([make_eval_set(image[None], landmarks[None], kind, seed, fill="solid",
                                    color=list(map(float, c))).images.float() for c in colours])
    rows = {"input": imgs}
    for name, model in models.items():
        c = predict_coeffs(model, imgs, 32, device).to(renderer.model.dtype)
        rows[name] = renderer(c).image.float()  # black background: the skin tone alone
    return rows_grid(rows, suptitle=f"same {kind} occluder, {len(colours)} colours")


def curve_figure(results: Mapping[str, Any], which: str = "coverage", metric: str = "me", ax: Any = None):
    """Error vs occluded fraction (``which="coverage"``) or vs |yaw| (``"yaw"``), one line per model.

    Each line has a 95 % band (mean +- 1.96 std / sqrt(n) per bin; notebook 05 section 7); the mean face
    is dashed.

    Args:
        results: :func:`evaluate`'s dict (its ``curves``).
        which: "coverage" or "yaw".
        metric: the curve's metric: "me", "vertex_mm" or "hist".
        ax: matplotlib Axes to draw into; None makes a new figure.

    Returns:
        The matplotlib Figure (the one holding ``ax`` when given).
    """
    import matplotlib.pyplot as plt

    if which not in ("coverage", "yaw"):
        raise ValueError(f"which must be 'coverage' or 'yaw', got {which!r}")
    fig, ax = plt.subplots(figsize=(6.2, 3.4)) if ax is None else (ax.figure, ax)
    for name, per_metric in results.get("curves", {}).get(which, {}).items():
        bins = per_metric.get(metric)
        if not bins:
            continue
        xs = [0.5 * (b["lo"] + b["hi"]) * (100 if which == "coverage" else 1) for b in bins]
        ys = np.array([b["mean"] if b["mean"] is not None else float("nan") for b in bins], dtype=float)
        half = np.array([1.96 * float(b.get("std") or 0.0) / math.sqrt(b["n"]) if b.get("n") else float("nan")
                         for b in bins], dtype=float)
        line, = ax.plot(xs, ys, marker="o", ms=3, label=name, ls="--" if name == MEAN_FACE else "-")
        ax.fill_between(xs, ys - half, ys + half, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("occluded fraction of the face (%)" if which == "coverage" else "|yaw| (degrees)")
    ax.set_ylabel(METRICS.get(metric, metric), fontsize=7)
    ax.set_title(f"{METRICS.get(metric, metric).split(',')[0].split(':')[0]} by "
                 f"{'occluded fraction' if which == 'coverage' else 'head yaw'} (95 % bands)", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def save_figures(run_dir: str | Path, models: Mapping[str, Any], eval_sets: Mapping[str, EvalSet], renderer: Any,
                 results: Mapping[str, Any], n: int = 6, device: str = "cpu") -> dict[str, str]:
    """Write qualitative grids per kind and the coverage / yaw curves to ``run_dir/figures``.
    Returns {name: path relative to run_dir}."""
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    figdir = run_dir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}

    def save(fig, name: str) -> None:
        path = figdir / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        out[name] = str(path.relative_to(run_dir))

    for kind, es in eval_sets.items():
        save(qualitative_grid(models, es, renderer, n=n, device=device), f"grid_{kind}")
    for which in ("coverage", "yaw"):
        for metric in ("me", "vertex_mm"):
            save(curve_figure(results, which, metric), f"curve_{which}_{metric}")
    return out


# ------------------------------------------------------------------------------------ report
def write_report(run_dir: str | Path, results: Mapping[str, Any], settings: Mapping[str, Any],
                 timings: Mapping[str, float], figures: Mapping[str, str] | None = None,
                 roles: Mapping[str, str] | None = None, colour: Mapping[str, Any] | None = None,
                 aflw_results: Mapping[str, Any] | None = None,
                 natural_results: Mapping[str, Any] | None = None) -> Path:
    """Write ``run_dir/report.md``: verdicts, Tables 1-7, 3D table, colour invariance, curves,
    qualitative grids, settings and timings. Returns its path (notebook 05 sections 6 and 10)."""
    run_dir = Path(run_dir)
    colour = colour if colour is not None else results.get("colour_invariance")
    v = verdicts(results, roles, colour)
    lines = ["# occ3d run report", "",
             "Reproduction of *Occlusion Resistant Network for 3D Face Reconstruction* (Tiwari et al.) on this "
             "run's data. Our numbers are measured here; the paper's are copied from its tables.", "",
             "## Verdicts on the paper's claims", "", claims_markdown(v),
             verdict_counts_markdown(v), "", "Thresholds (one definition, `occ3d_lib.core.thresholds`):", "",
             thresholds.thresholds_markdown(), "",
             "## Tables", "", tables_markdown(results, roles, aflw_results, natural_results)]
    if share_removed(results):
        lines += ["## The share of the mean face's 3D error each model removes", "",
                  share_removed_markdown(results, "vertex_mm")]
    if colour:
        lines += ["## Occluder-colour invariance (Fig. 3 as a number)", "",
                  f"Kind {colour.get('kind')}, {colour.get('n')} faces, {len(colour.get('colours', []))} colours; "
                  "spread = mean distance of the reconstructed mean skin albedo from its mean over colours; "
                  "vs clean = mean distance from the unoccluded reconstruction (8-bit levels).", "",
                  "| model | spread | vs clean |", "|---|---|---|"]
        for name, d in colour.get("models", {}).items():
            lines.append(f"| {name} | {_fci(d['spread'])} | {_fci(d['vs_clean'])} |")
        lines.append("")
    lines += ["## Error vs occluded fraction and |yaw|", ""]
    for which in ("coverage", "yaw"):
        curves = results.get("curves", {}).get(which, {})
        if not curves:
            continue
        any_m = next(iter(curves.values())).get("me", [])
        head = "| model | " + " | ".join(
            (f"{b['lo'] * 100:.0f}-{b['hi'] * 100:.0f}%" if which == "coverage" else f"{b['lo']:.0f}-{b['hi']:.0f} deg")
            for b in any_m) + " |"
        lines += [f"Landmark ME (px at 224) by {'occluded fraction' if which == 'coverage' else '|yaw|'} "
                  "(n per bin in brackets):", "", head, "|---|" + "---|" * len(any_m)]
        for name, pm in curves.items():
            cells = [f"{_f(b['mean'])} ({b['n']})" for b in pm.get("me", [])]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for name, rel in figures.items():
            lines += [f"**{name}**", "", f"![{name}]({rel})", ""]
    lines += ["## Settings", "", "```json", json.dumps(jsonable(dict(settings)), indent=2, sort_keys=True, default=str),
              "```", "", "## Timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {float(s):.1f} |" for k, s in timings.items()]
    meta = results.get("meta", {})
    lines += ["", "## Metric definitions", ""] + [f"- `{k}`: {d}" for k, d in METRICS.items()]
    lines += ["", f"Bootstrap: {meta.get('bootstrap')} resamples, {100 * (1 - float(meta.get('alpha', 0.05))):.0f} % "
              f"percentile intervals. Set sizes: {meta.get('n')}. Identity leak check: "
              f"{'passed' if meta.get('identity_leak_checked') else 'not run'}.", ""]
    return write_text(run_dir / "report.md", "\n".join(lines))


# ------------------------------------------------------------------------------------ one call
def run_evaluation(ctx: Context, models: Mapping[str, Any], *, kinds: Sequence[str] | None = None, n: int | None = None,
                   colour_kind: str = "shofi", figures: bool = True, write: bool = True,
                   settings: Mapping[str, Any] | None = None, timings: Mapping[str, float] | None = None,
                   roles: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole evaluation of a run (notebook 05, pipeline).

    Fixed sets of ``ctx``, identity-leak check against the training split, :func:`evaluate`,
    :func:`colour_invariance` on the clean faces, and (``write``) ``run_dir/metrics.json``, figures and
    ``report.md``.

    Args:
        ctx: the run's Context (profile: bootstrap and seed; dataset, renderer, device, run folder).
        models: ``{name: model}`` to evaluate.
        kinds: the occlusion kinds (default :data:`occ3d_lib.occlusion.eval_sets.EVAL_KINDS`).
        n: faces per set (default ``profile.eval_samples``).
        colour_kind: the occlusion kind of the colour experiment.
        figures: write the figures (with ``write``).
        write: write ``metrics.json``, the figures and ``report.md`` to ``ctx.run_dir``.
        settings: recorded in the report; ``profile`` and ``tracks`` are filled in when missing.
        timings: seconds of earlier stages for the report; ``evaluation`` is added.
        roles: role -> model name overrides of :data:`DEFAULT_ROLES` for the report.

    Returns:
        :func:`evaluate`'s dict with ``colour_invariance`` and ``timings`` added, and with ``write``
        ``figures`` ({name: path relative to the run folder}; empty when not ``figures``).
    """
    import time

    t0 = time.perf_counter()
    sets = get_eval_sets(ctx, kinds, n)
    p = ctx.profile
    res = evaluate(models, sets, ctx.renderer, bootstrap=p.bootstrap, seed=p.seed, device=ctx.device,
                   train_identities=ctx.dataset.train.identity)
    base = sets.get("none") or next(iter(sets.values()))
    clean = base.clean if base.clean is not None else base.images
    res["colour_invariance"] = colour_invariance(models, clean, base.landmarks, ctx.renderer, kind=colour_kind,
                                                 seed=p.seed, bootstrap=p.bootstrap, device=ctx.device)
    tm = dict(timings or {})
    tm["evaluation"] = time.perf_counter() - t0
    res["timings"] = tm
    if write:
        figs = save_figures(ctx.run_dir, models, sets, ctx.renderer, res, device=ctx.device) if figures else {}
        res["figures"] = figs
        write_metrics(ctx.run_dir / "metrics.json", res)
        st = dict(settings or {})
        st.setdefault("profile", p.to_dict())
        st.setdefault("tracks", {"face_model": ctx.face_model_spec, "dataset": ctx.dataset_spec,
                                 "teacher": ctx.teacher_spec, "facenet": ctx.facenet_spec})
        write_report(ctx.run_dir, res, st, tm, figs, roles=roles)
    return res
