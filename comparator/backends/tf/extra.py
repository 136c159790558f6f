"""Less common ops: detection (NonMaxSuppression), sampling grids, signal processing, strings, and a few
reshaping ops (BitCast, Unique, CenterCropPad, Col2Im). Results with a data-dependent shape (NMS, Unique,
string splitting) run eagerly and in graph mode, not under XLA."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from ..common.executor import OpContext
from .table import arg, axis_of, dtype, ints, known, op, rank


@op("NonMaxSuppression")
def non_max_suppression(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    def get(i: int) -> Any:
        return arg(inputs, i)

    boxes, scores = inputs[0], inputs[1]
    limit = ints(ctx, get(2), "max_output_boxes_per_class")[0] if get(2) is not None else 0
    iou = float(known(ctx, get(3), "iou_threshold").reshape(-1)[0]) if get(3) is not None else 0.0
    floor = float(known(ctx, get(4), "score_threshold").reshape(-1)[0]) if get(4) is not None else float("-inf")
    if attrs.get("center_point_box", 0):  # [x_center, y_center, w, h] -> corners
        xc, yc, w, h = tf.unstack(boxes, axis=-1)
        boxes = tf.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], -1)
    # Otherwise ONNX's [y1, x1, y2, x2] is TF's own layout (either corner first).
    picked = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            keep = tf.image.non_max_suppression(boxes[b], scores[b, c], limit, iou_threshold=iou,
                                                score_threshold=floor)
            keep = tf.cast(keep, tf.int64)
            ids = tf.fill(tf.shape(keep), tf.constant(0, tf.int64))
            picked.append(tf.stack([ids + b, ids + c, keep], axis=1))
    return tf.concat(picked, 0) if picked else tf.zeros([0, 3], tf.int64)


@op("Col2Im")
def col2im(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    image, block = ints(ctx, inputs[1], "image_shape"), ints(ctx, inputs[2], "block_shape")
    nd = len(image)
    dil = list(attrs.get("dilations") or [1] * nd)
    pads = list(attrs.get("pads") or [0] * 2 * nd)
    strides = list(attrs.get("strides") or [1] * nd)
    n, ck, _ = x.shape
    c = ck // int(np.prod(block))
    padded = [image[i] + pads[i] + pads[i + nd] for i in range(nd)]
    outs = [(padded[i] - ((block[i] - 1) * dil[i] + 1)) // strides[i] + 1 for i in range(nd)]
    # Flat padded-image position of every (kernel tap, block position): scatter-add the columns there.
    taps = np.stack(np.meshgrid(*[np.arange(k) for k in block], indexing="ij"), -1).reshape(-1, nd)
    where = np.stack(np.meshgrid(*[np.arange(o) for o in outs], indexing="ij"), -1).reshape(-1, nd)
    pos = taps[:, None, :] * np.array(dil) + where[None, :, :] * np.array(strides)
    flat = np.ravel_multi_index(tuple(np.moveaxis(pos, -1, 0)), padded).reshape(-1)
    cols = tf.reshape(tf.transpose(tf.reshape(x, [n, c, -1]), [2, 0, 1]), [-1, n, c])
    img = tf.math.unsorted_segment_sum(cols, flat, int(np.prod(padded)))
    img = tf.reshape(tf.transpose(img, [1, 2, 0]), [n, c, *padded])
    return img[tuple([slice(None), slice(None)] + [slice(pads[i], pads[i] + image[i]) for i in range(nd)])]


def _complex(x: Any) -> Any:
    """ONNX's real representation ([..., 1] real or [..., 2] real/imaginary) as a complex tensor."""
    complex_dtype = tf.complex128 if x.dtype == tf.float64 else tf.complex64
    wide = tf.cast(x, tf.float64 if x.dtype == tf.float64 else tf.float32)
    if x.shape[-1] == 1:
        return tf.cast(wide[..., 0], complex_dtype)
    return tf.complex(wide[..., 0], wide[..., 1])


