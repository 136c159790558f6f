"""The framework-neutral ONNX spec helpers of backends/common, on their own, against onnx.reference (and ONNX's
shape inference where onnx.reference's pool and ConvTranspose disagree with the conformance suite): window
geometry (auto_pad, pads, ceil_mode, ConvTranspose padding) and Resize's output geometry and coordinates."""
import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx.reference import ReferenceEvaluator

from comparator.backends.common import pool
from comparator.backends.common.resize import axis_rois, output_geometry, source_coordinates


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
