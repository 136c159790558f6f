"""Per-tensor metrics throughput: the compiled kernel (comparator/measure/_fold.c) against the NumPy path (the
implementation it replaced) and the floor, on the same arrays, in one process on one core.

    python benchmarks/bench_metrics.py [--elements 16777216] [--runs 5]

Throughput is MB of float32 tensor data per side per second (a float64 side counts as its float32 size, so the
float64-vs-float32 oracle case compares the same element count). Cases:
  close      two float32 tensors a few ULPs apart, half of the elements identical (two CPU variants)
  oracle     float64 reference vs float32 (a variant against the float64 oracle)
  identical  bit-identical float32 tensors
The floor reads both arrays once (the max of each, SIMD in NumPy): about memory speed.
Target: the kernel at >= 1,000 MB/s per side on `close`.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from timing import interleaved_medians

os.environ.setdefault("OMP_NUM_THREADS", "1")


def cases(n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n).astype(np.float32)
    bits = a.view(np.int32) + rng.integers(-2, 3, n).astype(np.int32) * (rng.random(n) < 0.5)
    close = bits.view(np.float32)
    exact = a.astype(np.float64) * (1 + 1e-8 * rng.standard_normal(n))
    return {"close": (a, close), "oracle": (exact, a), "identical": (a, a.copy())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elements", type=int, default=1 << 24)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from comparator.measure import kernel, metrics

    if not kernel.available():
        raise SystemExit("the metrics kernel was not built (is a C compiler installed? then pip install -e . again)")
    n = args.elements
    mb = n * 4 / 1e6

    def numpy_path(a: np.ndarray, b: np.ndarray) -> dict:
        metrics.Accumulator.KERNEL_MIN = 1 << 62
        try:
            return metrics.compare(a, b)
        finally:
            metrics.Accumulator.KERNEL_MIN = 1 << 12

    print(f"{n:,} elements ({mb:.0f} MB of float32 per side), median of {args.runs}; MB/s per side")
    print(f"{'case':10} {'NumPy path':>11} {'kernel':>9} {'floor':>9} {'kernel/NumPy':>13} {'kernel/floor':>13}")
    for name, (a, b) in cases(n).items():
        assert metrics.compare(a, b) == numpy_path(a, b), "the two paths disagree"
        t_np, t_k, t_floor = interleaved_medians(
            [lambda a=a, b=b: numpy_path(a, b), lambda a=a, b=b: metrics.compare(a, b),
             lambda a=a, b=b: float(a.max()) + float(b.max())],
            args.runs, warmup=1)
        print(f"{name:10} {mb / t_np:11,.0f} {mb / t_k:9,.0f} {mb / t_floor:9,.0f} {t_np / t_k:12.1f}x "
              f"{t_floor / t_k:12.2f}x")


if __name__ == "__main__":
    main()
