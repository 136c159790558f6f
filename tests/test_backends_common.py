"""The framework-neutral ONNX spec helpers of backends/common, on their own, against onnx.reference (and ONNX's
shape inference where onnx.reference's pool and ConvTranspose disagree with the conformance suite): window
geometry (auto_pad, pads, ceil_mode, ConvTranspose padding), Resize's output geometry, coordinates and nearest
rounding, the Loop/Scan/SequenceMap drivers (run here with NumPy for the framework's operations), sequence
positions and Attention's position rules."""
import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx.reference import ReferenceEvaluator

from comparator.backends.common import attention, loops, pool, sequences
from comparator.backends.common.resize import axis_rois, nearest_indices, output_geometry, source_coordinates


def run_ref(node, feeds, opset=19):
    inputs = [helper.make_tensor_value_info(name, T.FLOAT, None) for name in node.input if name]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", T.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, feeds)[0]


def inferred_shape(node, *shapes, opset=19):
    """The output shape ONNX's shape inference gives `node` over inputs of the given shapes."""
    names = [n for n in node.input if n]
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info(n, T.FLOAT, s) for n, s in zip(names, shapes)],
                              [helper.make_tensor_value_info("y", T.FLOAT, None)])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]),
                                              strict_mode=True)
    return [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]


POOL_GRID = [dict(kernel=k, strides=s, dilations=d, auto_pad=a, pads=p, ceil=c)
             for k, s, d, (a, p), c in itertools.product(
                 [[3, 2], [2, 3]], [[1, 1], [2, 3]], [[1, 1], [2, 1]],
                 [("NOTSET", None), ("NOTSET", [1, 0, 1, 1]), ("SAME_UPPER", None), ("SAME_LOWER", None),
                  ("VALID", None)],
                 [0, 1])]


@pytest.mark.parametrize("case", POOL_GRID, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_pool_output_size_matches_onnx_shape_inference(case):
    size = [9, 8]
    attrs = {"kernel_shape": case["kernel"], "strides": case["strides"], "dilations": case["dilations"],
             "auto_pad": case["auto_pad"], "ceil_mode": case["ceil"]}
    if case["pads"]:
        attrs["pads"] = case["pads"]
    strides, dilations, pads = pool.window(attrs, size, case["kernel"])
    extra = pool.ceil_extra(size, case["kernel"], strides, dilations, pads, bool(case["ceil"]))
    want = inferred_shape(helper.make_node("MaxPool", ["x"], ["y"], **attrs), [1, 1, *size])[2:]
    # ceil_mode drops a last window that would start in the end padding (the spec's rule, which the conformance
    # suite checks and shape inference does not apply).
    want = [w - 1 if case["ceil"] and (w - 1) * s >= n + b else w
            for w, s, n, (b, _) in zip(want, strides, size, pads)]
    assert pool.output_size(size, case["kernel"], strides, dilations, pads, extra) == want


@pytest.mark.parametrize("case", [c for c in POOL_GRID if not c["ceil"]],
                         ids=lambda c: "-".join(str(v) for v in c.values()))
def test_conv_padding_matches_reference_conv(case):
    size = [9, 8]
    attrs = {"kernel_shape": case["kernel"], "strides": case["strides"], "dilations": case["dilations"],
             "auto_pad": case["auto_pad"]}
    if case["pads"]:
        attrs["pads"] = case["pads"]
    strides, dilations, pads = pool.window(attrs, size, case["kernel"])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 1, *size)).astype(np.float32)
    w = rng.standard_normal((1, 1, *case["kernel"])).astype(np.float32)
    want = run_ref(helper.make_node("Conv", ["x", "w"], ["y"], **attrs), {"x": x, "w": w})
    # The same convolution with the resolved padding written out explicitly gives the same values.
    flat = [b for b, _ in pads] + [e for _, e in pads]
    explicit = dict(attrs, auto_pad="NOTSET", pads=flat)
    got = run_ref(helper.make_node("Conv", ["x", "w"], ["y"], **explicit), {"x": x, "w": w})
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert pool.output_size(size, case["kernel"], strides, dilations, pads) == list(want.shape[2:])


def test_split_puts_the_odd_pad_where_auto_pad_says():
    assert pool.split(3, upper=True) == (1, 2)
    assert pool.split(3, upper=False) == (2, 1)
    assert pool.explicit({"pads": [1, 2, 3, 4]}, 2) == [(1, 3), (2, 4)]
    assert pool.per_axis({}, "strides", 3, 1) == [1, 1, 1]


