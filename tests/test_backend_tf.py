"""The TensorFlow backend: layout-sensitive ops against onnx.reference in every mode, the error paths, option
validation and environment knobs, and compare() on the CNN across modes (with provenance read back)."""
import importlib.util
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx.reference import ReferenceEvaluator

import comparator
from comparator.backends import get as get_backend
from comparator.backends.options import resolve
from comparator.errors import BackendError, UnsupportedError, UsageError
from conftest import ROOT, const, vi

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                                reason="tensorflow is not installed")

BACKEND = get_backend("tf")
MODES = ("eager", "graph", "xla")
RNG = np.random.default_rng(0)


def options(**raw):
    return resolve("tf", BACKEND.options, {k: str(v) for k, v in raw.items()})


def open_tf(model, **raw):
    from comparator.backends.tf import open_model

    return open_model(model, options(**raw))


def make_model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def one_node(op, x_shape, inits=(), opset=17, out_types=(T.FLOAT,), extra_inputs=(), **attrs):
    """x (float32, x_shape) [+ initializers] -> op -> y (y1, ... for more outputs), shapes left open."""
    names = ["x", *extra_inputs, *[t.name for t in inits]]
    outs = ["y"] + [f"y{i}" for i in range(1, len(out_types))]
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", **attrs)
    return make_model([node], [vi("x", T.FLOAT, x_shape)], [vi(o, t, None) for o, t in zip(outs, out_types)],
                      list(inits), opset=opset)


def oracle(model, feeds, name):
    if name == "ort":  # where onnx.reference itself is wrong (grouped ConvTranspose)
        import onnxruntime

        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


def check(model, feeds, modes=("eager",), rtol=1e-5, atol=1e-5, against="ref"):
    """Every output equals onnx.reference's (or ORT's), with its dtype and shape, in each mode."""
    want = oracle(model, feeds, against)
    for mode in modes:
        got = open_tf(model, mode=mode).run(feeds)
        for out, ref in zip(model.graph.output, want):
            ref = np.asarray(ref)
            assert got[out.name].dtype == ref.dtype, (mode, out.name)
            assert got[out.name].shape == ref.shape, (mode, out.name)
            np.testing.assert_allclose(got[out.name], ref, rtol=rtol, atol=atol, err_msg=f"{mode} {out.name}")


def weights(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


X = weights(2, 4, 9, 11)


# --- layout-sensitive ops: NCHW in ONNX, NHWC inside TF's kernels ----------------------------------------

@pytest.mark.parametrize("attrs, w_shape", [
    (dict(pads=[1, 0, 2, 1], strides=[2, 1]), (6, 4, 3, 3)),
    (dict(dilations=[2, 3], pads=[2, 2, 2, 2]), (6, 4, 3, 2)),
    (dict(group=2, strides=[1, 2]), (6, 2, 3, 3)),
    (dict(group=4, pads=[1, 1, 1, 1]), (8, 1, 3, 3)),  # depthwise, channel multiplier 2
    (dict(auto_pad="SAME_LOWER", strides=[2, 2]), (6, 4, 2, 2)),
], ids=["pads-strides", "dilations", "groups", "depthwise", "same-lower"])
def test_conv(attrs, w_shape):
    inits = [const("W", weights(*w_shape)), const("B", weights(w_shape[0]))]
    check(one_node("Conv", list(X.shape), inits, **attrs), {"x": X}, rtol=1e-4, atol=1e-4)


def test_conv_1d_and_3d():
    x1 = weights(1, 3, 10)
    check(one_node("Conv", [1, 3, 10], [const("W", weights(4, 3, 3))], pads=[2, 0], strides=[2]), {"x": x1},
          rtol=1e-4, atol=1e-4)
    x3 = weights(1, 2, 5, 6, 4)
    check(one_node("Conv", [1, 2, 5, 6, 4], [const("W", weights(4, 1, 2, 3, 2))], group=2, pads=[1, 0, 1, 0, 1, 1]),
          {"x": x3}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("attrs, w_shape", [
    (dict(strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1]), (4, 3, 3, 3)),
    (dict(group=2, dilations=[2, 1]), (4, 3, 2, 3)),
    (dict(strides=[2, 3], output_shape=[19, 33], auto_pad="SAME_UPPER"), (4, 3, 3, 3)),
], ids=["pads-output-padding", "groups-dilations", "output-shape"])
def test_conv_transpose(attrs, w_shape):
    inits = [const("W", weights(*w_shape)), const("B", weights(w_shape[1] * attrs.get("group", 1)))]
    check(one_node("ConvTranspose", list(X.shape), inits, **attrs), {"x": X}, rtol=1e-4, atol=1e-4,
          against="ort" if "group" in attrs else "ref")


@pytest.mark.parametrize("op, attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 1], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[2, 3], dilations=[2, 1], strides=[1, 2])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], count_include_pad=1,
                         ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER", strides=[2, 2])),
], ids=["max-ceil-pads", "max-dilated", "avg-exclude-pad", "avg-include-pad-ceil", "avg-same"])
def test_pooling(op, attrs):
    check(one_node(op, list(X.shape), opset=19, **attrs), {"x": X})


def test_max_pool_indices():
    model = one_node("MaxPool", list(X.shape), out_types=(T.FLOAT, T.INT64), kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1])
    check(model, {"x": X})


@pytest.mark.parametrize("shape", [[2, 4, 9, 11], [2, 4, 7]], ids=["4d-fused-kernel", "3d"])
def test_batch_normalization(shape):
    x = weights(*shape)
    inits = [const("scale", weights(4)), const("bias", weights(4)), const("mean", weights(4)),
             const("var", np.abs(weights(4)) + 0.1)]
    check(one_node("BatchNormalization", shape, inits, epsilon=1e-3), {"x": x}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs, scales", [
    (dict(mode="linear", coordinate_transformation_mode="half_pixel"), [1, 1, 2, 1.5]),
    (dict(mode="linear", coordinate_transformation_mode="align_corners"), [1, 1, 0.5, 2]),
    (dict(mode="cubic", coordinate_transformation_mode="asymmetric"), [1, 1, 2, 2]),
    (dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1), [1, 1, 1.5, 0.75]),
    (dict(mode="nearest", nearest_mode="round_prefer_ceil"), [1, 1, 0.6, 1.7]),
    (dict(mode="linear", antialias=1), [1, 1, 0.5, 0.4]),
], ids=["bilinear", "align-corners", "cubic-legacy", "cubic-keys", "nearest", "antialias"])
def test_resize(attrs, scales):
    model = one_node("Resize", list(X.shape), [const("roi", np.zeros(0, np.float32)),
                                                const("scales", np.array(scales, np.float32))], opset=19, **attrs)
    check(model, {"x": X}, rtol=1e-4, atol=1e-5)


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
    check(model, {"x": X}, modes=MODES, rtol=1e-4, atol=1e-4)


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

def test_unsupported_op_is_refused_before_running():
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    model = make_model([helper.make_node("Relu", ["x"], ["r"]), node], [vi("x", T.FLOAT, [2])],
                       [vi("y", T.FLOAT, [2])])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedError) as err:
        open_tf(model)
    assert "op com.example.Frobnicate (opset 1) is not supported by the tf backend" in err.value.message
    assert err.value.status == "unsupported"


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
