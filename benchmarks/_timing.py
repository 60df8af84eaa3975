"""Timing helper shared by the benchmarks (median of repetitions after a warm-up)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


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
