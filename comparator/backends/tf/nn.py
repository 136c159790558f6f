"""Pooling and normalisation on TensorFlow's kernels.

TF's CPU pooling kernels take channels-last tensors only: each op function transposes NC... to N...C, calls
the kernel, and transposes back, so every tensor the walker keeps is in ONNX layout.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ..common.executor import OpContext
from .conv import _geometry, _pad_last
from .table import arg, axis_of, known, op, rank, to_first, to_last, unsupported, wants


def _pool_attrs(ctx: OpContext, x: Any, attrs: dict[str, Any]) -> tuple[list[int], list[int], list[int],
                                                                        list[tuple[int, int]]]:
    kernel = list(attrs["kernel_shape"])
    strides, dilations, pads = _geometry(ctx, x, kernel, attrs, bool(attrs.get("ceil_mode", 0)))
    return kernel, strides, dilations, pads


def _windows(xl: Any, kernel: list[int], strides: list[int], dilations: list[int]) -> list[Any]:
    """Every kernel tap of a padded channels-last tensor as a strided slice: pooling without TF's pool
    kernels, for dilated windows (which those kernels do not take)."""
    spatial = xl.shape.as_list()[1:-1]
    outs = [(spatial[i] - ((kernel[i] - 1) * dilations[i] + 1)) // strides[i] + 1 for i in range(len(kernel))]
    taps = []
    for offset in np.ndindex(*kernel):
        index = [slice(None)]
        for i, o in enumerate(offset):
            start = o * dilations[i]
            index.append(slice(start, start + (outs[i] - 1) * strides[i] + 1, strides[i]))
        taps.append(xl[tuple(index + [slice(None)])])
    return taps


def _lowest(dtype: Any) -> Any:
    return -np.inf if dtype.is_floating else dtype.min


@op("MaxPool")
def max_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    kernel, strides, dilations, pads = _pool_attrs(ctx, x, attrs)
    want_indices = wants(ctx, 1)
    xl = _pad_last(to_last(x), pads, _lowest(x.dtype))
    if want_indices:
        return _max_pool_indices(ctx, x, xl, kernel, strides, dilations, pads, attrs.get("storage_order", 0))
    if any(d > 1 for d in dilations):
        taps = _windows(xl, kernel, strides, dilations)
        return to_first(tf.reduce_max(tf.stack(taps), 0))
    return to_first(tf.nn.max_pool(xl, kernel, strides, "VALID"))


def _max_pool_indices(ctx: OpContext, x: Any, xl: Any, kernel: list[int], strides: list[int],
                      dilations: list[int], pads: list[tuple[int, int]], storage_order: int) -> list[Any]:
    """MaxPool's second output: the flat NC... index of each maximum (first one on ties)."""
    shape = x.shape.as_list()
    spatial = shape[2:]
    # Flat index of every padded position (-1 in the padding), laid out channels-last like xl.
    grids = np.meshgrid(*[np.arange(-b, s + e) for s, (b, e) in zip(spatial, pads)], indexing="ij")
    inside = np.all([(g >= 0) & (g < s) for g, s in zip(grids, spatial)], axis=0)
    if storage_order:
        flat = sum(g * int(np.prod(spatial[:i])) for i, g in enumerate(grids))
    else:
        flat = sum(g * int(np.prod(spatial[i + 1:])) for i, g in enumerate(grids))
    flat = np.where(inside, flat, -1)[None, ..., None].astype(np.int64)
    taps = tf.stack(_windows(xl, kernel, strides, dilations), -1)
    where = tf.stack(_windows(tf.constant(flat), kernel, strides, dilations), -1)
    best = tf.math.argmax(taps, axis=-1, output_type=tf.int64)
    values = tf.reduce_max(taps, -1)
    index = tf.squeeze(tf.gather(tf.broadcast_to(where, tf.shape(taps, out_type=tf.int64)), best[..., None],
                                 batch_dims=rank(taps) - 1), -1)
    plane = int(np.prod(spatial))
    n, c = tf.shape(x, out_type=tf.int64)[0], shape[1]
    base = (tf.range(n)[:, None] * c + tf.range(c, dtype=tf.int64)[None, :]) * plane
    base = tf.reshape(base, [-1, *([1] * len(spatial)), c])
    return [to_first(values), to_first(index + base)]


