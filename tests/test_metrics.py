"""Tests for comparator.measure.metrics; every expected number is worked out by hand in a comment."""
import json
import math

import ml_dtypes
import numpy as np
import pytest

from comparator.measure.metrics import (FIELDS, Accumulator, ShapeMismatch, Tolerance, compare,
                                ordered_int, start, ulp_distance)

BF16 = np.dtype(ml_dtypes.bfloat16)
# dtype -> (unsigned view type, bits of 1.0, bits of 2.0, mantissa bits)
LAYOUT = {
    np.dtype(np.float16): (np.uint16, 0x3C00, 0x4000, 10),
    BF16: (np.uint16, 0x3F80, 0x4000, 7),
    np.dtype(np.float32): (np.uint32, 0x3F800000, 0x40000000, 23),
    np.dtype(np.float64): (np.uint64, 0x3FF0000000000000, 0x4000000000000000, 52),
}
FLOATS = list(LAYOUT)


@pytest.fixture(autouse=True, params=["numpy", "kernel"])
def path(request, monkeypatch):
    """Every test runs twice: float32/float64 pairs through the NumPy path, then through the compiled kernel."""
    if request.param == "kernel":
        from comparator.measure import kernel
        assert kernel.available(), "the metrics kernel (comparator/measure/_fold.c) must be built"
    monkeypatch.setattr(Accumulator, "KERNEL_MIN", 1 if request.param == "kernel" else 1 << 62)
    return request.param


def from_bits(dt, bits):
    """Array of dtype dt with the given raw bit patterns."""
    return np.array(bits, dtype=LAYOUT[np.dtype(dt)][0]).view(dt)


def assert_same_result(a, b):
    """Counts and ULPs must match exactly; float sums may differ by summation order."""
    assert a.keys() == b.keys()
    for k in a:
        if k in ("mean_abs", "cosine", "snr_db"):
            assert a[k] == pytest.approx(b[k], rel=1e-12), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("dt", FLOATS, ids=str)
def test_ulp_across_power_of_two(dt):
    view, one, two, nmant = LAYOUT[dt]
    x = from_bits(dt, [one, one - 1, one + 1, two, two - 1])
    # the float just below 1.0 is 1 - 2**-(nmant+1): the spacing halves below a power of two
    assert float(x[1]) == 1.0 - 2.0 ** -(nmant + 1)
    assert float(x[2]) == 1.0 + 2.0 ** -nmant          # 1 + eps
    assert float(x[4]) == 2.0 - 2.0 ** -nmant          # below 2 the spacing is eps
    # neighbouring bit patterns are 1 ULP apart whichever side of the power of two they lie
    assert ulp_distance(x[[0, 0, 3]], x[[1, 2, 4]]).tolist() == [1, 1, 1]
    r = compare(x[[0, 0, 3]], x[[1, 2, 4]])
    assert (r["max_ulp"], r["p99_ulp"], r["ulp_dtype"]) == (1, 1, dt.name)
    assert r["identical_fraction"] == 0.0 and r["bit_identical"] is False


@pytest.mark.parametrize("dt", FLOATS, ids=str)
def test_subnormals_and_signed_zero(dt):
    sign = 1 << (8 * dt.itemsize - 1)
    tiny, zero, neg_tiny, neg_zero = from_bits(dt, [1, 0, sign | 1, sign])
    # smallest subnormal vs +0: ordered 1 vs 0 -> 1 ULP
    assert int(ulp_distance(tiny, zero)) == 1
    # -min_sub vs +min_sub: ordered -1 vs +1 -> 2 ULP, crossing zero once
    assert int(ulp_distance(neg_tiny, tiny)) == 2
    assert ordered_int(np.stack([neg_tiny, neg_zero, zero, tiny])).tolist() == [-1, 0, 0, 1]
    # +0 vs -0: different bits, but 0 ULP and 0 abs error, and within any tolerance
    r = compare(np.stack([zero]), np.stack([neg_zero]), Tolerance(atol=0, rtol=0))
    assert r["bit_identical"] is False and r["identical_fraction"] == 0.0
    assert (r["max_ulp"], r["max_abs"], r["violations"]) == (0, 0.0, 0)


