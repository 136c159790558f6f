"""TODO docstring."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..common.executor import OpContext
from .table import arg, op, unsupported

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _spatial(attrs: dict[str, Any], name: str, n: int, fill: int) -> list[int]:
    return list(attrs.get(name) or [fill] * n)


def _pads(attrs: dict[str, Any], size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
          dilations: Sequence[int]) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis, auto_pad resolved as ONNX defines it."""
    n = len(size)
    mode = attrs.get("auto_pad", "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for i in range(n):
            total = max((math.ceil(size[i] / strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                        - size[i], 0)
            small = total // 2
            out.append((small, total - small) if mode == "SAME_UPPER" else (total - small, small))
        return out
    if mode == "VALID":
        return [(0, 0)] * n
    pads = list(attrs.get("pads") or [0] * (2 * n))
    return [(pads[i], pads[i + n]) for i in range(n)]


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
    strides, dilations = _spatial(attrs, "strides", n, 1), _spatial(attrs, "dilations", n, 1)
    pads = _pads(attrs, x.shape[2:], kernel, strides, dilations)
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
    strides, dilations = _spatial(attrs, "strides", n, 1), _spatial(attrs, "dilations", n, 1)
    out_pad = _spatial(attrs, "output_padding", n, 0)
    full = [strides[i] * (x.shape[2 + i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 for i in range(n)]
    if attrs.get("output_shape") or attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        target = list(attrs.get("output_shape") or [x.shape[2 + i] * strides[i] for i in range(n)])[-n:]
        pads = []
        for i in range(n):
            total = full[i] - target[i]
            upper = attrs.get("auto_pad") == "SAME_UPPER"
            pads.append((total // 2, total - total // 2) if upper else (total - total // 2, total // 2))
    elif attrs.get("auto_pad") == "VALID":
        pads = [(0, 0)] * n
    else:
        p = list(attrs.get("pads") or [0] * 2 * n)
        pads = [(p[i], p[i + n]) for i in range(n)]
    if all(p == q and p >= 0 for p, q in pads) and all(o < max(s, d) for o, s, d in zip(out_pad, strides, dilations)):
        return _CONV_T[n](x, w, b, strides, [p for p, _ in pads], out_pad, attrs["group"], dilations)
    # Asymmetric padding: the full transposed convolution, then crop (or zero-extend), then the bias.
    y = _CONV_T[n](x, w, None, strides, 0, 0, attrs["group"], dilations)
    flat: list[int] = []
    for i in reversed(range(n)):
        flat += [-pads[i][0], -pads[i][1] + out_pad[i]]
    y = F.pad(y, flat)
    return y if b is None else y + b.reshape(1, -1, *([1] * n))
