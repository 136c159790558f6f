"""Element-wise math, comparisons, logic and activations on TensorFlow kernels."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from ..common.executor import OpContext
from .table import arg, dtype, op, unsupported

_WIDE = {tf.uint8: tf.int32, tf.uint16: tf.int32, tf.int8: tf.int32, tf.int16: tf.int32, tf.uint32: tf.int64,
         tf.uint64: tf.int64}


def widened(fn: Callable[..., Any], *xs: Any) -> Any:
    """fn over xs, computed in a wider integer type where TF has no kernel for the narrow one (the
    result is exact and cast back: ONNX integer math wraps the same way)."""
    dtype = xs[0].dtype
    wide = _WIDE.get(dtype)
    if wide is None:
        return fn(*xs)
    return tf.cast(fn(*[tf.cast(x, wide) for x in xs]), dtype)


def _unary(name: str, fn: Callable[[Any], Any], since: int = 1) -> None:
    op(name, since=since)(lambda ctx, inputs, attrs: fn(inputs[0]))


def _unsigned_identity(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda x: x if x.dtype.is_unsigned else fn(x)


for _name, _fn in {
    "Exp": tf.math.exp, "Log": tf.math.log, "Sqrt": tf.math.sqrt, "Reciprocal": tf.math.reciprocal,
    "Floor": tf.math.floor, "Ceil": tf.math.ceil, "Round": tf.math.round, "Sin": tf.math.sin,
    "Cos": tf.math.cos, "Tan": tf.math.tan, "Asin": tf.math.asin, "Acos": tf.math.acos, "Atan": tf.math.atan,
    "Sinh": tf.math.sinh, "Cosh": tf.math.cosh, "Asinh": tf.math.asinh, "Acosh": tf.math.acosh,
    "Atanh": tf.math.atanh, "Erf": tf.math.erf, "Tanh": tf.math.tanh, "Sigmoid": tf.math.sigmoid,
    "Relu": tf.nn.relu, "Softplus": tf.math.softplus, "Softsign": tf.nn.softsign, "Not": tf.math.logical_not,
    "IsNaN": tf.math.is_nan, "BitwiseNot": tf.bitwise.invert,
    "Abs": _unsigned_identity(tf.math.abs), "Neg": lambda x: widened(tf.math.negative, x),
    "Sign": lambda x: tf.cast(x > 0, x.dtype) if x.dtype.is_unsigned else tf.math.sign(x),
}.items():
    _unary(_name, _fn)


@op("IsInf")
def is_inf(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    inf = tf.math.is_inf(x)
    if not attrs["detect_positive"]:
        inf = tf.logical_and(inf, x < 0)
    if not attrs["detect_negative"]:
        inf = tf.logical_and(inf, x > 0)
    return inf


def _div(a: Any, b: Any) -> Any:
    if a.dtype.is_floating:
        return tf.raw_ops.RealDiv(x=a, y=b)
    return tf.truncatediv(a, b)


def _pow(a: Any, b: Any) -> Any:
    if b.dtype != a.dtype:
        b = tf.cast(b, a.dtype)
    if a.dtype.is_unsigned:
        return tf.cast(tf.math.pow(tf.cast(a, tf.int64), tf.cast(b, tf.int64)), a.dtype)
    return tf.math.pow(a, b)


def _bool_safe(fn: Callable[[Any, Any], Any], logical: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: logical(a, b) if a.dtype == tf.bool else fn(a, b)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "Add": tf.math.add, "Sub": tf.math.subtract, "Mul": tf.math.multiply, "Div": _div, "Pow": _pow,
    "And": tf.math.logical_and, "Or": tf.math.logical_or, "Xor": tf.math.logical_xor,
    "Equal": tf.math.equal, "Greater": tf.math.greater, "Less": tf.math.less,
    "GreaterOrEqual": tf.math.greater_equal, "LessOrEqual": tf.math.less_equal,
    "BitwiseAnd": tf.bitwise.bitwise_and, "BitwiseOr": tf.bitwise.bitwise_or, "BitwiseXor": tf.bitwise.bitwise_xor,
}
for _name, _fn in _BINARY.items():
    op(_name)(functools.partial(lambda fn, ctx, inputs, attrs: fn(inputs[0], inputs[1]), _fn))


@op("Mod")
def mod(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    a, b = inputs
    if attrs["fmod"]:
        if a.dtype in (tf.float16, tf.bfloat16):  # no half-precision kernel: exact in float32
            return tf.cast(tf.truncatemod(tf.cast(a, tf.float32), tf.cast(b, tf.float32)), a.dtype)
        return widened(tf.truncatemod, a, b) if a.dtype.is_integer else tf.truncatemod(a, b)
    return tf.math.floormod(a, b)


@op("BitShift")
def bit_shift(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, n = inputs
    left = attrs["direction"] == "LEFT"
    # A count outside [0, width) shifts every bit out (TF's kernels leave it undefined): zero, or the sign.
    width = x.dtype.size * 8
    out_of_range = tf.logical_or(n < 0, n >= width) if not n.dtype.is_unsigned else n >= width
    safe = tf.where(out_of_range, tf.zeros_like(n), n)
    y = tf.bitwise.left_shift(x, safe) if left else tf.bitwise.right_shift(x, safe)
    spill = tf.zeros_like(x) if left or x.dtype.is_unsigned else tf.where(x < 0, -tf.ones_like(x), tf.zeros_like(x))
    return tf.where(out_of_range, spill, y)


def _variadic(fn: Callable[[Any, Any], Any]) -> Callable[[OpContext, list[Any], dict[str, Any]], Any]:
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        return functools.reduce(fn, [x for x in inputs if x is not None])
    return run


op("Sum")(_variadic(tf.math.add))
op("Max")(_variadic(_bool_safe(tf.math.maximum, tf.math.logical_or)))
op("Min")(_variadic(_bool_safe(tf.math.minimum, tf.math.logical_and)))


@op("Mean")
def mean(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    xs = [x for x in inputs if x is not None]
    return tf.math.add_n(xs) / tf.cast(len(xs), xs[0].dtype) if len(xs) > 1 else xs[0]


@op("Where")
def where(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.where(inputs[0], inputs[1], inputs[2])


@op("Clip", until=10)
def clip_attrs(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    lo, hi = attrs.get("min", float("-inf")), attrs.get("max", float("inf"))
    return tf.minimum(tf.maximum(x, tf.cast(lo, x.dtype)), tf.cast(hi, x.dtype))


@op("Clip", since=11)
def clip(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    lo = arg(inputs, 1)
    hi = arg(inputs, 2)
    if lo is not None:
        x = tf.maximum(x, lo)
    if hi is not None:
        x = tf.minimum(x, hi)
    return x


@op("LeakyRelu")
def leaky_relu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.nn.leaky_relu(inputs[0], alpha=attrs["alpha"])


@op("PRelu")
def prelu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, slope = inputs
    return tf.where(x < 0, x * slope, x)


@op("Elu")
def elu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    if attrs["alpha"] == 1.0:
        return tf.nn.elu(x)
    return tf.where(x > 0, x, tf.cast(attrs["alpha"], x.dtype) * tf.math.expm1(x))


@op("Selu")
def selu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    alpha, gamma = tf.cast(attrs["alpha"], x.dtype), tf.cast(attrs["gamma"], x.dtype)
    return gamma * tf.where(x > 0, x, alpha * tf.math.expm1(x))


@op("Celu")
def celu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    alpha = tf.cast(attrs["alpha"], x.dtype)
    return tf.maximum(x, 0) + tf.minimum(tf.zeros_like(x), alpha * tf.math.expm1(x / alpha))


@op("HardSigmoid")
def hard_sigmoid(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    y = tf.cast(attrs["alpha"], x.dtype) * x + tf.cast(attrs["beta"], x.dtype)
    return tf.clip_by_value(y, tf.cast(0, x.dtype), tf.cast(1, x.dtype))


@op("HardSwish")
def hard_swish(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return x * tf.clip_by_value(x / 6 + tf.cast(0.5, x.dtype), tf.cast(0, x.dtype), tf.cast(1, x.dtype))


@op("ThresholdedRelu")
def thresholded_relu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return tf.where(x > tf.cast(attrs["alpha"], x.dtype), x, tf.zeros_like(x))


@op("Shrink")
def shrink(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    lambd, bias = tf.cast(attrs["lambd"], x.dtype), tf.cast(attrs["bias"], x.dtype)
    return tf.where(x < -lambd, x + bias, tf.where(x > lambd, x - bias, tf.zeros_like(x)))


@op("Mish")
def mish(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return x * tf.math.tanh(tf.math.softplus(x))


@op("Gelu")
def gelu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.nn.gelu(inputs[0], approximate=attrs["approximate"] == "tanh")


@op("Swish")
def swish(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    alpha = attrs.get("alpha", 1.0)
    return tf.nn.silu(x) if alpha == 1.0 else x * tf.math.sigmoid(tf.cast(alpha, x.dtype) * x)


@op("Cast")
def cast(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    from .table import dtype

    return _cast(ctx, inputs[0], dtype(ctx, attrs["to"]))


@op("CastLike")
def cast_like(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return _cast(ctx, inputs[0], inputs[1].dtype)


def _cast(ctx: OpContext, x: Any, dtype: Any) -> Any:
    if x.dtype == dtype:
        return tf.identity(x)
    if tf.string in (x.dtype, dtype):
        raise unsupported(ctx, "string conversion (TensorFlow formats numbers differently from ONNX)")
    if x.dtype == tf.bfloat16 and dtype not in (tf.float32, tf.float64):
        return tf.cast(tf.cast(x, tf.float32), dtype)
    if dtype == tf.bfloat16 and x.dtype not in (tf.float32, tf.float64):
        return tf.cast(tf.cast(x, tf.float32), dtype)
    return tf.cast(x, dtype)


@op("BitCast")
def bit_cast(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, to = inputs[0], dtype(ctx, attrs["to"])
    if x.dtype == tf.bool or to == tf.bool:
        return tf.cast(tf.bitcast(tf.cast(x, tf.uint8) if x.dtype == tf.bool else x, tf.uint8), to)
    return tf.bitcast(x, to)


@op("Det")
def det(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.linalg.det(inputs[0])
