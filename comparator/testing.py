"""Gate numerics from your own pytest suite.

    from comparator.testing import assert_agrees, assert_matches_baseline

    def test_backends_agree():
        assert_agrees("model.onnx", ["ort", "ort:opt=disable", "ref"], inputs="val.npz")

    def test_outputs_agree_fast():
        assert_agrees("model.onnx", ["ort", "ref"], tap="outputs")   # one run per variant, final outputs only

    def test_release_matches_baseline():
        assert_matches_baseline("model.onnx", "baseline.icmp", policy="policy.toml")

Both raise AssertionError with a readable message (per variant: the rule broken, the first divergence, the
worst tensor and its numbers) and return the GateResult when the gate passes; `assert_agrees` returns an
`Agreement` (a GateResult that also says what was tapped), and its message starts with that. Configuration
errors (a bad policy, a corrupt bundle, an argument of the wrong type) raise comparator.errors.InfercmpError
subclasses or TypeError instead, so that a broken test setup is not mistaken for a numerical regression.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from .arguments import check_inputs, check_model, check_tolerance, check_variants
from .errors import UsageError
from .gate import check as gate
from .gate.bundle import Bundle
from .gate.verdict import GateResult
from .measure.metrics import Tolerance
from .graph.model import Model
from .gate.policy import Policy

__all__ = ["Agreement", "assert_agrees", "assert_matches_baseline"]


@dataclass
class Agreement(GateResult):
    """The GateResult of `assert_agrees`, and what it compared: `tap` as given ("outputs", "all", or names and
    globs) and `tapped`, the names of the tensors compared per variant (the final outputs alone for "outputs")."""

    tap: str | list[str] = "all"
    tapped: list[str] = dataclasses.field(default_factory=list)

    @property
    def what(self) -> str:
        """One line: which tensors were compared."""
        n = len(self.tapped)
        count = f"{n} tensor{'s' * (n != 1)}"
        if self.tap == "outputs":
            return (f"tapped: final outputs only (tap='outputs', {count}); tap='all' compares every "
                    "intermediate tensor too and names where the variants first diverge")
        if self.tap == "all":
            return f"tapped: every tensor (tap='all', {count})"
        return f"tapped: {count} matching {self.tap!r} (and the final outputs)"

    def lines(self) -> list[str]:
        """The gate's verdict lines, after the line that says what was tapped."""
        return [self.what, *super().lines()]

    def to_dict(self) -> dict[str, Any]:
        """GateResult.to_dict with `tap` and `tapped`."""
        return dict(super().to_dict(), tap=self.tap, tapped=self.tapped)


def _raise_unless_passed(result: GateResult) -> GateResult:
    __tracebackhide__ = True  # pytest shows the caller's line, not these helpers
    if not result.passed:
        raise AssertionError("\n".join(result.lines()))
    return result


def assert_agrees(model: str | Path | Model, variants: Sequence[str] | str,
                  inputs: str | Path | Mapping[str, np.ndarray] | None = None, tolerance: Tolerance | None = None,
                  policy: Policy | str | Path | None = None, *, tap: str | Sequence[str] = "all",
                  **options: object) -> Agreement:
    """Every variant must agree with the first one (the reference) on `model`.

    tap: "all" (default: every tensor is tapped, so a failure names the first tensor where a variant diverges),
    "fused" (each variant taps what its own optimized graph computes, so tapping changes nothing it runs; a tensor a
    variant fused away is not gated for it), "outputs" (the final outputs only: one untapped run per variant,
    faster on a big model), or tensor names and
    globs (those tensors and the final outputs). The result's `tap`/`tapped` and the first line of the failure
    message say which it did.
    tolerance: for every final output (default: atol = rtol = 1e-5), or policy: a policy file or Policy
    (per-tensor tolerances, cosine floors, label budget, required variants); not both.
    options: shapes, seed, samples, labels_key, timeout, jobs, as in comparator.gate.agree."""
    __tracebackhide__ = True
    func = "assert_agrees"
    check_model(func, model)
    check_variants(func, variants)
    check_inputs(func, inputs)
    check_tolerance(func, tolerance)
    if not (isinstance(tap, str) or (isinstance(tap, (list, tuple)) and all(isinstance(t, str) for t in tap))):
        raise TypeError(f"{func}(tap={tap!r}): pass \"outputs\", \"all\", or tensor names and globs (a str or a "
                        f"list of str), not {type(tap).__name__}")
    spec: str | list[str] = tap.strip() if isinstance(tap, str) else list(tap)
    if spec in (["outputs"], ["all"]):
        spec = spec[0]
    if not spec:
        raise UsageError(f"{func}(tap={tap!r}): nothing to tap", "pass \"outputs\", \"all\", or tensor names and globs")
    result = gate.agree(model, variants, inputs, tolerance, policy, tap_spec=spec, **options)  # type: ignore[arg-type]
    tapped = [t.name for t in result.reports[0].tensors] if result.reports else []
    agreement = Agreement(**{f.name: getattr(result, f.name) for f in dataclasses.fields(result)}, tap=spec,
                          tapped=tapped)
    return _raise_unless_passed(agreement)  # type: ignore[return-value]


def assert_matches_baseline(model: str | Path | Model, baseline: str | Path | Bundle,
                            policy: Policy | str | Path | None = None, **options: object) -> GateResult:
    """`model`, run now on the baseline bundle's variants and inputs, must pass the gate against it.

    options: variants, timeout, jobs, as in comparator.gate.check."""
    __tracebackhide__ = True
    check_model("assert_matches_baseline", model)
    if not isinstance(baseline, (str, Path, Bundle)):
        raise TypeError(f"assert_matches_baseline(baseline={baseline!r}): pass the path of an .icmp bundle "
                        f"(infercmp capture -o) or a comparator.gate.bundle.Bundle, not {type(baseline).__name__}")
    return _raise_unless_passed(gate.check(model, baseline, policy, **options))  # type: ignore[arg-type]
