"""Keep a finished run's account in the repository: ``python -m occ3d_lib.publish --profile course``.

A run writes into ``runs/<profile>/`` (ignored by git). The README, notebook 00 and the course
report quote one reference run of the course profile, so after a fresh-clone ``make run`` on the
reference machine this copies what they quote into ``docs/`` (``--runs-dir`` and ``--root`` name a run
made in another checkout, e.g. a fresh clone):

- ``docs/<profile>_summary.json``: the run's ``summary.json`` (notebook statuses and seconds, output
  paths made relative to the repository) plus ``stages`` (training minutes per stage,
  :func:`occ3d_lib.evaluation.study.stage_seconds`), the commit and the machine;
- ``docs/<profile>_report.md`` and the figures it shows, in ``docs/<profile>_figures/``.

Nothing is changed when the run did not finish every notebook (the account would be partial).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from occ3d_lib.core.artifacts import REPO_ROOT, write_json, write_text
from occ3d_lib.core.envinfo import cpu_has_bf16
from occ3d_lib.evaluation.study import stage_seconds
from occ3d_lib.pipeline import read_summary


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def publish_run(run_dir: str | Path, docs_dir: str | Path, prefix: str, root: str | Path = REPO_ROOT,
                note: str | None = None) -> list[Path]:
    """Copy the account of the finished run in ``run_dir`` to ``docs_dir`` under ``prefix``; returns the files written.

    ``note`` (what a reader should know about how the run went, e.g. an interruption) is kept in the
    summary. Raises ``FileNotFoundError`` naming the missing file, and ``ValueError`` when a notebook of the
    run did not finish ("ok"), so a partial run never replaces the published one.
    """
    run_dir, docs_dir, root = Path(run_dir), Path(docs_dir), Path(root)
    summary_path, report_path = run_dir / "summary.json", run_dir / "report.md"
    for p in (summary_path, report_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found; finish the run first (`make run`)")
    summary = dict(read_summary(summary_path))
    books = summary.get("notebooks") or {}
    unfinished = sorted(n for n, e in books.items() if e.get("status") != "ok")
    if not books or unfinished:
        raise ValueError(f"{summary_path}: notebooks not finished: {unfinished or 'none run'}; rerun them before publishing")
    for entry in books.values():
        if "output" in entry:
            entry["output"] = _relative(entry["output"], root)
    stages = [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != "finished"}
              for r in stage_seconds(run_dir)]
    summary.update({"stages": stages, "commit": _commit(root),
                    "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                "cuda": torch.cuda.is_available(), "python": platform.python_version(),
                                "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16": cpu_has_bf16(),
                                "torch": torch.__version__}})
    if note:
        summary["note"] = note
    written = [write_json(docs_dir / f"{prefix}_summary.json", summary)]

    figdir = docs_dir / f"{prefix}_figures"
    report = report_path.read_text()
    shown = sorted(set(re.findall(r"\]\(figures/([^)\s]+)\)", report)))
    missing = [f for f in shown if not (run_dir / "figures" / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir / 'figures'} lacks {missing} that report.md shows; rerun notebook 05")
    if figdir.exists():
        shutil.rmtree(figdir)
    figdir.mkdir(parents=True)
    for f in shown:
        shutil.copyfile(run_dir / "figures" / f, figdir / f)
        written.append(figdir / f)
    written.append(write_text(docs_dir / f"{prefix}_report.md", report.replace("](figures/", f"]({prefix}_figures/")))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="course")
    ap.add_argument("--runs-dir", default=str(REPO_ROOT / "runs"))
    ap.add_argument("--docs-dir", default=str(REPO_ROOT / "docs"))
    ap.add_argument("--root", default=str(REPO_ROOT),
                    help="the checkout the run was made in (its commit is recorded; paths are made relative to it)")
    ap.add_argument("--note", default=None, help="a sentence kept in the summary (how the run went)")
    a = ap.parse_args(argv)
    try:
        files = publish_run(Path(a.runs_dir) / a.profile, a.docs_dir, a.profile, root=a.root, note=a.note)
    except (FileNotFoundError, ValueError) as e:
        print(f"publish: {e}", file=sys.stderr)
        return 2
    print("\n".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
