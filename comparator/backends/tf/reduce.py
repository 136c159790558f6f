"""Reductions, soft/hard max, matrix products, cumulative and top-k ops on TensorFlow kernels."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ..common.executor import OpContext
from .math import widened
from .table import arg, axis_of, ints, op, rank, static, unsupported


def _axes(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any], from_input: bool) -> Any:
    """The reduced axes, or None for 'all'; [] means no reduction (noop_with_empty_axes). Axes fed at run
    time stay a tensor (TF's reductions take one); only their count must be known."""
    if from_input:
        given = arg(inputs, 1)
        if given is not None and static(given) is None:
            if given.shape.num_elements() is None:
                raise unsupported(ctx, "'axes' of unknown length")
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


def _reduce(fn: Callable[[Any, Any, bool], Any]) -> Callable[[OpContext, list[Any], dict[str, Any], bool], Any]:
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any], from_input: bool) -> Any:
        axes = _axes(ctx, inputs, attrs, from_input)
        x = inputs[0]
        # No axes with noop_with_empty_axes: a reduction over no axis, which keeps the reduction's elementwise part
        # (ReduceSumSquare squares, ReduceL1 takes the absolute value).
        return fn(x, axes, bool(attrs["keepdims"]))
    return run


def _axes_from(run: Callable[[OpContext, list[Any], dict[str, Any], bool], Any],
               from_input: bool) -> Callable[[OpContext, list[Any], dict[str, Any]], Any]:
    def fn(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        return run(ctx, inputs, attrs, from_input)
    return fn


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
    op(_name, until=_since - 1)(_axes_from(_reduce(_fn), False))
    op(_name, since=_since)(_axes_from(_reduce(_fn), True))


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


@op("Einsum")
def einsum(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    equation = attrs["equation"].replace(" ", "")
    if "->" not in equation:
        # Implicit output (NumPy's rule): the broadcast dimensions, then the letters used once, in order. TF wants
        # the output spelt out where there is an ellipsis.
        letters = [c for c in equation if c.isalpha()]
        equation += "->" + ("..." if "..." in equation else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1))
    return tf.einsum(equation, *inputs)


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
            raise unsupported(ctx, "largest=0 on unsigned integers")
        values, idx = tf.math.top_k(-moved, k, sorted=True)
        values = -values
    else:
        values, idx = tf.math.top_k(moved, k, sorted=True)
    back = list(np.argsort(perm))
    idx = tf.cast(idx, tf.int64)
    if axis != r - 1:
        values, idx = tf.transpose(values, back), tf.transpose(idx, back)
    return [values, idx]


def _nll(x: Any, target: Any, weight: Any, attrs: dict[str, Any]) -> Any:
    """-x[n, target[n, ...], ...], weighted, ignore_index skipped, then reduced."""
    ignore = attrs.get("ignore_index")
    target = tf.cast(target, tf.int64)
    valid = tf.ones_like(target, tf.bool) if ignore is None else tf.not_equal(target, ignore)
    safe = tf.where(valid, target, tf.zeros_like(target))
    picked = tf.squeeze(tf.experimental.numpy.take_along_axis(x, tf.expand_dims(safe, 1), axis=1), 1)
    w = tf.cast(valid, x.dtype)
    if weight is not None:
        w = w * tf.gather(weight, safe)
    loss = -picked * w
    reduction = attrs.get("reduction", "mean")
    if reduction == "sum":
        return tf.reduce_sum(loss)
    if reduction == "mean":
        return tf.reduce_sum(loss) / tf.reduce_sum(w)
    return loss


@op("NegativeLogLikelihoodLoss", since=12)
def negative_log_likelihood_loss(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return _nll(inputs[0], inputs[1], arg(inputs, 2), attrs)


@op("SoftmaxCrossEntropyLoss", since=12)
def softmax_cross_entropy_loss(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    log_prob = tf.nn.log_softmax(inputs[0], axis=1)
    return [_nll(log_prob, inputs[1], arg(inputs, 2), attrs), log_prob]
