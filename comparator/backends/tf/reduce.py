"""Reductions, soft/hard max, matrix products, cumulative and top-k ops on TensorFlow kernels."""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ..common.executor import OpContext
from .table import axis_of, fail, ints, op, rank, static
from .math import widened


def _axes(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any], from_input: bool) -> Any:
    """The reduced axes, or None for 'all'; [] means no reduction (noop_with_empty_axes). Axes fed at run
    time stay a tensor (TF's reductions take one); only their count must be known."""
    if from_input:
        given = inputs[1] if len(inputs) > 1 else None
        if given is not None and static(given) is None:
            if given.shape.num_elements() is None:
                raise fail(ctx, "'axes' of unknown length")
            if given.shape.num_elements():
                return given
            given = None  # an empty list, whatever its values
        axes = ints(ctx, given, "axes") if given is not None else []
    else:
        axes = list(attrs.get("axes") or [])
    if not axes:
        return [] if attrs.get("noop_with_empty_axes", 0) else None
    r = rank(inputs[0])
    return sorted({axis_of(a, r) for a in axes})


def _reduce(fn: Callable[[Any, Any, bool], Any]) -> Callable[[OpContext, list[Any], dict[str, Any]], Any]:
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any], from_input: bool) -> Any:
        axes = _axes(ctx, inputs, attrs, from_input)
        x = inputs[0]
        if isinstance(axes, list) and not axes:
            return tf.identity(x)
        return fn(x, axes, bool(attrs["keepdims"]))
    return run


def _bool_or(reduce: Callable[..., Any], logical: Callable[..., Any]) -> Callable[[Any, Any, bool], Any]:
    return lambda x, a, k: logical(x, a, keepdims=k) if x.dtype == tf.bool else widened(
        lambda v: reduce(v, a, keepdims=k), x)


def _sum_square(x: Any, a: Any, k: bool) -> Any:
    return tf.reduce_sum(tf.math.square(x) if x.dtype.is_floating else x * x, a, keepdims=k)


def _l2(x: Any, a: Any, k: bool) -> Any:
    if x.dtype.is_floating:
        return tf.math.sqrt(_sum_square(x, a, k))
    return tf.cast(tf.math.sqrt(tf.cast(_sum_square(x, a, k), tf.float64)), x.dtype)


_REDUCTIONS: dict[str, tuple[int, Callable[[Any, Any, bool], Any]]] = {
    # ONNX moved `axes` from an attribute to an input at opset 13 for ReduceSum, 18 for the others.
    "ReduceSum": (13, lambda x, a, k: widened(lambda v: tf.reduce_sum(v, a, keepdims=k), x)),
    "ReduceMean": (18, lambda x, a, k: tf.reduce_mean(x, a, keepdims=k)),
    "ReduceMax": (18, _bool_or(tf.reduce_max, tf.reduce_any)),
    "ReduceMin": (18, _bool_or(tf.reduce_min, tf.reduce_all)),
    "ReduceProd": (18, lambda x, a, k: widened(lambda v: tf.reduce_prod(v, a, keepdims=k), x)),
    "ReduceL1": (18, lambda x, a, k: tf.reduce_sum(x if x.dtype.is_unsigned else tf.math.abs(x), a, keepdims=k)),
    "ReduceL2": (18, _l2),
    "ReduceSumSquare": (18, _sum_square),
    "ReduceLogSum": (18, lambda x, a, k: tf.math.log(tf.reduce_sum(x, a, keepdims=k))),
    "ReduceLogSumExp": (18, lambda x, a, k: tf.reduce_logsumexp(x, a, keepdims=k)),
}
for _name, (_since, _fn) in _REDUCTIONS.items():
    _run = _reduce(_fn)
    op(_name, until=_since - 1)(lambda ctx, inputs, attrs, run=_run: run(ctx, inputs, attrs, False))
    op(_name, since=_since)(lambda ctx, inputs, attrs, run=_run: run(ctx, inputs, attrs, True))


def _arg(find: Callable[..., Any]) -> Callable[[OpContext, list[Any], dict[str, Any]], Any]:
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        x = inputs[0]
        axis = axis_of(attrs["axis"], rank(x))
        if attrs.get("select_last_index", 0):
            n = tf.shape(x, out_type=tf.int64)[axis]
            out = n - 1 - find(tf.reverse(x, [axis]), axis=axis, output_type=tf.int64)
        else:
            out = find(x, axis=axis, output_type=tf.int64)
        return tf.expand_dims(out, axis) if attrs["keepdims"] else out
    return run


op("ArgMax")(_arg(tf.math.argmax))
op("ArgMin")(_arg(tf.math.argmin))


