"""Convolution and transposed convolution on torch's kernels; the window geometry comes from common.pool."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..common import pool
from ..common.executor import OpContext
from .table import arg, op, unsupported

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _pad_input(x: torch.Tensor, pads: Sequence[tuple[int, int]], value: float = 0.0) -> torch.Tensor:
    flat: list[int] = []
    for begin, end in reversed(pads):
        flat += [begin, end]
    return F.pad(x, flat, value=value) if any(flat) else x


@op("Conv")
def conv(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w, b = inputs[0], inputs[1], arg(inputs, 2)
    n = x.dim() - 2
    if n not in _CONV:
        raise unsupported(ctx, f"{n} spatial dimensions")
    kernel = list(attrs.get("kernel_shape") or w.shape[2:])
    strides, dilations, pads = pool.window(attrs, x.shape[2:], kernel)
    if all(p == q for p, q in pads):
        padding = [p for p, _ in pads]
    else:
        x, padding = _pad_input(x, pads), [0] * n
    return _CONV[n](x, w, b, strides, padding, dilations, attrs["group"])


@op("ConvTranspose")
def conv_transpose(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w, b = inputs[0], inputs[1], arg(inputs, 2)
    n = x.dim() - 2
    if n not in _CONV_T:
        raise unsupported(ctx, f"{n} spatial dimensions")
    kernel = list(attrs.get("kernel_shape") or w.shape[2:])
    strides, dilations = pool.per_axis(attrs, "strides", n, 1), pool.per_axis(attrs, "dilations", n, 1)
    out_pad = pool.per_axis(attrs, "output_padding", n, 0)
    pads = pool.transpose_pads(attrs, x.shape[2:], kernel, strides, dilations, out_pad)
    if all(p == q and p >= 0 for p, q in pads) and all(o < max(s, d) for o, s, d in zip(out_pad, strides, dilations)):
        return _CONV_T[n](x, w, b, strides, [p for p, _ in pads], out_pad, attrs["group"], dilations)
    # Asymmetric padding: the full transposed convolution, then crop (or zero-extend), then the bias.
    y = _CONV_T[n](x, w, None, strides, 0, 0, attrs["group"], dilations)
    flat: list[int] = []
    for i in reversed(range(n)):
        flat += [-pads[i][0], -pads[i][1] + out_pad[i]]
    y = F.pad(y, flat)
    return y if b is None else y + b.reshape(1, -1, *([1] * n))
