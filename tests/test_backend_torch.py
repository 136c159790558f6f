"""The torch backend: tricky ops against onnx.reference on small hand-built models, options and their
validation, provenance of the environment knobs, float64 compute, the error paths, and compare() end to end."""
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

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

BACKEND = get_backend("torch")


def options(**raw):
    return resolve("torch", BACKEND.options, {k: str(v) for k, v in raw.items()})


def run_torch(model, feeds, **raw):
    from comparator.backends.torch import open_model

    return open_model(model, options(**raw)).run(feeds)


def check(model, feeds, rtol=1e-5, atol=1e-6):
    """Every output of `model` equals onnx.reference's: same dtype, same shape, values within tolerance."""
    want = ReferenceEvaluator(model).run(None, feeds)
    got = run_torch(model, feeds)
    for out, ref in zip(model.graph.output, want):
        ref = np.asarray(ref)
        assert got[out.name].dtype == ref.dtype, out.name
        assert got[out.name].shape == ref.shape, out.name
        np.testing.assert_allclose(got[out.name], ref, rtol=rtol, atol=atol, err_msg=out.name)


def make_model(nodes, inputs, outputs, inits=(), opset=17):
    """Like conftest's, without the checker: outputs here may leave their shape to the backend."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def one_node(op, inputs, outputs, opset, inits=(), **attrs):
    """A model of one node; `inputs`/`outputs` are (name, elem type, shape) triples."""
    node = helper.make_node(op, [i[0] for i in inputs] + [t.name for t in inits], [o[0] for o in outputs],
                            **attrs)
    return make_model([node], [vi(*i) for i in inputs], [vi(*o) for o in outputs], list(inits), opset=opset)


RNG = np.random.default_rng(0)
X234 = RNG.standard_normal((2, 3, 4)).astype(np.float32)


# --- opset variants: axes and sizes as attributes before, as inputs after -------------------------------

@pytest.mark.parametrize("opset, split_attr, split_input, extra", [
    (11, [1, 3], None, {}), (13, None, [3, 1], {}), (13, None, None, {}), (18, None, None, {"num_outputs": 2})])
def test_split_opset_variants(opset, split_attr, split_input, extra):
    inits = [const("split", np.array(split_input, np.int64))] if split_input else []
    attrs = dict(axis=2, **extra)
    if split_attr:
        attrs["split"] = split_attr
    model = one_node("Split", [("x", T.FLOAT, [2, 3, 4])], [("a", T.FLOAT, None), ("b", T.FLOAT, None)], opset,
                     inits, **attrs)
    check(model, {"x": X234})


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_opset_variants(opset):
    axes = [0, -1]
    attrs = {"axes": axes} if opset < 13 else {}
    ins = ["x"] if opset < 13 else ["x", "axes"]
    inits = [] if opset < 13 else [const("axes", np.array(axes, np.int64))]
    nodes = [helper.make_node("Unsqueeze", ins, ["u"], **attrs), helper.make_node("Squeeze", ["u"] + ins[1:], ["y"],
                                                                                  **attrs)]
    model = make_model(nodes, [vi("x", T.FLOAT, [2, 3, 4])], [vi("u", T.FLOAT, None), vi("y", T.FLOAT, None)],
                       inits, opset=opset)
    check(model, {"x": X234})


@pytest.mark.parametrize("op, opset, axes, keepdims, noop", [
    ("ReduceSum", 11, [1], 1, None), ("ReduceSum", 13, [-1], 0, None), ("ReduceSum", 13, [], 1, 1),
    ("ReduceMean", 13, [0, 2], 1, None), ("ReduceMean", 18, [1], 0, None), ("ReduceMax", 18, None, 1, None),
    ("ReduceLogSumExp", 18, [2], 1, None), ("ReduceL2", 18, [0], 0, None), ("ReduceSumSquare", 18, [], 1, 1),
    ("ReduceProd", 13, [1, 2], 0, None)])
def test_reductions_axes_as_attribute_or_input(op, opset, axes, keepdims, noop):
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    attrs = {"keepdims": keepdims}
    if noop is not None:
        attrs["noop_with_empty_axes"] = noop
    inits = []
    if axes is not None and as_input:
        inits = [const("axes", np.array(axes, np.int64))]
    elif axes:
        attrs["axes"] = axes
    model = one_node(op, [("x", T.FLOAT, [2, 3, 4])], [("y", T.FLOAT, None)], opset, inits, **attrs)
    check(model, {"x": X234})


@pytest.mark.parametrize("opset", [6, 13])
def test_clip_bounds_as_attributes_or_inputs(opset):
    if opset < 11:
        model = one_node("Clip", [("x", T.FLOAT, [2, 3, 4])], [("y", T.FLOAT, None)], opset, min=-0.5, max=0.7)
    else:
        model = one_node("Clip", [("x", T.FLOAT, [2, 3, 4])], [("y", T.FLOAT, None)], opset,
                         [const("lo", np.float32(-0.5)), const("hi", np.float32(0.7))])
    check(model, {"x": X234})


def test_slice_with_negative_steps_and_clamped_ends():
    inits = [const("s", np.array([-1, 0], np.int64)), const("e", np.array([-100, 10], np.int64)),
             const("a", np.array([2, 1], np.int64)), const("st", np.array([-2, 2], np.int64))]
    model = one_node("Slice", [("x", T.FLOAT, [2, 3, 4])], [("y", T.FLOAT, None)], 13, inits)
    check(model, {"x": X234})


# --- Pad and Resize: every mode ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes_with_axes(mode):
    inits = [const("pads", np.array([2, 0, 1, 3], np.int64)), const("value", np.float32(1.5)),
             const("axes", np.array([2, -2], np.int64))]
    model = one_node("Pad", [("x", T.FLOAT, [2, 3, 4])], [("y", T.FLOAT, None)], 18, inits, mode=mode)
    check(model, {"x": X234})


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_negative_pads_crop(mode):
    # onnx.reference (numpy.pad) cannot crop; the expected result is plain slicing then padding.
    inits = [const("pads", np.array([0, -1, 2, 0, 0, -1], np.int64))]
    model = one_node("Pad", [("x", T.FLOAT, [2, 3, 4])], [("y", T.FLOAT, None)], 13, inits, mode=mode)
    want = np.pad(X234[:, 1:, :3], [(0, 0), (0, 0), (2, 0)], mode=mode)
    np.testing.assert_array_equal(run_torch(model, {"x": X234})["y"], want)


def test_pad_opset2_attributes():
    model = one_node("Pad", [("x", T.FLOAT, [2, 3, 4])], [("y", T.FLOAT, None)], 2, pads=[0, 1, 2, 0, 0, 1],
                     mode="edge")
    check(model, {"x": X234})


RESIZE_CASES = [
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, [1, 1, 2, 2], None),
    ({"mode": "nearest"}, [1, 1, 1.7, 0.6], None),
    ({"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_ceil"},
     None, [1, 2, 7, 3]),
    ({"mode": "linear"}, [1, 1, 2.5, 1.5], None),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None, [1, 2, 3, 9]),
    ({"mode": "linear", "antialias": 1}, [1, 1, 0.6, 0.5], None),
    ({"mode": "cubic"}, [1, 1, 2, 2], None),
    ({"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, [1, 1, 0.8, 1.6], None),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, None, [1, 2, 1, 4]),
    ({"mode": "nearest", "keep_aspect_ratio_policy": "not_larger", "axes": [2, 3]}, None, [7, 3]),
]


@pytest.mark.parametrize("attrs, scales, sizes", RESIZE_CASES)
def test_resize_modes(attrs, scales, sizes):
    x = RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)
    inits = [const("roi", np.zeros(0, np.float32)),
             const("scales", np.array(scales or [], np.float32))]
    if sizes:
        inits.append(const("sizes", np.array(sizes, np.int64)))
    model = one_node("Resize", [("x", T.FLOAT, [1, 2, 5, 6])], [("y", T.FLOAT, None)], 19, inits, **attrs)
    check(model, {"x": x})


def test_resize_tf_crop_and_resize_extrapolates():
    x = RNG.standard_normal((1, 1, 4, 4)).astype(np.float32)
    inits = [const("roi", np.array([0, 0, -0.2, 0.3, 1, 1, 0.9, 1.4], np.float32)),
             const("scales", np.zeros(0, np.float32)), const("sizes", np.array([1, 1, 3, 5], np.int64))]
    model = one_node("Resize", [("x", T.FLOAT, [1, 1, 4, 4])], [("y", T.FLOAT, None)], 13, inits, mode="linear",
                     coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=7.0)
    check(model, {"x": x})


# --- recurrent layers and Einsum -----------------------------------------------------------------------

def _rnn_model(op, gates, direction, lens=False, **attrs):
    dirs, hidden, inp, seq, batch = (2 if direction == "bidirectional" else 1), 3, 4, 5, 2
    rng = np.random.default_rng(1)
    inits = [const("W", rng.standard_normal((dirs, gates * hidden, inp)).astype(np.float32) * 0.5),
             const("R", rng.standard_normal((dirs, gates * hidden, hidden)).astype(np.float32) * 0.5),
             const("B", rng.standard_normal((dirs, 2 * gates * hidden)).astype(np.float32) * 0.1),
             const("lens", np.array([5, 3], np.int32)),
             const("h0", rng.standard_normal((dirs, batch, hidden)).astype(np.float32))]
    names = ["x", "W", "R", "B", "lens" if lens else "", "h0"]
    if op == "LSTM":
        inits += [const("c0", rng.standard_normal((dirs, batch, hidden)).astype(np.float32)),
                  const("P", rng.standard_normal((dirs, 3 * hidden)).astype(np.float32) * 0.1)]
        names += ["c0", "P"]
    outs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    node = helper.make_node(op, names, outs, hidden_size=hidden, direction=direction, **attrs)
    model = make_model([node], [vi("x", T.FLOAT, [seq, batch, inp])], [vi(o, T.FLOAT, None) for o in outs],
                       inits, opset=14)
    return model, {"x": rng.standard_normal((seq, batch, inp)).astype(np.float32)}


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_with_peepholes_and_directions(direction):
    check(*_rnn_model("LSTM", 4, direction))


@pytest.mark.parametrize("direction, before", [("forward", 0), ("bidirectional", 1)])
def test_gru_linear_before_reset(direction, before):
    check(*_rnn_model("GRU", 3, direction, linear_before_reset=before))


def check_ort(model, feeds):
    """Against onnxruntime, for RNN attributes onnx.reference ignores (sequence_lens, clip, input_forget,
    activations other than Tanh)."""
    ort = pytest.importorskip("onnxruntime")
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = run_torch(model, feeds)
    for out, ref in zip(model.graph.output, want):
        np.testing.assert_allclose(got[out.name], ref, rtol=1e-5, atol=1e-6, err_msg=out.name)
    return got


@pytest.mark.parametrize("op, gates, attrs", [
    ("LSTM", 4, {"clip": 0.8}), ("LSTM", 4, {"input_forget": 1, "direction": "reverse"}),
    ("RNN", 1, {"activations": ["LeakyRelu", "HardSigmoid"], "activation_alpha": [0.2, 0.3],
                "activation_beta": [0.4]}),
    ("GRU", 3, {"activations": ["HardSigmoid", "Softsign", "Sigmoid", "Tanh"]})])
def test_rnn_attributes_match_onnxruntime(op, gates, attrs):
    attrs = {"direction": "bidirectional", **attrs}
    check_ort(*_rnn_model(op, gates, attrs.pop("direction"), **attrs))


@pytest.mark.parametrize("op, gates", [("LSTM", 4), ("GRU", 3)])
def test_sequence_lengths_match_onnxruntime(op, gates):
    got = check_ort(*_rnn_model(op, gates, "bidirectional", lens=True))
    assert not got["Y"][3:, :, 1].any()  # the second sequence has 3 steps: its padded outputs are zero


@pytest.mark.parametrize("equation, shapes", [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]),
                                              ("...ij,...jk", [(2, 3, 4), (4, 2)]), ("i,j->ij", [(3,), (5,)])])
def test_einsum(equation, shapes):
    ins = [(f"x{i}", T.FLOAT, list(s)) for i, s in enumerate(shapes)]
    model = one_node("Einsum", ins, [("y", T.FLOAT, None)], 12, equation=equation)
    check(model, {n: RNG.standard_normal(s).astype(np.float32) for (n, _, _), s in zip(ins, shapes)})


def test_pools_and_conv_with_asymmetric_padding_and_ceil_mode():
    x = RNG.standard_normal((1, 2, 7, 6)).astype(np.float32)
    w = RNG.standard_normal((3, 2, 3, 2)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 0, 2, 1], strides=[2, 1]),
             helper.make_node("MaxPool", ["x"], ["m", "i"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1,
                              pads=[0, 1, 1, 0]),
             helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1,
                              pads=[1, 1, 1, 1], count_include_pad=1),
             helper.make_node("AveragePool", ["x"], ["d"], kernel_shape=[2, 2], dilations=[2, 1])]
    outs = [vi("c", T.FLOAT, None), vi("m", T.FLOAT, None), vi("i", T.INT64, None), vi("a", T.FLOAT, None),
            vi("d", T.FLOAT, None)]
    check(make_model(nodes, [vi("x", T.FLOAT, [1, 2, 7, 6])], outs, [const("w", w)], opset=19), {"x": x})


def test_loop_reads_the_enclosing_scope():
    body = helper.make_graph([helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
                              helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Mul", ["acc_out", "acc_out"], ["sq"])], "body",
                             [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("acc_in", T.FLOAT, [3])],
                             [vi("cond_out", T.BOOL, []), vi("acc_out", T.FLOAT, [3]), vi("sq", T.FLOAT, [3])])
    nodes = [helper.make_node("Neg", ["x"], ["step"]),  # an outer-scope value the body uses
             helper.make_node("Loop", ["n", "go", "x"], ["acc", "squares"], body=body)]
    model = make_model(nodes, [vi("x", T.FLOAT, [3])], [vi("acc", T.FLOAT, None), vi("squares", T.FLOAT, None)],
                       [const("n", np.array(4, np.int64)), const("go", np.array(True))])
    check(model, {"x": np.array([1.0, 2.0, -3.0], np.float32)})


# --- unsupported and failing paths ---------------------------------------------------------------------

def test_unknown_op_is_unsupported_at_open():
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [vi("x", T.FLOAT, [2])], [vi("y", T.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedError) as err:
        run_torch(model, {"x": np.ones(2, np.float32)})
    assert "op com.example.Frobnicate (opset 1) is not supported by the torch backend" in str(err.value)
    assert err.value.status == "unsupported" and err.value.hint


def test_string_tensors_are_unsupported_at_open():
    model = one_node("Identity", [("x", T.STRING, [2])], [("y", T.STRING, [2])], 17)
    with pytest.raises(UnsupportedError, match="tensor type STRING is not supported by the torch backend"):
        run_torch(model, {"x": np.array(["a", "b"], dtype=object)})


def test_random_training_dropout_is_unsupported_at_run_time():
    model = one_node("Dropout", [("x", T.FLOAT, [2, 3, 4])], [("y", T.FLOAT, None)], 13,
                     [const("ratio", np.float32(0.5)), const("train", np.array(True))])
    with pytest.raises(UnsupportedError, match="training_mode=1"):
        run_torch(model, {"x": X234})


def test_run_time_failure_names_the_node():
    model = make_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="bad_reshape")],
                       [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, None)], [const("shape", np.array([5], np.int64))])
    with pytest.raises(BackendError) as err:
        run_torch(model, {"x": np.ones((2, 3), np.float32)})
    assert not isinstance(err.value, UnsupportedError)
    assert "op Reshape (node 'bad_reshape', opset 17)" in str(err.value) and "is invalid" in str(err.value)


def test_missing_feed_is_an_input_error():
    from comparator.errors import InputError

    model = one_node("Relu", [("x", T.FLOAT, [2])], [("y", T.FLOAT, [2])], 17)
    with pytest.raises(InputError, match="no feed for graph input 'x'"):
        run_torch(model, {})


def test_missing_torch_kernel_for_a_dtype_is_unsupported():
    model = one_node("Det", [("x", T.FLOAT16, [3, 3])], [("y", T.FLOAT16, None)], 17)
    with pytest.raises(UnsupportedError, match="op Det .* torch has no kernel for it .*Half"):
        run_torch(model, {"x": np.eye(3, dtype=np.float16)})


def test_cuda_options_need_device_cuda():
    with pytest.raises(UsageError, match="tf32 applies only to device=cuda"):
        BACKEND.validate(options(tf32="on"))
    BACKEND.validate(options(device="cuda", tf32="on", cudnn_benchmark="on"))  # accepted with the device


def test_option_values_are_checked():
    with pytest.raises(UsageError, match="valid values: host\\|default\\|avx2\\|avx512"):
        options(isa="sse2")
    with pytest.raises(UsageError, match="valid options"):
        options(precision="high")


def test_environment_knobs():
    assert BACKEND.environment(options()) == {}
    env = BACKEND.environment(options(isa="avx2", onednn_isa="avx512_core", deterministic="on", device="cuda"))
    assert env == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
                   "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def test_device_cuda_without_cuda_is_a_backend_error(models):
    import torch

    if torch.cuda.is_available():
        out = BACKEND.open(str(models.small), options(device="cuda")).run({"x": np.ones((1, 4), np.float32)})
        assert out["y"].dtype == np.float32
        return
    with pytest.raises(BackendError, match="device=cuda: this torch .* sees no CUDA device") as err:
        BACKEND.open(str(models.small), options(device="cuda"))
    assert "GPU" in err.value.hint


def test_provenance_reports_effective_knobs_and_what_did_not_apply(models):
    import torch

    have = torch.backends.cpu.get_cpu_capability()
    other = "default" if have != "DEFAULT" else "avx2"
    prov = BACKEND.open(str(models.small), options(isa=other, threads=1)).provenance()
    assert prov["cpu_capability"] == have and prov["threads"] == 1
    assert any(f"isa={other} requested, torch dispatches to {have}" in n for n in prov["notes"])
    assert prov["mkldnn_enabled"] is True and prov["deterministic"] is False


def test_import_does_not_import_torch():
    code = "import sys, comparator.backends.torch as t; t.TorchBackend().options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


# --- float64, end to end, compile ----------------------------------------------------------------------

def test_float64_outputs_are_float64_and_closer_to_exact_math():
    model = onnx.load(str(ROOT / "models" / "cnn.onnx"))
    x = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
    from comparator.graph.promote import promote_float64

    exact = ReferenceEvaluator(promote_float64(model)).run(None, {"image": x.astype(np.float64)})[0]
    f64 = run_torch(model, {"image": x}, dtype="float64")["probs"]
    f32 = run_torch(model, {"image": x})["probs"]
    assert f64.dtype == np.float64 and f32.dtype == np.float32
    err64, err32 = np.abs(f64 - exact).max(), np.abs(f32 - exact).max()
    assert err64 < 1e-15 < 1e-10 < err32 < 1e-6


def test_float64_erf_is_exact():
    # torch.erf in float64 agrees with math.erf (the ref backend's Erf) to the last bit or so
    import math

    x = np.linspace(-3, 3, 101)
    model = one_node("Erf", [("x", T.DOUBLE, [101])], [("y", T.DOUBLE, [101])], 17)
    got = run_torch(model, {"x": x})["y"]
    assert np.abs(got - np.array([math.erf(v) for v in x])).max() <= 2.3e-16


@pytest.fixture(scope="module")
def cnn_report(models):
    return comparator.compare(models.cnn, ["ort", "torch", "torch:isa=default"])


def test_compare_cnn_with_ort_aligns_every_tensor(cnn_report):
    assert [v.status for v in cnn_report.variants] == ["ok", "ok", "ok"]
    assert len(cnn_report.tensors) == 17
    for t in cnn_report.tensors:
        m = t.metrics["torch"]
        assert m["max_abs"] < 1e-4, (t.name, m)
    assert cnn_report.passed


def test_isa_environment_knob_reaches_torch(cnn_report):
    import torch

    prov = cnn_report.variant("torch:isa=default").provenance
    assert prov["cpu_capability"] == "DEFAULT" and prov["aten_cpu_capability_env"] == "default"
    assert "notes" not in prov
    assert cnn_report.variant("torch").provenance["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # oneDNN's convolutions ignore ATen's capability: the first Conv is bit-identical across the two torch
    # variants, the BatchNormalization after it (an ATen kernel) is not
    first, second = cnn_report.tensors[:2]
    assert (first.op_type, second.op_type) == ("Conv", "BatchNormalization")
    together = [c for c in first.classes if "torch" in c][0]
    assert "torch:isa=default" in together
    assert not any({"torch", "torch:isa=default"} <= set(c) for c in second.classes)


def test_inductor_compile_matches_eager():
    # The one torch.compile test: the first compile costs tens of seconds.
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    half = helper.make_tensor("half", T.FLOAT, [1], [0.5])
    model = make_model([helper.make_node("Softmax", ["x"], ["s"], axis=-1),
                        helper.make_node("Constant", [], ["c"], value=half),  # a tensor attribute, traced
                        helper.make_node("Mul", ["s", "x"], ["m"]),
                        helper.make_node("Add", ["m", "c"], ["y"])],
                       [vi("x", T.FLOAT, [2, 3, 4])], [vi("y", T.FLOAT, [2, 3, 4])])
    from comparator.backends.torch import open_model

    session = open_model(model, options(compile="inductor"))
    got = session.run({"x": x})["y"]
    np.testing.assert_allclose(got, run_torch(model, {"x": x})["y"], rtol=1e-6, atol=1e-7)
    assert session.provenance()["compile"] == "inductor"