@pytest.mark.parametrize("attrs", [
    {}, {"strides": [2, 2]}, {"strides": [2, 1], "output_padding": [1, 0]}, {"pads": [1, 0, 0, 1]},
    {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
    {"strides": [2, 2], "output_shape": [9, 8]}, {"dilations": [2, 1], "strides": [3, 2]}])
def test_transpose_pads_give_the_conv_transpose_shape(attrs):
    size, kernel = [4, 5], [3, 3]
    n = len(size)
    strides = pool.per_axis(attrs, "strides", n, 1)
    dilations = pool.per_axis(attrs, "dilations", n, 1)
    out_pad = pool.per_axis(attrs, "output_padding", n, 0)
    pads = pool.transpose_pads(attrs, size, kernel, strides, dilations, out_pad)
    full = [strides[i] * (size[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 for i in range(n)]
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=kernel, **attrs)
    want = inferred_shape(node, [1, 1, *size], [1, 1, *kernel])[2:]
    assert [f - b - e for f, (b, e) in zip(full, pads)] == want
    if "output_shape" not in attrs:  # onnx.reference computes these (its output_shape path fails on its own)
        rng = np.random.default_rng(2)
        x = rng.standard_normal((1, 1, *size)).astype(np.float32)
        w = rng.standard_normal((1, 1, *kernel)).astype(np.float32)
        assert list(run_ref(node, {"x": x, "w": w}).shape[2:]) == want


@pytest.mark.parametrize("scales, sizes, policy", [
    ([1.0, 1.0, 2.0, 1.5], None, "stretch"), ([1.0, 1.0, 0.6, 0.35], None, "stretch"),
    (None, [1, 1, 7, 3], "stretch"), (None, [1, 1, 7, 3], "not_larger"), (None, [1, 1, 7, 3], "not_smaller")])
def test_resize_output_geometry_matches_reference_shape(scales, sizes, policy):
    shape = [1, 1, 5, 6]
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    inputs, feeds = ["x", "", "scales" if scales else ""], {"x": x}
    if scales:
        feeds["scales"] = np.array(scales, np.float32)
    else:
        inputs.append("sizes")
        feeds["sizes"] = np.array(sizes, np.int64)
    node = helper.make_node("Resize", inputs, ["y"], mode="nearest", keep_aspect_ratio_policy=policy)
    inputs_vi = [helper.make_tensor_value_info("x", T.FLOAT, None)]
    if scales:
        inputs_vi.append(helper.make_tensor_value_info("scales", T.FLOAT, None))
    else:
        inputs_vi.append(helper.make_tensor_value_info("sizes", T.INT64, None))
    graph = helper.make_graph([node], "g", inputs_vi, [helper.make_tensor_value_info("y", T.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    sc, out = output_geometry(shape, [0, 1, 2, 3], scales, sizes, policy)
    assert out == list(want.shape)
    if scales:
        assert sc == scales


@pytest.mark.parametrize("mode", ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                  "asymmetric", "tf_crop_and_resize"])
@pytest.mark.parametrize("n_in, scale", [(5, 2.0), (6, 0.5), (4, 1.75), (7, 0.3)])
def test_source_coordinates_match_reference_linear_resize(mode, n_in, scale):
    """Linear resize of 0, 1, ..., n-1 returns each output's source coordinate (clamped into the input)."""
    roi = (0.2, 0.9)
    x = np.arange(n_in, dtype=np.float32).reshape(1, 1, n_in)
    feeds = {"x": x, "roi": np.array([0, 0, roi[0], 1, 1, roi[1]], np.float32),
             "scales": np.array([1, 1, scale], np.float32)}
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="linear",
                            coordinate_transformation_mode=mode, extrapolation_value=-100.0)
    want = run_ref(node, feeds).reshape(-1)
    n_out = int(np.floor(n_in * scale))
    coords, outside = source_coordinates(mode, n_in, n_out, scale, roi if mode == "tf_crop_and_resize" else None)
    got = np.clip(coords, 0, n_in - 1)
    if outside is not None:
        got = np.where(outside, -100.0, got)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_axis_rois_pair_starts_and_ends_per_axis():
    assert axis_rois([0.1, 0.2, 0.8, 0.9], [2, 3]) == {2: (pytest.approx(0.1), pytest.approx(0.8)),
                                                      3: (pytest.approx(0.2), pytest.approx(0.9))}
    assert axis_rois(None, [0]) is None
    assert axis_rois(np.zeros(0), [0]) is None


@pytest.mark.parametrize("mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("coord, n_in, scale", [("asymmetric", 4, 2.0), ("half_pixel", 6, 0.5), ("half_pixel", 5, 1.7),
                                                ("align_corners", 5, 1.5), ("asymmetric", 7, 0.6)])
def test_nearest_indices_match_reference_nearest_resize(mode, coord, n_in, scale):
    """Nearest resize of 0, 1, ..., n-1 returns the input position each output reads (ties included)."""
    x = np.arange(n_in, dtype=np.float32).reshape(1, 1, n_in)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest", coordinate_transformation_mode=coord,
                            nearest_mode=mode)
    want = run_ref(node, {"x": x, "scales": np.array([1, 1, scale], np.float32)}).reshape(-1)
    coords, _ = source_coordinates(coord, n_in, len(want), float(np.float32(scale)), None)  # the scale as fed
    got = nearest_indices(mode, coords, n_in)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


# --- the loop drivers, with NumPy as the framework and onnx.reference running each body -----------------------

def ref_body(body, feeds):
    """Run a body subgraph on its own (the bodies here read nothing from the enclosing scope)."""
    return ReferenceEvaluator(helper.make_model(body, opset_imports=[helper.make_opsetid("", 17)])).run(None, feeds)


def ref_node(node, inputs, outputs, feeds, opset=17):
    graph = helper.make_graph([node], "g", inputs, outputs)
    return ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])).run(None, feeds)


