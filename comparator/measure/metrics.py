"""Element-wise agreement metrics between a reference tensor and a tensor under test.

Pure NumPy; ``ml_dtypes`` is imported lazily, only when a non-NumPy dtype shows up.
:func:`compare` flattens a pair of arrays (``np.memmap`` is read chunk by chunk) and feeds an
:class:`Accumulator`, whose ``result()`` is a JSON-able dict with every key of :data:`FIELDS`
plus ``count``, ``violations``, ``ulp_dtype`` and ``worst_index``.

Rules
-----
* Dtypes: float16/32/64, ``ml_dtypes`` floats (bfloat16, float8_*, float6_*, float4_*), all
  NumPy signed/unsigned ints and bool, and strings (unicode against unicode: equality only; an element
  passes when equal; max_abs, mean_abs and max_rel are 0 when every element is equal and inf otherwise,
  cosine 1 or 0, snr_db inf or -inf, no ULPs). Anything else (complex, longdouble, a string against a
  number...) -> TypeError.
* Mixed floats: the wider dtype (more bits, then more mantissa bits; float16 vs bfloat16 ->
  bfloat16) is correctly rounded to the narrower one for bit identity, identical_fraction and
  ULPs (ULPs count the distance from the correctly rounded value, ``ulp_dtype`` names the
  narrow dtype). float64 -> ml_dtypes goes through a round-to-odd float32 step, because
  ml_dtypes' direct cast rounds twice. Everything else (abs/rel errors, cosine, snr, NaN/inf
  mismatches, tolerance apart from its ULP clause) uses exact float64 values of the *unrounded*
  inputs. int/bool vs float: both compared as float64, no ULPs (max_ulp/p99_ulp/ulp_dtype None).
  int vs int: values compared exactly in int64, or uint64 when both sides are unsigned/bool
  (uint64 values >= 2**63 against a signed dtype wrap: unsupported).
* bit_identical: all elements have identical bits after rounding; NaN vs NaN counts as
  identical whatever the payload; +0.0 vs -0.0 does not. identical_fraction = identical/count.
* ULP: bits -> ordered integer (sign-magnitude: ``+m -> m``, ``-m -> -m``, so +0 and -0 both
  map to 0 and +inf is one step above the largest finite). Distance = |ord(a) - ord(b)| as
  uint64 (no overflow). Unsigned formats (float8_e8m0fnu) use the raw bits. Elements with a NaN
  on either side are excluded from max_ulp/p99_ulp. Ints: |a - b|; bool: mismatch = 1.
* p99_ulp: nearest rank, the smallest v such that >= 99% of the included elements have
  distance <= v. Exact when that value is < 65536 (bincount of 0..65535). Larger distances go to
  log2 buckets with 8 geometric sub-buckets per octave, and p99 is then the bucket's lower bound
  floor(2**(k/8)): approximate, exact/reported < 2**(1/8). max_ulp is always exact.
* max_abs / mean_abs: |ref - got| in float64 over elements where both sides are finite.
  max_rel = max |ref - got| / |ref| over the same elements, 0/0 = 0 and x/0 = inf for x > 0.
  worst_index: the flat (C-order) index of the first element whose |ref - got| is max_abs; None when
  max_abs is 0 (no finite element differs). Over the whole array, leading sample axis included.
* cosine (both-finite elements, float64): dot/(|a||b|); both all-zero -> 1.0; one -> 0.0.
  snr_db = 10*log10(sum(ref^2) / sum((ref-got)^2)); zero error -> inf; zero signal and
  nonzero error -> -inf. Both are NaN when a sum of squares overflows float64 (values beyond ~1e154).
  Sums are float64 per chunk in 4 lanes (metrics.lane_sum), so chunking changes
  them only by rounding.
* nan_mismatch: exactly one side NaN. inf_mismatch: neither side NaN, at least one infinite,
  and they differ (+inf vs -inf, inf vs finite).
* Tolerance: an element passes if both are NaN, or both finite and |ref-got| <= atol +
  rtol*|ref|, or equal infinities, or (max_ulp set and ulp <= max_ulp and neither NaN).
  violations = failing elements.
* Empty tensors: bit_identical True, identical_fraction 1.0, errors 0, cosine 1.0, snr_db inf.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import kernel

FIELDS: tuple[str, ...] = ("bit_identical", "identical_fraction", "max_abs", "mean_abs", "max_rel",
                           "max_ulp", "p99_ulp", "cosine", "snr_db", "nan_mismatch", "inf_mismatch")

_SMALL = 1 << 16          # exact bincount below this distance
_NBIG = 8 * 64 + 1        # log2 buckets: k = floor(8*log2(d)), 128 <= k <= 512
_U64_MAX = np.uint64(np.iinfo(np.uint64).max)
_NATIVE_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class ShapeMismatch(ValueError):
    """ref and got do not have the same shape."""


def _float_info(dt: np.dtype):
    """(bits, signed, nmant) for a supported float dtype, None for int/bool; TypeError otherwise."""
    if dt in _NATIVE_FLOATS:
        return dt.itemsize * 8, True, int(np.finfo(dt).nmant)
    if dt.kind in "iub":
        return None
    if dt.kind not in "fV" or np.issubdtype(dt, np.floating):   # complex, str, longdouble...
        raise TypeError(f"unsupported dtype {dt}")
    import ml_dtypes
    if not dt.name.startswith(("float", "bfloat")) or getattr(ml_dtypes, dt.name, None) is None:
        raise TypeError(f"unsupported dtype {dt}")
    fi = ml_dtypes.finfo(dt)
    return int(fi.bits), float(fi.min) < 0, int(fi.nmant)


def _isnan(x: np.ndarray) -> np.ndarray:
    return np.isnan(x if x.dtype in _NATIVE_FLOATS else x.astype(np.float64))


def ordered_int(x: np.ndarray) -> np.ndarray:
    """Monotone int64 image of ``x``: sign-magnitude bits for floats (+0 and -0 -> 0), value for ints."""
    x = np.asarray(x)
    info = _float_info(x.dtype)
    if info is None:
        return x.astype(np.int64)
    bits, signed, _ = info
    u = x.view(_UINT[x.dtype.itemsize]).astype(np.uint64)
    if bits < 8 * x.dtype.itemsize:
        u &= np.uint64((1 << bits) - 1)
    if not signed:
        return u.astype(np.int64)
    mag = (u & np.uint64((1 << (bits - 1)) - 1)).astype(np.int64)
    return np.where((u >> np.uint64(bits - 1)) != 0, -mag, mag)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|ordered_int(a) - ordered_int(b)| as uint64, exact; positions where either side is NaN -> 0."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype:
        raise TypeError(f"ulp_distance needs one dtype, got {a.dtype} and {b.dtype}")
    if a.dtype == np.uint64:
        return np.where(a >= b, a - b, b - a)
    oa, ob = ordered_int(a), ordered_int(b)
    ua, ub = oa.view(np.uint64), ob.view(np.uint64)
    # modular uint64 subtraction is exact since the true difference is < 2**64
    d = np.where(oa >= ob, ua - ub, ub - ua)
    if _float_info(a.dtype) is not None:
        d[_isnan(a) | _isnan(b)] = 0
    return d


def _round_to_odd_f32(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounding to odd, so that a later RNE cast to a <=21-bit format is correct."""
    f = x.astype(np.float32)
    back = f.astype(np.float64)
    inexact = (back != x) & ~np.isnan(x)
    bits = f.view(np.uint32)   # astype made a fresh array: safe to edit in place
    bits[inexact & (np.abs(back) > np.abs(x))] -= np.uint32(1)   # truncate toward zero
    bits[inexact] |= np.uint32(1)
    return f


