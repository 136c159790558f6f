"""Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, the integer matmul and conv, and QLinear*."""
from __future__ import annotations

from typing import Any

import torch

from ..common.executor import OpContext
from .conv import conv
from .math import to_type
from .table import arg, axis_of, dtype, FLOAT8, op, unsupported


@op("MatMulInteger")
def matmul_integer(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    A, B = inputs[0].to(torch.int32), inputs[1].to(torch.int32)
    za, zb = arg(inputs, 2), arg(inputs, 3)
    if za is not None:
        A = A - (za.to(torch.int32).reshape(-1, 1) if za.dim() == 1 else za.to(torch.int32))
    if zb is not None:
        B = B - zb.to(torch.int32)
    return torch.matmul(A.to(torch.int64), B.to(torch.int64)).to(torch.int32)


@op("ConvInteger")
def conv_integer(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w = inputs[0].to(torch.float64), inputs[1].to(torch.float64)
    zx, zw = arg(inputs, 2), arg(inputs, 3)
    if zx is not None:
        x = x - zx.to(torch.float64)
    if zw is not None:
        w = w - (zw.to(torch.float64).reshape(-1, *[1] * (w.dim() - 1)) if zw.dim() == 1 else zw.to(torch.float64))
    # Padding after the zero-point shift pads with the zero point, as ONNX defines it.
    return conv(ctx, [x, w], attrs).round().to(torch.int32)


_RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127), torch.uint16: (0, 65535), torch.int16: (-32768, 32767),
           torch.int32: (-2**31, 2**31 - 1)}


def _along(v: torch.Tensor, x: torch.Tensor, ax: int, block: int) -> torch.Tensor:
    """A scale/zero point made broadcastable to x: scalar, per-axis (1-D) or blocked."""
    if v.dim() == 0 or v.numel() == 1:
        return v.reshape(())
    if not block:
        shape = [1] * x.dim()
        shape[ax] = v.numel()
        return v.reshape(shape)
    return v.repeat_interleave(block, dim=ax).narrow(ax, 0, x.shape[ax])


@op("QuantizeLinear", since=10)
def quantize_linear(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, zp = inputs[0], inputs[1], arg(inputs, 2)
    ax, block = axis_of(attrs.get("axis", 1), x.dim()), attrs.get("block_size", 0)
    out = zp.dtype if zp is not None else (
        dtype(ctx, attrs["output_dtype"]) if attrs.get("output_dtype") else torch.uint8)
    if out not in _RANGES and out not in FLOAT8:
        raise unsupported(ctx, f"output type {out}")
    if attrs.get("precision"):
        p = dtype(ctx, attrs["precision"])
        y = x.to(p) / _along(scale, x, ax, block).to(p)
    else:
        y = x / _along(scale, x, ax, block)
    if out in FLOAT8:  # no zero point: the spec requires it to be 0
        return to_type(y, out, attrs.get("saturate", 1))
    q = torch.round(y).to(torch.int64)  # round half to even, as ONNX specifies
    if zp is not None:
        q = q + _along(zp.to(torch.int64), x, ax, block)
    lo, hi = _RANGES[out]
    return torch.clamp(q, lo, hi).to(out)


@op("DequantizeLinear", since=10)
def dequantize_linear(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, zp = inputs[0], inputs[1], arg(inputs, 2)
    ax, block = axis_of(attrs.get("axis", 1), x.dim()), attrs.get("block_size", 0)
    if x.dtype not in _RANGES and x.dtype not in FLOAT8:
        raise unsupported(ctx, f"input type {x.dtype}")
    dx = x.to(torch.float32)
    if zp is not None and x.dtype not in FLOAT8:
        dx = dx - _along(zp.to(torch.float32), x, ax, block)
    y = dx * _along(scale, x, ax, block)
    return y.to(dtype(ctx, attrs["output_dtype"]) if attrs.get("output_dtype") else scale.dtype)


@op("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    lo = torch.clamp(x.min(), max=0.0)
    hi = torch.clamp(x.max(), min=0.0)
    scale = ((hi - lo) / 255.0).to(torch.float32)
    zp = torch.clamp(torch.round((0 - lo) / scale), 0, 255)
    y = torch.clamp(torch.round(x / scale) + zp, 0, 255)
    return [y.to(torch.uint8), scale, zp.to(torch.uint8)]


def _requantize(acc: torch.Tensor, factor: torch.Tensor, zp: Any, like: torch.Tensor) -> torch.Tensor:
    out = zp.dtype if zp is not None else like.dtype
    d = acc.to(torch.float64) * factor.to(torch.float64)
    if zp is not None:
        d = d + zp.to(torch.float64)
    lo, hi = _RANGES[out]
    return torch.clamp(torch.round(d), lo, hi).to(out)


@op("QLinearMatMul", since=10)
def qlinear_matmul(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    qa, sa, za, qb, sb, zb, sy, zy = inputs
    A = qa.to(torch.int64) - (za.to(torch.int64) if za is not None else 0)
    B = qb.to(torch.int64) - (zb.to(torch.int64) if zb is not None else 0)
    factor = sa.to(torch.float32) * sb.to(torch.float32) / sy.to(torch.float32)
    return _requantize(torch.matmul(A, B), factor.to(sa.dtype), zy, qa)


@op("QLinearConv", since=10)
def qlinear_conv(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, sx, zx, w, sw, zw, sy, zy = inputs[:8]
    b = arg(inputs, 8)
    X = x.to(torch.float64) - (zx.to(torch.float64) if zx is not None else 0)
    W = w.to(torch.float64)
    if zw is not None:
        W = W - (zw.to(torch.float64).reshape(-1, *[1] * (w.dim() - 1)) if zw.numel() > 1 else zw.to(torch.float64))
    acc = conv(ctx, [X, W, None if b is None else b.to(torch.float64)], attrs)
    scale_w = sw.reshape(1, -1, *[1] * (x.dim() - 2)) if sw.numel() > 1 else sw
    return _requantize(acc, sx * scale_w / sy, zy, x)