def vi(name, elem, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def loop_body():
    """acc += i; go on while i < 2; the scan output is acc squared."""
    two = helper.make_tensor("two", T.INT64, [], [2])
    return helper.make_graph([helper.make_node("Cast", ["i"], ["fi"], to=T.FLOAT),
                              helper.make_node("Add", ["acc_in", "fi"], ["acc_out"]),
                              helper.make_node("Less", ["i", "two"], ["cond_out"]),
                              helper.make_node("Mul", ["acc_out", "acc_out"], ["sq"])], "body",
                             [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("acc_in", T.FLOAT, [2])],
                             [vi("cond_out", T.BOOL, []), vi("acc_out", T.FLOAT, [2]), vi("sq", T.FLOAT, [2])],
                             [two])


@pytest.mark.parametrize("trip, cond", [(5, True), (1, True), (None, True), (4, None)])
def test_loop_driver_matches_reference_loop(trip, cond):
    body = loop_body()
    acc = np.array([1.0, -2.0], np.float32)
    # An omitted condition is true (onnx.reference runs no iteration for it: it is given here instead).
    feeds = {"acc": acc, "cond": np.array(True if cond is None else cond)}
    names = ["", "cond", "acc"]
    inputs = [vi("acc", T.FLOAT, [2]), vi("cond", T.BOOL, [])]
    if trip is not None:
        names[0], feeds["trip"] = "trip", np.array(trip, np.int64)
        inputs.append(vi("trip", T.INT64, []))
    want = ref_node(helper.make_node("Loop", names, ["acc_out", "sqs"], body=body), inputs,
                    [vi("acc_out", T.FLOAT), vi("sqs", T.FLOAT)], feeds)
    got = numpy_loop(body, trip, True if cond is None else cond, acc)
    assert len(got) == 2
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def numpy_loop(body, trip, go, acc):
    return loops.loop(body, ref_body, trip, go, [acc], counter=lambda i: np.array(i, np.int64), flag=np.array,
                      truth=lambda c: bool(np.asarray(c).reshape(-1)[0]), stack=np.stack,
                      empty=lambda: np.zeros(0, np.float32))


def test_loop_driver_without_an_iteration_returns_the_inputs_and_empty_scan_outputs():
    # (onnx.reference cannot stack the scan outputs of a loop that ran no iteration)
    acc = np.array([1.0, -2.0], np.float32)
    for trip, go in ((3, False), (0, True)):
        carried, scanned = numpy_loop(loop_body(), trip, go, acc)
        np.testing.assert_array_equal(carried, acc)
        assert scanned.shape == (0,) and scanned.dtype == np.float32


def scan_body():
    """state += x1 * x2; the scan outputs are the new state and x1 - x2."""
    return helper.make_graph([helper.make_node("Mul", ["x1", "x2"], ["p"]),
                              helper.make_node("Add", ["s_in", "p"], ["s_out"]),
                              helper.make_node("Identity", ["s_out"], ["s"]),
                              helper.make_node("Sub", ["x1", "x2"], ["d"])], "body",
                             [vi("s_in", T.FLOAT, [2]), vi("x1", T.FLOAT, [2]), vi("x2", T.FLOAT, [2])],
                             [vi("s_out", T.FLOAT, [2]), vi("s", T.FLOAT, [2]), vi("d", T.FLOAT, [2])])


@pytest.mark.parametrize("attrs", [
    {}, {"scan_input_axes": [1, 0], "scan_input_directions": [1, 0]},
    {"scan_input_axes": [-1, 0], "scan_output_axes": [1, -2], "scan_output_directions": [0, 1]},
    {"scan_input_directions": [1, 1], "scan_output_axes": [-1, 0], "scan_output_directions": [1, 1]}],
    ids=["defaults", "input-axes-directions", "negative-axes", "all-reversed"])
def test_scan_driver_matches_reference_scan(attrs):
    rng = np.random.default_rng(3)
    axes = attrs.get("scan_input_axes", [0, 0])
    x1 = rng.standard_normal((3, 2) if axes[0] == 0 else (2, 3)).astype(np.float32)
    x2 = rng.standard_normal((3, 2)).astype(np.float32)
    s0 = np.array([0.5, -1.0], np.float32)
    body = scan_body()
    # onnx.reference scans along axis 0, forward, only: it runs the scan in that form (inputs moved and reversed
    # first, outputs reversed and moved after), which is how the spec defines the axes and directions.
    in_dirs = attrs.get("scan_input_directions", [0, 0])
    fed = [np.moveaxis(x, a, 0)[::-1] if r else np.moveaxis(x, a, 0) for x, a, r in zip((x1, x2), axes, in_dirs)]
    node = helper.make_node("Scan", ["s0", "x1", "x2"], ["s", "ss", "ds"], body=body, num_scan_inputs=2)
    want = ref_node(node, [vi("s0", T.FLOAT, [2]), vi("x1", T.FLOAT, [3, 2]), vi("x2", T.FLOAT, [3, 2])],
                    [vi(n, T.FLOAT) for n in ("s", "ss", "ds")], {"s0": s0, "x1": fed[0], "x2": fed[1]})
    want = want[:1] + [np.moveaxis(w[::-1] if r else w, 0, a)
                       for w, a, r in zip(want[1:], attrs.get("scan_output_axes", [0, 0]),
                                          attrs.get("scan_output_directions", [0, 0]))]
    got = loops.scan(body, ref_body, [s0, x1, x2], dict(attrs, num_scan_inputs=2), rank=np.ndim,
                     unstack=lambda x, axis: list(np.moveaxis(x, axis, 0)),
                     stack=lambda values, axis: np.stack(values, axis=axis))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_sequence_map_driver_matches_reference_sequence_map():
    body = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"]), helper.make_node("Shape", ["x"], ["n"])],
                             "body", [vi("x", T.FLOAT, None), vi("y", T.FLOAT, None)],
                             [vi("z", T.FLOAT, None), vi("n", T.INT64, None)])
    seq = [np.arange(k, dtype=np.float32) for k in (1, 3, 2)]
    ys = [np.float32(10.0)] * 3
    for other in (ys, np.float32(10.0)):  # a sequence read per element, or one tensor given whole
        second = (helper.make_tensor_sequence_value_info("y", T.FLOAT, None) if isinstance(other, list)
                  else vi("y", T.FLOAT, []))
        want = ref_node(helper.make_node("SequenceMap", ["x", "y"], ["zs", "ns"], body=body),
                        [helper.make_tensor_sequence_value_info("x", T.FLOAT, None), second],
                        [helper.make_tensor_sequence_value_info(n, e, None) for n, e in (("zs", T.FLOAT),
                                                                                         ("ns", T.INT64))],
                        {"x": seq, "y": other}, opset=17)
        got = loops.sequence_map(body, ref_body, [seq, other])
        assert [len(g) for g in got] == [len(w) for w in want] == [3, 3]
        for g, w in zip(got, want):
            for a, b in zip(g, w):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("op, pos", [("SequenceAt", 0), ("SequenceAt", -1), ("SequenceAt", 2), ("SequenceAt", -3),
                                     ("SequenceInsert", None), ("SequenceInsert", 0), ("SequenceInsert", 2),
                                     ("SequenceInsert", -1), ("SequenceErase", None), ("SequenceErase", 1),
                                     ("SequenceErase", -3)])
