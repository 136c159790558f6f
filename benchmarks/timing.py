"""Timing shared by the benchmarks: warm up, then interleave the candidates so machine noise hits all alike."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(fns: list[Callable[[], object]], runs: int, warmup: int = 10) -> list[float]:
    """Median seconds of each function over `runs` rounds, after `warmup` calls of each."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median seconds of `fn` over `runs` calls after one warm call (imports, page cache)."""
    return interleaved_medians([fn], runs, warmup=1)[0]
