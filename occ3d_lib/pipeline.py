"""Run the notebook series headlessly with papermill (the ``make run`` command).

Taught in notebook 00, section "Running the whole series". Usage::

    python -m occ3d_lib.pipeline --profile course            # all notebooks, in order
    python -m occ3d_lib.pipeline --profile smoke --only 03   # one notebook
    python -m occ3d_lib.pipeline --profile course --from 02  # 02, 03, ...
    python -m occ3d_lib.pipeline --profile course -p seed=1  # override a parameter

Executed notebooks land in ``runs/<profile>/`` together with ``summary.json``
(status, seconds and output path per notebook; updated under a lock, so two
runs sharing a runs folder keep each other's entries). Every ``-p key=value``
must be a parameter declared in the ``parameters`` cell of at least one selected
notebook (papermill itself only warns): anything else is an error listing the
valid names, exit code 2. Values are parsed and type-checked against the
declared default (:mod:`occ3d_lib.core.params`) and profile fields (``seed``) against
the profile, all before anything runs; the profile is chosen with ``--profile``. On a failing cell the
run stops, prints the notebook and the cell, keeps the executed copy as ``<name>.failed.ipynb`` and exits 1.
A notebook is written under a temporary name and renamed only when it
finished, so ``runs/`` never holds a half-executed notebook under its real name.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from occ3d_lib.core.artifacts import REPO_ROOT, write_json
from occ3d_lib.core.config import PROFILE_ENV, get_profile, profile_names
from occ3d_lib.core.params import Declared, ParameterError, coerce, parse_cell, split_items
from occ3d_lib.evaluation.study import stage_seconds_markdown

NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
EXIT_USAGE = 2
EXIT_FAILED = 1


class PipelineUsageError(ValueError):
    """A bad notebook name, profile or parameter (exit code 2)."""


@dataclass(frozen=True)
class NotebookInfo:
    """One notebook of the series: its number, path and declared parameters."""

    number: str
    path: Path
    parameters: dict[str, Any]
    declared: dict[str, Declared] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem


def discover_notebooks(notebooks_dir: str | Path) -> list[Path]:
    """The series' notebooks (``NN_name.ipynb``) in order."""
    d = Path(notebooks_dir)
    if not d.is_dir():
        raise PipelineUsageError(f"notebook folder not found: {d}")
    return sorted(p for p in d.iterdir() if NOTEBOOK_RE.match(p.name))


def declared_parameters(path: str | Path) -> dict[str, Declared]:
    """The parameters (default and annotation source text) of the ``parameters`` cell of a notebook.

    Raises ``PipelineUsageError`` when the notebook has no cell tagged ``parameters``.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise PipelineUsageError(f"{Path(path).name} has no cell tagged 'parameters'")
    return parse_cell(cells[0].source)


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Names and default source text of the ``parameters`` cell of a notebook."""
    return {k: d.default for k, d in declared_parameters(path).items()}


