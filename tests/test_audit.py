"""Invariance audits on real backends: a model invariant by construction passes, a batch-dependent one is
localised to the node where the batch enters, fixed-batch exports are made dynamic or refused with the reason,
and the thread and repeat audits report per variant."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from comparator.audit.batch import audit_batch, compositions
from comparator.audit.knobs import audit_repeat, audit_threads
from comparator.errors import UsageError
from conftest import ROOT, assert_clean_error, make_model, vi
from test_bundle import run_cli


def _save(model, path):
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def elementwise(tmp_path_factory):
    """[1, 8] exported with a fixed batch of 1: Mul, Add, Tanh, every op elementwise."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8), "w")
    m = make_model([helper.make_node("Mul", ["x", "w"], ["a"], name="mul"),
                    helper.make_node("Add", ["a", "x"], ["b"], name="add"),
                    helper.make_node("Tanh", ["b"], ["y"], name="tanh")],
                   [vi("x", T.FLOAT, [1, 8])], [vi("y", T.FLOAT, [1, 8])], [w])
    return _save(m, tmp_path_factory.mktemp("audit") / "elementwise.onnx")


@pytest.fixture(scope="module")
def centred(tmp_path_factory):
    """y = relu(x - mean over the batch): every sample depends on its neighbours from node `sub`."""
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    m = make_model([helper.make_node("Relu", ["x"], ["r"], name="relu_in"),
                    helper.make_node("ReduceMean", ["r", "axes"], ["m"], name="mean", keepdims=1),
                    helper.make_node("Sub", ["r", "m"], ["c"], name="sub"),
                    helper.make_node("Relu", ["c"], ["y"], name="relu")],
                   [vi("x", T.FLOAT, ["N", 6])], [vi("y", T.FLOAT, ["N", 6])], [axes], opset=18)
    return _save(m, tmp_path_factory.mktemp("audit") / "centred.onnx")


def test_compositions_put_the_target_first_middle_and_last_among_two_neighbour_sets():
    batches = compositions([1, 2, 7], pool=14)
    assert [(c.size, c.position) for c in batches] == [(1, 0), (2, 0), (2, 1), (2, 1), (7, 0), (7, 6), (7, 3)]
    for c in batches:
        members = c.members()
        assert len(members) == c.size and members[c.position] == 0 and members.count(0) == 1
    a, b = batches[4], batches[6]
    assert set(a.neighbours) != set(b.neighbours)  # the middle position sees other neighbours


def test_an_elementwise_model_is_batch_invariant_on_every_backend(elementwise, started_workers):
    result = audit_batch(elementwise, ["ort", "ort:opt=disable", "ref", "torch"], sizes=(1, 2, 7))
    # one worker per variant served all three sizes: each framework imported once
    assert sorted(started_workers) == ["ort", "ort:opt=disable", "ref", "torch"]
    assert result.rewritten and result.exported_batch == 1
    assert result.tensors == 3 and result.exit_code == 0
    for name, v in result.variants.items():
        assert v["status"] == "ok" and v["invariant"], (name, v)
        assert v["outputs_max_abs"] == 0 and v["first"] is None
    assert all(line.endswith("bit-identical in every batch") for line in result.lines()[1:])


def test_a_reduction_across_the_batch_is_localised_to_the_node_it_enters(centred):
    result = audit_batch(centred, ["ort", "ref"], sizes=(1, 3))
    assert not result.rewritten and "m" in result.batch_wide  # [1, 6] whatever the batch: not per sample
    for name, v in result.variants.items():
        assert v["status"] == "ok" and not v["invariant"], name
        assert v["first"]["tensor"] == "c" and v["first"]["node"] == "sub", v["first"]
        assert v["first"]["batch_wide_inputs"] == ["m"]
        assert v["outputs_max_abs"] > 0
        # the Relu before the reduction is per sample and unchanged
        assert all(row["first"] == "c" for row in v["batches"])
    text = "\n".join(result.lines())
    assert "NOT batch-invariant" in text and "its batch-wide inputs: m" in text


def test_a_fixed_batch_export_runs_at_other_sizes_after_its_reshapes_copy_the_batch():
    result = audit_batch(ROOT / "models" / "transformer.onnx", ["ort"], sizes=(1, 2))
    assert result.rewritten and result.exported_batch == 1
    assert result.variants["ort"]["status"] == "ok" and result.tensors > 20


