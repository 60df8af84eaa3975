"""Small notebooks written from Python (tests build throw-away notebooks with it; the series itself is
authored as percent-format scripts, see tools/notebooks.py).

    from tools.nbbuild import md, code, params, save
    save("notebooks/01_x.ipynb", [md("# Title"), params("seed = 0"), code("print(1)")])
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    c = nbformat.v4.new_code_cell(textwrap.dedent(text).strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def params(text: str) -> nbformat.NotebookNode:
    return code(text, tags=["parameters"])


def save(path: str | Path, cells: list) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):  # stable ids keep diffs small
        c["id"] = f"c{i:03d}"
    nbformat.validate(nb)
    Path(path).write_text(nbformat.writes(nb) + "\n")
    return Path(path)
