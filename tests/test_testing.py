"""comparator.testing.assert_agrees: the final outputs only (one untapped run per variant) or every tensor, and
the result and the failure message say which it did."""
import json

import pytest

from comparator import Tolerance
from conftest import MODELS


def strict(obj):
    return json.loads(json.dumps(obj, allow_nan=False))


def test_assert_agrees_taps_outputs_or_everything():
    from comparator.testing import Agreement, assert_agrees

    fast = assert_agrees(MODELS / "cnn.onnx", ["ort", "ort:opt=disable"], tolerance=Tolerance(atol=1e-4, rtol=1e-3),
                         tap="outputs")
    every = assert_agrees(MODELS / "cnn.onnx", ["ort", "ort:opt=disable"], tolerance=Tolerance(atol=1e-4, rtol=1e-3))
    assert isinstance(fast, Agreement) and fast.passed and every.passed
    assert fast.tap == "outputs" and fast.tapped == ["probs"]
    assert every.tap == "all" and len(every.tapped) > 10 and "probs" in every.tapped
    assert fast.lines()[0].startswith("tapped: final outputs only (tap='outputs', 1 tensor)")
    assert every.lines()[0] == f"tapped: every tensor (tap='all', {len(every.tapped)} tensors)"
    # The untapped run alone: no tapped copy ran.
    assert all("tapped" not in v.timings for v in fast.reports[0].variants)
    assert fast.to_dict()["tap"] == "outputs" and strict(fast.to_dict())["tapped"] == ["probs"]


def test_assert_agrees_failure_says_what_was_tapped():
    from comparator.testing import assert_agrees

    with pytest.raises(AssertionError) as info:
        assert_agrees(MODELS / "cnn.onnx", ["ort", "ref:dtype=float64"], tolerance=Tolerance(atol=0, rtol=0),
                      tap="outputs")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("tapped: final outputs only (tap='outputs', 1 tensor); tap='all' compares every")
    assert "GATE FAIL" in lines[-1]


def test_assert_agrees_argument_types():
    from comparator.testing import assert_agrees

    with pytest.raises(TypeError, match="assert_agrees\\(tolerance=0.001\\): pass a comparator.Tolerance"):
        assert_agrees(MODELS / "cnn.onnx", ["ort"], tolerance=1e-3)
    with pytest.raises(TypeError, match="assert_agrees\\(tap=3\\): pass \"outputs\""):
        assert_agrees(MODELS / "cnn.onnx", ["ort"], tap=3)
