"""The ops of the torch and TF executors (and the ref backend's own kernels where it has them) against
onnx.reference, or onnxruntime where onnx.reference is wrong or ignores an attribute, on small hand-built
models: every test runs once per executor, with the same model, feeds and tolerance."""
import math

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper

from comparator.errors import UnsupportedError
from conftest import const, vi
from onnx_cases import check, executors, make_model, one_node, open_session, run

EXECUTORS = executors("torch", "tf")
WITH_REF = executors("torch", "tf", "ref")

RNG = np.random.default_rng(0)
X234 = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
X = np.random.default_rng(0).standard_normal((2, 4, 9, 11)).astype(np.float32)  # NCHW: NHWC inside TF's kernels
X_IN = [("x", T.FLOAT, [2, 3, 4])]
Y_OUT = [("y", T.FLOAT, None)]


def weights(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def x_op(op, shape, inits=(), opset=17, out_types=(T.FLOAT,), **attrs):
    """x (float32, `shape`) [+ initializers] -> op -> y (y1, ... for more outputs)."""
    outs = [("y", out_types[0], None)] + [(f"y{i}", t, None) for i, t in enumerate(out_types[1:], 1)]
    return one_node(op, [("x", T.FLOAT, list(shape))], outs, opset, inits, **attrs)


# --- opset variants: axes and sizes as attributes before, as inputs after -------------------------------

@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("opset, split_attr, split_input, extra", [
    (11, [1, 3], None, {}), (13, None, [3, 1], {}), (13, None, None, {}), (18, None, None, {"num_outputs": 2})])
def test_split_opset_variants(executor, opset, split_attr, split_input, extra):
    inits = [const("split", np.array(split_input, np.int64))] if split_input else []
    attrs = dict(axis=2, **extra)
    if split_attr:
        attrs["split"] = split_attr
    model = one_node("Split", X_IN, [("a", T.FLOAT, None), ("b", T.FLOAT, None)], opset, inits, **attrs)
    check(executor, model, {"x": X234})


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_opset_variants(executor, opset):
    axes = [0, -1]
    attrs = {"axes": axes} if opset < 13 else {}
    ins = ["x"] if opset < 13 else ["x", "axes"]
    inits = [] if opset < 13 else [const("axes", np.array(axes, np.int64))]
    nodes = [helper.make_node("Unsqueeze", ins, ["u"], **attrs), helper.make_node("Squeeze", ["u"] + ins[1:], ["y"],
                                                                                  **attrs)]
    model = make_model(nodes, [vi("x", T.FLOAT, [2, 3, 4])], [vi("u", T.FLOAT, None), vi("y", T.FLOAT, None)],
                       inits, opset=opset)
    check(executor, model, {"x": X234})


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("op, opset, axes, keepdims, noop", [
    ("ReduceSum", 11, [1], 1, None), ("ReduceSum", 13, [-1], 0, None), ("ReduceSum", 13, [], 1, 1),
    ("ReduceMean", 13, [0, 2], 1, None), ("ReduceMean", 18, [1], 0, None), ("ReduceMax", 18, None, 1, None),
    ("ReduceLogSumExp", 18, [2], 1, None), ("ReduceL2", 18, [0], 0, None), ("ReduceSumSquare", 18, [], 1, 1),
    ("ReduceProd", 13, [1, 2], 0, None)])
def test_reductions_axes_as_attribute_or_input(executor, op, opset, axes, keepdims, noop):
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    attrs = {"keepdims": keepdims}
    if noop is not None:
        attrs["noop_with_empty_axes"] = noop
    inits = []
    if axes is not None and as_input:
        inits = [const("axes", np.array(axes, np.int64))]
    elif axes:
        attrs["axes"] = axes
    check(executor, one_node(op, X_IN, Y_OUT, opset, inits, **attrs), {"x": X234})


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("opset", [6, 13])
def test_clip_bounds_as_attributes_or_inputs(executor, opset):
    if opset < 11:
        model = one_node("Clip", X_IN, Y_OUT, opset, min=-0.5, max=0.7)
    else:
        model = one_node("Clip", X_IN, Y_OUT, opset, [const("lo", np.float32(-0.5)), const("hi", np.float32(0.7))])
    check(executor, model, {"x": X234})


@pytest.mark.parametrize("executor", EXECUTORS)
def test_slice_with_negative_steps_and_clamped_ends(executor):
    inits = [const("s", np.array([-1, 0], np.int64)), const("e", np.array([-100, 10], np.int64)),
             const("a", np.array([2, 1], np.int64)), const("st", np.array([-2, 2], np.int64))]
    check(executor, one_node("Slice", X_IN, Y_OUT, 13, inits), {"x": X234})


# --- Pad and Resize: every mode ------------------------------------------------------------------------

@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes_with_axes(executor, mode):
    inits = [const("pads", np.array([2, 0, 1, 3], np.int64)), const("value", np.float32(1.5)),
             const("axes", np.array([2, -2], np.int64))]
    check(executor, one_node("Pad", X_IN, Y_OUT, 18, inits, mode=mode), {"x": X234})


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_negative_pads_crop(executor, mode):
    # onnx.reference (numpy.pad) cannot crop; the expected result is plain slicing then padding.
    inits = [const("pads", np.array([0, -1, 2, 0, 0, -1], np.int64))]
    model = one_node("Pad", X_IN, Y_OUT, 13, inits, mode=mode)
    want = np.pad(X234[:, 1:, :3], [(0, 0), (0, 0), (2, 0)], mode=mode)
    np.testing.assert_array_equal(run(executor, model, {"x": X234})["y"], want)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_pad_opset2_attributes(executor):
    check(executor, one_node("Pad", X_IN, Y_OUT, 2, pads=[0, 1, 2, 0, 0, 1], mode="edge"), {"x": X234})


# (attributes, scales, sizes, input shape, rtol, atol): tolerances None are the executor's own.
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
RESIZE_CASES = [(a, sc, sz, [1, 2, 5, 6], None, None) for a, sc, sz in RESIZE_CASES] + [
    (a, sc, None, list(X.shape), 1e-4, 1e-5) for a, sc in [
        (dict(mode="linear", coordinate_transformation_mode="half_pixel"), [1, 1, 2, 1.5]),
        (dict(mode="linear", coordinate_transformation_mode="align_corners"), [1, 1, 0.5, 2]),
        (dict(mode="cubic", coordinate_transformation_mode="asymmetric"), [1, 1, 2, 2]),
        (dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1), [1, 1, 1.5, 0.75]),
        (dict(mode="nearest", nearest_mode="round_prefer_ceil"), [1, 1, 0.6, 1.7]),
        (dict(mode="linear", antialias=1), [1, 1, 0.5, 0.4])]]