def _count_mask(spatial: list[int], pads: list[tuple[int, int]], include_pad: bool, extra: list[int]) -> Any:
    """1 where a window position counts toward an average, as a [1, ..., 1] channels-last constant."""
    if include_pad:
        ones = np.ones([s + b + e - x for s, (b, e), x in zip(spatial, pads, extra)], np.float32)
        mask = np.pad(ones, [(0, x) for x in extra])
    else:
        mask = np.pad(np.ones(spatial, np.float32), pads)
    return mask[None, ..., None]


@op("AveragePool")
def average_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    kernel, strides, dilations, pads = _pool_attrs(ctx, x, attrs)
    plain = _geometry(ctx, x, kernel, attrs)[2]
    extra = [p[1] - q[1] for p, q in zip(pads, plain)]  # ceil_mode's padding never counts
    xl = _pad_last(to_last(x), pads)
    spatial = x.shape.as_list()[2:]
    mask = _count_mask(spatial, pads, bool(attrs["count_include_pad"]), extra)
    dilated = any(d > 1 for d in dilations)
    if dilated:
        taps = _windows(xl, kernel, strides, dilations)
        counts = _windows(tf.constant(mask, x.dtype), kernel, strides, dilations)
        return to_first(tf.add_n(taps) / tf.add_n(counts))
    y = tf.nn.avg_pool(xl, kernel, strides, "VALID")
    if np.all(mask == 1):
        return to_first(y)
    # TF averages over the whole window; rescale to the positions that count.
    share = tf.nn.avg_pool(tf.constant(mask, x.dtype), kernel, strides, "VALID")
    return to_first(y / share)


@op("LpPool")
def lp_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    kernel, strides, dilations, pads = _pool_attrs(ctx, x, attrs)
    p = attrs["p"]
    xl = _pad_last(to_last(tf.math.pow(tf.math.abs(x), tf.cast(p, x.dtype))), pads)
    total = tf.add_n(_windows(xl, kernel, strides, dilations))
    return to_first(tf.math.pow(total, tf.cast(1.0 / p, x.dtype)))


@op("GlobalAveragePool")
def global_average_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return tf.reduce_mean(x, axis=list(range(2, rank(x))), keepdims=True)


@op("GlobalMaxPool")
def global_max_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return tf.reduce_max(x, axis=list(range(2, rank(x))), keepdims=True)


@op("GlobalLpPool")
def global_lp_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    p = tf.cast(attrs["p"], x.dtype)
    total = tf.reduce_sum(tf.math.pow(tf.math.abs(x), p), axis=list(range(2, rank(x))), keepdims=True)
    return tf.math.pow(total, 1 / p)


def _per_channel(v: Any, r: int) -> Any:
    return tf.reshape(v, [-1, *([1] * (r - 2))])


@op("BatchNormalization")
def batch_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, bias, mean, var = inputs[:5]
    r = rank(x)
    eps = attrs["epsilon"]
    if attrs.get("training_mode", 0):
        axes = [0, *range(2, r)]
        batch_mean, batch_var = tf.nn.moments(x, axes)
        m = tf.cast(attrs["momentum"], x.dtype)
        y = tf.nn.batch_normalization(x, _per_channel(batch_mean, r), _per_channel(batch_var, r),
                                      _per_channel(bias, r), _per_channel(scale, r), eps)
        return [y, mean * m + batch_mean * (1 - m), var * m + batch_var * (1 - m)]
    if r in (4, 5) and x.dtype in (tf.float32, tf.float16, tf.bfloat16):
        # TF's inference batch-norm kernel (what a Keras BatchNormalization layer runs), channels-last.
        f32 = [tf.cast(v, tf.float32) for v in (scale, bias, mean, var)]
        y = tf.raw_ops.FusedBatchNormV3(x=to_last(x), scale=f32[0], offset=f32[1], mean=f32[2], variance=f32[3],
                                        epsilon=eps, is_training=False,
                                        data_format="NHWC" if r == 4 else "NDHWC")[0]
        return to_first(y)
    if r == 2:
        return tf.nn.batch_normalization(x, mean, var, bias, scale, eps)
    return tf.nn.batch_normalization(x, _per_channel(mean, r), _per_channel(var, r), _per_channel(bias, r),
                                     _per_channel(scale, r), eps)


@op("InstanceNormalization")
def instance_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, bias = inputs
    r = rank(x)
    mean, var = tf.nn.moments(x, list(range(2, r)), keepdims=True)
    return tf.nn.batch_normalization(x, mean, var, _per_channel(bias, r), _per_channel(scale, r), attrs["epsilon"])


