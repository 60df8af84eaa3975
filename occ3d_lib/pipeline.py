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
valid names, exit code 2. Every value is checked before anything runs (:func:`check_values`): parsed
and type-checked against the declared default (:mod:`occ3d_lib.core.params`; ``run_dir`` is a folder
name or none, :data:`PARAMETER_TYPES`), profile fields (``seed``) against the profile, settings
(``coeff_weight``) by their class, the data-track choices (``face_model``, ``dataset``, ``teacher``,
``facenet``, ``real_data``) by their form and files, and ``run_dir`` must be a folder that can be
created and written in; the profile is chosen with ``--profile``. ``train_cli`` checks its ``-p``
values with the same function. On a failing cell the run stops, prints the notebook and the cell,
keeps the executed copy as ``<name>.failed.ipynb`` and exits 1; a killed kernel, a full disk or an
unwritable folder is said in one line (:func:`failure_lines`), and only a valid notebook is kept.
A notebook is written under a temporary name and renamed only when it
finished, so ``runs/`` never holds a half-executed notebook under its real name.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from occ3d_lib.core.artifacts import REPO_ROOT, disk_full, write_json
from occ3d_lib.core.config import PROFILE_ENV, get_profile, profile_names
from occ3d_lib.core.external import user_path
from occ3d_lib.core.params import Declared, ParameterError, coerce, parse_cell, split_items
from occ3d_lib.data.real import check_dataset_spec, parse_dataset_spec
from occ3d_lib.data.tracks import validate_specs
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


#: Types of notebook parameters whose ``parameters`` cell gives only the default ``None``: ``run_dir`` is a
#: folder (text) or none, so ``-p run_dir=5`` is the folder "5", never the int 5.
PARAMETER_TYPES: dict[str, str] = {"run_dir": "Optional[str]"}


def declared_parameters(path: str | Path) -> dict[str, Declared]:
    """The parameters (default and annotation source text) of the ``parameters`` cell of a notebook
    (an unannotated ``None`` default of a name in :data:`PARAMETER_TYPES` takes the type given there).

    Raises ``PipelineUsageError`` when the notebook has no cell tagged ``parameters``.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise PipelineUsageError(f"{Path(path).name} has no cell tagged 'parameters'")
    return {k: Declared(k, d.default, PARAMETER_TYPES[k]) if k in PARAMETER_TYPES and not d.annotation else d
            for k, d in parse_cell(cells[0].source).items()}


def series_declarations(notebooks_dir: str | Path = REPO_ROOT / "notebooks") -> dict[str, Declared]:
    """Every parameter declared by the series' notebooks (the first declaration of each name), for commands
    that take the notebooks' parameters (``train_cli``); empty where the notebooks are not at hand."""
    out: dict[str, Declared] = {}
    try:
        paths = discover_notebooks(notebooks_dir)
    except PipelineUsageError:
        return out
    for p in paths:
        for k, d in declared_parameters(p).items():
            out.setdefault(k, d)
    return out


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
    checked = check_values(profile, {k: v for _, ps in out for k, v in ps.items() if k != "profile"})
    return [(info, {k: checked.get(k, v) if k != "profile" else v for k, v in ps.items()}) for info, ps in out]


#: Notebook parameters that are fields of a settings object, checked by constructing it before anything runs.
SETTINGS_PARAMETERS: dict[str, tuple[str, str]] = {"coeff_weight": ("occ3d_lib.training.stages", "TeacherSettings")}
#: The data-track choices (notebook 00, section 4), checked by :func:`occ3d_lib.data.tracks.validate_specs`.
TRACK_PARAMETERS = ("face_model", "dataset", "teacher", "facenet")
#: Track choices whose value is a path (or holds one after ``<kind>:``), not one of these keywords.
_KEYWORDS = {"face_model": ("procedural",), "teacher": ("train",)}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_run_dir(value: str, base: Path | None = None) -> str:
    """``run_dir`` as an absolute folder (relative to ``base``, default the working directory) that can be
    created and written in; one-line ``PipelineUsageError`` otherwise."""
    folder = Path(os.path.expanduser(value))
    folder = folder if folder.is_absolute() else Path(base or Path.cwd()) / folder
    folder = Path(os.path.abspath(folder))
    problem = _write_problem(folder)
    if problem:
        raise PipelineUsageError(f"parameter run_dir={value}: cannot create or write in the folder {folder} "
                                 f"({problem}); choose a folder you can write in")
    return str(folder)


