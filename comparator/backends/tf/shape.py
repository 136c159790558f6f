"""Shape ops: constants, shapes, reshapes, squeezes, concatenation, splitting and slicing."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ..common.executor import OpContext
from .table import arg, axis_of, dtype, ints, op, rank, static, unsupported


@op("Constant")
def constant(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    if "sparse_value" in attrs:
        raise unsupported(ctx, "a sparse_value")
    if "value" in attrs:  # a tensor attribute: already a TF tensor (the session converts them once)
        return attrs["value"]
    for key, np_type in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return tf.constant(np.asarray(attrs[key], dtype=np_type))
    for key in ("value_string", "value_strings"):
        if key in attrs:
            return tf.constant(np.asarray(attrs[key], dtype=object))
    raise unsupported(ctx, "no value attribute")


@op("ConstantOfShape")
def constant_of_shape(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    value = attrs["value"] if "value" in attrs else tf.zeros([1], tf.float32)
    return tf.fill(tf.cast(inputs[0], tf.int64), tf.reshape(value, [-1])[0])


@op("Shape")
def shape(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    r = rank(x)
    start = min(max(axis_of(attrs.get("start", 0), r), 0), r)
    end = attrs.get("end")
    end = r if end is None else min(max(axis_of(end, r), 0), r)
    if x.shape.is_fully_defined():
        # A trace-time constant (eager even while tracing): the nodes that read it fold in `op()`, so an If on
        # a shape picks its branch while tracing instead of becoming a tf.cond over both.
        with tf.init_scope():
            return tf.constant(np.array(x.shape.as_list()[start:end], dtype=np.int64))
    return tf.shape(x, out_type=tf.int64)[start:end]


@op("Size")
def size(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    if x.shape.is_fully_defined():  # a trace-time constant, as Shape's
        with tf.init_scope():
            return tf.constant(x.shape.num_elements(), tf.int64)
    return tf.size(x, out_type=tf.int64)


def _target_shape(ctx: OpContext, x: Any, spec: Any, allowzero: int) -> Any:
    wanted = static(spec)
    if wanted is None:
        spec = tf.cast(spec, tf.int64)
        if allowzero:
            return spec
        have = tf.shape(x, out_type=tf.int64)
        n = tf.size(spec)
        padded = tf.concat([have, tf.zeros([tf.maximum(n - tf.size(have), 0)], tf.int64)], 0)[:n]
        return tf.where(tf.equal(spec, 0), padded, spec)
    out = [int(v) for v in np.asarray(wanted).reshape(-1)]
    if not allowzero:
        out = [x.shape[i] if v == 0 and x.shape[i] is not None else v for i, v in enumerate(out)]
        if 0 in out:  # a copied dimension only known at run time
            have = tf.shape(x, out_type=tf.int64)
            return tf.stack([have[i] if v == 0 else tf.constant(v, tf.int64) for i, v in enumerate(out)])
    return out


@op("Reshape", until=4)
def reshape_attr(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.reshape(inputs[0], _target_shape(ctx, inputs[0], np.asarray(attrs["shape"]), 0))


@op("Reshape", since=5)
def reshape(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.reshape(inputs[0], _target_shape(ctx, inputs[0], inputs[1], attrs.get("allowzero", 0)))


@op("Flatten")
def flatten(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    axis = axis_of(attrs["axis"], rank(x))
    dims = x.shape.as_list()
    if all(d is not None for d in dims):
        return tf.reshape(x, [int(np.prod(dims[:axis])), int(np.prod(dims[axis:]))])
    s = tf.shape(x)
    return tf.reshape(x, tf.stack([tf.reduce_prod(s[:axis]), tf.reduce_prod(s[axis:])]))


@op("Transpose")
def transpose(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    perm = attrs.get("perm")
    return tf.transpose(inputs[0], list(perm) if perm else None)


def _axes_arg(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    """The axes as ints; a tensor when fed at run time (its length must be known)."""
    if ctx.opset >= 13:
        given = arg(inputs, 1)
        if given is not None and static(given) is None:
            if given.shape.num_elements() is None:
                raise unsupported(ctx, "'axes' of unknown length")
            return tf.reshape(tf.cast(given, tf.int64), [-1])
        return ints(ctx, given, "axes") if given is not None else None
    return list(attrs["axes"]) if attrs.get("axes") is not None else None


def _marked(axes: Any, n: int) -> Any:
    """[n] bool: which of n axes are listed in the run-time `axes` (negative ones count from the end)."""
    axes = tf.where(axes < 0, axes + n, axes)
    return tf.reduce_any(tf.equal(tf.range(n, dtype=tf.int64)[:, None], axes[None, :]), axis=1)


@op("Squeeze")
def squeeze(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    axes = _axes_arg(ctx, inputs, attrs)
    if isinstance(axes, list) or axes is None:
        return tf.squeeze(x, None if not axes else [axis_of(a, rank(x)) for a in axes])
    keep = tf.logical_not(_marked(axes, rank(x)))
    return tf.reshape(x, tf.boolean_mask(tf.shape(x, out_type=tf.int64), keep))


@op("Unsqueeze")
def unsqueeze(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    axes = _axes_arg(ctx, inputs, attrs)
    if axes is not None and not isinstance(axes, list):
        out_rank = rank(x) + int(axes.shape[0])
        new = _marked(axes, out_rank)
        source = tf.maximum(tf.cumsum(tf.cast(tf.logical_not(new), tf.int64)) - 1, 0)
        have = tf.concat([tf.shape(x, out_type=tf.int64), [1]], 0)
        return tf.reshape(x, tf.where(new, tf.ones([out_rank], tf.int64), tf.gather(have, source)))
    axes = axes or []
    out_rank = rank(x) + len(axes)
    for a in sorted(axis_of(a, out_rank) for a in axes):
        x = tf.expand_dims(x, a)
    return x


@op("Concat")
def concat(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    xs = [x for x in inputs if x is not None]
    return tf.concat(xs, axis_of(attrs["axis"], rank(xs[0])))


@op("Split")
def split(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    axis = axis_of(attrs["axis"], rank(x))
    n_out = len(ctx.node.output)
    if ctx.opset >= 13:
        given = arg(inputs, 1)
        if given is not None and static(given) is None:  # sizes fed at run time: their count is n_out
            return tf.split(x, tf.cast(given, tf.int64), axis=axis, num=n_out)
        sizes = ints(ctx, given, "split") if given is not None else None
    else:
        sizes = list(attrs["split"]) if attrs.get("split") else None
    if sizes is None:
        dim = x.shape[axis]
        if dim is None:
            raise unsupported(ctx, "an axis of unknown length")
        n = attrs.get("num_outputs") or n_out
        chunk = -(-dim // n)
        sizes = [chunk] * (dim // chunk) + ([dim % chunk] if dim % chunk else [])
    return tf.split(x, sizes, axis=axis)


def _slice(ctx: OpContext, x: Any, starts: list[int], ends: list[int], axes: list[int] | None,
           steps: list[int] | None) -> Any:
    r = rank(x)
    axes = [axis_of(a, r) for a in axes] if axes else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    begin, end, stride = [0] * r, [0] * r, [1] * r
    begin_mask = end_mask = 0
    for i in range(r):
        if i not in axes:
            begin_mask |= 1 << i
            end_mask |= 1 << i
    for a, s, e, st in zip(axes, starts, ends, steps):
        dim = x.shape[a]
        if dim is None:
            raise unsupported(ctx, "slicing an axis of unknown length")
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
            if e == -1:  # run to the start: a negative stop would count from the end in TF
                end_mask |= 1 << a
        begin[a], end[a], stride[a] = s, e, st
    return tf.strided_slice(x, begin, end, stride, begin_mask=begin_mask, end_mask=end_mask)


@op("Slice", until=9)
def slice_attrs(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return _slice(ctx, inputs[0], list(attrs["starts"]), list(attrs["ends"]), attrs.get("axes"), None)


def _dynamic_slice(x: Any, starts: Any, ends: Any, axes: Any, steps: Any) -> Any:
    """Slice with run-time bounds: ONNX's clamping done with TF ops, then a gather of the chosen indices
    per axis (the number of sliced axes must be known)."""
    r = rank(x)
    n = int(starts.shape[0])
    axes = tf.range(n, dtype=tf.int64) if axes is None else tf.cast(axes, tf.int64)
    axes = tf.where(axes < 0, axes + r, axes)
    steps = tf.ones([n], tf.int64) if steps is None else tf.cast(steps, tf.int64)
    dims = tf.shape(x, out_type=tf.int64)
    for i in range(n):
        a = axes[i]
        dim, step = dims[a], steps[i]
        s, e = tf.cast(starts[i], tf.int64), tf.cast(ends[i], tf.int64)
        s, e = tf.where(s < 0, s + dim, s), tf.where(e < 0, e + dim, e)
        zero, top = tf.constant(0, tf.int64), tf.where(step > 0, dim, dim - 1)
        s = tf.clip_by_value(s, zero, top)
        e = tf.clip_by_value(e, tf.where(step > 0, zero, zero - 1), top)
        # Move the sliced axis to the front, gather, and move it back.
        perm = tf.concat([[a], tf.range(a), tf.range(a + 1, r, dtype=tf.int64)], 0)
        moved = tf.gather(tf.transpose(x, perm), tf.range(s, e, step))
        x = tf.transpose(moved, tf.math.invert_permutation(perm))
    return x


@op("Slice", since=10)
def slice_(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    given: list[Any] = [arg(inputs, i) for i in range(1, 5)]
    if any(v is not None and static(v) is None for v in given):
        if given[0].shape.num_elements() is None:
            raise unsupported(ctx, "'starts' of unknown length")
        return _dynamic_slice(inputs[0], *given)
    opt = [ints(ctx, inputs[i], name) if len(inputs) > i and inputs[i] is not None else None
           for i, name in ((3, "axes"), (4, "steps"))]
    return _slice(ctx, inputs[0], ints(ctx, inputs[1], "starts"), ints(ctx, inputs[2], "ends"), *opt)


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


@op("EyeLike")
def eye_like(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    dt = dtype(ctx, attrs["dtype"]) if attrs.get("dtype") else x.dtype
    s = tf.shape(x)
    i = tf.range(s[0], dtype=tf.int64)[:, None]
    j = tf.range(s[1], dtype=tf.int64)[None, :]
    return tf.cast(tf.equal(j - i, attrs["k"]), dt)


def _index_pad(x: Any, axis: int, before: int, after: int, mode: str) -> Any:
    """Edge/wrap/reflect padding as a gather of clamped, wrapped or reflected indices along one axis."""
    n = x.shape[axis]
    pos = np.arange(-before, n + after)
    if mode == "reflect":  # as often as the pads need (TF's MirrorPad reflects once, pads < n)
        period = 2 * (n - 1)
        pos = np.abs(pos) % period if period else np.zeros_like(pos)
        pos = np.where(pos > n - 1, period - pos, pos)
    else:
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
    if mode in ("edge", "wrap") or (mode == "reflect" and any(max(b, a) >= x.shape[i]
                                                              for i, (b, a) in enumerate(zip(before, after)))):
        for a in range(r):
            if before[a] or after[a]:
                x = _index_pad(x, a, before[a], after[a], mode)
        return x
    paddings = [[b, a] for b, a in zip(before, after)]
    if mode == "reflect":
        return tf.pad(x, paddings, mode="REFLECT")
    if mode != "constant":
        raise unsupported(ctx, f"mode={mode}")
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


@op("CenterCropPad")
def center_crop_pad(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    r = rank(x)
    axes = [axis_of(a, r) for a in attrs["axes"]] if attrs.get("axes") else list(range(r))
    for a, want in zip(axes, ints(ctx, inputs[1], "shape")):
        have = x.shape[a]
        if want < have:
            start = (have - want) // 2
            x = tf.gather(x, tf.range(start, start + want), axis=a)
        elif want > have:
            before = (want - have) // 2
            pads = [[0, 0]] * r
            pads[a] = [before, want - have - before]
            x = tf.pad(x, pads)
    return x
