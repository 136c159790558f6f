"""Invariance audits on real backends: a model invariant by construction passes, a batch-dependent one is
localised to the node where the batch enters, fixed-batch exports are made dynamic or refused with the reason,
and the thread and repeat audits report per variant."""
from __future__ import annotations

import json

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


def test_an_elementwise_model_is_batch_invariant_on_every_backend(elementwise):
    result = audit_batch(elementwise, ["ort", "ort:opt=disable", "ref", "torch"], sizes=(1, 2, 7))
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
