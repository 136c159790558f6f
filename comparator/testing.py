"""Gate numerics from your own pytest suite.

    from comparator.testing import assert_agrees, assert_matches_baseline

    def test_backends_agree():
        assert_agrees("model.onnx", ["ort", "ort:opt=disable", "ref"], inputs="val.npz")

    def test_release_matches_baseline():
        assert_matches_baseline("model.onnx", "baseline.icmp", policy="policy.toml")

Both raise AssertionError with a readable message (per variant: the rule broken, the first divergence, the
worst tensor and its numbers) and return the GateResult when the gate passes. Configuration errors (a bad
policy, a corrupt bundle) raise comparator.errors.InfercmpError subclasses instead, so that a broken test setup
is not mistaken for a numerical regression.
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Mapping, Sequence

import numpy as np

from .gate import check as gate
from .gate.bundle import Bundle
from .measure.metrics import Tolerance
from .graph.model import Model
from .gate.policy import Policy

__all__ = ["assert_agrees", "assert_matches_baseline"]


def _raise_unless_passed(result: gate.GateResult) -> gate.GateResult:
    __tracebackhide__ = True  # pytest shows the caller's line, not these helpers
    if not result.passed:
        raise AssertionError("\n".join(result.lines()))
    return result


def assert_agrees(model: str | Path | Model, variants: Sequence[str] | str,
                  inputs: str | Path | Mapping[str, np.ndarray] | None = None, tolerance: Tolerance | None = None,
                  policy: Policy | str | Path | None = None, **options: object) -> gate.GateResult:
    """Every variant must agree with the first one (the reference) on `model`, every tensor tapped.

    tolerance: for every final output (default: atol = rtol = 1e-5), or policy: a policy file or Policy
    (per-tensor tolerances, cosine floors, label budget, required variants); not both.
    options: shapes, seed, samples, labels_key, timeout, jobs, as in comparator.gate.agree."""
    __tracebackhide__ = True
    result = gate.agree(model, variants, inputs, tolerance, policy, **options)  # type: ignore[arg-type]
    return _raise_unless_passed(result)


def assert_matches_baseline(model: str | Path | Model, baseline: str | Path | Bundle,
                            policy: Policy | str | Path | None = None, **options: object) -> gate.GateResult:
    """`model`, run now on the baseline bundle's variants and inputs, must pass the gate against it.

    options: variants, timeout, jobs, as in comparator.gate.check."""
    __tracebackhide__ = True
    return _raise_unless_passed(gate.check(model, baseline, policy, **options))  # type: ignore[arg-type]