def test_a_reshape_that_pins_the_batch_is_refused_with_its_node(tmp_path):
    shape = numpy_helper.from_array(np.array([2, -1], np.int64), "shape")
    m = make_model([helper.make_node("Reshape", ["x", "shape"], ["r"], name="pin"),
                    helper.make_node("Relu", ["r"], ["y"], name="relu")],
                   [vi("x", T.FLOAT, [1, 8])], [vi("y", T.FLOAT, [2, 4])], [shape])
    path = _save(m, tmp_path / "pinned.onnx")
    with pytest.raises(UsageError, match="cannot run at other batch sizes"):
        audit_batch(path, ["ort"], sizes=(1, 2))
    code, _, err = run_cli("audit", "batch", path, "-b", "ort", "--sizes", "1,2")
    assert code == 2
    assert_clean_error(err, "cannot run at other batch sizes")


def test_the_cli_writes_json_and_refuses_bad_sizes(elementwise, tmp_path):
    out = tmp_path / "a.json"
    code, text, err = run_cli("audit", "batch", elementwise, "-b", "ort", "--sizes", "1,4", "--json", out)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["audit"] == "batch" and data["variants"]["ort"]["invariant"] is True
    assert [c["size"] for c in data["compositions"]] == [1, 4, 4, 4]
    assert "batch-invariant" in text
    code, _, err = run_cli("audit", "batch", elementwise, "--sizes", "0,2")
    assert code == 2
    assert_clean_error(err, "--sizes 0,2")


def test_thread_audit_compares_each_count_with_the_first(models):
    result = audit_threads(models.cnn, ["ort"], threads=(1, 2))
    v = result.variants["ort"]
    assert v["status"] == "ok" and [r["threads"] for r in v["settings"]] == [2]
    row = v["settings"][0]
    assert row["identical"] == (row["first_divergence"] is None) and v["invariant"] == row["identical"]
    with pytest.raises(UsageError, match="no threads option"):
        audit_threads(models.cnn, ["ref"], threads=(1, 2))
    with pytest.raises(UsageError, match="two or more thread counts"):
        audit_threads(models.cnn, ["ort"], threads=(2,))


def test_repeat_audit_counts_distinct_outputs(models):
    result = audit_repeat(models.small, ["ort", "ref"], runs=2)
    for v in result.variants.values():
        assert v["status"] == "ok" and v["runs"] == 3 and v["distinct_outputs"] >= 1  # 2 sessions, 1 rerun
        assert v["invariant"] == (v["distinct_outputs"] == 1 and v["first_varying"] is None)
    assert result.to_dict()["audit"] == "repeat"


# -- advice ----------------------------------------------------------------------------------------------------------

def _sweep_report(classes, pair_abs, deviations, latencies):
    """A report of a sweep against the float64 oracle with the given classes of final outputs, pairwise max abs
    between them, each variant's max abs from the oracle and its median latency."""
    from comparator.result import Report, TensorReport, VariantReport

    names = list(deviations)
    ref = "ref:dtype=float64"
    out = TensorReport("y", "Gemm", "gemm", 0, [1, 4], "float32", True)
    for n, dev in deviations.items():
        out.metrics[n] = {"max_abs": dev, "max_ulp": int(dev * 1e8), "bit_identical": dev == 0,
                          "snr_db": -20 * math.log10(dev)}
    variants = [VariantReport(ref, "ref", {"dtype": "float64"}, "ok")] + [
        VariantReport(n, n.split(":")[0], {}, "ok", timings={"latency": {"runs": 5, "median_s": latencies[n]}})
        for n in names]
    everyone = [ref] + names
    absd = [[0.0 if a == b else pair_abs.get(frozenset((a, b)), 1.0) for b in everyone] for a in everyone]
    ulp = [[0 if a == b else int(x * 1e8) for b, x in zip(everyone, row)] for a, row in zip(everyone, absd)]
    return Report(model={"path": "m.onnx", "sha256": "0" * 64, "opsets": {}, "notes": []}, reference=ref,
                  tolerance={"atol": 1e-5, "rtol": 1e-5, "max_ulp": None}, variants=variants, tensors=[out],
                  equivalence_classes=[[ref]] + classes,
                  pairwise={"variants": everyone, "max_ulp": ulp, "max_abs": absd})


