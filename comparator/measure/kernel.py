"""The metrics kernel: one pass over a chunk pair of native floats, a C extension (_fold.c) built with the package.

It computes exactly what the NumPy path of metrics.Accumulator computes (same rounding to the narrow dtype, same
ULP distances, same tolerance test, the same float64 sums in the same order: metrics.lane_sum's lanes), touching
each element once instead of in ~40 NumPy passes with float64 temporaries. Dtype pairs: float32 and float64 on
either side; everything else takes the NumPy path, and so does everything where the extension was not built (no
C compiler at install time). ULP distances of 2**16 and more are handed back for metrics to bucket (rare, and
bucketing needs log2).
"""
from __future__ import annotations

from types import ModuleType

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# The state, shared with metrics.Accumulator:
#   fsum   float64 [max_abs, max_rel, sum |err|, sum ref*got, sum ref^2, sum got^2, sum err^2]
#   counts int64   [identical, nan_mismatch, inf_mismatch, n_finite, violations, n_ulp]
#   top    uint64  [max_ulp]
#   worst  int64   [flat index of the first element with the largest |err| (max_abs); -1 while none differs]
#   small  int64   [65536]: how many elements have each ULP distance below 2**16


def _load() -> ModuleType | None:
    try:
        from . import _fold  # type: ignore[attr-defined]
    except ImportError:   # built without a C compiler: the NumPy path serves
        return None
    return _fold


_fold = _load()


def available() -> bool:
    """Whether the compiled kernel was built and loads."""
    return _fold is not None


def supports(ref: np.dtype, got: np.dtype) -> bool:
    """Whether the kernel computes this dtype pair (float32 or float64 on either side)."""
    return ref in DTYPES and got in DTYPES


def run(ref: np.ndarray, got: np.ndarray, atol: float, rtol: float, max_ulp: int | None, small: np.ndarray,
        fsum: np.ndarray, counts: np.ndarray, top: np.ndarray, big: np.ndarray, offset: int,
        worst: np.ndarray) -> int:
    """Fold one chunk pair (C-contiguous, 1-D; read-only is fine) into the state; returns how many ULP distances
    >= 2**16 it wrote to `big`. The narrow dtype is float32 when either side is. `max_ulp` None: no ULP clause.
    `offset`: the flat index of the chunk's first element in the whole tensor (for `worst`)."""
    assert _fold is not None
    ref64, got64 = ref.dtype.itemsize == 8, got.dtype.itemsize == 8
    limit = 0 if max_ulp is None else min(max_ulp, (1 << 64) - 1)
    return int(_fold.fold(ref, got, ref64, got64, not (ref64 and got64), atol, rtol, max_ulp is not None, limit,
                          small, fsum, counts, top, big, offset, worst))


def run_identical(x: np.ndarray, small: np.ndarray, fsum: np.ndarray, counts: np.ndarray) -> None:
    """Fold a chunk compared with a bit-identical copy of itself (same dtype, tolerance >= 0) into the state."""
    assert _fold is not None
    _fold.fold_identical(x, x.dtype.itemsize == 8, small, fsum, counts)


def same_bits(ref: np.ndarray, got: np.ndarray) -> bool:
    """Whether two same-dtype chunks are bit for bit equal (a cheap look at the head first)."""
    u = np.uint32 if ref.dtype.itemsize == 4 else np.uint64
    a, b = ref.view(u), got.view(u)
    return bool(np.array_equal(a[:64], b[:64]) and np.array_equal(a, b))
