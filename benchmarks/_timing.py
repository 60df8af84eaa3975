"""Helpers shared by the benchmarks: their command line and a median of repetitions after a warm-up."""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping


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


def interleaved_medians(fns: Mapping[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time in seconds of each of ``fns`` over ``reps`` rounds, the functions called in turn
    within each round (the first one of a round rotating), after ``warmup`` untimed rounds.

    Interleaving puts every function under the same machine load and the same warm-up, so ratios between
    them are not skewed by a drift in load or by whichever function happens to run first.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    ts: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            fns[n]()
            ts[n].append(time.perf_counter() - t)
    return {n: statistics.median(v) for n, v in ts.items()}


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
