"""Indexing and data-movement ops: gathers and scatters, padding, expansion, one-hot, masks, Dropout."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ..common.executor import OpContext
from .table import axis_of, const, fail, ints, op, rank, static, tf_dtype


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
        raise fail(ctx, f"reduction={attrs['reduction']}")
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


@op("Expand")
def expand(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, shape_ = inputs
    out = tf.broadcast_dynamic_shape(tf.shape(x, out_type=tf.int64), tf.cast(shape_, tf.int64))
    return tf.broadcast_to(x, out)


@op("Tile")
def tile(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, reps = inputs
    if x.dtype == tf.uint16:
        return tf.cast(tf.tile(tf.cast(x, tf.int32), reps), x.dtype)
    return tf.tile(x, reps)


@op("Range")
def range_(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    start, limit, delta = inputs
    return tf.range(start, limit, delta, dtype=start.dtype)


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


@op("EyeLike")
def eye_like(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    dtype = tf_dtype(ctx, attrs["dtype"]) if attrs.get("dtype") else x.dtype
    s = tf.shape(x)
    i = tf.range(s[0], dtype=tf.int64)[:, None]
    j = tf.range(s[1], dtype=tf.int64)[None, :]
    return tf.cast(tf.equal(j - i, attrs["k"]), dtype)


@op("ReverseSequence")
def reverse_sequence(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, lens = inputs
    return tf.reverse_sequence(x, lens, seq_axis=attrs["time_axis"], batch_axis=attrs["batch_axis"])


def _index_pad(x: Any, axis: int, before: int, after: int, mode: str) -> Any:
    """Edge/wrap padding as a gather of clamped or wrapped indices along one axis."""
    n = x.shape[axis]
    pos = np.arange(-before, n + after)
    pos = np.clip(pos, 0, n - 1) if mode == "edge" else np.mod(pos, n)
    return tf.gather(x, pos, axis=axis)


def _pad(ctx: OpContext, x: Any, pads: list[int], mode: str, value: Any, axes: list[int] | None) -> Any:
    r = rank(x)
    axes = [axis_of(a, r) for a in axes] if axes else list(range(r))
    n = len(axes)
    before, after = [0] * r, [0] * r
    for i, a in enumerate(axes):
        before[a], after[a] = pads[i], pads[i + n]
    # Negative pads crop.
    if any(v < 0 for v in before + after):
        x = x[tuple(slice(-b if b < 0 else None, a if a < 0 else None) for b, a in zip(before, after))]
        before, after = [max(v, 0) for v in before], [max(v, 0) for v in after]
    if mode in ("edge", "wrap"):
        for a in range(r):
            if before[a] or after[a]:
                x = _index_pad(x, a, before[a], after[a], mode)
        return x
    paddings = [[b, a] for b, a in zip(before, after)]
    if mode == "reflect":
        return tf.pad(x, paddings, mode="REFLECT")
    if mode != "constant":
        raise fail(ctx, f"mode={mode}")
    return tf.pad(x, paddings, constant_values=tf.cast(value, x.dtype) if value is not None else 0)


@op("Pad", until=10)
def pad_attrs(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return _pad(ctx, inputs[0], list(attrs["pads"]), attrs["mode"], attrs.get("value", 0.0), None)


@op("Pad", since=11)
def pad(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    if value is not None:
        value = tf.reshape(value, [])
    axes = ints(ctx, inputs[3], "axes") if len(inputs) > 3 and inputs[3] is not None else None
    x, pads = inputs[0], inputs[1]
    if static(pads) is None and axes is None and attrs["mode"] in ("constant", "reflect"):
        # Pads fed at run time (non-negative, every axis): TF's Pad takes them as a tensor.
        paddings = tf.transpose(tf.reshape(tf.cast(pads, tf.int64), [2, rank(x)]))
        if attrs["mode"] == "reflect":
            return tf.pad(x, paddings, mode="REFLECT")
        return tf.pad(x, paddings, constant_values=tf.cast(value, x.dtype) if value is not None else 0)
    return _pad(ctx, x, ints(ctx, pads, "pads"), attrs["mode"], value, axes)


@op("DepthToSpace")
def depth_to_space(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    b = attrs["blocksize"]
    n, c, h, w = x.shape
    if attrs.get("mode", "DCR") == "DCR":
        y = tf.transpose(tf.reshape(x, [n, b, b, c // (b * b), h, w]), [0, 3, 4, 1, 5, 2])
    else:
        y = tf.transpose(tf.reshape(x, [n, c // (b * b), b, b, h, w]), [0, 1, 4, 2, 5, 3])
    return tf.reshape(y, [n, c // (b * b), h * b, w * b])


@op("SpaceToDepth")
def space_to_depth(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    b = attrs["blocksize"]
    n, c, h, w = x.shape
    perm = [0, 3, 5, 1, 2, 4] if attrs.get("mode", "DCR") == "DCR" else [0, 1, 3, 5, 2, 4]
    y = tf.transpose(tf.reshape(x, [n, c, h // b, b, w // b, b]), perm)
    return tf.reshape(y, [n, c * b * b, h // b, w // b])


@op("Dropout")
def dropout(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    training = const(ctx, inputs[2], "training_mode") if len(inputs) > 2 and inputs[2] is not None else False
    if bool(training):
        ratio = const(ctx, inputs[1], "ratio") if len(inputs) > 1 and inputs[1] is not None else 0.5
        if float(ratio) != 0.0:
            raise fail(ctx, "training_mode=True (random masks cannot be compared)")
    return [tf.identity(x), tf.ones_like(x, dtype=tf.bool)]