@op("DFT", since=17)
def dft(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    length_in = arg(inputs, 1)
    if ctx.opset >= 20:
        axis = ints(ctx, inputs[2], "axis")[0] if len(inputs) > 2 and inputs[2] is not None else -2
    else:
        axis = attrs.get("axis", 1)
    axis = axis_of(axis, rank(x))
    inverse, onesided = bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0))
    if length_in is not None:
        n = ints(ctx, length_in, "dft_length")[0]
    else:
        n = 2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis]
    signal = tf.experimental.numpy.moveaxis(_complex(x), axis, -1)
    if inverse and onesided:
        out = tf.signal.irfft(signal, [n])[..., None]
    else:
        have = signal.shape[-1]
        if have < n:
            signal = tf.pad(signal, [[0, 0]] * (rank(signal) - 1) + [[0, n - have]])
        signal = signal[..., :n]
        spectrum = tf.signal.ifft(signal) if inverse else tf.signal.fft(signal)
        if onesided:
            spectrum = spectrum[..., : n // 2 + 1]
        out = tf.stack([tf.math.real(spectrum), tf.math.imag(spectrum)], -1)
    out = tf.experimental.numpy.moveaxis(out, -2, axis)
    return tf.cast(out, x.dtype)


def _window(coefficients: list[float]) -> Any:
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        size = ints(ctx, inputs[0], "size")[0]
        period = size if attrs.get("periodic", 1) else size - 1
        k = tf.range(size, dtype=tf.float64) * (2 * math.pi / period)
        w = tf.add_n([tf.cast(a, tf.float64) * tf.math.cos(k * i) * (-1) ** i for i, a in enumerate(coefficients)])
        return tf.cast(w, dtype(ctx, attrs.get("output_datatype", 1)))
    return run


op("HannWindow")(_window([0.5, 0.5]))
op("HammingWindow")(_window([25 / 46, 21 / 46]))
op("BlackmanWindow")(_window([0.42, 0.5, 0.08]))


@op("StringConcat")
def string_concat(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    a, b = inputs
    shape = tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b))
    return tf.strings.join([tf.broadcast_to(a, shape), tf.broadcast_to(b, shape)])


@op("RegexFullMatch")
def regex_full_match(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.strings.regex_full_match(inputs[0], attrs["pattern"])


@op("StringSplit")
def string_split(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    sep = attrs.get("delimiter") or None
    maxsplit = attrs.get("maxsplit")
    if sep is None:  # runs of whitespace, no empty pieces at either end
        x = tf.strings.strip(tf.strings.regex_replace(x, r"\s+", " "))
        sep = " "
    parts = tf.strings.split(x, sep=sep, maxsplit=-1 if maxsplit is None else maxsplit)
    if attrs.get("delimiter") in (None, ""):  # whitespace splitting yields no empty pieces
        parts = tf.ragged.boolean_mask(parts, tf.not_equal(parts, ""))
    counts = tf.reduce_sum(tf.ones_like(parts, tf.int64), axis=-1)
    return [parts.to_tensor(default_value=""), counts]


@op("StringNormalizer")
def string_normalizer(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    stops = list(attrs.get("stopwords") or [])
    action = attrs.get("case_change_action", "NONE")
    keep = tf.ones_like(x, tf.bool)
    if stops:
        probe = x if attrs.get("is_case_sensitive", 0) else tf.strings.lower(x)
        words = stops if attrs.get("is_case_sensitive", 0) else [w.lower() for w in stops]
        for w in words:
            keep = tf.logical_and(keep, tf.not_equal(probe, w))
    if action == "LOWER":
        x = tf.strings.lower(x)
    elif action == "UPPER":
        x = tf.strings.upper(x)
    flat = tf.boolean_mask(tf.reshape(x, [-1]), tf.reshape(keep, [-1]))
    # Nothing left: one empty string.
    flat = tf.concat([flat, tf.constant([""])], 0)[: tf.maximum(tf.size(flat), 1)]
    return tf.reshape(flat, [1, -1]) if rank(x) == 2 else flat
