"""Origin vs propagation and determinism, on a model whose only inexact op is one transcendental.

Relu, Mul by a power of two, MaxPool, Sub and Transpose are correctly rounded in IEEE float32, so every backend
must agree bit for bit on them; Exp is implemented differently by every library (ORT's MLAS, NumPy, ATen), so it
is where results first diverge, the only node with local error, and everything after it only propagates.
"""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import comparator
from comparator.graph import isolate

BEFORE = ["relu_out", "scaled", "pooled", "centred"]
AFTER = ["doubled", "swapped", "y"]


def build(path) -> str:
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    half = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half")
    quarter = numpy_helper.from_array(np.array(0.25, dtype=np.float32), "quarter")
    nodes = [
        helper.make_node("Relu", ["x"], ["relu_out"], name="relu"),
        helper.make_node("Mul", ["relu_out", "half"], ["scaled"], name="scale"),
        helper.make_node("MaxPool", ["scaled"], ["pooled"], name="pool", kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Sub", ["pooled", "quarter"], ["centred"], name="centre"),
        helper.make_node("Exp", ["centred"], ["expd"], name="exp"),
        helper.make_node("Mul", ["expd", "two"], ["doubled"], name="double"),
        helper.make_node("Transpose", ["doubled"], ["swapped"], name="swap", perm=[0, 1, 3, 2]),
        helper.make_node("Relu", ["swapped"], ["y"], name="relu_out_node"),
    ]
    graph = helper.make_graph(nodes, "exact_then_exp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 33, 33])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])],
                              initializer=[two, half, quarter])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    out = str(path / "exact_then_exp.onnx")
    onnx.save(model, out)
    return out


def _has(backend: str) -> bool:
    return bool(importlib.util.find_spec(f"comparator.backends.{backend}")) and bool(importlib.util.find_spec(backend))


VARIANTS = ["ort", "ref"] + (["torch"] if _has("torch") else [])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = build(tmp_path_factory.mktemp("iso"))
    return comparator.compare(path, VARIANTS, isolate=True, repeat=2, seed=3)


def test_every_variant_ran(report):
    assert [v.status for v in report.variants] == ["ok"] * len(VARIANTS), [v.error for v in report.variants]


def test_correctly_rounded_ops_are_bit_identical_before_the_transcendental(report):
    for name in BEFORE:
        t = report.tensor(name)
        for variant, m in t.metrics.items():
            assert m["bit_identical"], (name, variant, m)


def test_exp_is_the_first_divergence_and_the_top_origin(report):
    for variant in VARIANTS[1:]:
        assert report.first_divergence[variant] == "expd", variant
        assert report.origins[variant], variant
        assert report.origins[variant][0]["tensor"] == "expd"
        assert report.origins[variant][0]["op_type"] == "Exp"
        # Only Exp adds error of its own: Mul by two and Transpose are exact on the reference's inputs.
        assert [o["tensor"] for o in report.origins[variant]] == ["expd"]


def test_tensors_after_it_are_propagated(report):
    for variant in VARIANTS[1:]:
        assert report.tensor("expd").role(variant) == "origin"
        for name in AFTER:
            t = report.tensor(name)
            assert not t.metrics[variant]["bit_identical"], (name, variant)
            assert t.role(variant) == "propagated", (name, variant)
        for name in BEFORE:
            assert report.tensor(name).role(variant) == "identical"


def test_deterministic_cpu_variants_give_one_distinct_output(report):
    for variant in VARIANTS:
        d = report.determinism[variant]
        assert d["runs"] == 3  # two fresh sessions and the first session run again
        assert d["distinct_outputs"] == 1
        assert d["suggested_tolerance"] is None
        assert report.tensor("y").spread[variant] == {"max_abs": 0.0, "max_ulp": 0}


def test_per_tensor_classes_and_pairwise(report):
    assert [sorted(c) for c in report.tensor("pooled").classes] == [sorted(VARIANTS)]
    assert len(report.tensor("expd").classes) >= 2
    pw = report.pairwise
    assert pw["variants"] == VARIANTS
    n = len(VARIANTS)
    assert all(pw["max_ulp"][i][i] == 0 for i in range(n))
    assert all(pw["max_ulp"][i][j] == pw["max_ulp"][j][i] for i in range(n) for j in range(n))
    assert pw["max_ulp"][0][1] > 0  # ORT's and NumPy's exp differ in the last bits


def test_isolated_model_feeds_every_typed_intermediate(tmp_path):
    from comparator.graph import model as model_mod

    model = model_mod.load(build(tmp_path))
    recorded = {t.name: t.shape for t in model.tensors if t.shape is not None}
    proto, fed, unfed = isolate.isolated_model(model, recorded)
    assert fed == ["relu_out", "scaled", "pooled", "centred", "expd", "doubled", "swapped"]
    assert unfed == []
    inputs = [i.name for i in proto.graph.input]
    assert "expd" + isolate.FED in inputs
    exp_node = next(n for n in proto.graph.node if n.op_type == "Exp")
    assert list(exp_node.input) == ["centred" + isolate.FED]
    onnx.checker.check_model(proto)


def test_a_fed_input_takes_the_recorded_rank_where_shape_inference_disagrees_or_is_silent(tmp_path):
    """A graph input needs a shape (the ONNX checker says so): where shape inference gave none, or one the runtime
    did not produce (the reference recorded another rank), the fed input gets the recorded rank with dynamic
    dims; a tensor the reference did not record is not fed."""
    from comparator.graph import model as model_mod

    model = model_mod.load(build(tmp_path))
    recorded = {t.name: t.shape for t in model.tensors if t.shape is not None}
    recorded["scaled"] = (1, 4, 33, 33, 1)  # another rank than inferred
    del recorded["pooled"]  # not recorded
    shapeless = next(vi for vi in model.proto.graph.value_info if vi.name == "centred")
    shapeless.type.tensor_type.ClearField("shape")
    proto, fed, unfed = isolate.isolated_model(model, recorded)
    assert "pooled" in unfed and "pooled" not in fed and "scaled" in fed and "centred" in fed
    inputs = {i.name: i.type.tensor_type.shape for i in proto.graph.input}
    scaled, centred = inputs["scaled" + isolate.FED], inputs["centred" + isolate.FED]
    assert len(scaled.dim) == 5 and not any(d.HasField("dim_value") or d.HasField("dim_param") for d in scaled.dim)
    assert len(centred.dim) == 4 and not any(d.HasField("dim_value") for d in centred.dim)
    assert [d.dim_value for d in inputs["relu_out" + isolate.FED].dim] == [1, 4, 33, 33]  # inferred, and it fits
    onnx.checker.check_model(proto)


def test_isolate_needs_every_tensor_tapped(tmp_path, cli):
    """--isolate feeds every node the reference's values of its inputs: a plan that taps fewer is refused before
    anything runs (it crashed when a fed tensor was not tapped)."""
    for tap in ("outputs", "relu_out"):
        code, _, err = cli("compare", build(tmp_path), "-b", "ort,ref", "--isolate", "--tap", tap)
        assert code == 2 and "--isolate feeds every node the reference's values of its inputs" in err, err
        assert "Traceback" not in err


def test_origins_are_ranked_on_the_tensors_own_scale():
    """A MatMul whose outputs near zero are 524,288 ULP off at an absolute error of 5e-6 (SNR 130 dB) does not
    outrank a Softmax that loses precision everywhere (SNR 60 dB, 40 ULP); max ULP is kept beside."""
    from comparator.measure import origins
    from comparator.result import TensorReport

    def local(snr, ulp, abs_, rel):
        return {"bit_identical": False, "identical_fraction": 0.1, "max_abs": abs_, "mean_abs": abs_ / 10,
                "max_rel": rel, "max_ulp": ulp, "p99_ulp": ulp // 2, "cosine": 1.0, "snr_db": snr,
                "nan_mismatch": 0, "inf_mismatch": 0, "count": 64, "violations": 0, "ulp_dtype": "float32"}

    tensors = [TensorReport("mm", "MatMul", "n0", 0, [64], "float32", False,
                            local={"v": local(130.0, 524_288, 5e-6, 3.0)}),
               TensorReport("sm", "Softmax", "n1", 1, [64], "float32", True, local={"v": local(60.0, 40, 1e-3, 1e-3)}),
               TensorReport("id", "Identity", "n2", 2, [64], "float32", True,
                            local={"v": dict(local(math.inf, 0, 0.0, 0.0), bit_identical=True)})]
    ranked = origins.rank(tensors, ["v"])["v"]
    assert [o["tensor"] for o in ranked] == ["sm", "mm"]
    assert ranked[1]["max_ulp"] == 524_288 and ranked[0]["snr_db"] == 60.0
