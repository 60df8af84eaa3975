"""Evaluation: evaluation sets, metric runs with confidence intervals, tables, claims and the report.

evaluate. Notebook 05 teaches it.
"""
