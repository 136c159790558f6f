"""The ref backend's own kernels, where onnx.reference is wrong: each checked against ONNX Runtime and the torch
executor, which share no code with it or with each other, in the model's type and promoted to float64."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper

from comparator.backends import resolve_variant
from comparator.variant import Variant
from conftest import const, make_model, vi

RNG = np.random.default_rng(0)


def run(variant: str, path, feeds):
    backend, options = resolve_variant(Variant.parse(variant))
    return backend.open(str(path), options).run(feeds)


def agree(tmp_path, model, feeds, output, atol=1e-5):
    """ref (model type and float64) agrees with ORT and torch; returns ref's value."""
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    values = {v: run(v, path, feeds)[output] for v in ("ref", "ref:dtype=float64", "ort", "torch")}
    ort_value = values["ort"].astype(np.float64)
    for variant, value in values.items():
        assert value.shape == ort_value.shape, variant
        np.testing.assert_allclose(value.astype(np.float64), ort_value, atol=atol, rtol=1e-5, err_msg=variant)
    return values["ref"]


@pytest.mark.parametrize("opset", [9, 12, 13, 14, 15])
def test_batch_normalization_in_inference_mode_uses_the_running_statistics(tmp_path, opset):
    c = 4
    mean, var = RNG.normal(size=c).astype(np.float32), RNG.uniform(0.5, 2.0, c).astype(np.float32)
    attrs = {"epsilon": 1e-3} if opset < 14 else {"epsilon": 1e-3, "training_mode": 0}
    if opset < 14:
        attrs["momentum"] = 0.9  # Paddle writes it; it must not switch the node to the batch's own statistics
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", **attrs)
    model = make_model([node], [vi("x", T.FLOAT, [2, c, 3, 3])], [vi("y", T.FLOAT, [2, c, 3, 3])],
                       [const("s", RNG.normal(size=c).astype(np.float32)),
                        const("b", RNG.normal(size=c).astype(np.float32)), const("m", mean), const("v", var)],
                       opset=opset)
    x = RNG.normal(size=(2, c, 3, 3)).astype(np.float32)
    y = agree(tmp_path, model, {"x": x}, "y")
    scale, bias = (np.asarray(model.graph.initializer[i].float_data or
                              np.frombuffer(model.graph.initializer[i].raw_data, np.float32)) for i in (0, 1))
    at = (slice(None), None, None)
    expected = scale[at] * (x - mean[at]) / np.sqrt(var[at] + 1e-3) + bias[at]  # the running statistics
    np.testing.assert_allclose(y, expected, atol=1e-5)
    batch_mean = x.mean(axis=(0, 2, 3))
    assert not np.allclose(batch_mean, mean, atol=0.1)  # the two readings really differ on this input


def test_global_max_pool_keeps_the_channel_axis_of_a_rank3_input(tmp_path):
    model = make_model([helper.make_node("GlobalMaxPool", ["x"], ["y"], name="gmp")],
                       [vi("x", T.FLOAT, [2, 5, 7])], [vi("y", T.FLOAT, [2, 5, 1])])
    x = RNG.normal(size=(2, 5, 7)).astype(np.float32)
    y = agree(tmp_path, model, {"x": x}, "y")
    assert y.shape == (2, 5, 1)
    np.testing.assert_array_equal(y[..., 0], x.max(axis=2))


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_gather_elements_on_a_long_axis(tmp_path, axis):
    # A BERT-style token-type buffer: [1, 512] gathered along its 512 positions (np.choose stops at 64).
    data_shape, idx_shape = ((1, 512), (1, 3)) if axis != 0 else ((512, 2), (3, 2))
    data = RNG.normal(size=data_shape).astype(np.float32)
    along = axis % 2
    indices = RNG.integers(-data_shape[along], data_shape[along], size=idx_shape).astype(np.int64)
    model = make_model([helper.make_node("GatherElements", ["x", "i"], ["y"], name="ge", axis=axis)],
                       [vi("x", T.FLOAT, list(data_shape)), vi("i", T.INT64, list(idx_shape))],
                       [vi("y", T.FLOAT, list(idx_shape))])
    y = agree(tmp_path, model, {"x": data, "i": indices}, "y", atol=0)
    np.testing.assert_array_equal(y, np.take_along_axis(data, indices % data_shape[along], axis=axis))


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset, axis, shape", [(9, None, (1, 5, 1, 1)), (11, 1, (1, 2, 3)), (11, -1, (2, 3, 4)),
                                                (12, 2, (2, 3, 4)), (13, 1, (1, 2, 3))])
def test_softmax_family_per_opset(tmp_path, op, opset, axis, shape):
    # Before opset 13 the input is coerced to 2-D at axis (default 1): SqueezeNet's Softmax over [1, 1000, 1, 1].
    x = RNG.normal(size=shape).astype(np.float32)
    attrs = {} if axis is None else {"axis": axis}
    model = make_model([helper.make_node(op, ["x"], ["y"], name="sm", **attrs)], [vi("x", T.FLOAT, list(shape))],
                       [vi("y", T.FLOAT, list(shape))], opset=opset)
    y = agree(tmp_path, model, {"x": x}, "y", atol=1e-6)
    if op == "Softmax":
        ax = (1 if axis is None else axis) % len(shape)
        sums = y.reshape(*shape[:ax], -1).sum(axis=-1) if opset < 13 else y.sum(axis=ax)
        np.testing.assert_allclose(sums, 1.0, rtol=1e-6)


@pytest.mark.parametrize("op, attrs, opset", [("HardSwish", {}, 14), ("Gelu", {}, 20),
                                              ("Gelu", {"approximate": "tanh"}, 20)])
def test_function_ops_keep_float64_precision(tmp_path, op, attrs, opset):
    # onnx.reference expands these through function bodies whose constants are float32 (1/6, sqrt(2)): in float64
    # that was 2e-8 off torch's float64. Now the two float64 oracles agree to float64 rounding.
    import onnx

    x = (RNG.normal(size=(4, 16)) * 3).astype(np.float64)
    model = make_model([helper.make_node(op, ["x"], ["y"], name="f", **attrs)], [vi("x", T.DOUBLE, [4, 16])],
                       [vi("y", T.DOUBLE, [4, 16])], opset=opset, ir_version=9)
    onnx.save(model, str(tmp_path / "m.onnx"))
    ref, torch_ = (run(v, tmp_path / "m.onnx", {"x": x})["y"] for v in ("ref", "torch"))
    np.testing.assert_allclose(ref, torch_, rtol=1e-14, atol=1e-15)
    agree(tmp_path, make_model([helper.make_node(op, ["x"], ["y"], name="f", **attrs)],
                               [vi("x", T.FLOAT, [4, 16])], [vi("y", T.FLOAT, [4, 16])], opset=opset, ir_version=9),
          {"x": x.astype(np.float32)}, "y", atol=1e-6)
