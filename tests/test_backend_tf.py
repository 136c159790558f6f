"""The TensorFlow backend: its modes (graph and XLA on the layout-sensitive ops), the error paths, option validation
and environment knobs, and compare() on the CNN across modes (with provenance read back). Its ops are tested with
the torch executor's in test_ops.py."""
import importlib.util
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

import comparator
from comparator.backends import get as get_backend
from comparator.backends.options import resolve
from comparator.errors import BackendError, UnsupportedError, UsageError
from conftest import ROOT, const, vi
from onnx_cases import check, make_model, open_session
from onnx_cases import options as case_options

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                                reason="tensorflow is not installed")

BACKEND = get_backend("tf")
MODES = ("eager", "graph", "xla")
RNG = np.random.default_rng(0)


def options(**raw):
    return case_options("tf", **raw)


def open_tf(model, **raw):
    return open_session("tf", model, **raw)


def weights(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


X = weights(2, 4, 9, 11)


def test_layout_ops_agree_in_graph_and_xla_modes():
    """Conv, BN, pooling and Resize in one model, traced by tf.function and compiled by XLA."""
    inits = [const("W", weights(6, 4, 3, 3)), const("B", weights(6)), const("scale", weights(6)),
             const("bias", weights(6)), const("mean", weights(6)), const("var", np.abs(weights(6)) + 0.1),
             const("roi", np.zeros(0, np.float32)), const("scales", np.array([1, 1, 2, 2], np.float32))]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], strides=[2, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"]),
             helper.make_node("Relu", ["b"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], ceil_mode=1, strides=[2, 2]),
             helper.make_node("Resize", ["p", "roi", "scales"], ["y"], mode="linear")]
    model = make_model(nodes, [vi("x", T.FLOAT, list(X.shape))],
                       [vi(n, T.FLOAT, None) for n in ("c", "b", "p", "y")], inits, opset=19)
    for mode in MODES:
        check("tf", model, {"x": X}, rtol=1e-4, atol=1e-4, mode=mode)


def test_graph_mode_traces_once_and_runs_tf_kernels(models):
    import tensorflow as tf

    session = open_tf(onnx.load(models.cnn), mode="graph")
    x = RNG.standard_normal((1, 3, 32, 32)).astype(np.float32)
    first, second = session.run({"image": x}), session.run({"image": x})
    np.testing.assert_array_equal(first["probs"], second["probs"])
    assert session.provenance()["traces"] == 1
    graph = session._function.get_concrete_function({"image": tf.constant(x)}).graph
    kernels = {o.type for o in graph.get_operations()}
    assert {"Conv2D", "FusedBatchNormV3", "MaxPool", "Softmax"} <= kernels, kernels


# --- errors ----------------------------------------------------------------------------------------------

def test_unsupported_element_type_is_refused():
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT8E4M3FN)], [vi("x", T.FLOAT, [2])],
                       [vi("y", T.FLOAT8E4M3FN, [2])], opset=19)
    with pytest.raises(UnsupportedError, match="FLOAT8E4M3FN"):
        open_tf(model)


def test_xla_names_the_op_it_cannot_compile():
    model = make_model([helper.make_node("Det", ["x"], ["y"], name="determinant")],
                       [vi("x", T.FLOAT, [3, 3])], [vi("y", T.FLOAT, [])])
    x = weights(3, 3)
    assert abs(open_tf(model, mode="graph").run({"x": x})["y"] - np.linalg.det(x)) < 1e-5
    with pytest.raises(UnsupportedError) as err:
        open_tf(model, mode="xla").run({"x": x})
    assert "XLA has no kernel for the TF op MatrixDeterminant" in err.value.message
    assert "determinant" in err.value.message and "mode=graph" in err.value.hint


def test_value_needed_while_tracing_is_a_clear_error():
    # Resize's output size follows from `scales`: fed at run time, graph mode cannot trace it.
    model = make_model([helper.make_node("Resize", ["x", "", "scales"], ["y"])],
                       [vi("x", T.FLOAT, [1, 1, 2, 2]), vi("scales", T.FLOAT, [4])], [vi("y", T.FLOAT, None)],
                       opset=19)
    feeds = {"x": weights(1, 1, 2, 2), "scales": np.array([1, 1, 2, 2], np.float32)}
    assert open_tf(model).run(feeds)["y"].shape == (1, 1, 4, 4)
    with pytest.raises(UnsupportedError, match="'scales' computed at run time"):
        open_tf(model, mode="graph").run(feeds)


@pytest.mark.parametrize("raw, needle", [
    ({"tf32": "off"}, "device=gpu"), ({"xla_isa": "AVX2"}, "mode=xla"), ({"onednn_isa": "AVX9"}, "sse41")])
def test_option_validation(raw, needle):
    with pytest.raises(UsageError) as err:
        BACKEND.validate(resolve("tf", BACKEND.options, raw))
    assert needle in str(err.value)


def test_gpu_without_gpu_is_a_backend_error(models):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendError, match="sees no GPU"):
        open_tf(onnx.load(models.small), device="gpu", tf32="on")


