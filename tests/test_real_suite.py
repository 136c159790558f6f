"""Every real model of models/real.py through every backend, against the float64 oracle that checks itself.

One comparison per model (all variants in one `comparator.compare` call, so each model is loaded once), then per
variant: it agrees with ref:dtype=float64 within the model's atol, or it is unsupported and its message names the
op or node recorded in tests/real_models_table.py, or it deviates exactly as recorded there; nothing crashes, times
out or fails; and the two float64 oracles agree on every tapped tensor. The fetched models skip, saying why, only
when pip cannot download their wheels.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import real_models_table as table
from real_models_table import TABLE, VARIANTS

pytestmark = pytest.mark.real_models

real = table.load_real()


@pytest.fixture(scope="session")
def real_cache() -> Path:
    path = real.default_cache()
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_each_atol_is_ten_to_twenty_times_what_was_measured() -> None:
    for name, entry in TABLE.items():
        assert 10 * entry.measured <= entry.atol <= 20 * entry.measured, name
        assert entry.worst in VARIANTS and entry.outcome(entry.worst).outcome == "agrees", name
        assert entry.tap in ("all", "outputs") and set(entry.expect) <= set(VARIANTS), name
    assert set(TABLE) == set(real.MEMBERS) | set(real.LIGHT)


@pytest.mark.parametrize("name", list(TABLE))
def test_every_backend_agrees_with_the_oracle_or_says_what_it_cannot_run(name: str, real_cache: Path,
                                                                          tmp_path: Path) -> None:
    entry = TABLE[name]
    path = table.model_or_skip(name, real_cache, tmp_path)
    report = table.run(name, path)

    for oracle in table.ORACLES:
        v = report.variant(oracle)
        assert v.status == "ok", f"{name}: the oracle {oracle} did not run ({v.status}): {v.error}"
    found = {d["tensor"]: d for d in report.oracle["disagreements"]}
    assert set(found) == set(entry.oracle_disagreements), \
        f"{name}: the float64 oracles disagree on {list(found.values())}"

    problems = []
    for variant in VARIANTS:
        want, got = entry.outcome(variant), table.observe(report, variant)
        if got.outcome != want.outcome:
            problems.append(f"{variant}: expected {want.outcome}, got {got.outcome} "
                            f"(max abs {got.max_abs:.3g} against atol {entry.atol:g}) {got.error}")
        elif want.outcome == "unsupported" and want.names not in got.error:
            problems.append(f"{variant}: unsupported, but the message does not name {want.names}: {got.error}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_an_outcome_is_read_from_the_report() -> None:
    def report(status: str, error: str = "", **metrics: float) -> SimpleNamespace:
        m = {"max_abs": 0.0, "max_rel": 0.0, "violations": 0, "nan_mismatch": 0, "inf_mismatch": 0, **metrics}
        return SimpleNamespace(variant=lambda _: SimpleNamespace(status=status, error=error),
                               tensors=[SimpleNamespace(is_output=True, metrics={"tvm": m}),
                                        SimpleNamespace(is_output=False, metrics={"tvm": {"violations": 9}})])

    assert table.observe(report("ok", max_abs=1e-6), "tvm") == table.Observed("agrees", 1e-6, 0.0)
    assert table.observe(report("ok", max_abs=1.0, violations=3), "tvm").outcome == "deviates"
    assert table.observe(report("crashed", "worker died"), "tvm") == table.Observed("crashed", error="worker died")
    tvm = ("TVM's Relax ONNX frontend has no converter for op LSTM (opset 16) (nodes a/LSTM, b/LSTM, c/LSTM and 1 "
           "more): the tvm backend cannot run this model")
    assert table.unsupported_at(tvm) == "a/LSTM (LSTM) and 3 more"
    assert table.unsupported_at("op Foo (opset 3) (node n1): no kernel") == "n1 (Foo)"
