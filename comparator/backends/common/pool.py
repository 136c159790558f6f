"""Window geometry of ONNX's convolution and pooling ops, shared by the framework executors.

Strides, dilations, auto_pad and explicit pads resolved to (begin, end) padding per spatial axis, the extra end
padding ceil_mode adds, and ConvTranspose's padding from output_shape: plain Python on the attribute values and
the input's spatial sizes (no tensor data), so torch and TensorFlow size their windows from one definition.
"""
from __future__ import annotations

import math
from typing import Any
from collections.abc import Mapping, Sequence

Pads = list[tuple[int, int]]


def per_axis(attrs: Mapping[str, Any], name: str, n: int, fill: int) -> list[int]:
    """A per-spatial-axis attribute (strides, dilations, output_padding), `fill` on every axis when absent."""
    return [int(v) for v in attrs.get(name) or [fill] * n]


def explicit(attrs: Mapping[str, Any], n: int) -> Pads:
    """The `pads` attribute [b1, b2, ..., e1, e2, ...] as (begin, end) pairs."""
    p = list(attrs.get("pads") or [0] * (2 * n))
    return [(int(p[i]), int(p[i + n])) for i in range(n)]


def split(total: int, upper: bool) -> tuple[int, int]:
    """A total padding split in two; SAME_UPPER puts the odd one at the end, SAME_LOWER at the beginning."""
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def pads(attrs: Mapping[str, Any], size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
         dilations: Sequence[int]) -> Pads:
    """(begin, end) padding per spatial axis, auto_pad resolved as ONNX defines it."""
    n = len(size)
    mode = attrs.get("auto_pad", "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        return [split(max((math.ceil(size[i] / strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                          - size[i], 0), mode == "SAME_UPPER") for i in range(n)]
    if mode == "VALID":
        return [(0, 0)] * n
    return explicit(attrs, n)


def window(attrs: Mapping[str, Any], size: Sequence[int], kernel: Sequence[int]) -> tuple[list[int], list[int],
                                                                                           Pads]:
    """strides, dilations and (begin, end) padding of a conv or pool node over spatial sizes `size`."""
    n = len(kernel)
    strides, dilations = per_axis(attrs, "strides", n, 1), per_axis(attrs, "dilations", n, 1)
    return strides, dilations, pads(attrs, size, kernel, strides, dilations)


def ceil_extra(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
               padding: Sequence[tuple[int, int]], ceil_mode: bool) -> list[int]:
    """Extra end padding per axis for ceil_mode's last partial window (0 without ceil_mode): that window is
    kept unless it would start inside the end padding."""
    extra = []
    for i in range(len(size)):
        b, e = padding[i]
        span = size[i] + b + e - (kernel[i] - 1) * dilations[i] - 1
        out = (math.ceil(span / strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (out - 1) * strides[i] >= size[i] + b:
            out -= 1
        extra.append(max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - (size[i] + b + e)))
    return extra


def output_size(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
                padding: Sequence[tuple[int, int]], extra: Sequence[int] | None = None) -> list[int]:
    """Spatial output size of a window op over `size` with the given padding (and ceil_mode's extra)."""
    extra = extra or [0] * len(size)
    return [(size[i] + padding[i][0] + padding[i][1] + extra[i] - (kernel[i] - 1) * dilations[i] - 1) // strides[i]
            + 1 for i in range(len(size))]


def transpose_pads(attrs: Mapping[str, Any], size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                   dilations: Sequence[int], out_pad: Sequence[int]) -> Pads:
    """ConvTranspose's (begin, end) padding: from output_shape or SAME_* when given, else the pads attribute.
    A positive pad crops the full transposed convolution, a negative one extends it with zeros."""
    n = len(kernel)
    mode = attrs.get("auto_pad", "NOTSET")
    if attrs.get("output_shape") or mode in ("SAME_UPPER", "SAME_LOWER"):
        target = list(attrs.get("output_shape") or [size[i] * strides[i] for i in range(n)])[-n:]
        full = [strides[i] * (size[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 for i in range(n)]
        return [split(full[i] - target[i], mode == "SAME_UPPER") for i in range(n)]
    if mode == "VALID":
        return [(0, 0)] * n
    return explicit(attrs, n)