def _round(x: np.ndarray, narrow: np.dtype) -> np.ndarray:
    if x.dtype == narrow:
        return x
    if x.dtype == np.float64 and narrow not in _NATIVE_FLOATS:
        x = _round_to_odd_f32(x)
    return x.astype(narrow)


@dataclass(frozen=True)
class Tolerance:
    """Which elements pass: both NaN, equal infinities, |ref - got| <= atol + rtol * |ref|, or (max_ulp set)
    at most max_ulp ULPs apart."""
    atol: float = 1e-5
    rtol: float = 1e-5
    max_ulp: int | None = None   # when set, an element also passes if its ULP distance <= max_ulp

    def element_ok(self, ref64, got64, ulp) -> np.ndarray:
        """Vectorised pass mask. ref64/got64: float64 values; ulp: uint64 distances or None."""
        ref64, got64 = np.asarray(ref64, np.float64), np.asarray(got64, np.float64)
        nr, ng = np.isnan(ref64), np.isnan(got64)
        fin = np.isfinite(ref64) & np.isfinite(got64)
        with np.errstate(all="ignore"):
            close = np.abs(ref64 - got64) <= self.atol + self.rtol * np.abs(ref64)
        ok = (nr & ng) | (fin & close) | (np.isinf(ref64) & (ref64 == got64))
        if self.max_ulp is not None and ulp is not None:
            ok |= (np.asarray(ulp) <= np.uint64(self.max_ulp)) & ~nr & ~ng
        return ok


