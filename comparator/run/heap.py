"""glibc's malloc in a worker: set before it starts (`malloc_tunables`), and emptied after each session closes.

While a session runs, freed blocks are kept for reuse: glibc's malloc serves a block over its mmap threshold (128
KiB at first) from fresh pages and unmaps it when it is freed, so a worker that allocates a model's tapped tensors
would fault every page of them in again on each run. With the threshold fixed at 32 MiB and the heap trimmed only
past 1 GiB free, freed blocks are reused instead (less system time: `benchmarks/ab_revisions.sh`).

Kept past its session, that free memory would lie under the next session a worker opens (the `ort` variant opens
its tapped and its untapped model in turn): `release()` gives it back to the system in between, so that each
session starts from the worker's own few dozen MiB. It changes nothing a session computes.

Other C libraries ignore the variable and have no malloc_trim: there nothing is done. A key the user set in
GLIBC_TUNABLES wins, and a trim threshold the user set is then left to work alone.
"""
from __future__ import annotations

import ctypes
import os
from typing import Any

MMAP_THRESHOLD, TRIM_THRESHOLD = "glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold"
MALLOC_TUNABLES = {MMAP_THRESHOLD: "33554432", TRIM_THRESHOLD: "1073741824"}


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
    """This process's C library when it has glibc's malloc_trim, else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # pragma: no cover - a platform without dlopen(NULL)
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release() -> None:
    """Give the heap's free memory back to the system (a session has closed; the next one starts from little)."""
    libc = _glibc() if _ours(TRIM_THRESHOLD) else None
    if libc is not None:
        libc.malloc_trim(0)