def test_subnormal_value_float32():
    # float32 bit pattern 1 is 2**-149, the smallest subnormal
    assert float(from_bits(np.float32, [1])[0]) == 2.0 ** -149


def test_largest_finite_vs_inf():
    # float32 max 0x7F7FFFFF, +inf 0x7F800000: inf is one step above the largest finite
    ref, got = from_bits(np.float32, [0x7F7FFFFF]), from_bits(np.float32, [0x7F800000])
    r = compare(ref, got)
    assert r["max_ulp"] == 1 and r["inf_mismatch"] == 1 and r["violations"] == 1
    assert r["max_abs"] == 0.0   # no both-finite element
    # with a ULP tolerance of 1 the element passes
    assert compare(ref, got, Tolerance(max_ulp=1))["violations"] == 0


def test_float64_extremes_do_not_overflow():
    m = np.finfo(np.float64).max
    ref, got = np.array([-m]), np.array([m])
    # ordered(max) = 0x7FEFFFFFFFFFFFFF; the distance 2*that = 0xFFDFFFFFFFFFFFFE only fits uint64
    assert int(ordered_int(got)[0]) == 0x7FEFFFFFFFFFFFFF
    d = ulp_distance(ref, got)
    assert d.dtype == np.uint64 and int(d[0]) == 2 * 0x7FEFFFFFFFFFFFFF == 0xFFDFFFFFFFFFFFFE
    r = compare(ref, got)
    assert r["max_ulp"] == 0xFFDFFFFFFFFFFFFE and type(r["max_ulp"]) is int
    # single element: p99 comes from the log2 bucket, lower bound within 2**(1/8)
    assert r["p99_ulp"] <= r["max_ulp"] < r["p99_ulp"] * 2 ** 0.125
    assert r["max_abs"] == math.inf   # m - (-m) overflows float64


def test_nan_payloads_identical():
    # quiet NaN, NaN with another payload, negative NaN: all "identical" to each other
    ref = from_bits(np.float32, [0x7FC00000, 0x7FC00000, 0x7F800001])
    got = from_bits(np.float32, [0x7FC00001, 0xFFC00000, 0x7FC00000])
    r = compare(ref, got)
    assert r["bit_identical"] is True and r["identical_fraction"] == 1.0
    assert (r["nan_mismatch"], r["violations"], r["max_ulp"], r["p99_ulp"]) == (0, 0, 0, 0)


def test_same_bytes_is_stricter_than_bit_identical():
    """Accumulator.same_bytes: one dtype and every byte equal, on either path; what bit-identity classes use."""
    def same(ref, got):
        acc = start(ref.shape, ref.dtype, got.shape, got.dtype)
        for i in range(0, ref.size, 3):  # several chunks: the first ones equal
            acc.update(ref[i:i + 3], got[i:i + 3])
        return acc.same_bytes, acc.result()["bit_identical"]

    x = np.arange(8, dtype=np.float32)
    assert same(x, x.copy()) == (True, True)
    payload = x.copy()
    payload[6:] = from_bits(np.float32, [0x7FC00000, 0x7FC00000])
    other = payload.copy()
    other[7:] = from_bits(np.float32, [0x7FC00001])
    assert same(payload, other) == (False, True)  # NaN payloads differ in the last chunk
    assert same(x, x.astype(np.float64)) == (False, True)  # same values, another dtype
    zero = np.zeros(8, np.float32)
    assert same(zero, -zero) == (False, False)
    words = np.array(["a", "b", "c", "d"])
    assert same(words, words.copy()) == (True, True)


