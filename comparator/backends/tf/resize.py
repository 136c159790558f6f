"""Resize and Upsample.

Where TF's own resize kernels compute exactly what ONNX asks (4-D images resized in height and width with the
coordinate conventions those kernels implement), they run, channels-last. Every other combination of ONNX's
modes samples per axis with TF gathers and weighted sums, from a sampling plan that follows the ONNX
specification (indices and weights are computed while tracing: shapes are static by then).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ..common.executor import OpContext
from ..common.resize import axis_rois, nearest_indices, output_geometry, source_coordinates
from .table import arg, axis_of, ints, known, op, rank, to_first, to_last, unsupported


def _cubic(a: float) -> Callable[[np.ndarray], np.ndarray]:
    def w(d: np.ndarray) -> np.ndarray:
        d = np.abs(d)
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        return np.where(d <= 1, near, np.where(d < 2, far, 0.0))
    return w


def _plan(x: np.ndarray, n_in: int, attrs: dict[str, Any], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour indices [out, taps] (clamped into the input) and their weights, for linear/cubic."""
    antialias = bool(attrs.get("antialias", 0)) and scale < 1
    support = 1.0 if attrs["mode"] == "linear" else 2.0
    kernel = (lambda d: np.clip(1 - np.abs(d), 0, 1)) if attrs["mode"] == "linear" else _cubic(attrs["cubic_coeff_a"])
    s = scale if antialias else 1.0
    floor = np.floor(x)
    ratio = np.where(x == floor, 1.0, x - floor)  # an integer coordinate counts as the right end of its cell
    left = np.where(x == floor, floor - 1, floor)
    start = int(np.floor(-support / s) + 1)
    taps = np.arange(start, 1 - start + 1)
    idx = left[:, None] + taps[None, :]
    weights = kernel((taps[None, :] - ratio[:, None]) * s)
    if antialias or attrs.get("exclude_outside", 0):
        if attrs.get("exclude_outside", 0):
            weights = np.where((idx < 0) | (idx >= n_in), 0.0, weights)
        total = weights.sum(1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, n_in - 1).astype(np.int64), weights


def _resize_axis(v: Any, axis: int, n_out: int, scale: float, attrs: dict[str, Any],
                 roi: tuple[float, float] | None) -> Any:
    n_in = v.shape[axis]
    coord_mode = attrs["coordinate_transformation_mode"]
    x, outside = source_coordinates(coord_mode, n_in, n_out, scale, roi)
    if attrs["mode"] == "nearest":
        out = tf.gather(v, nearest_indices(attrs["nearest_mode"], x, n_in), axis=axis)
    else:
        idx, weights = _plan(x, n_in, attrs, scale)
        wshape = [1] * rank(v)
        wshape[axis] = n_out
        out = tf.add_n([tf.gather(v, idx[:, t], axis=axis) * tf.constant(weights[:, t].reshape(wshape), v.dtype)
                        for t in range(idx.shape[1])])
    if outside is not None and outside.any():
        mshape = [1] * rank(v)
        mshape[axis] = n_out
        fill = tf.cast(attrs.get("extrapolation_value", 0.0), v.dtype)
        out = tf.where(tf.constant(outside.reshape(mshape)), fill, out)
    return out


def _tf_kernel(x: Any, axes: list[int], sizes: list[int], scales: list[float], attrs: dict[str, Any]) -> Any:
    """TF's ResizeBilinear/ResizeBicubic where they compute exactly the ONNX result, else None."""
    r = rank(x)
    moved = [a for a in range(r) if x.shape[a] != sizes[a] or scales[a] != 1.0]
    if r != 4 or not set(moved) <= {2, 3} or x.dtype != tf.float32 or attrs.get("antialias", 0):
        return None
    mode, coord = attrs["mode"], attrs["coordinate_transformation_mode"]
    # TF's kernels derive their scale from the sizes: only equal to ONNX's when out/in is the given scale.
    if any(sizes[a] / x.shape[a] != scales[a] for a in (2, 3)):
        return None
    if coord == "pytorch_half_pixel" and min(sizes[2], sizes[3]) > 1:
        coord = "half_pixel"
    flags = {"half_pixel": (False, True), "align_corners": (True, False), "asymmetric": (False, False)}
    if coord not in flags:
        return None
    align, half = flags[coord]
    if mode == "linear":
        fn = tf.raw_ops.ResizeBilinear
    elif mode == "cubic":
        # TF's bicubic kernel: Keys a=-0.5 renormalised inside the image with half-pixel centres,
        # the legacy a=-0.75 with edge clamping otherwise.
        a, exclude = attrs["cubic_coeff_a"], attrs.get("exclude_outside", 0)
        if not ((half and a == -0.5 and exclude) or (not half and a == -0.75 and not exclude)):
            return None
        fn = tf.raw_ops.ResizeBicubic
    else:
        return None
    y = fn(images=to_last(x), size=[sizes[2], sizes[3]], align_corners=align, half_pixel_centers=half)
    return to_first(y)


