"""Convolution and transposed convolution on TensorFlow's kernels, and the window geometry pooling shares.

TF's CPU convolution kernels take channels-last tensors only: each op function transposes NC... to N...C, calls
the kernel, and transposes back, so every tensor the walker keeps is in ONNX layout.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ..common import pool
from ..common.executor import OpContext
from .table import arg, op, to_first, to_last, unsupported


def _geometry(ctx: OpContext, x: Any, kernel: list[int], attrs: dict[str, Any],
              ceil_mode: bool = False) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """strides, dilations and per-axis (begin, end) padding of a conv/pool node, ceil_mode's extra included."""
    spatial = x.shape.as_list()[2:]
    if any(d is None for d in spatial):
        raise unsupported(ctx, "spatial dimensions unknown while tracing")
    strides, dilations, pads = pool.window(attrs, spatial, kernel)
    extra = pool.ceil_extra(spatial, kernel, strides, dilations, pads, ceil_mode)
    return strides, dilations, [(b, e + x) for (b, e), x in zip(pads, extra)]


def _pad_last(x: Any, pads: list[tuple[int, int]], value: Any = 0) -> Any:
    """Pad the spatial axes of a channels-last tensor."""
    if not any(b or e for b, e in pads):
        return x
    return tf.pad(x, [[0, 0], *[list(p) for p in pads], [0, 0]], constant_values=value)


def _conv_nd(x: Any, w: Any, strides: list[int], dilations: list[int], pads: list[tuple[int, int]],
             group: int) -> Any:
    """Channels-last convolution, ONNX weights [M, C/group, k...]."""
    nd = len(strides)
    c_in = x.shape[-1]
    if nd == 1:  # through the 2-D kernel with a unit height
        y = _conv_nd(x[:, None], w[:, :, None], [1, *strides], [1, *dilations], [(0, 0), *pads], group)
        return y[:, 0]
    if nd == 2:
        padding: Any = "VALID" if not any(b or e for b, e in pads) else [[0, 0], *[list(p) for p in pads], [0, 0]]
        if group > 1 and group == c_in and w.shape[1] == 1 and strides[0] == strides[1]:
            mult = w.shape[0] // group
            filt = tf.transpose(tf.reshape(w, [group, mult, *w.shape[2:]]), [2, 3, 0, 1])
            return tf.nn.depthwise_conv2d(x, filt, [1, *strides, 1], padding, dilations=dilations)
        filt = tf.transpose(w, [2, 3, 1, 0])
        if group == 1 or _grouped_conv_ok():
            return tf.nn.conv2d(x, filt, strides, padding, dilations=dilations)
        return _per_group(lambda xi, fi: tf.nn.conv2d(xi, fi, strides, padding, dilations=dilations), x, filt,
                          group)
    if nd == 3:
        filt = tf.transpose(w, [2, 3, 4, 1, 0])
        xp = _pad_last(x, pads)
        def conv(xi: Any, fi: Any) -> Any:
            return tf.nn.conv3d(xi, fi, [1, *strides, 1], "VALID", dilations=[1, *dilations, 1])
        return conv(xp, filt) if group == 1 else _per_group(conv, xp, filt, group)
    raise ValueError(f"{nd}-D convolution")


_GROUPED: list[bool] = []


def _grouped_conv_ok() -> bool:
    """Whether this TensorFlow's CPU Conv2D takes grouped filters (its oneDNN kernel does, Eigen's does not)."""
    if not _GROUPED:
        try:
            with tf.init_scope():
                tf.nn.conv2d(tf.zeros([1, 1, 1, 2]), tf.zeros([1, 1, 1, 2]), 1, "VALID")
            _GROUPED.append(True)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
            _GROUPED.append(False)
    return _GROUPED[0]


def _per_group(fn: Any, x: Any, filt: Any, group: int) -> Any:
    xs = tf.split(x, group, axis=-1)
    fs = tf.split(filt, group, axis=-1)
    return tf.concat([fn(xi, fi) for xi, fi in zip(xs, fs)], axis=-1)


@op("Conv")
def conv(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w = inputs[0], inputs[1]
    b = arg(inputs, 2)
    kernel = list(attrs.get("kernel_shape") or w.shape.as_list()[2:])
    if len(kernel) > 3:
        raise unsupported(ctx, f"{len(kernel)}-D kernels")
    strides, dilations, pads = _geometry(ctx, x, kernel, attrs)
    y = _conv_nd(to_last(x), w, strides, dilations, pads, attrs["group"])
    if b is not None:
        y = tf.nn.bias_add(y, b)  # channels-last BiasAdd: the pattern grappler fuses into _FusedConv2D
    return to_first(y)


@op("ConvTranspose")
def conv_transpose(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w = inputs[0], inputs[1]
    b = arg(inputs, 2)
    kernel = list(attrs.get("kernel_shape") or w.shape.as_list()[2:])
    nd = len(kernel)
    if nd not in (1, 2, 3):
        raise unsupported(ctx, f"{nd}-D kernels")
    group = attrs["group"]
    strides, dilations = pool.per_axis(attrs, "strides", nd, 1), pool.per_axis(attrs, "dilations", nd, 1)
    out_pad = pool.per_axis(attrs, "output_padding", nd, 0)
    spatial = x.shape.as_list()[2:]
    full = [(spatial[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 for i in range(nd)]
    pads = pool.transpose_pads(attrs, spatial, kernel, strides, dilations, out_pad)
    if any(d > 1 for d in dilations):  # spread the taps: CPU transposed-conv kernels take no dilation
        w = _dilate(w, dilations)
    filt = tf.transpose(w, [*range(2, nd + 2), 1, 0])  # [k..., M/group, C]
    xl = to_last(x)
    if nd == 1:
        xl, filt = xl[:, None], filt[None]
    n = tf.shape(xl)[0]

    def deconv(xi: Any, fi: Any) -> Any:
        shape = tf.stack([n, *([1] if nd == 1 else []), *full, fi.shape[-2]])
        step = [1, *([1] if nd == 1 else []), *strides, 1]
        if nd == 3:
            return tf.nn.conv3d_transpose(xi, fi, shape, step, "VALID")
        return tf.nn.conv2d_transpose(xi, fi, shape, step, "VALID")

    if group == 1:
        y = deconv(xl, filt)
    else:
        y = tf.concat([deconv(xi, fi) for xi, fi in zip(tf.split(xl, group, -1), tf.split(filt, group, -1))], -1)
    if nd == 1:
        y = y[:, 0]
    # output_padding, then the pads: positive pads crop, negative ones add zeros.
    y = _pad_last(y, [(max(-p0, 0), op_ + max(-p1, 0)) for (p0, p1), op_ in zip(pads, out_pad)])
    y = y[tuple([slice(None)] + [slice(max(p0, 0), y.shape[i + 1] - max(p1, 0)) for i, (p0, p1) in enumerate(pads)])]
    if b is not None:
        y = tf.nn.bias_add(y, b)
    return to_first(y)


def _dilate(w: Any, dilations: list[int]) -> Any:
    """Spread a kernel's taps `dilation` apart (zeros between): a dilated kernel as a plain one."""
    for i, d in enumerate(dilations):
        if d == 1:
            continue
        axis = i + 2
        k = w.shape[axis]
        pos = np.full((k - 1) * d + 1, k, dtype=np.int64)
        pos[::d] = np.arange(k)
        zero = tf.zeros_like(tf.gather(w, [0], axis=axis))
        w = tf.gather(tf.concat([w, zero], axis), pos, axis=axis)
    return w