def test_one_sided_nan():
    ref, got = np.array([1.0, np.nan], np.float32), np.array([1.0, 1.0], np.float32)
    r = compare(ref, got, Tolerance(max_ulp=2 ** 40))   # even a huge ULP budget does not excuse NaN
    # 1 of 2 identical; the NaN element is excluded from ULPs and abs errors
    assert (r["nan_mismatch"], r["violations"], r["identical_fraction"]) == (1, 1, 0.5)
    assert (r["max_ulp"], r["max_abs"], r["inf_mismatch"]) == (0, 0.0, 0)


def test_inf_mismatch():
    ref = np.array([np.inf, np.inf, np.nan, np.inf, -np.inf])
    got = np.array([-np.inf, 5.0, np.inf, np.inf, -np.inf])
    r = compare(ref, got)
    # +inf/-inf and inf/5 count; nan/inf is a NaN mismatch only; equal infinities are fine
    assert (r["inf_mismatch"], r["nan_mismatch"], r["violations"]) == (2, 1, 3)
    assert r["max_abs"] == 0.0 and r["identical_fraction"] == 2 / 5


def test_max_rel_with_zero_reference():
    # 0/0 -> 0; the last element gives |2-3|/2 = 0.5
    r = compare(np.array([0.0, 0.0, 2.0]), np.array([0.0, 0.0, 3.0]))
    assert r["max_rel"] == 0.5 and r["max_abs"] == 1.0 and r["mean_abs"] == pytest.approx(1 / 3)
    # 0.001/0 -> inf
    assert compare(np.array([0.0, 1.0]), np.array([1e-3, 1.0]))["max_rel"] == math.inf