def _stash(x: Any, attrs: dict[str, Any]) -> Any:
    """stash_type=1 computes mean and variance in float32 for narrower inputs."""
    if attrs.get("stash_type", 1) == 1 and x.dtype in (tf.float16, tf.bfloat16):
        return tf.float32
    return x.dtype


@op("LayerNormalization")
def layer_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale = inputs[0], inputs[1]
    bias = arg(inputs, 2)
    r = rank(x)
    axes = list(range(axis_of(attrs["axis"], r), r))
    xs = tf.cast(x, _stash(x, attrs))
    mean, var = tf.nn.moments(xs, axes, keepdims=True)
    inv = tf.math.rsqrt(var + tf.cast(attrs["epsilon"], xs.dtype))
    y = tf.cast((xs - mean) * inv, x.dtype) * scale
    if bias is not None:
        y = y + bias
    return [y, mean, inv]


@op("RMSNormalization")
def rms_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale = inputs
    r = rank(x)
    axes = list(range(axis_of(attrs["axis"], r), r))
    xs = tf.cast(x, _stash(x, attrs))
    inv = tf.math.rsqrt(tf.reduce_mean(tf.math.square(xs), axes, keepdims=True) + tf.cast(attrs["epsilon"], xs.dtype))
    return tf.cast(xs * inv, x.dtype) * scale


@op("GroupNormalization")
def group_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, bias = inputs
    g = attrs["num_groups"]
    shape = tf.shape(x)
    c = x.shape[1]
    r = rank(x)
    xs = tf.cast(x, _stash(x, attrs))
    grouped = tf.reshape(xs, tf.concat([shape[:1], [g, -1]], 0))
    mean, var = tf.nn.moments(grouped, [2], keepdims=True)
    y = tf.reshape((grouped - mean) * tf.math.rsqrt(var + tf.cast(attrs["epsilon"], xs.dtype)), shape)
    y = tf.cast(y, x.dtype)
    if ctx.opset < 21:  # scale and bias were per group before opset 21
        scale, bias = tf.repeat(scale, c // g), tf.repeat(bias, c // g)
    return y * _per_channel(scale, r) + _per_channel(bias, r)


@op("LRN")
def lrn(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    size, alpha, beta, bias = attrs["size"], attrs["alpha"], attrs["beta"], attrs["bias"]
    if size % 2 == 1 and x.dtype in (tf.float32, tf.float16, tf.bfloat16) and rank(x) == 4:
        y = tf.nn.local_response_normalization(to_last(x), depth_radius=(size - 1) // 2, bias=bias,
                                               alpha=alpha / size, beta=beta)
        return to_first(y)
    # An even window is lopsided (ONNX puts the extra channel after), which TF's kernel cannot express.
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    sq = tf.pad(tf.math.square(x), [[0, 0], [lo, hi]] + [[0, 0]] * (rank(x) - 2))
    c = x.shape[1]
    total = tf.add_n([sq[:, i:i + c] for i in range(size)])
    return x / tf.math.pow(tf.cast(bias, x.dtype) + tf.cast(alpha / size, x.dtype) * total, tf.cast(beta, x.dtype))


@op("LpNormalization")
def lp_normalization(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    axis = axis_of(attrs["axis"], rank(x))
    if attrs["p"] == 1:
        norm = tf.reduce_sum(tf.math.abs(x), axis, keepdims=True)
    else:
        norm = tf.norm(x, axis=axis, keepdims=True)
    return tf.where(norm == 0, tf.zeros_like(x), x / norm)


@op("MeanVarianceNormalization")
def mean_variance_normalization(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    axes = [axis_of(a, rank(x)) for a in attrs["axes"]]
    mean, var = tf.nn.moments(x, axes, keepdims=True)
    return (x - mean) / (tf.math.sqrt(var) + tf.cast(1e-9, x.dtype))


@op("Dropout")
def dropout(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    training = known(ctx, inputs[2], "training_mode") if len(inputs) > 2 and inputs[2] is not None else False
    if bool(training):
        ratio = known(ctx, inputs[1], "ratio") if len(inputs) > 1 and inputs[1] is not None else 0.5
        if float(ratio) != 0.0:
            raise unsupported(ctx, "training_mode=1 (random masks cannot be compared)")
    # inference keeps every element: the mask is all ones, bool from opset 10, the data's type before
    return [tf.identity(x), tf.ones_like(x, dtype=tf.bool if ctx.opset >= 10 else x.dtype)]


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
    c = arg(inputs, 2)
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