def test_advice_on_a_sweep_with_known_classes_returns_the_known_answer():
    from comparator.audit.advise import _advice, _targets
    from comparator.variant import Variant

    sweep = [Variant.parse(s) for s in ("ort", "ort:opt=disable", "torch", "torch:threads=1")]
    report = _sweep_report(
        classes=[["ort:opt=disable", "torch:threads=1"], ["ort"], ["torch"]],
        pair_abs={frozenset(("ort", "torch")): 2e-7},
        deviations={"ort": 3e-7, "ort:opt=disable": 1e-7, "torch": 2e-7, "torch:threads=1": 1e-7},
        latencies={"ort": 1.0, "ort:opt=disable": 2.0, "torch": 1.5, "torch:threads=1": 3.0})
    advice = _advice(report, sweep, _targets(sweep, None), None, None)
    best = advice.choices[0]
    assert best["variants"] == ["ort:opt=disable", "torch:threads=1"] and best["agreement"] == "bit-identical"
    assert best["latency_ratio"] == 2.0  # torch:threads=1 is 2x torch's default, ort:opt=disable 2x ort's
    assert [c["agrees"] for c in advice.choices].count(True) == 1 and advice.exit_code == 0
    assert {(k["backend"], k["knob"], k["splits"], k["pairs"]) for k in advice.knobs} == {
        ("ort", "opt", 1, 1), ("torch", "threads", 1, 1)}
    # With a tolerance the defaults agree too (2e-7 apart), and rank after the bit-identical choice.
    lenient = _advice(report, sweep, _targets(sweep, None), 5e-7, None)
    assert [c["agreement"] for c in lenient.choices[:2]] == ["bit-identical", "within tolerance"]
    assert lenient.choices[1]["variants"] == ["ort", "torch"]
    # Nothing agrees without the disabled optimisations: the advice says so and exits 1.
    narrow = [v for v in sweep if str(v) != "ort:opt=disable"]
    none = _advice(report, narrow, _targets(narrow, None), None, None)
    assert not any(c["agrees"] for c in none.choices) and none.exit_code == 1
    assert any(line.startswith("no setting that ran makes ort, torch agree") for line in none.lines())


def test_advise_runs_a_sweep_against_the_oracle_and_recommends_only_what_ran(models, tmp_path):
    out = tmp_path / "advice.json"
    code, text, err = run_cli("advise", models.digits, "-b", "ort:opt=disable|all", "--time", "2", "--inputs",
                              models.digits_npz, "--json", out)
    assert code == 0, err
    data = json.loads(out.read_text())
    ran = {s["variant"] for s in data["settings"] if s["status"] == "ok"}
    assert ran == {"ort:opt=disable", "ort:opt=all"} and data["targets"] == ["ort"]
    assert all(set(c["variants"]) <= ran for c in data["choices"])
    assert all(s["latency_s"] > 0 and s["oracle_max_abs"] is not None for s in data["settings"])
    assert "recommended: ort:opt=" in text and "float64 executions (ref and torch) agree" in text
    code, _, err = run_cli("advise", models.digits, "-b", "ort", "--target", "torch")
    assert code == 2
    assert_clean_error(err, "--target torch: no variant of the sweep matches it")


def test_advise_from_a_saved_sweep_report(models, tmp_path):
    sweep = tmp_path / "sweep.json"
    code, _, err = run_cli("compare", models.digits, "-b", "ort:opt=disable|all", "--oracle", "--time", "2", "--tap",
                           "outputs", "--inputs", models.digits_npz, "--json", sweep, "--table", "none")
    assert code == 0, err
    code, text, err = run_cli("advise", "--from", sweep, "--json", tmp_path / "a.json")
    assert code == 0, err
    data = json.loads((tmp_path / "a.json").read_text())
    assert {s["variant"] for s in data["settings"]} == {"ort:opt=disable", "ort:opt=all"}  # not the oracles
    assert "recommended: ort:opt=" in text
    plain = tmp_path / "plain.json"
    code, _, err = run_cli("compare", models.digits, "-b", "ort,ort:opt=disable", "--tap", "outputs", "--json", plain,
                           "--table", "none")
    assert code == 0, err
    code, _, err = run_cli("advise", "--from", plain)
    assert code == 2
    assert_clean_error(err, "not made against the float64 oracle")


def test_a_scalar_computed_across_the_batch_is_named_where_it_enters(tmp_path):
    """A scalar summed over the whole batch is not per sample: it is batch-wide, and named where it enters."""
    m = make_model([helper.make_node("ReduceSum", ["x"], ["t"], name="total", keepdims=1),
                    helper.make_node("Squeeze", ["t"], ["s"], name="scalar"),
                    helper.make_node("Mul", ["x", "s"], ["y"], name="scale")],
                   [vi("x", T.FLOAT, ["N", 4])], [vi("y", T.FLOAT, ["N", 4])], opset=18)
    result = audit_batch(_save(m, tmp_path / "scalar.onnx"), ["ort"], sizes=(1, 2))
    first = result.variants["ort"]["first"]
    assert result.batch_wide == ["t", "s"] and first["node"] == "scale" and first["batch_wide_inputs"] == ["s"]