RESIZE_IDS = [f"{i}-{c[0]['mode']}" for i, c in enumerate(RESIZE_CASES)]


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("attrs, scales, sizes, shape, rtol, atol", RESIZE_CASES, ids=RESIZE_IDS)
def test_resize_modes(executor, attrs, scales, sizes, shape, rtol, atol):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    inits = [const("roi", np.zeros(0, np.float32)),
             const("scales", np.array(scales or [], np.float32))]
    if sizes:
        inits.append(const("sizes", np.array(sizes, np.int64)))
    check(executor, x_op("Resize", shape, inits, opset=19, **attrs), {"x": x}, rtol, atol)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_resize_tf_crop_and_resize_extrapolates(executor):
    x = np.random.default_rng(2).standard_normal((1, 1, 4, 4)).astype(np.float32)
    inits = [const("roi", np.array([0, 0, -0.2, 0.3, 1, 1, 0.9, 1.4], np.float32)),
             const("scales", np.zeros(0, np.float32)), const("sizes", np.array([1, 1, 3, 5], np.int64))]
    model = x_op("Resize", [1, 1, 4, 4], inits, opset=13, mode="linear",
                 coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=7.0)
    check(executor, model, {"x": x})


# --- layout-sensitive ops: NCHW in ONNX, NHWC inside TF's kernels ----------------------------------------

