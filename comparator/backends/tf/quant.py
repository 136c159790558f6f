"""Integer quantization ops (8- and 16-bit types; 4-bit, 2-bit and float8 types are refused at open()).

Quantize rounds half to even and saturates, dequantize subtracts the zero point in float32; integer products
(MatMulInteger, ConvInteger and the QLinear ops' accumulators) are exact in int32/float64.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from ..common.executor import OpContext
from .conv import conv
from .table import arg, axis_of, dtype, op, rank


def _per_axis(v: Any, x: Any, axis: int, block: int) -> Any:
    """Scale or zero point broadcastable to x: scalar, per axis, or per block along axis."""
    if rank(v) == 0 or v.shape.num_elements() == 1:
        return tf.reshape(v, [])
    axis = axis_of(axis, rank(x))
    if block:
        v = tf.repeat(v, block, axis=axis)
        return tf.gather(v, tf.range(x.shape[axis]), axis=axis)
    shape = [1] * rank(x)
    shape[axis] = -1
    return tf.reshape(v, shape)


def _quantize(x: Any, scale: Any, zero: Any, dtype: Any) -> Any:
    y = tf.math.round(x / scale)  # half to even, as ONNX asks
    if zero is not None:
        y = y + tf.cast(zero, y.dtype)
    return tf.cast(tf.clip_by_value(y, dtype.min, dtype.max), dtype)


@op("QuantizeLinear", since=10)
def quantize_linear(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale = inputs[0], inputs[1]
    zero = arg(inputs, 2)
    out = zero.dtype if zero is not None else (
        dtype(ctx, attrs["output_dtype"]) if attrs.get("output_dtype") else tf.uint8)
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    work = tf.float32 if x.dtype in (tf.float16, tf.bfloat16) else x.dtype
    if attrs.get("precision"):
        work = dtype(ctx, attrs["precision"])
    s = tf.cast(_per_axis(scale, x, axis, block), work)
    z = _per_axis(zero, x, axis, block) if zero is not None else None
    return _quantize(tf.cast(x, work), s, z, out)


@op("DequantizeLinear", since=10)
def dequantize_linear(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale = inputs[0], inputs[1]
    zero = arg(inputs, 2)
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    dx = tf.cast(x, tf.float32)
    if zero is not None:
        dx = dx - tf.cast(_per_axis(zero, x, axis, block), tf.float32)
    y = dx * tf.cast(_per_axis(scale, x, axis, block), tf.float32)
    out = dtype(ctx, attrs["output_dtype"]) if attrs.get("output_dtype") else scale.dtype
    return tf.cast(y, out)


@op("DynamicQuantizeLinear")
def dynamic_quantize_linear(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    lo = tf.minimum(tf.reduce_min(x), 0.0)
    hi = tf.maximum(tf.reduce_max(x), 0.0)
    scale = (hi - lo) / 255.0
    zero = tf.cast(tf.clip_by_value(tf.math.round(-lo / scale), 0, 255), tf.uint8)
    return [_quantize(x, scale, zero, tf.uint8), scale, zero]


def _centred(x: Any, zero: Any, axis_len: int | None = None) -> Any:
    """x - zero point, exact in int32; a per-row/column zero point is a vector."""
    v = tf.cast(x, tf.int32)
    if zero is None:
        return v
    z = tf.cast(zero, tf.int32)
    return v - (tf.reshape(z, [-1, 1]) if axis_len is not None and z.shape.num_elements() > 1 else z)


@op("MatMulInteger")
def matmul_integer(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    a, b = inputs[0], inputs[1]
    za = arg(inputs, 2)
    zb = arg(inputs, 3)
    return tf.linalg.matmul(_centred(a, za, a.shape[-2]), _centred(b, zb))


@op("ConvInteger")
def conv_integer(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w = inputs[0], inputs[1]
    zx = arg(inputs, 2)
    zw = arg(inputs, 3)
    xc = tf.cast(_centred(x, zx), tf.float64)
    wc = tf.cast(_centred(w, tf.reshape(zw, [-1, *([1] * (rank(w) - 1))]) if zw is not None and
                          zw.shape.num_elements() > 1 else zw), tf.float64)
    # Integer sums stay exact in float64 (TF's CPU convolutions take no integer types).
    return tf.cast(conv(ctx, [xc, wc], attrs), tf.int32)


def _requantize(acc: Any, scale: Any, zero: Any) -> Any:
    return _quantize(acc, scale, zero, zero.dtype)


@op("QLinearMatMul")
def qlinear_matmul(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    a, sa, za, b, sb, zb, sy, zy = inputs
    acc = tf.cast(tf.linalg.matmul(_centred(a, za, a.shape[-2]), _centred(b, zb)), tf.float64)
    scale = tf.cast(sa, tf.float64) * tf.cast(sb, tf.float64) / tf.cast(sy, tf.float64)
    if scale.shape.num_elements() > 1:
        scale = tf.reshape(scale, [1, -1])
    return _requantize(acc * scale, tf.constant(1.0, tf.float64), zy)


@op("QLinearConv")
def qlinear_conv(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, sx, zx, w, sw, zw, sy, zy = inputs[:8]
    bias = arg(inputs, 8)
    zw_b = tf.reshape(zw, [-1, *([1] * (rank(w) - 1))]) if zw.shape.num_elements() > 1 else zw
    acc = conv(ctx, [tf.cast(_centred(x, zx), tf.float64), tf.cast(_centred(w, zw_b), tf.float64)], attrs)
    if bias is not None:
        acc = acc + tf.reshape(tf.cast(bias, tf.float64), [1, -1, *([1] * (rank(x) - 2))])
    scale = tf.cast(sx, tf.float64) * tf.cast(sw, tf.float64) / tf.cast(sy, tf.float64)
    if scale.shape.num_elements() > 1:
        scale = tf.reshape(scale, [1, -1, *([1] * (rank(x) - 2))])
    return _requantize(acc * scale, tf.constant(1.0, tf.float64), zy)