def _resize(ctx: OpContext, x: Any, roi: Any, scales: Any, sizes: Any, attrs: dict[str, Any]) -> Any:
    r = rank(x)
    in_shape = x.shape.as_list()
    if any(d is None for d in in_shape):
        raise unsupported(ctx, "input dimensions unknown while tracing")
    axes = [axis_of(a, r) for a in attrs["axes"]] if attrs.get("axes") else list(range(r))
    given = sizes is not None and np.asarray(sizes).size
    full_scales, out = output_geometry(in_shape, axes, None if given else list(np.asarray(scales).reshape(-1)),
                                       list(np.asarray(sizes).reshape(-1)) if given else None,
                                       attrs.get("keep_aspect_ratio_policy", "stretch"))
    roi_pairs = axis_rois(roi, axes) if attrs["coordinate_transformation_mode"] == "tf_crop_and_resize" else None
    if attrs["mode"] != "nearest" and roi_pairs is None:
        y = _tf_kernel(x, axes, out, full_scales, attrs)
        if y is not None:
            return y
    y = x
    for a in range(r):
        pair = roi_pairs.get(a) if roi_pairs else None
        if out[a] == in_shape[a] and full_scales[a] == 1.0 and (pair is None or tuple(pair) == (0.0, 1.0)):
            continue
        y = _resize_axis(y, a, out[a], full_scales[a], attrs, pair)
    return y


def _float_input(ctx: OpContext, x: Any, fn: Callable[[Any], Any]) -> Any:
    """Interpolate integer images in float64 and round back, as ONNX's reference does."""
    if x.dtype.is_floating:
        return fn(x)
    y = fn(tf.cast(x, tf.float64))
    return tf.cast(tf.clip_by_value(tf.round(y), x.dtype.min, x.dtype.max), x.dtype)