def select_notebooks(paths: Sequence[Path], only: Sequence[str] | None = None, start: str | None = None) -> list[Path]:
    """Pick notebooks by number or name (``03``, ``3``, ``03_teacher...``); unknown ones are an error."""
    def key(p: Path) -> str:
        return p.name[:2]

    def find(token: str) -> Path:
        t = token.strip()
        for p in paths:
            if t in (p.stem, p.name) or (t.isdigit() and int(t) == int(key(p))):
                return p
        valid = ", ".join(p.stem for p in paths)
        raise PipelineUsageError(f"no notebook {token!r}; the series has: {valid}")

    chosen = list(paths)
    if start is not None:
        first = find(start)
        chosen = [p for p in chosen if key(p) >= key(first)]
    if only:
        wanted = {find(t) for t in only}
        chosen = [p for p in chosen if p in wanted]
    return chosen


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings to a dict, untyped: Python literals when they parse, else strings.
    (The pipeline itself types each value against the notebook's declared default in :func:`plan`.)"""
    try:
        return {k: coerce(Declared(k, None), v) for k, v in split_items(list(items)).items()}
    except ParameterError as e:
        raise PipelineUsageError(str(e)) from None


def plan(notebooks_dir: str | Path, profile: str, only: Sequence[str] | None = None,
         start: str | None = None, overrides: dict[str, Any] | None = None) -> list[tuple[NotebookInfo, dict[str, Any]]]:
    """Validate everything before running anything: returns (notebook, parameters to inject) pairs."""
    if profile not in profile_names():
        raise PipelineUsageError(f"unknown profile {profile!r}; valid profiles: {', '.join(profile_names())}")
    paths = select_notebooks(discover_notebooks(notebooks_dir), only, start)
    if not paths:
        raise PipelineUsageError(f"no notebooks selected in {notebooks_dir}")
    infos = []
    for p in paths:
        decl = declared_parameters(p)
        infos.append(NotebookInfo(p.name[:2], p, {k: d.default for k, d in decl.items()}, decl))
    overrides = dict(overrides or {})
    declared = set().union(*(i.parameters for i in infos))
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise PipelineUsageError(
            f"unknown parameter(s) {unknown} for the selected notebooks; valid: {', '.join(sorted(declared))}")
    if "profile" in overrides:
        given = str(overrides.pop("profile")).strip().strip("'\"")
        if given != profile:
            raise PipelineUsageError(f"the profile is chosen with --profile (here {profile!r}), not -p profile={given}; "
                                     f"run with --profile {given}")
    out = []
    for info in infos:
        try:
            params = {k: coerce(info.declared[k], v) for k, v in overrides.items() if k in info.parameters}
        except ParameterError as e:
            raise PipelineUsageError(f"{info.name}: {e}") from None
        if "profile" in info.parameters:
            params["profile"] = profile
        out.append((info, params))
    _validate_values(profile, {k: v for _, ps in out for k, v in ps.items() if k != "profile"})
    return out


#: Notebook parameters that are fields of a settings object, checked by constructing it before anything runs.
SETTINGS_PARAMETERS: dict[str, tuple[str, str]] = {"coeff_weight": ("occ3d_lib.training.stages", "TeacherSettings")}


def _validate_values(profile: str, values: dict[str, Any]) -> None:
    """Range-check typed values: profile fields (``seed``) by the Profile, settings fields by their class."""
    import dataclasses
    import importlib

    fields = {f.name for f in dataclasses.fields(get_profile(profile))} - {"name"}
    try:
        get_profile(profile, **{k: v for k, v in values.items() if k in fields})
    except (ValueError, TypeError) as e:
        raise PipelineUsageError(f"parameter rejected by profile {profile!r}: {e}") from None
    for k, v in values.items():
        if k in SETTINGS_PARAMETERS:
            mod, cls = SETTINGS_PARAMETERS[k]
            try:
                getattr(importlib.import_module(mod), cls)(**{k: v})
            except (ValueError, TypeError) as e:
                raise PipelineUsageError(f"parameter {k}={v!r}: {e}") from None


def update_summary(summary_path: str | Path, profile: str, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Set ``summary['notebooks'][name] = entry`` in ``summary.json`` under an exclusive lock.

    Read, update and atomic rewrite happen while holding ``flock`` on ``summary.json.lock``, so
    pipeline runs sharing a runs folder never lose each other's entries. Returns the new summary.
    """
    import fcntl

    summary_path = Path(summary_path)
    with open(summary_path.with_name(summary_path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                notebooks = json.loads(summary_path.read_text()).get("notebooks", {})
                notebooks = notebooks if isinstance(notebooks, dict) else {}
            except (OSError, ValueError, AttributeError):
                notebooks = {}
            notebooks[name] = entry
            data = {"profile": profile, "notebooks": notebooks}
            write_json(summary_path, data)
            return data
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


#: The summary.json of the course run the README and notebook 00 quote (copied there after a
#: fresh-clone ``make run`` on the reference machine: 2 CPU cores, no GPU).
COURSE_SUMMARY = REPO_ROOT / "docs" / "course_summary.json"


def read_summary(summary: dict[str, Any] | str | Path = COURSE_SUMMARY, required: bool = True) -> dict[str, Any] | None:
    """A run's ``summary.json`` as a dict (a dict passes through). A missing file raises
    ``FileNotFoundError`` saying what writes it, or gives None when not ``required``."""
    if isinstance(summary, dict):
        return summary
    path = Path(summary)
    if not path.is_file():
        if not required:
            return None
        raise FileNotFoundError(f"{path} not found; run `make run` (it writes runs/<profile>/summary.json)")
    return json.loads(path.read_text())


def summary_markdown(summary: dict[str, Any] | str | Path = COURSE_SUMMARY) -> str:
    """A markdown table of a run's ``summary.json`` (a dict or a path): each notebook's status and minutes,
    and the total; for a published run (:mod:`occ3d_lib.publish`) also the training minutes per stage.
    Notebook 00 section 4 and README's timings table show the course run's."""
    summary = read_summary(summary)
    books = summary.get("notebooks")
    if not isinstance(books, dict) or not books:
        raise ValueError("summary has no 'notebooks' entries; it is not a pipeline summary.json")
    lines = ["| notebook | status | minutes |", "|---|---|---|"]
    total = 0.0
    for name in sorted(books):
        entry = books[name]
        total += float(entry.get("seconds", 0.0))
        lines.append(f"| {name} | {entry.get('status', '?')} | {float(entry.get('seconds', 0.0)) / 60:.1f} |")
    lines.append(f"| **all** | | **{total / 60:.1f}** |")
    if summary.get("note"):
        lines += ["", f"How this run went: {summary['note']}"]
    if summary.get("stages"):  # a published run (occ3d_lib.publish) also says where the training time went
        lines += ["", "Training time per stage (the loops alone; evaluation and caching excluded):", "",
                  stage_seconds_markdown(summary["stages"])]
    return "\n".join(lines)


#: Reading speed for technical text with formulas, words per minute (notebook 00's time table).
WORDS_PER_MINUTE = 120


def reading_minutes(notebooks_dir: str | Path = REPO_ROOT / "notebooks",
                    words_per_minute: float = WORDS_PER_MINUTE) -> dict[str, float]:
    """Minutes to read each notebook: the words of its markdown and code cells at ``words_per_minute``
    (a code line counts as a few words). ``{notebook stem: minutes}``. Notebook 00 section 3."""
    import nbformat

    if words_per_minute <= 0:
        raise ValueError(f"words_per_minute must be positive, got {words_per_minute!r}")
    out = {}
    for path in discover_notebooks(notebooks_dir):
        nb = nbformat.read(path, as_version=4)
        words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
        words += sum(4 * len([ln for ln in c.source.splitlines() if ln.strip()]) for c in nb.cells
                     if c.cell_type == "code")
        out[path.stem] = words / words_per_minute
    return out


def time_table_markdown(summary: dict[str, Any] | str | Path = COURSE_SUMMARY,
                        notebooks_dir: str | Path = REPO_ROOT / "notebooks") -> str:
    """A markdown table per notebook: minutes to read (:func:`reading_minutes`) and minutes the recorded
    course run took to execute it (from ``summary``; "not recorded" without one). Notebook 00 section 3."""
    books = (read_summary(summary, required=False) or {}).get("notebooks") or {}
    lines = ["| notebook | read (min, estimated) | run in the course profile (min, measured) |", "|---|---|---|"]
    for name, minutes in reading_minutes(notebooks_dir).items():
        entry = books.get(name) or books.get(f"{name}.ipynb")
        run = f"{float(entry.get('seconds', 0.0)) / 60:.1f}" if isinstance(entry, dict) else "not recorded"
        lines.append(f"| {name} | {minutes:.0f} | {run} |")
    return "\n".join(lines)


def check_writable(folder: Path) -> None:
    """Raise ``PipelineUsageError`` (one line) unless ``folder`` can be created and written in."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".occ3d-write-test."):
            pass
    except OSError as e:
        raise PipelineUsageError(f"cannot write in the runs folder {folder} ({e.strerror or e}); fix its "
                                 "permissions or choose another one with --runs-dir") from None


def _failed_cell(nb_path: Path) -> tuple[int | None, str]:
    """(cell index, first source line) of the first cell whose output is an error."""
    import nbformat

    try:
        nb = nbformat.read(str(nb_path), as_version=4)
    except Exception:  # pragma: no cover - unreadable partial output
        return None, ""
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            if o.get("output_type") == "error":
                first = next((ln for ln in c.source.splitlines() if ln.strip()), "")
                return i, first
    return None, ""


def kernel_manager_config() -> dict[str, dict[str, str]]:
    """Kernel-manager settings shared by ``make run`` (papermill) and ``make lab`` (``tools/lab.py``).

    Kernels get CurveZMQ keys from their manager (the ipykernel kernelspec declares support), so
    their local TCP sockets are encrypted and ipykernel does not warn on every start that they are
    not. Empty where pyzmq was built without CurveZMQ.
    """
    import zmq

    return {"KernelManager": {"transport_encryption": "auto"}} if zmq.has("curve") else {}


def run(profile: str, only: Sequence[str] | None = None, start: str | None = None,
        overrides: dict[str, Any] | None = None, notebooks_dir: str | Path | None = None,
        runs_dir: str | Path | None = None, kernel_name: str = "python3", log=print) -> int:
    """Execute the selected notebooks in order; returns the exit code (0 ok, 1 failed, 2 usage)."""
    import papermill as pm
    from traitlets.config import Config

    notebooks_dir = Path(notebooks_dir or REPO_ROOT / "notebooks")
    out_dir = Path(runs_dir or REPO_ROOT / "runs") / profile
    try:
        steps = plan(notebooks_dir, profile, only, start, overrides)
        check_writable(out_dir)
    except PipelineUsageError as e:
        log(f"occ3d pipeline: error: {e}")
        return EXIT_USAGE
    summary_path = out_dir / "summary.json"
    os.environ[PROFILE_ENV] = profile
    os.environ["OCC3D_RUN_DIR"] = str(out_dir)
    os.environ.setdefault("OCC3D_PROGRESS", "0")  # executed notebooks stay free of progress-bar noise
    total = len(steps)
    t_all = time.time()
    for k, (info, params) in enumerate(steps, 1):
        final = out_dir / info.path.name
        partial = out_dir / f".{info.path.stem}.partial.ipynb"
        failed = out_dir / f"{info.path.stem}.failed.ipynb"
        for stale in (partial, failed):
            stale.unlink(missing_ok=True)
        shown = ", ".join(f"{a}={b!r}" for a, b in params.items())
        log(f"[{k}/{total}] {info.name}  ({shown})")
        t0 = time.time()
        try:
            pm.execute_notebook(str(info.path), str(partial), parameters=params, kernel_name=kernel_name,
                                cwd=str(info.path.parent), progress_bar=sys.stderr.isatty(),
                                log_output=False, request_save_on_cell_execute=False,
                                config=Config(kernel_manager_config()))
        except Exception as e:  # papermill raises PapermillExecutionError for a failing cell
            secs = time.time() - t0
            if partial.exists():
                os.replace(partial, failed)
            cell = getattr(e, "cell_index", None)
            src = ""
            if cell is None and failed.exists():
                cell, src = _failed_cell(failed)
            elif failed.exists():
                _, src = _failed_cell(failed)
            ename = getattr(e, "ename", type(e).__name__)
            evalue = getattr(e, "evalue", str(e).strip().splitlines()[-1] if str(e).strip() else "")
            log(f"occ3d pipeline: FAILED in notebook {info.name}, cell {cell} ({src.strip()[:80]!r}): {ename}: {evalue}")
            if failed.exists():
                log(f"occ3d pipeline: the executed notebook with the error is {failed}")
            else:
                log(f"occ3d pipeline: no executed copy could be written to {out_dir}; check that it is writable")
            entry = {"status": "failed", "seconds": round(secs, 1), "output": str(failed) if failed.exists() else None,
                     "cell": cell, "error": f"{ename}: {evalue}"}
            try:
                update_summary(summary_path, profile, info.name, entry)
            except OSError as err:
                log(f"occ3d pipeline: cannot write {summary_path} ({err.strerror or err})")
            return EXIT_FAILED
        secs = time.time() - t0
        os.replace(partial, final)
        update_summary(summary_path, profile, info.name, {"status": "ok", "seconds": round(secs, 1), "output": str(final)})
        log(f"[{k}/{total}] {info.name}  done in {secs:.0f} s -> {final}")
    log(f"occ3d pipeline: {total} notebook(s) ok in {time.time() - t_all:.0f} s; summary in {summary_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m occ3d_lib.pipeline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=os.environ.get(PROFILE_ENV, "course"),
                    help=f"one of {', '.join(profile_names())} (default: $OCC3D_PROFILE or course)")
    ap.add_argument("--only", action="append", metavar="NN", help="run only this notebook (repeatable)")
    ap.add_argument("--from", dest="start", metavar="NN", help="start at this notebook")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="override a notebook parameter (must exist in a parameters cell)")
    ap.add_argument("--notebooks-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--runs-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--list", action="store_true", help="list the notebooks and their parameters, then exit")
    args = ap.parse_args(argv)
    try:
        overrides: dict[str, Any] = split_items(args.param)  # text, typed against each notebook in plan()
    except ParameterError as e:
        print(f"occ3d pipeline: error: {e}")
        return EXIT_USAGE
    if args.list:
        try:
            for p in discover_notebooks(args.notebooks_dir or REPO_ROOT / "notebooks"):
                print(f"{p.stem}: {', '.join(notebook_parameters(p))}")
        except PipelineUsageError as e:
            print(f"occ3d pipeline: error: {e}")
            return EXIT_USAGE
        return 0
    return run(args.profile, args.only, args.start, overrides, args.notebooks_dir, args.runs_dir)


if __name__ == "__main__":
    sys.exit(main())