def test_environment_knobs(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    env = BACKEND.environment(options(onednn="off", onednn_isa="avx2", mode="xla", xla_isa="SSE4_2"))
    assert env["TF_ENABLE_ONEDNN_OPTS"] == "0" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false --xla_cpu_max_isa=SSE4_2"
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert "ONEDNN_VERBOSE" not in env  # the ISA probe needs oneDNN's own kernels (onednn=on)
    assert BACKEND.environment(options(onednn_isa="avx2"))["ONEDNN_VERBOSE"] == "profile_create"


def test_import_does_not_import_tensorflow():
    code = ("import sys, comparator.backends.tf as m; b = m.TfBackend(); b.validate("
            "__import__('comparator.backends.options', fromlist=['resolve']).resolve('tf', b.options, {})); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_float64_computes_in_float64():
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    model = make_model([helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Exp", ["e"], ["y"])],
                       [vi("x", T.FLOAT, [101])], [vi("y", T.FLOAT, [101])])
    got = open_tf(model, dtype="float64").run({"x": x.astype(np.float64)})["y"]
    assert got.dtype == np.float64
    from math import erf, exp

    assert np.abs(got - np.array([exp(erf(v)) for v in x.astype(np.float64)])).max() < 1e-14


# --- end to end: the CNN in every mode, one compare() call ------------------------------------------------

VARIANTS = ["ort", "tf", "tf:mode=graph", "tf:mode=xla", "tf:deterministic=on:onednn=off:threads=1",
            "tf:dtype=float64"]


@pytest.fixture(scope="module")
def cnn_report(models):
    return comparator.compare(models.cnn, VARIANTS)


def test_compare_cnn_modes_align_every_tensor_with_ort(cnn_report):
    assert [v.status for v in cnn_report.variants] == ["ok"] * len(VARIANTS), \
        [(v.name, v.error) for v in cnn_report.variants]
    assert len(cnn_report.tensors) == 17
    for t in cnn_report.tensors:
        for name in cnn_report.variants[1:]:
            m = t.metrics[name.name]
            assert "error" not in m and m["max_abs"] < 1e-4, (t.name, name.name, m)
    assert cnn_report.passed
    # Eager runs op by op: exposing every tensor cannot change what is computed.
    assert cnn_report.observer_effect["tf"] is False


def test_knobs_reach_tensorflow(cnn_report):
    prov = {v.name: v.provenance for v in cnn_report.variants}
    assert prov["tf"]["onednn_enabled"] is True and prov["tf"]["tensorflow"].startswith("2.")
    off = prov["tf:deterministic=on:onednn=off:threads=1"]
    assert off["onednn_enabled"] is False and off["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert off["intra_op_threads"] == 1 and off["op_determinism"] is True
    assert prov["tf:mode=graph"]["traces"] == 1 and prov["tf:mode=xla"]["mode"] == "xla"
    assert prov["tf:dtype=float64"]["dtype"] == "float64"
    # oneDNN's kernels round differently from Eigen's: some tensor tells the two variants apart.
    pair = {"tf", "tf:deterministic=on:onednn=off:threads=1"}
    apart = [t.name for t in cnn_report.tensors if not any(pair <= set(c) for c in t.classes)]
    assert apart, "onednn=off computed every tensor bit for bit like onednn=on"


def test_float64_variant_is_closer_to_exact(cnn_report):
    # Against float32 ORT, the float64 run differs by float32 rounding only: tiny but not zero.
    probs = cnn_report.tensor("probs")
    assert probs.dtype == "float32"
    m = probs.metrics["tf:dtype=float64"]
    assert 0 < m["max_abs"] < 1e-6


def _shape_if_model(cond_from_shape=True):
    """x [2, 3] -> Shape -> Gather(0) -> Equal(2) -> If(then: Reshape to rank 3, else: Identity) -> Shape; or,
    with cond_from_shape=False, the If's condition is the model input c."""
    then = helper.make_graph([helper.make_node("Reshape", ["x", "r3"], ["t"], name="then_reshape")], "then", [],
                             [vi("t", T.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="else_identity")], "else", [],
                              [vi("e", T.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape_x"),
             helper.make_node("Gather", ["s", "zero"], ["d0"], name="gather_d0", axis=0),
             helper.make_node("Equal", ["d0", "two"], ["c"], name="equal_2")] if cond_from_shape else []
    nodes += [helper.make_node("If", ["c"], ["b"], name="rank_if", then_branch=then, else_branch=other),
              helper.make_node("Shape", ["b"], ["y"], name="shape_b")]
    inputs = [vi("x", T.FLOAT, [2, 3])] + ([] if cond_from_shape else [vi("c", T.BOOL, [])])
    return make_model(nodes, inputs, [vi("y", T.INT64, None)],
                      [const("zero", np.array(0, np.int64)), const("two", np.array(2, np.int64)),
                       const("r3", np.array([1, 2, 3], np.int64))])


@pytest.mark.parametrize("mode", MODES)
def test_an_if_on_a_trace_time_shape_folds_and_traces_only_the_taken_branch(mode):
    got = check("tf", _shape_if_model(), {"x": weights(2, 3)}, against="ort", mode=mode)
    assert got["y"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_a_run_time_if_whose_branches_disagree_in_rank_is_reported_clearly(mode):
    with pytest.raises(UnsupportedError) as err:
        open_tf(_shape_if_model(cond_from_shape=False), mode=mode).run({"x": weights(2, 3), "c": np.array(True)})
    message = err.value.message
    assert "'rank_if' (op If, opset 17" in message and "different ranks" in message, message
    assert "then: rank 3" in message and "else: rank 2" in message, message


def test_a_run_time_if_whose_branches_disagree_in_rank_runs_eagerly():
    session = open_tf(_shape_if_model(cond_from_shape=False))
    assert session.run({"x": weights(2, 3), "c": np.array(True)})["y"].tolist() == [1, 2, 3]
    assert session.run({"x": weights(2, 3), "c": np.array(False)})["y"].tolist() == [2, 3]
