"""The conformance runner: the ONNX node suite through real backends, and its comparison rule."""
from __future__ import annotations

import ml_dtypes
import numpy as np

from comparator.run import conformance
from comparator.variant import Variant


def test_ort_and_ref_pass_relu_and_softmax_cases():
    for backend in ("ort", "ref"):
        result = conformance.run(Variant.parse(backend), ops=["Relu", "Softmax"])
        counts = result.counts()
        assert len(result.cases) == 8  # 1 Relu and 7 Softmax cases in onnx 1.23's suite
        assert counts["passed"] == 8, result.cases
        assert set(result.per_op()) == {"Relu", "Softmax"}
        assert result.to_dict()["total"] == 8


def test_an_op_the_backend_lacks_is_counted_not_fatal():
    # ORT's CPU provider does not implement ImageDecoder: those cases are reported with a reason, never a crash.
    result = conformance.run(Variant.parse("ort"), ops=["ImageDecoder"])
    assert result.cases and all(c["status"] in ("unsupported", "error") for c in result.cases)
    assert all(c["detail"] for c in result.cases)


def test_check_rule():
    f = np.array([1.0, 2.0], np.float32)
    assert conformance._check(f, f.copy(), 1e-3, 1e-7) is None
    assert "dtype" in conformance._check(f, f.astype(np.float64), 1e-3, 1e-7)
    assert "shape" in conformance._check(f, f[:1], 1e-3, 1e-7)
    assert "values differ" in conformance._check(f, f + 1, 1e-3, 1e-7)
    # bfloat16: two ULPs (2**-6 relative) allowed, as onnx's own runner does; 1.0 -> 1.015625 is 2 ULPs.
    one = np.array([1.0], ml_dtypes.bfloat16)
    assert conformance._check(one, np.array([1.015625], ml_dtypes.bfloat16), 1e-3, 0) is None
    assert conformance._check(one, np.array([1.0625], ml_dtypes.bfloat16), 1e-3, 0) is not None
    assert conformance._check([f, f], [f, f.copy()], 1e-3, 1e-7) is None
    assert "sequence" in conformance._check([f, f], [f], 1e-3, 1e-7)
