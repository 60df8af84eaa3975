"""Evaluation: evaluation sets, metric runs with confidence intervals, the paper's tables, claims and the report.

sets (fixed evaluation sets, synthetic and real), evaluate (metric runs with bootstrap intervals,
colour invariance, ``metrics.json``), report (Tables 1-7 beside the paper's numbers in ``PAPER``,
verdicts, figures, ``report.md``, ``run_evaluation``), claims (the one Claim type; notebook 03's
claims), diagnostics (quick checks of trained models; notebooks 03-04), study (the course study).
Notebook 05 teaches it.
"""
