"""Every exercise of the series has a hint and a solution, its solution's code names only what the notebook
or the solution defines, and (slow) every solution runs in the smoke profile after its notebook, in the same
kernel, as a learner would run it."""
from __future__ import annotations

import ast
import builtins
from pathlib import Path

import jupytext
import pytest

from occ3d_lib.nets import pretrained
from tools import exercises as X
from tools import notebooks

ROOT = Path(__file__).resolve().parents[2]
SOURCES = notebooks.sources()
#: Notebooks that load the shipped pretrained teacher and FaceNet in the smoke profile.
NEEDS_PRETRAINED = ("03", "04", "05")


def _defined(tree: ast.AST) -> set[str]:
    """Names a piece of code binds: assignments, loop and comprehension targets, imports, functions, arguments."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return out


def _loaded(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _notebook_names(src: Path) -> set[str]:
    nb = jupytext.read(src, fmt="py:percent")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return _defined(ast.parse(code))


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_every_exercise_has_a_hint_and_a_solution(src):
    found = X.exercises(src)
    assert found, f"{src.name} has no numbered exercises under '## Exercises'"
    assert [e.number for e in found] == list(range(1, len(found) + 1)), f"{src.name}: exercises are not numbered 1..n"
    bad = [e.number for e in found if not (e.has_hint and e.has_solution)]
    assert not bad, f"{src.name}: exercise(s) {bad} lack a collapsed hint or solution"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_solution_code_compiles_and_names_only_what_exists(src):
    known = _notebook_names(src) | set(dir(builtins))
    for ex in X.exercises(src):
        if not ex.code:
            continue
        tree = ast.parse(ex.code, filename=f"{src.stem} exercise {ex.number}")
        unknown = _loaded(tree) - known - _defined(tree)
        assert not unknown, f"{src.name} exercise {ex.number}: its solution uses undefined name(s) {sorted(unknown)}"


def test_the_reader_finds_code_hints_and_prose(tmp_path):
    src = tmp_path / "09_x.py"
    src.write_text("# %% [markdown]\n# ## Exercises\n#\n# 1. Do it.\n#    <details><summary>Hint</summary>h</details>\n"
                   "#    <details><summary>Solution</summary>\n#\n#    ```python\n#    x = 1\n#    print(x)\n#    ```\n"
                   "#    </details>\n# 2. Think.\n#    <details><summary>Solution</summary>Prose.</details>\n#\n"
                   "# ## References\n#\n# 3. Not an exercise.\n")
    found = X.exercises(src)
    assert [(e.number, e.has_hint, e.has_solution, e.code) for e in found] == [
        (1, True, True, "x = 1\nprint(x)"), (2, False, True, "")]
    cells = X.notebook_with_solutions(src).cells
    assert cells[-1].cell_type == "code" and cells[-1].source == f"{X.MARKER} 1\nx = 1\nprint(x)"
    tree = ast.parse("y = [k for k in range(3)]\nprint(y, fit_r, lambda a: a)")
    assert _loaded(tree) - _defined(tree) - set(dir(builtins)) == {"fit_r"}  # the name check sees a stray name


@pytest.mark.slow
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_each_solution_runs_in_the_smoke_profile(src, tmp_path, monkeypatch):
    """The notebook, then each of its solutions, in one kernel, in the smoke profile (what a learner does)."""
    papermill = pytest.importorskip("papermill")
    import nbformat

    if src.name[:2] in NEEDS_PRETRAINED:
        try:
            for name in pretrained.NAMES:
                pretrained.shipped_entry(name)
        except (FileNotFoundError, ValueError) as e:
            pytest.skip(f"{src.stem} needs the shipped pretrained networks: {str(e).splitlines()[0]}")
    if not any(e.code for e in X.exercises(src)):
        pytest.skip(f"{src.stem} has no solution with code")
    monkeypatch.setenv("OCC3D_PROFILE", "smoke")
    monkeypatch.setenv("OCC3D_PROGRESS", "0")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb_in, nb_out = tmp_path / src.with_suffix(".ipynb").name, tmp_path / "out.ipynb"
    nbformat.write(X.notebook_with_solutions(src), str(nb_in))
    try:
        # the run folder nbval's smoke run uses (runs/smoke): the notebook's trainings are cached there by their
        # configuration hash, so `make test` trains each smoke stage once for this test and nbval together
        papermill.execute_notebook(str(nb_in), str(nb_out), parameters={"profile": "smoke"},
                                   cwd=str(src.parent), progress_bar=False, kernel_name="python3")
    except papermill.PapermillExecutionError as e:
        nb = nbformat.read(str(nb_out), as_version=4)
        failed = next((c.source.splitlines()[0] for c in nb.cells if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))), "?")
        where = (f"the solution of exercise {failed[len(X.MARKER):].strip()}" if failed.startswith(X.MARKER)
                 else f"the notebook itself, at the cell starting {failed!r}")
        pytest.fail(f"{src.stem}: {where} failed: {e.ename}: {e.evalue}")
