"""Helpers shared by the benchmarks: their command line and a median of repetitions after a warm-up."""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()`` over ``reps`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_args(doc: str, argv: list[str] | None = None,
               extra: list[tuple[str, str]] = ()) -> argparse.Namespace:
    """Parse a training benchmark's ``--profile`` (default course) and ``--reps`` (default 5), plus
    the on/off flags ``extra`` as (flag, help); ``doc`` is the script's docstring, whose first line
    describes it."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--profile", default="course")
    ap.add_argument("--reps", type=int, default=5)
    for flag, help_text in extra:
        ap.add_argument(flag, action="store_true", help=help_text)
    return ap.parse_args(argv)
