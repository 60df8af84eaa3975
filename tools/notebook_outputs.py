#!/usr/bin/env python3
"""Check or strip notebook outputs (notebooks are committed without outputs).

Cells whose source contains ``# NBVAL_CHECK_OUTPUT`` keep their outputs: they are
small and deterministic, and nbval compares them. Everything else is stripped.

    python tools/notebook_outputs.py --check notebooks/*.ipynb   # exit 1 if any carries outputs
    python tools/notebook_outputs.py --strip notebooks/*.ipynb   # remove them in place
    python tools/notebook_outputs.py --refresh-checked runs/smoke notebooks/*.ipynb
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MARK = "NBVAL_CHECK_OUTPUT"


def _src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def offending_cells(nb: dict) -> list[int]:
    """Indices of code cells that carry outputs or execution counts they should not."""
    bad = []
    for i, c in enumerate(nb.get("cells", [])):
        if c.get("cell_type") != "code" or MARK in _src(c):
            continue
        if c.get("outputs") or c.get("execution_count") is not None:
            bad.append(i)
    return bad


def strip(nb: dict) -> dict:
    """Remove outputs and execution counts from unmarked code cells (in place)."""
    for c in nb.get("cells", []):
        if c.get("cell_type") == "code" and MARK not in _src(c):
            c["outputs"] = []
            c["execution_count"] = None
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def refresh_checked(source: dict, executed: dict) -> int:
    """Copy the outputs of marked cells from an executed copy into the source notebook (by cell id)."""
    by_id = {c.get("id"): c for c in executed.get("cells", [])}
    n = 0
    for c in source.get("cells", []):
        if c.get("cell_type") == "code" and MARK in _src(c) and c.get("id") in by_id:
            c["outputs"] = by_id[c["id"]].get("outputs", [])
            c["execution_count"] = by_id[c["id"]].get("execution_count") or 1  # nbval skips unrun cells
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", action="store_true")
    g.add_argument("--strip", action="store_true")
    g.add_argument("--refresh-checked", metavar="RUNS_DIR",
                   help="copy outputs of NBVAL_CHECK_OUTPUT cells from executed copies in RUNS_DIR")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args(argv)
    status = 0
    for p in map(Path, args.paths):
        nb = json.loads(p.read_text())
        if args.refresh_checked:
            executed = Path(args.refresh_checked) / p.name
            if executed.exists():
                n = refresh_checked(nb, json.loads(executed.read_text()))
                p.write_text(json.dumps(strip(nb), indent=1, ensure_ascii=False) + "\n")
                print(f"{p}: refreshed {n} checked cell(s)")
            continue
        if args.check:
            bad = offending_cells(nb)
            if bad:
                print(f"{p}: cells {bad} carry outputs; run `make strip-notebooks` (or mark small deterministic "
                      f"cells with '# {MARK}')")
                status = 1
        else:
            p.write_text(json.dumps(strip(nb), indent=1, ensure_ascii=False) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