@op("Resize", since=11)
def resize(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    opt: list[Any] = [known(ctx, inputs[i], name) if arg(inputs, i) is not None else None
                      for i, name in ((1, "roi"), (2, "scales"), (3, "sizes"))]
    if attrs["mode"] == "nearest" and attrs.get("antialias", 0):
        raise unsupported(ctx, "antialias with mode=nearest")
    return _float_input(ctx, x, lambda v: _resize(ctx, v, opt[0], opt[1], opt[2], attrs))


def _legacy(ctx: OpContext, x: Any, scales: Any, attrs: dict[str, Any]) -> Any:
    """Resize-10 and Upsample: asymmetric coordinates, nearest rounds down."""
    mode = "linear" if attrs["mode"] in ("linear", "bilinear") else attrs["mode"]
    full = {"mode": mode, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor",
            "cubic_coeff_a": -0.75}
    return _float_input(ctx, x, lambda v: _resize(ctx, v, None, scales, None, full))


@op("Resize", since=10, until=10)
def resize_10(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return _legacy(ctx, inputs[0], known(ctx, inputs[1], "scales"), attrs)


@op("Upsample", until=8)
def upsample_attr(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return _legacy(ctx, inputs[0], np.asarray(attrs["scales"]), attrs)


@op("Upsample", since=9)
def upsample(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return _legacy(ctx, inputs[0], known(ctx, inputs[1], "scales"), attrs)


def _unnormalize(g: Any, size: int, align: bool) -> Any:
    return (g + 1) / 2 * (size - 1) if align else ((g + 1) * size - 1) / 2


def _reflect(v: Any, size: int, align: bool) -> Any:
    """Reflect a source coordinate into the image, as grid_sample's reflection padding does."""
    lo, hi = (0.0, 2.0 * (size - 1)) if align else (-1.0, 2.0 * size - 1)
    if hi <= lo:
        return tf.zeros_like(v)
    span = (hi - lo) / 2
    v = tf.math.abs(v - lo / 2)
    flips = tf.math.floor(v / span)
    extra = v - flips * span
    v = tf.where(tf.math.floormod(flips, 2) == 0, extra + lo / 2, span - extra + lo / 2)
    return tf.clip_by_value(v, 0.0, size - 1.0)


@op("GridSample", since=16)
def grid_sample(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, grid = inputs
    nd = rank(x) - 2
    spatial = x.shape.as_list()[2:]
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(attrs["mode"], attrs["mode"])
    pad, align = attrs["padding_mode"], bool(attrs["align_corners"])
    if mode == "cubic" and nd != 2:
        raise unsupported(ctx, "cubic sampling of a volume")
    g = tf.cast(grid, tf.float64)
    coords = [_unnormalize(g[..., nd - 1 - d], spatial[d], align) for d in range(nd)]
    if mode != "cubic" and pad == "border":
        coords = [tf.clip_by_value(c, 0.0, s - 1.0) for c, s in zip(coords, spatial)]
    elif mode != "cubic" and pad == "reflection":
        coords = [_reflect(c, s, align) for c, s in zip(coords, spatial)]
    n, ch = tf.shape(x)[0], x.shape[1]
    flat = tf.reshape(tf.cast(x, tf.float64), tf.stack([n, ch, -1]))
    out_shape = tf.shape(grid)[1:-1]

    def tap(index: list[Any]) -> Any:
        """x at integer positions (zeros outside for zeros padding), [N, C, *out]."""
        inside = tf.ones_like(index[0], tf.bool)
        if pad == "zeros":
            for i, s in zip(index, spatial):
                inside = tf.logical_and(inside, tf.logical_and(i >= 0, i < s))
        if mode == "cubic" and pad == "reflection":
            index = [tf.cast(_reflect(tf.cast(i, tf.float64), s, align), tf.int64) for i, s in zip(index, spatial)]
        index = [tf.clip_by_value(i, 0, s - 1) for i, s in zip(index, spatial)]
        lin = index[0]
        for i, s in zip(index[1:], spatial[1:]):
            lin = lin * s + i
        vals = tf.gather(flat, tf.reshape(lin, tf.stack([n, -1])), axis=2, batch_dims=1)
        vals = tf.reshape(vals, tf.concat([[n, ch], out_shape], 0))
        return vals * tf.cast(inside, tf.float64)[:, None]

    if mode == "nearest":
        y = tap([tf.cast(tf.math.round(c), tf.int64) for c in coords])
    elif mode == "linear":
        base = [tf.math.floor(c) for c in coords]
        frac = [c - b for c, b in zip(coords, base)]
        y = 0.0
        for corner in np.ndindex(*([2] * nd)):
            w: Any = 1.0
            for d, o in enumerate(corner):
                w = w * (frac[d] if o else 1 - frac[d])
            y = y + tap([tf.cast(b, tf.int64) + o for b, o in zip(base, corner)]) * w[:, None]
    else:
        a = -0.75
        base = [tf.math.floor(c) for c in coords]
        ws = []
        for c, b in zip(coords, base):
            t = c - b
            ws.append([((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                       ((a + 2) * t - (a + 3)) * t * t + 1,
                       ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
                       ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a])
        y = 0.0
        for i in range(4):
            for j in range(4):
                idx = [tf.cast(base[0], tf.int64) + i - 1, tf.cast(base[1], tf.int64) + j - 1]
                y = y + tap(idx) * (ws[0][i] * ws[1][j])[:, None]
    return tf.cast(y, x.dtype)


@op("AffineGrid", since=20)
def affine_grid(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    theta = inputs[0]
    size = ints(ctx, inputs[1], "size")
    spatial = size[2:]
    align = bool(attrs.get("align_corners", 0))

    def axis_points(s: int) -> np.ndarray:
        p = np.linspace(-1, 1, s) if s > 1 else np.zeros(1)
        return p if align else p * (s - 1) / s

    mesh = np.meshgrid(*[axis_points(s) for s in spatial], indexing="ij")
    # Homogeneous base grid, coordinates ordered x (last axis) first.
    base = np.stack([*mesh[::-1], np.ones_like(mesh[0])], -1).reshape(-1, len(spatial) + 1)
    out = tf.einsum("pk,nik->npi", tf.constant(base, theta.dtype), theta)
    return tf.reshape(out, [size[0], *spatial, len(spatial)])
