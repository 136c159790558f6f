"""The compiled kernel (measure/kernel.py, _fold.c) against the NumPy path of metrics.Accumulator, on random
tensors built to hit every rule: both must agree exactly on every field."""
import numpy as np
import pytest

from comparator.measure import kernel
from comparator.measure.metrics import Accumulator, Tolerance, compare

PAIRS = [(np.float32, np.float32), (np.float64, np.float64), (np.float64, np.float32), (np.float32, np.float64)]
TOLERANCES = [Tolerance(), Tolerance(0.0, 0.0), Tolerance(1e-3, 0.0, max_ulp=0), Tolerance(0.0, 1e-6, max_ulp=4),
              Tolerance(0.0, 0.0, max_ulp=(1 << 64) - 1)]


@np.errstate(over="ignore")
def _values(rng, n, dt):
    """Normal values at many scales, with zeros of both signs, subnormals, infinities and NaNs sprinkled in."""
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, -1e-310, 1e-42, 3.4e38, 1e300, -1e300])
    pick = rng.random(n) < 0.05
    x[pick] = rng.choice(specials, pick.sum())
    return x.astype(dt)


@np.errstate(over="ignore", invalid="ignore")
def _perturb(rng, ref, dt):
    """The tensor under test: equal, a few ULPs off, far off, or special, element by element."""
    got = ref.astype(dt)
    u = {4: np.int32, 8: np.int64}[got.dtype.itemsize]
    bits = got.view(u).copy()
    step = rng.integers(-3, 4, got.size).astype(u) * (rng.random(got.size) < 0.6)
    bits += step
    got = bits.view(got.dtype)
    far = rng.random(got.size) < 0.02
    got[far] = _values(rng, int(far.sum()), dt)
    nan = rng.random(got.size) < 0.01
    got[nan] = np.nan
    return got


def _numpy(ref, got, tol, chunk):
    old = Accumulator.KERNEL_MIN
    Accumulator.KERNEL_MIN = 1 << 62
    try:
        return compare(ref, got, tol, chunk=chunk)
    finally:
        Accumulator.KERNEL_MIN = old


def _fused(ref, got, tol, chunk):
    assert kernel.available()  # built: every chunk of a float32/float64 pair takes the kernel
    old = Accumulator.KERNEL_MIN
    Accumulator.KERNEL_MIN = 1
    try:
        return compare(ref, got, tol, chunk=chunk)
    finally:
        Accumulator.KERNEL_MIN = old


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]), (k, a[k], b[k])
        assert type(a[k]) is type(b[k]), k


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{np.dtype(p[0]).name}-{np.dtype(p[1]).name}")
def test_kernel_equals_numpy_path_exactly(seed, pair):
    assert kernel.available()
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 50_000))
    ref = _values(rng, n, pair[0])
    got = _perturb(rng, ref, pair[1])
    tol = TOLERANCES[seed % len(TOLERANCES)]
    chunk = int(rng.choice([7, 4096, 1 << 20]))
    a, b = _numpy(ref, got, tol, chunk), _fused(ref, got, tol, chunk)
    _same(a, b)
    assert a["count"] == n
    assert a["worst_index"] == _worst(ref, got)