LANES = 4  # the lanes of the float64 sums (the kernel's vector width)


def lane_sum(x: np.ndarray) -> float:
    """Sum of a float64 vector in the kernel's order: element i into lane i % LANES, each lane front to back from
    +0.0 (np.cumsum adds in order; np.sum does not), then (l0 + l1) + (l2 + l3). Both paths round every sum the
    same way."""
    if not x.size:
        return 0.0
    pad = -x.size % LANES
    if pad:
        x = np.concatenate([x, np.zeros(pad)])
    lane = np.cumsum(x.reshape(-1, LANES), axis=0)[-1] + 0.0   # + 0.0: a lane of only -0.0 is +0.0, as from +0.0
    return float((lane[0] + lane[1]) + (lane[2] + lane[3]))


class Accumulator:
    """Streams chunk pairs of one tensor pair; memory is O(chunk).

    Chunks of float32/float64 pairs of at least `KERNEL_MIN` elements go through the compiled kernel
    (measure/kernel.py) where it was built; everything else goes through NumPy. Both update the same state the same
    way: results are bit-identical whichever path a chunk takes."""

    KERNEL_MIN = 1   # the tests raise it to send every chunk through NumPy

    def __init__(self, ref_dtype: np.dtype, got_dtype: np.dtype, tolerance: Tolerance | None = None):
        self.ref_dtype, self.got_dtype = np.dtype(ref_dtype), np.dtype(got_dtype)
        self.tolerance = tolerance if tolerance is not None else Tolerance()
        # strings: equality only (bit_identical, identical_fraction, violations, worst_index); no error figures
        self._text = self.ref_dtype.kind == "U" and self.got_dtype.kind == "U"
        ri, gi = (None, None) if self._text else (_float_info(self.ref_dtype), _float_info(self.got_dtype))
        self._narrow: np.dtype | None = None
        self._int: np.dtype | None = None
        self.ulp_dtype: str | None = None
        if ri is not None and gi is not None:
            # narrower = fewer bits, then fewer mantissa bits
            self._narrow = self.ref_dtype if (ri[0], ri[2]) <= (gi[0], gi[2]) else self.got_dtype
            self.ulp_dtype = self._narrow.name
        elif ri is None and gi is None and not self._text:
            unsigned = self.ref_dtype.kind in "ub" and self.got_dtype.kind in "ub"
            self._int = np.dtype(np.uint64 if unsigned else np.int64)
            same = self.ref_dtype == self.got_dtype
            self.ulp_dtype = self.ref_dtype.name if same else self._int.name
        self.count = 0
        self._fsum = np.zeros(7, np.float64)   # max_abs, max_rel, sum |err|, sum ref*got, sum ref^2, got^2, err^2
        self._counts = np.zeros(6, np.int64)   # identical, nan_mismatch, inf_mismatch, n_finite, violations, n_ulp
        self._top = np.zeros(1, np.uint64)     # max_ulp
        self._worst = np.full(1, -1, np.int64)  # flat index of the first element with the largest |err|; -1: none
        self._small = np.zeros(_SMALL, np.int64)
        self._big = np.zeros(_NBIG, np.int64)
        self._fused = kernel.available() and kernel.supports(self.ref_dtype, self.got_dtype)
        self._same = self.ref_dtype == self.got_dtype  # every byte so far equal (a fact beside the metrics)

    @property
    def same_bytes(self) -> bool:
        """Whether the two sides are the same array: one dtype, and every byte of every chunk equal (NaN payloads
        and the sign of zero included; stricter than bit_identical, which compares after rounding)."""
        return self._same

    def update(self, ref: np.ndarray, got: np.ndarray) -> None:
        """Fold one chunk pair (same length, the declared dtypes) into the running metrics."""
        ref, got = np.asarray(ref).reshape(-1), np.asarray(got).reshape(-1)
        if ref.dtype != self.ref_dtype or got.dtype != self.got_dtype:
            raise TypeError(f"chunk dtypes {ref.dtype}/{got.dtype}, declared {self.ref_dtype}/{self.got_dtype}")
        if ref.size != got.size:
            raise ValueError(f"chunk lengths differ: {ref.size} vs {got.size}")
        offset = self.count
        self.count += ref.size
        if self._text:
            differ = ref != got
            n = int(np.count_nonzero(differ))
            self._same = self._same and n == 0
            self._counts[0] += ref.size - n
            self._counts[4] += n
            if self._worst[0] < 0 and n:
                self._worst[0] = offset + int(np.argmax(differ))
            return
        if self._fused and ref.size >= self.KERNEL_MIN:
            self._kernel(ref, got, offset)
            return
        if self._same:
            self._same = bool(np.array_equal(np.ascontiguousarray(ref).view(np.uint8),
                                             np.ascontiguousarray(got).view(np.uint8)))
        with np.errstate(all="ignore"):
            self._update(ref, got, offset)

    def _kernel(self, ref: np.ndarray, got: np.ndarray, offset: int) -> None:
        t = self.tolerance
        ref, got = np.ascontiguousarray(ref), np.ascontiguousarray(got)
        if ref.dtype == got.dtype and kernel.same_bits(ref, got):
            if t.atol >= 0 and t.rtol >= 0:
                kernel.run_identical(ref, self._small, self._fsum, self._counts)
                return
        else:
            self._same = False
        big = np.empty(ref.size, np.uint64)
        n = kernel.run(ref, got, float(t.atol), float(t.rtol), t.max_ulp, self._small, self._fsum, self._counts,
                       self._top, big, offset, self._worst)
        if n:
            self._bucket(big[:n])

    def _update(self, ref: np.ndarray, got: np.ndarray, offset: int) -> None:
        r64, g64 = ref.astype(np.float64), got.astype(np.float64)
        nr, ng = np.isnan(r64), np.isnan(g64)
        ulp = None
        if self._narrow is not None:
            rn, gn = _round(ref, self._narrow), _round(got, self._narrow)
            nrn = nr if rn is ref else _isnan(rn)
            ngn = ng if gn is got else _isnan(gn)
            uint = _UINT[self._narrow.itemsize]
            same = (rn.view(uint) == gn.view(uint)) | (nrn & ngn)
            ulp = ulp_distance(rn, gn)
            incl = ~(nrn | ngn)
        elif self._int is not None:
            ri, gi = ref.astype(self._int), got.astype(self._int)
            same = ri == gi
            ulp = ulp_distance(ri, gi)
            incl = None
        else:
            same = (r64.view(np.uint64) == g64.view(np.uint64)) | (nr & ng)
        c = self._counts
        c[0] += np.count_nonzero(same)
        c[1] += np.count_nonzero(nr ^ ng)
        c[2] += np.count_nonzero(~(nr | ng) & (np.isinf(r64) | np.isinf(g64)) & (r64 != g64))

        fin = np.isfinite(r64) & np.isfinite(g64)
        rf, gf = np.where(fin, r64, 0.0), np.where(fin, g64, 0.0)
        err = rf - gf
        ad = np.abs(err)
        f = self._fsum
        if ref.size:
            top = ad.max()
            if top > f[0]:  # strictly: the first element with the largest error keeps its place
                f[0] = top
                self._worst[0] = offset + int(np.argmax(ad))
            rel = np.where(rf == 0, np.where(ad == 0, 0.0, np.inf), ad / np.abs(rf))
            f[1] = max(f[1], rel.max())
        c[3] += np.count_nonzero(fin)
        for k, x in enumerate((ad, rf * gf, rf * rf, gf * gf, err * err)):
            f[2 + k] += lane_sum(x)

        if ulp is not None:
            self._add_ulps(ulp if incl is None else ulp[incl])
            if incl is not None:   # NaN after rounding must not pass through the ULP clause
                ulp = np.where(incl, ulp, _U64_MAX)
        c[4] += np.count_nonzero(~self.tolerance.element_ok(r64, g64, ulp))

    def _add_ulps(self, u: np.ndarray) -> None:
        if not u.size:
            return
        self._counts[5] += u.size
        self._top[0] = max(self._top[0], u.max())
        small = u < _SMALL
        self._small += np.bincount(u[small].astype(np.intp), minlength=_SMALL)
        self._bucket(u[~small])

    def _bucket(self, big: np.ndarray) -> None:
        """Distances >= 2**16 into log2 buckets, 8 per octave."""
        if big.size:
            k = np.floor(8.0 * np.log2(big.astype(np.float64))).astype(np.intp)
            # guard against float rounding putting d just above its bucket's lower bound
            k -= np.exp2(k / 8.0) > big.astype(np.float64)
            self._big += np.bincount(k, minlength=_NBIG)

    def _p99(self) -> int:
        n_ulp = int(self._counts[5])
        if n_ulp == 0:
            return 0
        rank = (99 * n_ulp + 99) // 100          # ceil(0.99 * n), exact integer arithmetic
        cs = np.cumsum(self._small)
        if cs[-1] >= rank:
            return int(np.searchsorted(cs, rank))
        k = int(np.searchsorted(np.cumsum(self._big), rank - int(cs[-1])))
        return int(math.floor(2.0 ** (k / 8.0)))

    def result(self) -> dict:
        """The metrics so far: every key of FIELDS plus count, violations, ulp_dtype and worst_index."""
        max_abs, max_rel, sum_abs, dot, ss_ref, ss_got, ss_err = (float(x) for x in self._fsum)
        identical, nan_mismatch, inf_mismatch, n_finite, violations, _ = (int(x) for x in self._counts)
        cosine, snr = _cosine_snr(dot, ss_ref, ss_got, ss_err)
        has_ulp = self.ulp_dtype is not None
        if self._text:  # equality only: the error figures say "equal" (0) or "differ" (inf), nothing between
            error = 0.0 if identical == self.count else math.inf
            return {"bit_identical": identical == self.count,
                    "identical_fraction": identical / self.count if self.count else 1.0,
                    "max_abs": error, "mean_abs": error, "max_rel": error, "max_ulp": None, "p99_ulp": None,
                    "cosine": 1.0 if error == 0.0 else 0.0, "snr_db": math.inf if error == 0.0 else -math.inf,
                    "nan_mismatch": 0, "inf_mismatch": 0, "count": self.count, "violations": violations,
                    "ulp_dtype": None, "worst_index": int(self._worst[0]) if self._worst[0] >= 0 else None}
        return {
            "bit_identical": identical == self.count,
            "identical_fraction": identical / self.count if self.count else 1.0,
            "max_abs": max_abs,
            "mean_abs": sum_abs / n_finite if n_finite else 0.0,
            "max_rel": max_rel,
            "max_ulp": int(self._top[0]) if has_ulp else None,
            "p99_ulp": self._p99() if has_ulp else None,
            "cosine": cosine,
            "snr_db": snr,
            "nan_mismatch": nan_mismatch,
            "inf_mismatch": inf_mismatch,
            "count": self.count,
            "violations": violations,
            "ulp_dtype": self.ulp_dtype,
            "worst_index": int(self._worst[0]) if self._worst[0] >= 0 else None,
        }