def _flat2d(fn: Callable[[Any, int], Any]) -> Callable[[OpContext, list[Any], dict[str, Any]], Any]:
    """Before opset 13 the soft/hard max ops treat the input as 2-D: [prod(dims < axis), prod(dims >= axis)]."""
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        x = inputs[0]
        axis = axis_of(attrs["axis"], rank(x))
        shape = tf.shape(x)
        flat = tf.reshape(x, tf.stack([tf.reduce_prod(shape[:axis]), tf.reduce_prod(shape[axis:])]))
        return tf.reshape(fn(flat, 1), shape)
    return run


def _on_axis(fn: Callable[[Any, int], Any]) -> Callable[[OpContext, list[Any], dict[str, Any]], Any]:
    return lambda ctx, inputs, attrs: fn(inputs[0], axis_of(attrs["axis"], rank(inputs[0])))


def _hardmax(x: Any, axis: int) -> Any:
    depth = tf.shape(x)[axis]
    return tf.one_hot(tf.math.argmax(x, axis=axis), depth, axis=axis, dtype=x.dtype)


for _name, _fn in {"Softmax": lambda x, a: tf.nn.softmax(x, axis=a),
                   "LogSoftmax": lambda x, a: tf.nn.log_softmax(x, axis=a), "Hardmax": _hardmax}.items():
    op(_name, until=12)(_flat2d(_fn))
    op(_name, since=13)(_on_axis(_fn))


def _matmul(a: Any, b: Any) -> Any:
    if a.dtype in (tf.int8, tf.uint8, tf.int16, tf.uint16, tf.uint32, tf.uint64):
        wide = tf.int64 if a.dtype in (tf.uint32, tf.uint64) else tf.int32
        return tf.cast(tf.linalg.matmul(tf.cast(a, wide), tf.cast(b, wide)), a.dtype)
    return tf.linalg.matmul(a, b)


@op("MatMul")
def matmul(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    a, b = inputs
    # NumPy semantics for 1-D operands: promote to a matrix, then drop the added axis.
    if rank(a) == 1 and rank(b) == 1:
        return tf.reduce_sum(a * b)
    if rank(a) == 1:
        return tf.squeeze(_matmul(a[None, :], b), -2)
    if rank(b) == 1:
        return tf.squeeze(_matmul(a, b[:, None]), -1)
    return _matmul(a, b)


@op("Gemm")
def gemm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if a.dtype.is_integer:
        y = _matmul(tf.transpose(a) if attrs["transA"] else a, tf.transpose(b) if attrs["transB"] else b)
    else:
        y = tf.linalg.matmul(a, b, transpose_a=bool(attrs["transA"]), transpose_b=bool(attrs["transB"]))
    if attrs["alpha"] != 1.0:
        y = y * tf.cast(attrs["alpha"], y.dtype)
    if c is None:
        return y
    if attrs["beta"] != 1.0:
        c = c * tf.cast(attrs["beta"], c.dtype)
    if rank(c) == 2 and c.shape[0] == 1:
        # One bias row is a per-column bias. As [1, N] it also trips TF 2.21's oneDNN MatMul+Add fusion in
        # graph mode ("bias must be 1-dimensional") when A is transposed.
        c = tf.reshape(c, [-1])
    # A per-column bias as BiasAdd: the form grappler's remapper fuses with MatMul (the deployed path).
    if rank(c) == 1 and c.shape[0] is not None and c.shape[0] == y.shape[-1] and y.dtype.is_floating:
        return tf.nn.bias_add(y, c)
    return y + c


@op("Einsum")
def einsum(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.einsum(attrs["equation"].replace(" ", ""), *inputs)


def _cumulative(fn: Callable[..., Any]) -> Callable[[OpContext, list[Any], dict[str, Any]], Any]:
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        x = inputs[0]
        given = static(inputs[1])
        axis = axis_of(int(given.reshape(-1)[0]), rank(x)) if given is not None else tf.reshape(inputs[1], [])
        return widened(lambda v: fn(v, axis, exclusive=bool(attrs["exclusive"]),
                                    reverse=bool(attrs["reverse"])), x)
    return run


op("CumSum")(_cumulative(tf.math.cumsum))
op("CumProd")(_cumulative(tf.math.cumprod))


@op("TopK")
def top_k(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    k = attrs["k"] if ctx.opset < 10 else tf.cast(tf.reshape(inputs[1], []), tf.int32)
    r = rank(x)
    axis = axis_of(attrs["axis"], r)
    perm = [*range(axis), *range(axis + 1, r), axis]
    moved = tf.transpose(x, perm) if axis != r - 1 else x
    if not attrs.get("largest", 1):
        if x.dtype.is_unsigned:
            raise fail(ctx, "largest=0 on unsigned integers")
        values, idx = tf.math.top_k(-moved, k, sorted=True)
        values = -values
    else:
        values, idx = tf.math.top_k(moved, k, sorted=True)
    back = list(np.argsort(perm))
    idx = tf.cast(idx, tf.int64)
    if axis != r - 1:
        values, idx = tf.transpose(values, back), tf.transpose(idx, back)
    return [values, idx]


@op("Det")
def det(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.linalg.det(inputs[0])
