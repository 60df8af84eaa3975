"""Evaluation: evaluation sets, metric runs with confidence intervals, the paper's tables, claims and the report.

evaluate (evaluation sets, runs, Tables 1-7 beside the paper's numbers in ``PAPER``, verdicts, figures,
``report.md``), claims (the one Claim type and its markdown table; notebook 03's targets). Notebook 05
teaches it.
"""