@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("attrs, w_shape", [
    (dict(pads=[1, 0, 2, 1], strides=[2, 1]), (6, 4, 3, 3)),
    (dict(dilations=[2, 3], pads=[2, 2, 2, 2]), (6, 4, 3, 2)),
    (dict(group=2, strides=[1, 2]), (6, 2, 3, 3)),
    (dict(group=4, pads=[1, 1, 1, 1]), (8, 1, 3, 3)),  # depthwise, channel multiplier 2
    (dict(auto_pad="SAME_LOWER", strides=[2, 2]), (6, 4, 2, 2)),
], ids=["pads-strides", "dilations", "groups", "depthwise", "same-lower"])
def test_conv(executor, attrs, w_shape):
    inits = [const("W", weights(*w_shape)), const("B", weights(w_shape[0]))]
    check(executor, x_op("Conv", X.shape, inits, **attrs), {"x": X}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_conv_1d_and_3d(executor):
    x1 = weights(1, 3, 10)
    check(executor, x_op("Conv", [1, 3, 10], [const("W", weights(4, 3, 3))], pads=[2, 0], strides=[2]), {"x": x1},
          rtol=1e-4, atol=1e-4)
    x3 = weights(1, 2, 5, 6, 4)
    check(executor, x_op("Conv", [1, 2, 5, 6, 4], [const("W", weights(4, 1, 2, 3, 2))], group=2,
                         pads=[1, 0, 1, 0, 1, 1]), {"x": x3}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("attrs, w_shape", [
    (dict(strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1]), (4, 3, 3, 3)),
    (dict(group=2, dilations=[2, 1]), (4, 3, 2, 3)),
    (dict(strides=[2, 3], output_shape=[19, 33], auto_pad="SAME_UPPER"), (4, 3, 3, 3)),
], ids=["pads-output-padding", "groups-dilations", "output-shape"])
def test_conv_transpose(executor, attrs, w_shape):
    inits = [const("W", weights(*w_shape)), const("B", weights(w_shape[1] * attrs.get("group", 1)))]
    # onnx.reference is wrong for grouped ConvTranspose: ORT is the yardstick there.
    check(executor, x_op("ConvTranspose", X.shape, inits, **attrs), {"x": X}, rtol=1e-4, atol=1e-4,
          against="ort" if "group" in attrs else "ref")


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("op, attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 1], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[2, 3], dilations=[2, 1], strides=[1, 2])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], count_include_pad=1,
                         ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER", strides=[2, 2])),
], ids=["max-ceil-pads", "max-dilated", "avg-exclude-pad", "avg-include-pad-ceil", "avg-same"])
def test_pooling(executor, op, attrs):
    check(executor, x_op(op, X.shape, opset=19, **attrs), {"x": X})


@pytest.mark.parametrize("executor", EXECUTORS)
def test_max_pool_indices(executor):
    model = x_op("MaxPool", X.shape, out_types=(T.FLOAT, T.INT64), kernel_shape=[2, 2], strides=[2, 2],
                 pads=[0, 0, 1, 1])
    check(executor, model, {"x": X})


@pytest.mark.parametrize("executor", EXECUTORS)
def test_pools_and_conv_with_asymmetric_padding_and_ceil_mode(executor):
    x = np.random.default_rng(3).standard_normal((1, 2, 7, 6)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((3, 2, 3, 2)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 0, 2, 1], strides=[2, 1]),
             helper.make_node("MaxPool", ["x"], ["m", "i"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1,
                              pads=[0, 1, 1, 0]),
             helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1,
                              pads=[1, 1, 1, 1], count_include_pad=1),
             helper.make_node("AveragePool", ["x"], ["d"], kernel_shape=[2, 2], dilations=[2, 1])]
    outs = [vi("c", T.FLOAT, None), vi("m", T.FLOAT, None), vi("i", T.INT64, None), vi("a", T.FLOAT, None),
            vi("d", T.FLOAT, None)]
    check(executor, make_model(nodes, [vi("x", T.FLOAT, [1, 2, 7, 6])], outs, [const("w", w)], opset=19), {"x": x})


@pytest.mark.parametrize("executor", WITH_REF)
@pytest.mark.parametrize("shape, opset", [([2, 4, 9, 11], 17), ([2, 4, 7], 17), ([2, 4, 9, 11], 13)],
                         ids=["4d-fused-kernel", "3d", "4d-opset13"])
def test_batch_normalization(executor, shape, opset):
    x = weights(*shape)
    inits = [const("scale", weights(4)), const("bias", weights(4)), const("mean", weights(4)),
             const("var", np.abs(weights(4)) + 0.1)]
    # At opsets 7-13 onnx.reference normalises with the batch's statistics (the ref backend has its own kernel):
    # ORT, using the running ones as the spec says, is the yardstick there.
    check(executor, x_op("BatchNormalization", shape, inits, opset=opset, epsilon=1e-3), {"x": x}, rtol=1e-4,
          atol=1e-5, against="ort" if opset <= 13 else "ref")


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


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_with_peepholes_and_directions(executor, direction):
    check(executor, *_rnn_model("LSTM", 4, direction))


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("direction, before", [("forward", 0), ("bidirectional", 1)])
def test_gru_linear_before_reset(executor, direction, before):
    check(executor, *_rnn_model("GRU", 3, direction, linear_before_reset=before))


