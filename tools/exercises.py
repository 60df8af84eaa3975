"""The exercises of the series' notebooks, read from their percent-format sources (notebooks/NN_*.py).

Each notebook ends with a ``## Exercises`` markdown cell: a numbered list whose items carry a collapsed hint
(``<details><summary>Hint</summary>``) and a collapsed solution (``<details><summary>Solution</summary>``),
the solution's code, if any, in a fenced ``python`` block. :func:`exercises` returns them;
``tests/integration/test_exercises.py`` checks their form, the names their code uses, and (in the smoke
profile) runs each solution after the notebook, in its kernel (:func:`notebook_with_solutions`).

    python tools/exercises.py 03          # print notebook 03's exercises and their solution code
"""
from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
_ITEM = re.compile(r"^(\d+)\. ", re.MULTILINE)
_CODE = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)
#: The first line of every solution cell that :func:`notebook_with_solutions` appends.
MARKER = "# exercise solution"


@dataclass(frozen=True)
class Exercise:
    """One exercise: its ``number``, its ``text`` (the markdown item), whether it has a hint and a solution,
    and the code of its solution (``''`` when the solution is prose only)."""

    notebook: str
    number: int
    text: str
    has_hint: bool
    has_solution: bool
    code: str


def exercises_markdown(src: Path) -> str:
    """The markdown of the ``## Exercises`` part of a notebook source (up to the next ``## `` heading)."""
    nb = jupytext.read(src, fmt="py:percent")
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    start = md.find("## Exercises")
    if start < 0:
        return ""
    rest = md[start + len("## Exercises"):]
    end = re.search(r"^## ", rest, re.MULTILINE)
    return rest[:end.start()] if end else rest


def exercises(src: Path) -> list[Exercise]:
    """The numbered exercises of one notebook source, in order."""
    md = exercises_markdown(src)
    starts = list(_ITEM.finditer(md))
    out = []
    for i, m in enumerate(starts):
        text = md[m.start():starts[i + 1].start() if i + 1 < len(starts) else len(md)]
        solution = text.split("<summary>Solution</summary>", 1)[1] if "<summary>Solution</summary>" in text else ""
        code = "\n\n".join(textwrap.dedent(c.group(2)).strip() for c in _CODE.finditer(solution))
        out.append(Exercise(src.stem, int(m.group(1)), text.strip(), "<summary>Hint</summary>" in text,
                            bool(solution), code))
    return out


def notebook_with_solutions(src: Path) -> nbformat.NotebookNode:
    """The notebook of ``src`` with one code cell per solution appended at its end (each starting with
    :data:`MARKER` and the exercise's number), to run in one kernel after the notebook itself."""
    nb = jupytext.read(src, fmt="py:percent")
    for ex in exercises(src):
        if ex.code:
            nb.cells.append(nbformat.v4.new_code_cell(f"{MARKER} {ex.number}\n{ex.code}"))
    return nb


def main(argv: list[str]) -> int:
    for src in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        if argv and src.name[:2] not in argv:
            continue
        for ex in exercises(src):
            print(f"== {src.stem} exercise {ex.number} (hint: {ex.has_hint}, solution: {ex.has_solution})")
            print(ex.code or "(prose solution)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