def test_cosine_and_snr():
    r = compare(np.array([3.0, 4.0]), np.array([3.0, 4.5]))
    # signal 9+16 = 25, error 0.5**2 = 0.25 -> 10*log10(100) = 20 dB
    assert r["snr_db"] == pytest.approx(20.0)
    # dot 9+18 = 27, |ref| = 5, |got| = sqrt(9+20.25) = sqrt(29.25)
    assert r["cosine"] == pytest.approx(27 / (5 * math.sqrt(29.25)))
    # errors 0 and 0.5: max 0.5, mean 0.25, max_rel 0.5/4
    assert (r["max_abs"], r["mean_abs"], r["max_rel"]) == (0.5, 0.25, 0.125)
    # orthogonal: cosine 0, snr = 10*log10(1/2) = -3.0103 dB
    r = compare(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert r["cosine"] == 0.0 and r["snr_db"] == pytest.approx(-3.0103, abs=1e-4)
    # opposite: cosine -1; signal 1+4 = 5, error 4+16 = 20 -> 10*log10(0.25) = -6.0206 dB
    r = compare(np.array([1.0, 2.0]), np.array([-1.0, -2.0]))
    assert r["cosine"] == pytest.approx(-1.0) and r["snr_db"] == pytest.approx(-6.0206, abs=1e-4)
    # both all-zero: cosine 1, no error -> snr inf
    r = compare(np.zeros(3), np.zeros(3))
    assert (r["cosine"], r["snr_db"]) == (1.0, math.inf)
    # zero reference, nonzero output: one all-zero vector -> cosine 0; no signal -> -inf dB
    r = compare(np.zeros(2), np.array([1.0, 0.0]))
    assert (r["cosine"], r["snr_db"]) == (0.0, -math.inf)
    # non-finite elements are left out: only [3] vs [3] remains -> perfect agreement
    r = compare(np.array([3.0, np.inf, np.nan]), np.array([3.0, 1.0, 1.0]))
    assert (r["cosine"], r["snr_db"], r["max_abs"]) == (1.0, math.inf, 0.0)


@pytest.mark.parametrize("swap", [False, True])
def test_mixed_float64_vs_float32(swap):
    f32_tenth = 13421773 * 2.0 ** -27        # float32(0.1) written exactly as a dyadic
    one_up = 1.0 + 2.0 ** -23               # next float32 above 1.0
    ref = np.array([0.1, 1.0])
    got = np.array([f32_tenth, one_up], np.float32)
    r = compare(got, ref) if swap else compare(ref, got)
    # 0.1 rounds to float32(0.1): identical and 0 ULP; 1.0 vs 1+2**-23: 1 float32 ULP
    assert r["ulp_dtype"] == "float32" and r["max_ulp"] == 1
    assert r["identical_fraction"] == 0.5 and r["bit_identical"] is False
    # but abs error uses the unrounded float64 values: max(|0.1 - f32_tenth|, 2**-23) = 2**-23
    assert r["max_abs"] == 2.0 ** -23
    assert r["mean_abs"] == pytest.approx(((f32_tenth - 0.1) + 2.0 ** -23) / 2, rel=1e-12)
    r = compare(np.array([0.1]), np.array([f32_tenth], np.float32))
    assert r["bit_identical"] is True and r["max_ulp"] == 0
    assert r["max_abs"] == pytest.approx(f32_tenth - 0.1, rel=1e-12) and r["max_abs"] > 1e-9


def test_mixed_rounding_is_correct_not_double():
    # 1 + 2**-8 + 2**-30 is just above the bfloat16 midpoint between 1 and 1 + 2**-7, so it
    # rounds up to 1 + 2**-7 (bits 0x3F81); going through float32 first would land on 1.0
    ref = np.array([1.0 + 2.0 ** -8 + 2.0 ** -30])
    got = from_bits(BF16, [0x3F81])
    r = compare(ref, got)
    assert (r["bit_identical"], r["max_ulp"], r["ulp_dtype"]) == (True, 0, "bfloat16")
    # float32 vs float16 (float32 is rounded): float16(1/3) is 0x3555 = 1365 * 2**-12
    r = compare(np.array([1 / 3], np.float32), np.array([1365 * 2.0 ** -12], np.float16))
    assert (r["bit_identical"], r["max_ulp"], r["ulp_dtype"]) == (True, 0, "float16")
    # float16 vs bfloat16: ULPs are counted in bfloat16 (fewer mantissa bits)
    assert compare(np.ones(1, np.float16), np.ones(1, BF16))["ulp_dtype"] == "bfloat16"


def test_p99_nearest_rank_100():
    # 98 zeros, a 7 and a 1000: rank ceil(0.99*100) = 99 -> the 99th smallest is 7
    d = np.array([0] * 98 + [7, 1000])
    ref = from_bits(np.float32, [0x3F800000] * 100)
    got = from_bits(np.float32, 0x3F800000 + d)
    r = compare(ref, got)
    assert (r["p99_ulp"], r["max_ulp"]) == (7, 1000)


def test_p99_nearest_rank_1000():
    # 985 zeros then 1..15: rank ceil(0.99*1000) = 990 -> 990 - 985 = 5th of 1..15 -> 5
    d = np.array([0] * 985 + list(range(1, 16)))
    np.random.default_rng(1).shuffle(d)
    ref = from_bits(np.float16, [0x3C00] * 1000)
    r = compare(ref, from_bits(np.float16, 0x3C00 + d), chunk=64)
    assert (r["p99_ulp"], r["max_ulp"]) == (5, 15)


def test_large_ulps_use_log2_buckets():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal(5000).astype(np.float32)
    got = rng.standard_normal(5000).astype(np.float32)
    # exact distances from the ordered integers (float32 ones fit in int64 easily)
    exact = np.sort(np.abs(ordered_int(ref) - ordered_int(got)))
    p99 = int(exact[math.ceil(0.99 * 5000) - 1])
    assert p99 >= 1 << 16   # really on the approximate path
    r = compare(ref, got, chunk=999)
    assert r["max_ulp"] == int(exact[-1])          # max is exact
    assert r["p99_ulp"] <= p99 < r["p99_ulp"] * 2 ** 0.125
    # 99.5% small distances: the p99 stays on the exact path despite big outliers
    got2 = ref.copy()
    got2[:25] = got[:25]
    got2[25:100] = from_bits(np.float32, ref[25:100].view(np.uint32) + 3)
    r = compare(ref, got2)
    # 4900 zeros, 75 threes, 25 big: rank 4950 lands among the threes
    assert r["p99_ulp"] == 3 and r["max_ulp"] == int(np.abs(ordered_int(ref[:25]) - ordered_int(got[:25])).max())


def test_streaming_equals_one_shot(tmp_path):
    rng = np.random.default_rng(3)
    n = 1000
    ref = rng.standard_normal(n)
    got = (ref + rng.standard_normal(n) * 1e-6).astype(np.float32)
    for arr, idx, val in ((ref, [5, 17, 400], np.nan), (got, [17, 18, 600], np.nan),
                          (ref, [50, 51], np.inf), (got, [50, 52, 700], -np.inf)):
        arr[idx] = val
    got[900:910] = ref[900:910]  # some exactly identical after rounding
    tol = Tolerance(atol=1e-6, rtol=1e-6, max_ulp=4)
    one_shot = compare(ref, got, tol)
    assert_same_result(compare(ref, got, tol, chunk=7), one_shot)
    # same through memmaps, 2-D shape, streamed in chunks
    mr = np.memmap(tmp_path / "r.bin", dtype=np.float64, mode="w+", shape=(40, 25))
    mg = np.memmap(tmp_path / "g.bin", dtype=np.float32, mode="w+", shape=(40, 25))
    mr[:], mg[:] = ref.reshape(40, 25), got.reshape(40, 25)
    assert_same_result(compare(mr, mg, tol, chunk=64), one_shot)
    # and through the Accumulator directly with uneven chunks
    acc = Accumulator(ref.dtype, got.dtype, tol)
    for a, b in ((0, 1), (1, 333), (333, 333), (333, 1000)):
        acc.update(ref[a:b], got[a:b])
    assert_same_result(acc.result(), one_shot)
    assert one_shot["count"] == n and one_shot["nan_mismatch"] >= 1 and one_shot["inf_mismatch"] >= 1


def test_tolerance_rules():
    tol = Tolerance(atol=0.25, rtol=0.5)
    # thresholds 0.25 + 0.5*|ref|: 1.25 passes 1.25, 1.5 fails 1.25; 0.25 passes at ref 0
    r = compare(np.array([2.0, 2.0, 0.0]), np.array([3.25, 3.5, 0.25]), tol)
    assert r["violations"] == 1
    # both NaN and equal infinities pass; inf vs -inf and NaN vs 1 fail
    r = compare(np.array([np.nan, np.inf, np.inf, np.nan]), np.array([np.nan, np.inf, -np.inf, 1.0]), tol)
    assert r["violations"] == 2
    # 1.0 vs 1.0 + 3 ULP in float32, no abs/rel slack: passes with max_ulp=3, fails with 2
    ref, got = from_bits(np.float32, [0x3F800000]), from_bits(np.float32, [0x3F800003])
    assert compare(ref, got, Tolerance(0, 0, max_ulp=3))["violations"] == 0
    assert compare(ref, got, Tolerance(0, 0, max_ulp=2))["violations"] == 1
    assert compare(ref, got, Tolerance(0, 0))["violations"] == 1
    # element_ok directly; ulp None (int vs float) ignores the ULP clause
    ok = Tolerance(0, 0, max_ulp=5).element_ok(np.array([1.0, np.nan]), np.array([2.0, np.nan]), None)
    assert ok.tolist() == [False, True]


def test_integer_tensors():
    r = compare(np.array([1, 5, -3], np.int32), np.array([1, 7, 3], np.int32))
    # |diffs| 0, 2, 6: max_ulp 6; rank ceil(2.97) = 3 -> p99 = 6; max_rel 6/3 = 2
    assert (r["max_ulp"], r["p99_ulp"], r["ulp_dtype"]) == (6, 6, "int32")
    assert (r["max_abs"], r["max_rel"], r["identical_fraction"]) == (6.0, 2.0, 1 / 3)
    assert r["mean_abs"] == pytest.approx(8 / 3)
    # int8 -128 vs 127: 255 without wrapping; int64 min vs max: 2**64 - 1 as uint64
    assert compare(np.array([-128], np.int8), np.array([127], np.int8))["max_ulp"] == 255
    i64 = np.iinfo(np.int64)
    assert int(ulp_distance(np.array([i64.min]), np.array([i64.max]))[0]) == 2 ** 64 - 1
    u = np.array([0, 2 ** 64 - 1], np.uint64)
    assert ulp_distance(u, u[::-1]).tolist() == [2 ** 64 - 1] * 2
    # mixed ints: int16 vs int64 compared by value
    r = compare(np.array([3, -4], np.int16), np.array([3, 4], np.int64))
    assert (r["max_ulp"], r["ulp_dtype"], r["identical_fraction"]) == (8, "int64", 0.5)


def test_bool_and_int_vs_float():
    r = compare(np.array([True, False, True]), np.array([True, True, False]))
    # two mismatches of 1 ULP each; 1 of 3 identical
    assert (r["max_ulp"], r["ulp_dtype"], r["identical_fraction"]) == (1, "bool", 1 / 3)
    assert (r["max_abs"], r["violations"]) == (1.0, 2)
    # int vs float: float64 comparison, no ULPs; int 0 vs -0.0 differs in bits
    r = compare(np.array([1, 2, 0], np.int32), np.array([1.0, 2.5, -0.0], np.float32))
    assert (r["max_ulp"], r["p99_ulp"], r["ulp_dtype"]) == (None, None, None)
    assert (r["max_abs"], r["identical_fraction"]) == (0.5, 1 / 3)


def test_float8_and_small_formats():
    e4 = np.array([0x38, 0x80, 0x7E], np.uint8).view(ml_dtypes.float8_e4m3fn)   # 1.0, -0, 448
    e4b = np.array([0x39, 0x00, 0x7F], np.uint8).view(ml_dtypes.float8_e4m3fn)  # 1.125, +0, NaN
    # 1 ULP, 0 ULP (signed zeros), NaN excluded; the NaN is a one-sided NaN
    r = compare(e4, e4b)
    assert (r["max_ulp"], r["nan_mismatch"], r["ulp_dtype"]) == (1, 1, "float8_e4m3fn")
    # float4_e2m1fn: 1.0 is 0b0010 and -1.0 is 0b1010 (sign in bit 3): ordered 2 and -2 -> 4 ULP
    f4 = np.array([1.0, -1.0], np.float32).astype(ml_dtypes.float4_e2m1fn)
    assert f4.view(np.uint8).tolist() == [0b0010, 0b1010]
    assert int(ulp_distance(f4[:1], f4[1:])[0]) == 4
    # float8_e8m0fnu has no sign bit: 1.0 (0x7F) and 2.0 (0x80) are 1 ULP apart
    e8 = np.array([1.0, 2.0], np.float32).astype(ml_dtypes.float8_e8m0fnu)
    assert int(ulp_distance(e8[:1], e8[1:])[0]) == 1
    # float32 vs float8: 1.06 rounds to 1.0 in e4m3 (step 0.125) -> identical
    assert compare(np.array([1.06], np.float32), e4[:1])["bit_identical"] is True


def test_ordered_int_monotone_float16():
    # every non-NaN float16 sorted by value maps to consecutive integers (both zeros -> 0)
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    x = x[~np.isnan(x)]
    o = ordered_int(x[np.argsort(x.astype(np.float64), kind="stable")])
    assert np.all(np.diff(o) <= 1) and np.all(np.diff(o) >= 0)
    assert (o[0], o[-1]) == (-0x7C00, 0x7C00) and np.count_nonzero(o == 0) == 2


def test_empty_tensor():
    r = compare(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32))
    assert r == {"bit_identical": True, "identical_fraction": 1.0, "max_abs": 0.0, "mean_abs": 0.0,
                 "max_rel": 0.0, "max_ulp": 0, "p99_ulp": 0, "cosine": 1.0, "snr_db": math.inf,
                 "nan_mismatch": 0, "inf_mismatch": 0, "count": 0, "violations": 0,
                 "ulp_dtype": "float32", "worst_index": None}


