"""Indexing and data-movement ops: gathers and scatters, padding, expansion, one-hot, masks, Dropout."""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from ..common.executor import OpContext
from .table import axis_of, op, rank, unsupported


def _positive(idx: Any, dim: Any) -> Any:
    """ONNX indices may count from the end."""
    idx = tf.cast(idx, tf.int64)
    return tf.where(idx < 0, idx + tf.cast(dim, tf.int64), idx)


@op("Gather")
def gather(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx = inputs
    axis = axis_of(attrs["axis"], rank(x))
    return tf.gather(x, _positive(idx, tf.shape(x)[axis]), axis=axis)


def _full_coords(idx: Any, axis: int) -> Any:
    """[..., rank] coordinates: every position of `idx`, with `idx` itself on `axis` (for the *Elements ops)."""
    grids = tf.meshgrid(*[tf.range(n, dtype=tf.int64) for n in tf.unstack(tf.shape(idx, out_type=tf.int64))],
                        indexing="ij")
    grids[axis] = idx
    return tf.stack(grids, axis=-1)


@op("GatherElements")
def gather_elements(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx = inputs
    axis = axis_of(attrs["axis"], rank(x))
    return tf.gather_nd(x, _full_coords(_positive(idx, tf.shape(x)[axis]), axis))


@op("GatherND")
def gather_nd(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx = inputs
    b = attrs.get("batch_dims", 0)
    k = idx.shape[-1]
    bounds = tf.shape(x, out_type=tf.int64)[b:b + k]
    return tf.gather_nd(x, _positive(idx, bounds), batch_dims=b)


_SCATTER = {"none": tf.tensor_scatter_nd_update, "add": tf.tensor_scatter_nd_add,
            "max": tf.tensor_scatter_nd_max, "min": tf.tensor_scatter_nd_min}


def _scatter_fn(ctx: OpContext, attrs: dict[str, Any]) -> Any:
    fn = _SCATTER.get(attrs.get("reduction", "none"))
    if fn is None:
        raise unsupported(ctx, f"reduction={attrs['reduction']}")
    return fn


@op("ScatterElements", "Scatter")
def scatter_elements(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx, upd = inputs
    axis = axis_of(attrs.get("axis", 0), rank(x))
    return _scatter_fn(ctx, attrs)(x, _full_coords(_positive(idx, tf.shape(x)[axis]), axis), upd)


@op("ScatterND")
def scatter_nd(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx, upd = inputs
    k = idx.shape[-1]
    return _scatter_fn(ctx, attrs)(x, _positive(idx, tf.shape(x, out_type=tf.int64)[:k]), upd)


@op("OneHot")
def one_hot(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    idx, depth, values = inputs
    depth_ = tf.cast(tf.reshape(depth, []), tf.int64)
    idx = tf.cast(idx, tf.int64)
    idx = tf.where(idx < 0, idx + depth_, idx)
    return tf.one_hot(idx, tf.cast(depth_, tf.int32), on_value=values[1], off_value=values[0],
                      axis=attrs["axis"] if attrs["axis"] >= 0 else attrs["axis"] + rank(idx) + 1)


@op("NonZero")
def non_zero(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    mask = x if x.dtype == tf.bool else tf.not_equal(x, tf.zeros([], x.dtype))
    if rank(x) == 0:
        return tf.zeros([0, tf.cast(tf.reduce_any(mask), tf.int32)], tf.int64)
    return tf.transpose(tf.where(mask))


@op("Compress")
def compress(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, cond = inputs
    axis = attrs.get("axis")
    if axis is None:
        x, axis = tf.reshape(x, [-1]), 0
    axis = axis_of(axis, rank(x))
    n = tf.shape(x)[axis]
    cond = tf.concat([cond, tf.zeros([tf.maximum(n - tf.size(cond), 0)], tf.bool)], 0)[:n]
    return tf.boolean_mask(x, cond, axis=axis)


def _diagonal_mask(rows: Any, cols: Any, k: Any, upper: bool) -> Any:
    i = tf.range(rows, dtype=tf.int64)[:, None]
    j = tf.range(cols, dtype=tf.int64)[None, :]
    return (j - i >= k) if upper else (j - i <= k)


@op("Trilu")
def trilu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    k = tf.cast(tf.reshape(inputs[1], []), tf.int64) if len(inputs) > 1 and inputs[1] is not None else 0
    s = tf.shape(x)
    mask = _diagonal_mask(s[-2], s[-1], k, bool(attrs["upper"]))
    return tf.where(mask, x, tf.zeros_like(x))


@op("ReverseSequence")
def reverse_sequence(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, lens = inputs
    return tf.reverse_sequence(x, lens, seq_axis=attrs["time_axis"], batch_axis=attrs["batch_axis"])


@op("Unique")
def unique(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    if attrs.get("axis") is not None:
        raise unsupported(ctx, "axis (unique slices)")
    flat = tf.reshape(x, [-1])
    y, inverse = tf.unique(flat, out_idx=tf.int64)
    n = tf.shape(y, out_type=tf.int64)[0]
    counts = tf.math.unsorted_segment_sum(tf.ones_like(inverse), inverse, n)
    first = tf.math.unsorted_segment_min(tf.range(tf.size(flat, out_type=tf.int64)), inverse, n)
    if attrs.get("sorted", 1):
        order = tf.argsort(y, stable=True)
        y, first, counts = tf.gather(y, order), tf.gather(first, order), tf.gather(counts, order)
        inverse = tf.gather(tf.cast(tf.math.invert_permutation(order), tf.int64), inverse)
    return [y, first, inverse, counts][: len(ctx.node.output)]