def _write_problem(folder: Path) -> str | None:
    """None when ``folder`` can be created and a file written in it, else why not (the OS's words)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".occ3d-write-test."):
            pass
    except OSError as e:
        return str(e.strerror or e)
    return None


def check_values(profile: str, values: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """Check typed parameter values before anything runs; returns them with paths made absolute.

    Profile fields (``seed``) by the profile, settings fields (``coeff_weight``) by their class, the
    track choices by :func:`~occ3d_lib.data.tracks.validate_specs` (allowed forms, files that exist and
    parse), ``real_data`` as a real dataset spec whose files exist, and ``run_dir`` as a folder that
    can be created and written in (:func:`check_run_dir`; relative to ``base``, default the working
    directory). Every problem is a one-line :class:`PipelineUsageError` naming the parameter. Used by
    :func:`plan` and by ``train_cli``.
    """
    _validate_values(profile, values)
    out = dict(values)
    for name in TRACK_PARAMETERS:
        if name not in values:
            continue
        value = values[name]
        try:
            validate_specs(**{name: value})
        except (ValueError, TypeError, OSError) as e:
            raise PipelineUsageError(f"parameter {name}={value}: {_first_line(e)}") from None
        if name in _KEYWORDS and value not in _KEYWORDS[name]:
            out[name] = str(user_path(value))  # the very file checked here, whatever the notebook's working directory
        elif name == "dataset" and value != "synthetic":
            kind, root = parse_dataset_spec(value)
            out[name] = f"{kind}:{root}"
    if values.get("real_data") is not None:
        spec = values["real_data"]
        try:
            kind, root = parse_dataset_spec(str(spec))
            if kind == "synthetic":
                raise ValueError("real_data is a real dataset spec ('celeba:<root>', 'aflw2000:<root>' or "
                                 "'photos:<folder>'); the synthetic evaluation always runs")
            check_dataset_spec(str(spec))
        except (ValueError, TypeError, OSError) as e:
            raise PipelineUsageError(f"parameter real_data={spec}: {_first_line(e)}") from None
        out["real_data"] = f"{kind}:{root}"
    if values.get("run_dir") is not None:
        out["run_dir"] = check_run_dir(str(values["run_dir"]), base)
    return out


def _validate_values(profile: str, values: dict[str, Any]) -> None:
    """Range-check typed values: profile fields (``seed``) by the Profile, settings fields by their class."""
    import dataclasses
    import importlib

    fields = {f.name for f in dataclasses.fields(get_profile(profile))} - {"name"}
    try:  # None: "the profile's own value" (an Optional notebook parameter such as pretrained)
        get_profile(profile, **{k: v for k, v in values.items() if k in fields and v is not None})
    except (ValueError, TypeError) as e:
        raise PipelineUsageError(f"parameter rejected by profile {profile!r}: {e}") from None
    for k, v in values.items():
        if k in SETTINGS_PARAMETERS:
            mod, cls = SETTINGS_PARAMETERS[k]
            try:
                getattr(importlib.import_module(mod), cls)(**{k: v})
            except (ValueError, TypeError) as e:
                raise PipelineUsageError(f"parameter {k}={v!r}: {e}") from None


def check_summary_path(summary_path: str | Path) -> None:
    """``summary.json`` must be a file (or not exist yet); a folder or another kind of entry in its place is a
    one-line ``PipelineUsageError`` saying what to do."""
    path = Path(summary_path)
    if path.exists() and not path.is_file():
        raise PipelineUsageError(f"{path} is {'a folder' if path.is_dir() else 'not a regular file'}, where the run "
                                 f"summary (a JSON file) goes; move it away (e.g. mv {path} {path}.old) and run again")


def update_summary(summary_path: str | Path, profile: str, name: str, entry: dict[str, Any],
                   log=print) -> dict[str, Any]:
    """Set ``summary['notebooks'][name] = entry`` in ``summary.json`` under an exclusive lock.

    Read, update and atomic rewrite happen while holding ``flock`` on ``summary.json.lock``, so
    pipeline runs sharing a runs folder never lose each other's entries. An unreadable summary is never
    silently reset: it is moved aside to ``summary.json.damaged-<time>`` and ``log`` says so. Returns the
    new summary; a folder in its place is a one-line ``PipelineUsageError``.
    """
    import fcntl

    summary_path = Path(summary_path)
    check_summary_path(summary_path)
    with open(summary_path.with_name(summary_path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            notebooks: dict[str, Any] = {}
            if summary_path.exists():
                try:
                    notebooks = json.loads(summary_path.read_text())["notebooks"]
                    if not isinstance(notebooks, dict):
                        raise TypeError(f"'notebooks' is a {type(notebooks).__name__}, not an object")
                except (ValueError, KeyError, TypeError) as e:
                    aside = summary_path.with_name(f"{summary_path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
                    os.replace(summary_path, aside)
                    log(f"occ3d pipeline: {summary_path} was unreadable ({type(e).__name__}: {_first_line(e)}); "
                        f"moved it to {aside} (its entries are there) and started a new summary")
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
    """A run's ``summary.json`` as a dict (a dict passes through).

    A missing file raises ``FileNotFoundError`` saying what writes it, or gives None when not ``required``.

    Args:
        summary: the dict itself, or the path of a ``summary.json`` (default: the course run's,
            :data:`COURSE_SUMMARY`).
        required: raise for a missing file; False returns None instead.

    Returns:
        The parsed dict, or None for a missing file when not ``required``.
    """
    if isinstance(summary, dict):
        return summary
    path = Path(summary)
    if not path.is_file():
        if not required:
            return None
        raise FileNotFoundError(f"{path} not found; run `make run` (it writes runs/<profile>/summary.json)")
    return json.loads(path.read_text())


def summary_markdown(summary: dict[str, Any] | str | Path = COURSE_SUMMARY) -> str:
    """A markdown table of a run's ``summary.json``: each notebook's status and minutes, and the total.

    For a published run (:mod:`occ3d_lib.publish`) also the training minutes per stage.
    Notebook 00 section 4 and README's series table show the course run's.

    Args:
        summary: a summary dict or the path of a ``summary.json`` (default :data:`COURSE_SUMMARY`).

    Returns:
        The markdown str: the table, then the run's note and the per-stage table when the summary has them.
    """
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
    """A markdown table per notebook: minutes to read and minutes the recorded course run took to execute it.

    Reading minutes come from :func:`reading_minutes`; run minutes from ``summary`` ("not recorded" without
    one). Notebook 00 section 3.

    Args:
        summary: a summary dict or the path of a ``summary.json``; a missing file leaves every run "not recorded".
        notebooks_dir: the folder of the notebooks whose reading time is estimated.

    Returns:
        The markdown table as a str, one row per notebook.
    """
    books = (read_summary(summary, required=False) or {}).get("notebooks") or {}
    lines = ["| notebook | read (min, estimated) | run in the course profile (min, measured) |", "|---|---|---|"]
    for name, minutes in reading_minutes(notebooks_dir).items():
        entry = books.get(name) or books.get(f"{name}.ipynb")
        run = f"{float(entry.get('seconds', 0.0)) / 60:.1f}" if isinstance(entry, dict) else "not recorded"
        lines.append(f"| {name} | {minutes:.0f} | {run} |")
    return "\n".join(lines)


def check_writable(folder: Path) -> None:
    """Raise ``PipelineUsageError`` (one line) unless ``folder`` can be created and written in."""
    problem = _write_problem(folder)
    if problem:
        raise PipelineUsageError(f"cannot write in the runs folder {folder} ({problem}); fix its "
                                 "permissions or choose another one with --runs-dir")


def valid_notebook(path: Path) -> bool:
    """True when ``path`` holds a notebook that reads and validates (a copy cut short by a full disk does not)."""
    import nbformat

    try:
        nbformat.validate(nbformat.read(str(path), as_version=4))
    except Exception:  # noqa: BLE001 - truncated JSON, schema errors, unreadable file
        return False
    return True


def failure_cause(exc: BaseException, partial: Path) -> tuple[str, bool]:
    """(what went wrong, in one line; True when it was a cell's own error) for a notebook run that raised
    ``exc`` while writing ``partial``: a full disk, a killed kernel, or the failing cell's error."""
    for e in (exc, exc.__cause__, exc.__context__):
        full = disk_full(partial, e) if e is not None else None
        if full is not None:
            return str(full.strerror), False
    ename = getattr(exc, "ename", type(exc).__name__)
    if ename == "DeadKernelError" or "kernel died" in str(exc).lower():
        return ("its kernel died (killed by a signal, or out of memory) while a cell ran; run it again (finished "
                "stages are reused), with more memory if it was killed for lack of it"), False
    return f"{ename}: {getattr(exc, 'evalue', _first_line(exc))}", True


def failure_lines(name: str, exc: BaseException, written: Path | None, partial: Path, out_dir: Path,
                  cell: int | None = None, src: str = "") -> list[str]:
    """What the pipeline prints when notebook ``name`` did not finish: one line for the cause (a failing
    cell, a killed kernel, a full disk) and one for where its executed copy is (``written``, or why there
    is none: the folder is said to be unwritable only when it is). Listed in docs/what_can_go_wrong.md."""
    cause, in_cell = failure_cause(exc, partial)
    if in_cell:
        first = f"occ3d pipeline: FAILED in notebook {name}, cell {cell} ({src.strip()[:80]!r}): {cause}"
    else:
        first = f"occ3d pipeline: FAILED in notebook {name}: {cause}"
    if written is not None:
        second = f"occ3d pipeline: the executed notebook with the error is {written}"
    else:
        try:
            check_writable(out_dir)
            second = ("occ3d pipeline: no executed copy of it was kept (the run stopped before papermill saved "
                      "a valid one)")
        except PipelineUsageError as e:
            second = f"occ3d pipeline: no executed copy of it could be written: {e}"
    return [first, second]


class QuietShutdownKernelManager(AsyncKernelManager):
    """The kernel manager of ``make run``: shuts a kernel down without interrupting it first.

    jupyter_client sends SIGINT before the shutdown request; when it lands while ipykernel is still
    finishing a message (just after the last cell replied), the kernel prints
    ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel`` although the notebook succeeded. The
    shutdown request alone ends an idle kernel (and a stuck one is still killed after
    ``shutdown_wait_time``).
    """

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()

    interrupt_kernel = _async_interrupt_kernel


def papermill_config() -> Any:
    """The traitlets ``Config`` of ``make run``'s papermill: :func:`kernel_manager_config` and
    :class:`QuietShutdownKernelManager`."""
    from traitlets.config import Config

    return Config({**kernel_manager_config(), "NotebookClient": {"kernel_manager_class": QuietShutdownKernelManager}})


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

    notebooks_dir = Path(notebooks_dir or REPO_ROOT / "notebooks")
    out_dir = Path(runs_dir or REPO_ROOT / "runs") / profile
    try:
        steps = plan(notebooks_dir, profile, only, start, overrides)
        check_writable(out_dir)
        check_summary_path(out_dir / "summary.json")
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
                                log_output=False, request_save_on_cell_execute=False, config=papermill_config())
        except Exception as e:  # papermill raises PapermillExecutionError for a failing cell
            secs = time.time() - t0
            if partial.exists():
                if valid_notebook(partial):
                    os.replace(partial, failed)
                else:  # cut short (e.g. by a full disk): not kept, it would not open
                    partial.unlink(missing_ok=True)
            cell = getattr(e, "cell_index", None)
            src = ""
            if cell is None and failed.exists():
                cell, src = _failed_cell(failed)
            elif failed.exists():
                _, src = _failed_cell(failed)
            lines = failure_lines(info.name, e, failed if failed.exists() else None, partial, out_dir, cell, src)
            for line in lines:
                log(line)
            entry = {"status": "failed", "seconds": round(secs, 1), "output": str(failed) if failed.exists() else None,
                     "cell": cell, "error": failure_cause(e, partial)[0]}
            try:
                update_summary(summary_path, profile, info.name, entry, log=log)
            except (OSError, PipelineUsageError) as err:
                log(f"occ3d pipeline: cannot write {summary_path} ({getattr(err, 'strerror', None) or err})")
            return EXIT_FAILED
        secs = time.time() - t0
        os.replace(partial, final)
        try:
            update_summary(summary_path, profile, info.name,
                           {"status": "ok", "seconds": round(secs, 1), "output": str(final)}, log=log)
        except (OSError, PipelineUsageError) as err:
            full = disk_full(summary_path, err) if isinstance(err, OSError) else None
            log(f"occ3d pipeline: {info.name} ran, but {summary_path} could not be updated: "
                f"{(full.strerror if full is not None else None) or getattr(err, 'strerror', None) or err}")
            return EXIT_FAILED
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
    ap.add_argument("--runs-dir", default=None, metavar="FOLDER",
                    help="where executed notebooks and summary.json go: FOLDER/<profile>/ (default: runs/ in the "
                         "repository)")
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