def test_shape_mismatch_and_bad_input():
    with pytest.raises(ShapeMismatch, match=r"\(2, 3\).*\(3, 2\)") as e:
        compare(np.zeros((2, 3)), np.zeros((3, 2)))
    assert isinstance(e.value, ValueError)
    with pytest.raises(TypeError):
        compare(np.zeros(2, np.complex64), np.zeros(2, np.complex64))
    acc = Accumulator(np.float32, np.float32)
    with pytest.raises(ValueError):
        acc.update(np.zeros(2, np.float32), np.zeros(3, np.float32))
    with pytest.raises(TypeError):
        acc.update(np.zeros(2, np.float64), np.zeros(2, np.float32))


def test_result_is_plain_json():
    r = compare(np.array([0.0, 1.0, np.nan]), np.array([1.0, 1.0, 2.0], np.float32))
    assert list(r) == [*FIELDS, "count", "violations", "ulp_dtype", "worst_index"]
    assert all(type(v) in (bool, int, float, str, type(None)) for v in r.values())
    back = json.loads(json.dumps(r))   # max_rel is inf here: written as Infinity
    assert back["max_rel"] == math.inf and back["count"] == 3


def test_sums_add_in_four_lanes():
    # sum |err| of [2**53, 0, 1, 1]: element i goes to lane i % 4, the lanes add as (l0 + l1) + (l2 + l3) =
    # (2**53 + 0) + (1 + 1) = 2**53 + 2, exact. Front to back it would be 2**53: 2**53 + 1 rounds back to 2**53
    # (a tie, to even) twice.
    ref = np.array([2.0**53, 0.0, 1.0, 1.0])
    r = compare(ref, np.zeros(4))
    assert r["mean_abs"] == (2.0**53 + 2.0) / 4
    # nine elements: lanes 0..3 hold [1, 2**53, 2**53], [1, 0], [1, 0], [1, 0]. l0 = (1 + 2**53) + 2**53 = 2**54
    # (1 + 2**53 is a tie, to even: 2**53), l1 = l2 = l3 = 1. (l0 + l1) = 2**54 (spacing 4 there), (l2 + l3) = 2,
    # and 2**54 + 2 is a tie again: 2**54. Front to back: 4 + 2**53 + 2**53 = 2**54 + 4.
    ref = np.array([1.0, 1, 1, 1, 2.0**53, 0, 0, 0, 2.0**53])
    assert compare(ref, np.zeros(9))["mean_abs"] == 2.0**54 / 9


def test_cosine_of_equal_vectors_is_exactly_one():
    # dot/(|a||b|) of an equal pair rounds to 1 - 2**-53 for this vector; equal values must give exactly 1.
    a = np.array([0.1, 0.7, 0.3, 1e-3, 5.0], dtype=np.float32)
    assert compare(a, a.copy())["cosine"] == 1.0


def test_worst_index_on_the_numpy_path():
    """Ints, float16 and a 2-D float32 pair: the flat C-order index of the first largest |ref - got|."""
    assert compare(np.array([[1, 5], [9, 2]]), np.array([[1, 2], [6, 2]]))["worst_index"] == 1
    h = np.array([1.0, 2.0, 4.0, 8.0], np.float16)
    assert compare(h, h + np.float16(0.5) * (h > 3))["worst_index"] == 2
    a = np.zeros((3, 4), np.float32)
    b = a.copy()
    b[2, 1] = 1e-3
    assert compare(a, b)["worst_index"] == 9 and compare(a, a.copy())["worst_index"] is None