def _cosine_snr(dot: float, ss_ref: float, ss_got: float, ss_err: float) -> tuple[float, float]:
    """cosine and snr_db from the sums (see the module's rules)."""
    if not all(math.isfinite(x) for x in (dot, ss_ref, ss_got, ss_err)):
        return math.nan, math.nan  # a sum overflowed float64 (values beyond ~1e154): no meaningful ratio
    if ss_err == 0.0:  # equal vectors: cosine exactly 1, not 1 - 2e-16 from rounding in dot/norm
        return 1.0, math.inf
    nrm = math.sqrt(ss_ref) * math.sqrt(ss_got)
    if ss_ref == 0.0 and ss_got == 0.0:
        cosine = 1.0
    elif nrm == 0.0:
        cosine = 0.0
    else:
        cosine = max(-1.0, min(1.0, dot / nrm))
    return cosine, (-math.inf if ss_ref == 0.0 else 10.0 * math.log10(ss_ref / ss_err))


def start(ref_shape: tuple[int, ...], ref_dtype: np.dtype, got_shape: tuple[int, ...], got_dtype: np.dtype,
          tolerance: Tolerance | None = None) -> Accumulator:
    """An Accumulator for a pair of arrays of these shapes and dtypes; ShapeMismatch or TypeError if they cannot
    be compared."""
    if tuple(ref_shape) != tuple(got_shape):
        raise ShapeMismatch(f"shape mismatch: ref has shape {tuple(ref_shape)}, got has shape {tuple(got_shape)}")
    return Accumulator(ref_dtype, got_dtype, tolerance)


def compare(ref: np.ndarray, got: np.ndarray, tolerance: Tolerance | None = None,
            chunk: int = 1 << 20) -> dict:
    """Compare two same-shape arrays chunk by chunk (memmaps are never loaded whole)."""
    ref, got = np.asanyarray(ref), np.asanyarray(got)
    acc = start(ref.shape, ref.dtype, got.shape, got.dtype, tolerance)
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    rf, gf = ref.reshape(-1), got.reshape(-1)
    for i in range(0, rf.size, chunk):
        acc.update(np.asarray(rf[i:i + chunk]), np.asarray(gf[i:i + chunk]))
    return acc.result()
