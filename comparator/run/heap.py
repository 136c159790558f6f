"""glibc's malloc in a worker: set before it starts (`malloc_tunables`), and moved around each session it opens.

While a session runs, freed blocks are kept for reuse: glibc's malloc serves a block over its mmap threshold (128
KiB at first) from fresh pages and unmaps it when it is freed, so a worker that allocates a model's tapped tensors
would fault every page of them in again on each run. With the threshold fixed at 32 MiB and the heap trimmed only
past 1 GiB free, freed blocks are reused instead (less system time: `benchmarks/ab_revisions.sh`).

While a session opens, the opposite serves: a runtime loading a model allocates and frees large transient blocks
(graph rewrites, weights copied and packed), and kept in the heap they would pile up under the blocks that stay.
`opening()` puts the threshold back to 128 KiB for that time, so each such block gets its own mapping and goes back
to the system when freed; `release()` returns what a closed session freed before the next one opens. On VGG-19 the
`ort` worker peaks at about 950 MiB instead of about 1,050 (`benchmarks/worker_peaks.py`). None of this changes what
a session computes.

Other C libraries ignore the variable and have no such calls: there nothing is done. A key the user set in
GLIBC_TUNABLES wins, and its setting is then left alone while sessions open and close.
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MMAP_THRESHOLD, TRIM_THRESHOLD = "glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold"
MALLOC_TUNABLES = {MMAP_THRESHOLD: "33554432", TRIM_THRESHOLD: "1073741824"}
OPENING_MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, malloc.h


def malloc_tunables(given: str | None) -> str:
    """GLIBC_TUNABLES for a worker: `given` (the user's), with each of MALLOC_TUNABLES it does not set added."""
    parts = [p for p in (given or "").split(":") if p]
    keys = {p.split("=", 1)[0] for p in parts}
    return ":".join(parts + [f"{k}={v}" for k, v in MALLOC_TUNABLES.items() if k not in keys])


def _ours(key: str) -> bool:
    """This process runs with MALLOC_TUNABLES' value for `key` (a worker whose user did not set it)."""
    given = dict(p.split("=", 1) for p in os.environ.get("GLIBC_TUNABLES", "").split(":") if "=" in p)
    return given.get(key) == MALLOC_TUNABLES[key]


def _glibc() -> Any:
    """This process's C library when it has glibc's mallopt and malloc_trim, else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # pragma: no cover - a platform without dlopen(NULL)
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextmanager
def opening() -> Iterator[None]:
    """Within: blocks of 128 KiB or more get their own mappings (a session opening); after: the run's threshold."""
    libc = _glibc() if _ours(MMAP_THRESHOLD) else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, OPENING_MMAP_THRESHOLD)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, int(MALLOC_TUNABLES[MMAP_THRESHOLD]))


def release() -> None:
    """Give the heap's free memory back to the system (a session has closed; the next one starts from little)."""
    libc = _glibc() if _ours(TRIM_THRESHOLD) else None
    if libc is not None:
        libc.malloc_trim(0)