def test_sequence_positions_match_reference(op, pos):
    """(onnx.reference wraps an insert at position n round to 0; the spec appends: see the next test)"""
    seq = [np.full(2, k, np.float32) for k in range(3)]
    new = np.full(2, 9.0, np.float32)
    names = ["seq"] + (["t"] if op == "SequenceInsert" else [])
    feeds = {"seq": seq, "t": new}
    inputs = [helper.make_tensor_sequence_value_info("seq", T.FLOAT, None), vi("t", T.FLOAT, [2])]
    if pos is not None:
        names.append("pos")
        feeds["pos"] = np.array(pos, np.int64)
        inputs.append(vi("pos", T.INT64, []))
    out = vi("y", T.FLOAT) if op == "SequenceAt" else helper.make_tensor_sequence_value_info("y", T.FLOAT, None)
    want = ref_node(helper.make_node(op, names, ["y"]), inputs if op == "SequenceInsert" else inputs[:1] + inputs[2:],
                    [out], {k: v for k, v in feeds.items() if k in names})[0]
    got = {"SequenceAt": lambda: sequences.at(seq, pos), "SequenceInsert": lambda: sequences.insert(seq, new, pos),
           "SequenceErase": lambda: sequences.erase(seq, pos)}[op]()
    if op == "SequenceAt":
        np.testing.assert_array_equal(got, want)
    else:
        assert [float(a[0]) for a in got] == [float(a[0]) for a in want]
        assert [float(a[0]) for a in seq] == [0.0, 1.0, 2.0]  # the input sequence is left as it was


