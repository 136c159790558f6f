"""The compiled body of measure/kernel.py (imported only by it: importing this module imports Numba and compiles
every signature, or loads them from Numba's disk cache). kernel.py says what the state arrays hold."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

# Compiled eagerly for every supported pair (loaded from Numba's disk cache after the first time).
_UINT = {"float32": "uint32", "float64": "uint64"}
SIGNATURES = [f"int64({r}[::1], {g}[::1], {_UINT[r]}[::1], {_UINT[g]}[::1], boolean, float64, float64, boolean, "
              "uint64, int64[::1], float64[::1], int64[::1], uint64[::1], uint64[::1], int64, int64[::1])"
              for r in ("float32", "float64") for g in ("float32", "float64")]

SIGN64 = np.uint64(1 << 63)


@numba.njit(inline="always")
def bits(x: Any, narrow_f32: bool) -> Any:
    """The bits of x in the narrow dtype, as uint64."""
    if narrow_f32:
        return np.uint64(np.float32(x).view(np.uint32))
    return np.float64(x).view(np.uint64)


@numba.njit(inline="always")
def distance(a: Any, b: Any, narrow_f32: bool) -> Any:
    """|ordered(a) - ordered(b)| for two non-NaN bit patterns (sign-magnitude, +0 and -0 both 0)."""
    top_bit = np.uint64(1 << 31) if narrow_f32 else SIGN64
    ma, mb = a & (top_bit - np.uint64(1)), b & (top_bit - np.uint64(1))
    if (a & top_bit) == (b & top_bit):
        diff = np.int64(ma) - np.int64(mb)  # both below 2**63: no overflow; abs without a branch
        return np.uint64((diff ^ (diff >> 63)) - (diff >> 63))
    return ma + mb  # opposite signs: at most 2 * (2**63 - 1), no overflow


@numba.njit(inline="always")
def count(d: Any, small: Any, big: Any, nbig: int) -> int:
    """Count a ULP distance: below 2**16 in the histogram, else handed back in `big`; returns big's new length."""
    if d < np.uint64(65536):
        small[np.int64(d)] += 1
        return nbig
    big[nbig] = d
    return nbig + 1


@numba.njit(SIGNATURES, nogil=True, cache=True, error_model="numpy")
def kernel(ref: Any, got: Any, ref_bits: Any, got_bits: Any, narrow_f32: bool, atol: float, rtol: float,
           ulp_clause: bool, max_ulp: Any, small: Any, fsum: Any, counts: Any, top_out: Any, big: Any, offset: Any,
           worst_out: Any) -> int:
    max_abs, max_rel = fsum[0], fsum[1]
    start_abs = max_abs
    below_rel = max_rel * 0.999
    ref_narrow = (ref.itemsize == 4) == narrow_f32
    got_narrow = (got.itemsize == 4) == narrow_f32
    s_abs = s_dot = s_ref = s_got = s_err = 0.0
    identical = nan_mm = inf_mm = n_fin = viol = n_ulp = 0
    top = top_out[0]
    nbig = 0
    inf = np.inf
    for i in range(ref.size):
        r = np.float64(ref[i])
        g = np.float64(got[i])
        if abs(r) < inf and abs(g) < inf:  # both finite: the common case
            # a side already in the narrow dtype: its bits straight from memory, no round trip through float64
            br = np.uint64(ref_bits[i]) if ref_narrow else bits(r, narrow_f32)
            bg = np.uint64(got_bits[i]) if got_narrow else bits(g, narrow_f32)
            identical += br == bg  # no branch: whether two values agree is data, not predictable
            d = distance(br, bg, narrow_f32)
            n_ulp += 1
            top = max(top, d)
            nbig = count(d, small, big, nbig)
            n_fin += 1
            err = r - g
            ad = abs(err)
            if ad > max_abs:
                max_abs = ad
            # divide only where the quotient may exceed the running maximum (the 0.1% margin covers the
            # product's rounding; an overflowing product means a quotient below max_rel)
            if not ad < below_rel * abs(r):
                rel = (0.0 if ad == 0.0 else inf) if r == 0.0 else ad / abs(r)
                if rel > max_rel:
                    max_rel = rel
                    below_rel = max_rel * 0.999
            s_abs += ad
            s_dot += r * g
            s_ref += r * r
            s_got += g * g
            s_err += err * err
            viol += not ((ad <= atol + rtol * abs(r)) | (ulp_clause & (d <= max_ulp)))
            continue
        # a NaN or an infinity on either side: no error sums (they add 0.0, which changes no sum)
        nr, ng = r != r, g != g
        if nr and ng:
            identical += 1
            continue  # both NaN: identical, no ULP, within tolerance
        if nr or ng:
            nan_mm += 1
            viol += 1  # a NaN against a number never passes, nor through the ULP clause
            continue
        br, bg = bits(r, narrow_f32), bits(g, narrow_f32)
        identical += br == bg
        d = distance(br, bg, narrow_f32)
        n_ulp += 1
        top = max(top, d)
        nbig = count(d, small, big, nbig)
        if r != g:
            inf_mm += 1
            if not (ulp_clause and d <= max_ulp):
                viol += 1
    fsum[0], fsum[1] = max_abs, max_rel
    if max_abs > start_abs:
        # This chunk raised the largest error: find its first element in a second, cheap pass (rare after the first
        # chunks; tracking the index in the loop above costs it about 5%).
        for i in range(ref.size):
            r = np.float64(ref[i])
            g = np.float64(got[i])
            if abs(r - g) == max_abs and abs(r) < inf and abs(g) < inf:
                worst_out[0] = offset + i
                break
    fsum[2] += s_abs
    fsum[3] += s_dot
    fsum[4] += s_ref
    fsum[5] += s_got
    fsum[6] += s_err
    counts[0] += identical
    counts[1] += nan_mm
    counts[2] += inf_mm
    counts[3] += n_fin
    counts[4] += viol
    counts[5] += n_ulp
    top_out[0] = top
    return nbig



IDENTICAL_SIGNATURES = [f"void({t}[::1], int64[::1], float64[::1], int64[::1])" for t in ("float32", "float64")]


@numba.njit(IDENTICAL_SIGNATURES, nogil=True, cache=True, error_model="numpy")
def identical(x: Any, small: Any, fsum: Any, counts: Any) -> None:
    """`kernel` for a chunk compared with a bit-identical copy of itself (a non-negative tolerance): every element
    identical, no error, distance 0; only the sums of squares and the counts of finite and non-NaN elements remain
    to compute, in the kernel's order."""
    s = 0.0
    n_fin = n_num = 0
    for i in range(x.size):
        v = np.float64(x[i])
        if abs(v) < np.inf:
            n_fin += 1
            s += v * v
        if v == v:
            n_num += 1
    fsum[3] += s
    fsum[4] += s
    fsum[5] += s
    counts[0] += x.size
    counts[3] += n_fin
    counts[5] += n_num
    small[0] += n_num