def _worst(ref, got):
    """The flat index of the first element with the largest |ref - got| over both-finite elements, computed
    directly (None when none differs)."""
    with np.errstate(all="ignore"):
        r, g = ref.astype(np.float64), got.astype(np.float64)
        err = np.where(np.isfinite(r) & np.isfinite(g), np.abs(r - g), 0.0)
    return int(np.argmax(err)) if err.size and err.max() > 0 else None


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{np.dtype(p[0]).name}-{np.dtype(p[1]).name}")
@pytest.mark.parametrize("chunk", [1, 5, 4096, 1 << 20])
def test_worst_index_is_the_first_largest_error_across_chunks(pair, chunk):
    """Ties keep the first element, wherever the chunks cut; specials and identical tensors give no index."""
    ref = ((np.arange(9000) - 4500) / 1024).astype(pair[0])
    got = ref.astype(pair[1]).copy()
    got[[10, 4100, 8999]] += 0.5  # equal errors (exact in both dtypes: every value is a multiple of 2**-10)
    got[7] = np.nan
    got[20] = np.inf
    for run in (_numpy, _fused):
        assert run(ref, got, Tolerance(), chunk)["worst_index"] == _worst(ref, got) == 10
        assert run(ref, ref.astype(pair[1]), Tolerance(), chunk)["worst_index"] is None


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{np.dtype(p[0]).name}-{np.dtype(p[1]).name}")
def test_kernel_on_plain_close_tensors(pair):
    """The common case: finite values a few ULPs apart, some identical, large enough for several chunks."""
    rng = np.random.default_rng(7)
    ref = rng.standard_normal(300_000).astype(pair[0])
    got = (ref.astype(np.float64) * (1 + 1e-7 * rng.standard_normal(ref.size))).astype(pair[1])
    got[::3] = ref[::3].astype(pair[1])
    for tol in TOLERANCES:
        _same(_numpy(ref, got, tol, 1 << 16), _fused(ref, got, tol, 1 << 16))


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{np.dtype(p[0]).name}-{np.dtype(p[1]).name}")
def test_kernel_on_finite_tensors_far_apart(pair):
    """Every element finite, distances of every size: the histogram's lane counts (below 256), its shared counts
    (below 2**16) and the handed-back distances (2**16 and more), with signs that differ, in the vector path."""
    rng = np.random.default_rng(11)
    n = 200_003  # a tail after the last group of four
    ref = rng.standard_normal(n).astype(pair[0])
    u = {4: np.int32, 8: np.int64}[np.dtype(pair[1]).itemsize]
    got = ref.astype(pair[1])
    bits = got.view(u) + (rng.integers(-1, 2, n) * 2 ** rng.integers(0, 24, n)).astype(u)
    got = bits.view(pair[1])
    got[::7] = -got[::7]
    got[::11] = 0.0
    assert np.isfinite(got).all()
    r = None
    for tol in TOLERANCES:
        r = _fused(ref, got, tol, 1 << 16)
        _same(_numpy(ref, got, tol, 1 << 16), r)
    assert r is not None and r["max_ulp"] >= 1 << 16 and r["p99_ulp"] >= 1 << 16


def test_bit_identical_tensors():
    ref = np.random.default_rng(1).standard_normal(100_000).astype(np.float32)
    r = _fused(ref, ref.copy(), Tolerance(0.0, 0.0), 1 << 20)
    assert r["bit_identical"] and r["max_ulp"] == 0 and r["violations"] == 0 and r["snr_db"] == float("inf")
    _same(r, _numpy(ref, ref.copy(), Tolerance(0.0, 0.0), 1 << 20))


def test_other_dtypes_take_the_numpy_path():
    assert not kernel.supports(np.dtype(np.float16), np.dtype(np.float32))
    assert not kernel.supports(np.dtype(np.int64), np.dtype(np.int64))
    assert kernel.supports(np.dtype(np.float64), np.dtype(np.float32))


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_identical_fast_path_with_specials(dt):
    """Bit-identical chunks holding NaNs, infinities, signed zeros and subnormals: the fast path agrees exactly."""
    ref = _values(np.random.default_rng(3), 70_000, dt)
    for tol in TOLERANCES:
        a, b = _fused(ref, ref.copy(), tol, 1 << 15), _numpy(ref, ref.copy(), tol, 1 << 15)
        _same(a, b)
        assert a["bit_identical"] and a["violations"] == 0


def test_read_only_arrays_take_the_kernel_too(tmp_path):
    """Memory-mapped files opened read-only (np.load(mmap_mode="r")) give the same figures as arrays in memory."""
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(1 << 19).astype(np.float32)
    got = (ref * (1 + 1e-6 * rng.standard_normal(ref.size))).astype(np.float32)
    np.save(tmp_path / "a.npy", ref)
    np.save(tmp_path / "b.npy", got)
    a, b = np.load(tmp_path / "a.npy", mmap_mode="r"), np.load(tmp_path / "b.npy", mmap_mode="r")
    assert not a.flags.writeable
    _same(compare(a, b), compare(ref, got))
    _same(compare(a, a), compare(ref, ref.copy()))
