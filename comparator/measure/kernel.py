"""The fused metrics kernel: one pass over a chunk pair of native floats, compiled by Numba.

It computes exactly what the NumPy path of metrics.Accumulator computes (same rounding to the narrow dtype, same
ULP distances, same tolerance test, the same float64 sums in the same order: front to back, as np.cumsum adds),
touching each element once instead of in ~40 NumPy passes with float64 temporaries. Dtype pairs: float32 and
float64 on either side; everything else takes the NumPy path. ULP distances of 2**16 and more are handed back for
metrics to bucket (rare, and bucketing needs log2).

Numba is imported on the first call (`available()`); it caches the compiled kernel on disk.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_UINT = {4: np.uint32, 8: np.uint64}
# The state, shared with metrics.Accumulator:
#   fsum   float64 [max_abs, max_rel, sum |err|, sum ref*got, sum ref^2, sum got^2, sum err^2]
#   counts int64   [identical, nan_mismatch, inf_mismatch, n_finite, violations, n_ulp]
#   top    uint64  [max_ulp]
#   worst  int64   [flat index of the first element with the largest |err| (max_abs); -1 while none differs]
#   small  int64   [65536]: how many elements have each ULP distance below 2**16

_kernel: Any = None
_identical: Any = None
_failed = False
_lock = threading.Lock()


def available() -> bool:
    """Whether the compiled kernel can be used (Numba importable and the kernel compiled)."""
    global _kernel, _failed
    with _lock:
        if _kernel is None and not _failed:
            try:
                _kernel = _build()
            except Exception:  # noqa: BLE001 - no Numba, or it cannot compile here: the NumPy path serves
                _kernel, _failed = None, True
    return _kernel is not None


def loaded() -> bool:
    """Whether the kernel is loaded already (never loads it)."""
    return _kernel is not None


def warm_in_background() -> None:
    """Load (or compile) the kernel in a daemon thread: the parent does it while the workers run."""
    threading.Thread(target=available, name="infercmp-kernel", daemon=True).start()


def supports(ref: np.dtype, got: np.dtype) -> bool:
    """Whether the kernel computes this dtype pair (float32 or float64 on either side)."""
    return ref in DTYPES and got in DTYPES


def run(ref: np.ndarray, got: np.ndarray, narrow_f32: bool, atol: float, rtol: float, max_ulp: int | None,
        small: np.ndarray, fsum: np.ndarray, counts: np.ndarray, top: np.ndarray, big: np.ndarray,
        offset: int, worst: np.ndarray) -> int:
    """Fold one chunk pair (C-contiguous, 1-D) into the state; returns how many ULP distances >= 2**16 it wrote
    to `big`. `narrow_f32`: identity and ULPs in float32 (one side is float32). `max_ulp` None: no ULP clause.
    `offset`: the flat index of the chunk's first element in the whole tensor (for `worst`)."""
    limit = np.uint64(0 if max_ulp is None else min(max_ulp, (1 << 64) - 1))
    return int(_kernel(ref, got, ref.view(_UINT[ref.itemsize]), got.view(_UINT[got.itemsize]), narrow_f32, atol,
                       rtol, max_ulp is not None, limit, small, fsum, counts, top, big, offset, worst))


def run_identical(x: np.ndarray, small: np.ndarray, fsum: np.ndarray, counts: np.ndarray) -> None:
    """Fold a chunk compared with a bit-identical copy of itself (same dtype, tolerance >= 0) into the state."""
    _identical(x, small, fsum, counts)


def same_bits(ref: np.ndarray, got: np.ndarray) -> bool:
    """Whether two same-dtype chunks are bit for bit equal (a cheap look at the head first)."""
    u = np.uint32 if ref.dtype.itemsize == 4 else np.uint64
    a, b = ref.view(u), got.view(u)
    return bool(np.array_equal(a[:64], b[:64]) and np.array_equal(a, b))


def _build() -> Any:
    global _identical
    from . import fused  # imports Numba, and compiles (or loads from its cache) every signature

    _identical = fused.identical
    return fused.kernel
