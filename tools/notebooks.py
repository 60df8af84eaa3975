"""The series' notebooks are authored as jupytext percent-format scripts, notebooks/NN_*.py.

    python tools/notebooks.py build [NN ...]   # notebooks/NN_*.py -> notebooks/NN_*.ipynb (make notebooks)
    python tools/notebooks.py check            # exit 1 when a committed .ipynb and its .py disagree

Editors, linters (ruff) and code review read the .py; JupyterLab, nbval and papermill run the .ipynb.
``build`` writes the cells of the .py (markdown, code, tags) with stable cell ids and keeps the stored
outputs of code cells whose source did not change up to white space (the NBVAL_CHECK_OUTPUT cells;
see tools/notebook_outputs.py). ``check`` compares cell types, sources and tags.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def sources(selected: list[str] | None = None) -> list[Path]:
    """The percent-format sources notebooks/NN_*.py (all, or those whose number is in ``selected``)."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if selected:
        paths = [p for p in paths if p.name[:2] in selected]
    return paths


def _key(cell: nbformat.NotebookNode) -> tuple[str, str, tuple[str, ...]]:
    return cell.cell_type, cell.source, tuple(cell.metadata.get("tags", ()))


def _code_key(cell: nbformat.NotebookNode) -> tuple[str, tuple[str, ...]]:
    """A code cell up to white space: re-wrapping a line keeps the cell's stored outputs."""
    return "".join(cell.source.split()), tuple(cell.metadata.get("tags", ()))


def notebook_from_source(src: Path, old: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    """The notebook of a percent-format source; outputs of unchanged code cells come from ``old``."""
    text = jupytext.read(src, fmt="py:percent")
    stored: dict[tuple, list] = {}
    for c in old.cells if old is not None else []:
        if c.cell_type == "code" and c.outputs:
            stored.setdefault(_code_key(c), []).append(c)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for i, c in enumerate(text.cells):
        tags = list(c.metadata.get("tags", []))
        if c.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(c.source)
        else:
            new = nbformat.v4.new_code_cell(c.source)
            prev = stored.get(_code_key(c))
            if prev:
                kept = prev.pop(0)
                new.outputs, new.execution_count = kept.outputs, kept.execution_count
        if tags:
            new.metadata["tags"] = tags
        new["id"] = f"c{i:03d}"
        nb.cells.append(new)
    nbformat.validate(nb)
    return nb


def build(src: Path) -> Path:
    out = src.with_suffix(".ipynb")
    old = nbformat.read(out, as_version=4) if out.exists() else None
    text = nbformat.writes(notebook_from_source(src, old)) + "\n"
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
        print(f"wrote {out.relative_to(ROOT)}")
    return out


def differences(src: Path) -> list[str]:
    """How the committed notebook of ``src`` differs from it (empty: they agree)."""
    out = src.with_suffix(".ipynb")
    if not out.exists():
        return [f"{out.relative_to(ROOT)} is missing"]
    want = [_key(c) for c in jupytext.read(src, fmt="py:percent").cells]
    have = [_key(c) for c in nbformat.read(out, as_version=4).cells]
    problems = [f"cell {i} ({w[0]}, starts {w[1][:40]!r}) differs" for i, (w, h) in enumerate(zip(want, have)) if w != h]
    if len(want) != len(have):
        problems.append(f"{len(want)} cells in the source, {len(have)} in the notebook")
    return [f"{out.relative_to(ROOT)} does not match {src.relative_to(ROOT)}: {p}" for p in problems]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/notebooks.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("build", "check"))
    ap.add_argument("numbers", nargs="*", help="notebook numbers (default: all)")
    args = ap.parse_args(argv)
    paths = sources(args.numbers)
    if args.command == "build":
        for p in paths:
            build(p)
        return 0
    problems = [d for p in paths for d in differences(p)]
    for d in problems:
        print(d, file=sys.stderr)
    if problems:
        print("run `make notebooks` to rebuild the notebooks from their sources", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