# Against onnxruntime: onnx.reference ignores sequence_lens, clip, input_forget and activations other than Tanh.
@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("op, gates, attrs", [
    ("LSTM", 4, {"clip": 0.8}), ("LSTM", 4, {"input_forget": 1, "direction": "reverse"}),
    ("RNN", 1, {"activations": ["LeakyRelu", "HardSigmoid"], "activation_alpha": [0.2, 0.3],
                "activation_beta": [0.4]}),
    ("GRU", 3, {"activations": ["HardSigmoid", "Softsign", "Sigmoid", "Tanh"]})])
def test_rnn_attributes_match_onnxruntime(executor, op, gates, attrs):
    attrs = {"direction": "bidirectional", **attrs}
    check(executor, *_rnn_model(op, gates, attrs.pop("direction"), **attrs), against="ort")


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("op, gates", [("LSTM", 4), ("GRU", 3)])
def test_sequence_lengths_match_onnxruntime(executor, op, gates):
    got = check(executor, *_rnn_model(op, gates, "bidirectional", lens=True), against="ort")
    assert not got["Y"][3:, :, 1].any()  # the second sequence has 3 steps: its padded outputs are zero


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("equation, shapes", [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]),
                                              ("...ij,...jk", [(2, 3, 4), (4, 2)]), ("i,j->ij", [(3,), (5,)])])
def test_einsum(executor, equation, shapes):
    ins = [(f"x{i}", T.FLOAT, list(s)) for i, s in enumerate(shapes)]
    rng = np.random.default_rng(5)
    check(executor, one_node("Einsum", ins, Y_OUT, 12, equation=equation),
          {n: rng.standard_normal(s).astype(np.float32) for (n, _, _), s in zip(ins, shapes)})


# --- control flow and the rest ---------------------------------------------------------------------------

@pytest.mark.parametrize("executor", EXECUTORS)
def test_loop_reads_the_enclosing_scope(executor):
    body = helper.make_graph([helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
                              helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Mul", ["acc_out", "acc_out"], ["sq"])], "body",
                             [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("acc_in", T.FLOAT, [3])],
                             [vi("cond_out", T.BOOL, []), vi("acc_out", T.FLOAT, [3]), vi("sq", T.FLOAT, [3])])
    nodes = [helper.make_node("Neg", ["x"], ["step"]),  # an outer-scope value the body uses
             helper.make_node("Loop", ["n", "go", "x"], ["acc", "squares"], body=body)]
    model = make_model(nodes, [vi("x", T.FLOAT, [3])], [vi("acc", T.FLOAT, None), vi("squares", T.FLOAT, None)],
                       [const("n", np.array(4, np.int64)), const("go", np.array(True))])
    check(executor, model, {"x": np.array([1.0, 2.0, -3.0], np.float32)})


@pytest.mark.parametrize("executor", executors("torch", "ref"))
def test_float64_erf_is_exact(executor):
    # torch.erf in float64 agrees with math.erf (the ref backend's own Erf kernel) to the last bit or so
    x = np.linspace(-3, 3, 101)
    got = run(executor, one_node("Erf", [("x", T.DOUBLE, [101])], [("y", T.DOUBLE, [101])]), {"x": x})["y"]
    assert np.abs(got - np.array([math.erf(v) for v in x])).max() <= 2.3e-16


@pytest.mark.parametrize("executor", EXECUTORS)
def test_random_training_dropout_is_unsupported_at_run_time(executor):
    model = one_node("Dropout", X_IN, Y_OUT, 13, [const("ratio", np.float32(0.5)), const("train", np.array(True))])
    with pytest.raises(UnsupportedError, match="training_mode=1"):
        run(executor, model, {"x": X234})


@pytest.mark.parametrize("executor", EXECUTORS)
def test_unknown_op_is_unsupported_at_open(executor):
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), node], "g", [vi("x", T.FLOAT, [2])],
                              [vi("y", T.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedError) as err:
        open_session(executor, model)  # refused before anything runs
    assert f"op com.example.Frobnicate (opset 1) is not supported by the {executor} backend" in err.value.message
    assert err.value.status == "unsupported" and err.value.hint