def test_sequence_positions_outside_the_sequence_are_refused():
    assert sequences.position(None, 3, 2) == 2 and sequences.position(-3, 3, 0) == 0
    assert sequences.position(3, 3, 0, end=True) == 3
    assert sequences.insert([0, 1, 2], 9, 3) == [0, 1, 2, 9] == sequences.insert([0, 1, 2], 9, None)
    for pos in (3, -4):
        with pytest.raises(IndexError, match="outside a sequence of 3"):
            sequences.at([0, 1, 2], pos)
    with pytest.raises(IndexError):
        sequences.insert([0, 1, 2], 9, 4)
    with pytest.raises(IndexError):
        sequences.erase([], None)


# --- Attention: the numbers and position rules, against onnx.reference's Attention --------------------------

def test_attention_scale_padding_and_head_repeats():
    assert attention.scale_root(None, 16) == pytest.approx(0.5)
    assert attention.scale_root(0.25, 16) == pytest.approx(0.5)
    assert attention.mask_padding(3, 5) == 2 and attention.mask_padding(5, 5) == 0
    assert attention.kv_repeats(8, 2) == 4 and attention.kv_repeats(4, 4) == 1 and attention.kv_repeats(3, 2) == 1


@pytest.mark.parametrize("attrs", [{}, {"is_causal": 1}, {"left_window_size": 1}, {"right_window_size": 0},
                                   {"is_causal": 1, "left_window_size": 2}, {"left_window_size": 0,
                                                                             "right_window_size": 1}])
@pytest.mark.parametrize("past", [0, 2])
def test_attention_position_rule_matches_reference_masking(attrs, past):
    """Q = 0 makes every raw score 0: the masked scores onnx.reference exposes are 0 where a key is allowed and -inf
    where it is not, which is what the rule says for query position p = i + past and key position j."""
    b, h, q_len, kv_len, d = 1, 1, 3, 3, 4
    rng = np.random.default_rng(4)
    feeds = {"q": np.zeros((b, h, q_len, d), np.float32),
             "k": rng.standard_normal((b, h, kv_len, d)).astype(np.float32),
             "v": rng.standard_normal((b, h, kv_len, d)).astype(np.float32)}
    names = ["q", "k", "v"]
    if past:
        names += ["", "pk", "pv"]
        feeds["pk"] = rng.standard_normal((b, h, past, d)).astype(np.float32)
        feeds["pv"] = rng.standard_normal((b, h, past, d)).astype(np.float32)
    node = helper.make_node("Attention", names, ["y", "", "", "qk"], qk_matmul_output_mode=2, **attrs)
    want = ref_node(node, [vi(n, T.FLOAT, list(feeds[n].shape)) for n in names if n],
                    [vi("y", T.FLOAT), vi("qk", T.FLOAT)], feeds, opset=25)[1][0, 0]
    rule = attention.position_rule(attrs)
    p = np.arange(q_len)[:, None] + past
    j = np.arange(past + kv_len)[None, :]
    allowed = np.ones((q_len, past + kv_len), bool) if rule is None else np.broadcast_to(rule(p, j), want.shape)
    np.testing.assert_array_equal(np.isneginf(want), ~allowed)
