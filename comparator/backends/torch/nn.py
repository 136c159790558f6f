"""Convolution, pooling, normalisation, softmax and dense layers."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import UnsupportedError
from ..common import pool
from ..common.executor import OpContext, OpFn
from .conv import _CONV, _pad_input
from .table import arg, axis_of, op, unsupported, wants, widen

# Typed loosely: the stubs overload max_pool on a literal return_indices, which a run-time flag cannot match.
_MAXPOOL: dict[int, Callable[..., Any]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVGPOOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _pool_geometry(attrs: dict[str, Any], x: torch.Tensor) -> tuple[list[int], list[int], list[int],
                                                                   list[tuple[int, int]], list[int]]:
    kernel = list(attrs["kernel_shape"])
    strides, dilations, pads = pool.window(attrs, x.shape[2:], kernel)
    extra = pool.ceil_extra(x.shape[2:], kernel, strides, dilations, pads, bool(attrs.get("ceil_mode")))
    return kernel, strides, dilations, pads, extra


@op("MaxPool")
def max_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    n = x.dim() - 2
    if n not in _MAXPOOL:
        raise unsupported(ctx, f"{n} spatial dimensions")
    kernel, strides, dilations, pads, extra = _pool_geometry(attrs, x)
    work = x if x.is_floating_point() else x.to(torch.float64)  # torch pools floats only; exact for ints <2^53
    native = all(p == q and 2 * p <= k for (p, q), k in zip(pads, kernel))
    indices = wants(ctx, 1)
    if native:
        out = _MAXPOOL[n](work, kernel, strides, [p for p, _ in pads], dilations, bool(attrs.get("ceil_mode")),
                          indices)
    else:
        full = [(p, q + e) for (p, q), e in zip(pads, extra)]
        out = _MAXPOOL[n](_pad_input(work, full, float("-inf")), kernel, strides, 0, dilations, False, indices)
    if not indices:
        return out.to(x.dtype)
    y, idx = out
    return [y.to(x.dtype), _onnx_indices(idx, x.shape, None if native else pads, attrs.get("storage_order", 0))]


def _onnx_indices(idx: torch.Tensor, shape: Sequence[int], pads: Sequence[tuple[int, int]] | None,
                  storage_order: int) -> torch.Tensor:
    """torch's per-plane indices (into the padded plane) -> ONNX's flat indices into the whole input."""
    spatial = list(shape[2:])
    coords = []
    rest = idx
    padded = [s + (p[0] + p[1] if pads else 0) for s, p in zip(spatial, pads or [(0, 0)] * len(spatial))]
    for size in reversed(padded):
        coords.append(rest % size)
        rest = torch.div(rest, size, rounding_mode="floor")
    coords.reverse()
    if pads:
        coords = [c - p[0] for c, p in zip(coords, pads)]
    flat = torch.zeros_like(idx)
    order = range(len(spatial)) if storage_order == 0 else reversed(range(len(spatial)))
    for i in order:
        flat = flat * spatial[i] + coords[i]
    plane = math.prod(spatial)
    nc = torch.arange(shape[0] * shape[1], device=idx.device).reshape(shape[0], shape[1], *[1] * len(spatial))
    return flat + nc * plane


@op("AveragePool")
def average_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    n = x.dim() - 2
    kernel, strides, dilations, pads, extra = _pool_geometry(attrs, x)
    include = bool(attrs.get("count_include_pad"))
    if n in _AVGPOOL and all(d == 1 for d in dilations) and all(p == q and 2 * p <= k for (p, q), k in
                                                                   zip(pads, kernel)):
        return _AVGPOOL[n](x, kernel, strides, [p for p, _ in pads], bool(attrs.get("ceil_mode")), include)
    return _window_sum(x, kernel, strides, dilations, pads, extra, include, mean=True)


def _window_sum(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
                pads: Sequence[tuple[int, int]], extra: Sequence[int], include: bool,
                mean: bool) -> torch.Tensor:
    """Pooling as a depthwise convolution with a ones kernel: any padding, dilation and ceil mode."""
    n, c = x.dim() - 2, x.shape[1]
    if n not in _CONV:
        raise UnsupportedError(f"pooling over {n} spatial dimensions is not supported by the torch backend")
    ones = torch.ones((c, 1, *kernel), dtype=x.dtype, device=x.device)
    full = [(p, q + e) for (p, q), e in zip(pads, extra)]
    total = _CONV[n](_pad_input(x, full), ones, None, strides, 0, dilations, c)
    if not mean:
        return total
    # The divisor counts the input cells (and the declared padding when count_include_pad), never the
    # extra room ceil mode adds.
    mask = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    if include:
        mask = _pad_input(mask, pads, 1.0)
        full = [(0, e) for e in extra]
    count = _CONV[n](_pad_input(mask, full), ones[:1], None, strides, 0, dilations)
    return total / count


@op("LpPool")
def lp_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    kernel, strides, dilations, pads, extra = _pool_geometry(attrs, x)
    p = attrs.get("p", 2)
    return _window_sum(x.abs() ** p, kernel, strides, dilations, pads, extra, False, False) ** (1.0 / p)


@op("GlobalAveragePool")
def global_average_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@op("GlobalMaxPool")
def global_max_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@op("GlobalLpPool")
def global_lp_pool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    p = attrs.get("p", 2)
    return (x.abs() ** p).sum(dim=tuple(range(2, x.dim())), keepdim=True) ** (1.0 / p)


@op("MaxUnpool")
def max_unpool(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx, shape = inputs[0], inputs[1], arg(inputs, 2)
    n = x.dim() - 2
    kernel, strides = list(attrs["kernel_shape"]), pool.per_axis(attrs, "strides", n, 1)
    pads = pool.explicit(attrs, n)
    inferred = list(x.shape[:2]) + [(x.shape[2 + i] - 1) * strides[i] + kernel[i] - pads[i][0] - pads[i][1]
                                    for i in range(n)]
    y = torch.zeros(math.prod(inferred), dtype=x.dtype, device=x.device)
    y[idx.reshape(-1)] = x.reshape(-1)
    y = y.reshape(inferred)
    if shape is None:
        return y
    # A larger output_shape places the unpooled tensor in its leading corner (indices keep their meaning).
    out = [int(v) for v in shape.tolist()]
    return F.pad(y, [v for i in reversed(range(y.dim())) for v in (0, out[i] - inferred[i])])


@op("BatchNormalization")
def batch_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, bias, mean, var = inputs[:5]
    eps = attrs["epsilon"]
    if not attrs.get("training_mode", 0):
        return F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)
    dims = [0] + list(range(2, x.dim()))
    cur_mean = x.mean(dim=dims)
    cur_var = x.var(dim=dims, unbiased=False)
    y = F.batch_norm(x, cur_mean, cur_var, scale, bias, False, 0.0, eps)
    m = attrs["momentum"]
    return [y, mean * m + cur_mean * (1 - m), var * m + cur_var * (1 - m)]


@op("InstanceNormalization")
def instance_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, bias = inputs
    return F.instance_norm(x, weight=scale, bias=bias, eps=attrs["epsilon"])


def _stash(x: torch.Tensor, stash_type: int) -> torch.Tensor:
    # stash_type=1: statistics in float32 even for half inputs.
    return x.float() if stash_type == 1 and x.dtype in (torch.float16, torch.bfloat16) else x


@op("LayerNormalization")
def layer_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, bias = inputs[0], inputs[1], arg(inputs, 2)
    ax = axis_of(attrs["axis"], x.dim())
    shape = list(x.shape[ax:])
    xf = _stash(x, attrs.get("stash_type", 1))
    if not wants(ctx, 1) and not wants(ctx, 2) and xf.dtype == x.dtype:
        w = scale.expand(shape) if list(scale.shape) != shape else scale
        b = bias.expand(shape) if bias is not None and list(bias.shape) != shape else bias
        return F.layer_norm(x, shape, w, b, attrs["epsilon"])
    dims = tuple(range(ax, x.dim()))
    mean = xf.mean(dim=dims, keepdim=True)
    var = ((xf - mean) ** 2).mean(dim=dims, keepdim=True)
    inv = torch.rsqrt(var + attrs["epsilon"])
    y = ((xf - mean) * inv).to(x.dtype) * scale
    if bias is not None:
        y = y + bias
    return [y, mean, inv]


@op("GroupNormalization")
def group_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, bias = inputs
    groups, c = attrs["num_groups"], x.shape[1]
    if ctx.opset < 21 and scale.numel() == groups:  # opset 18: one scale per group
        scale, bias = scale.repeat_interleave(c // groups), bias.repeat_interleave(c // groups)
    xf = _stash(x, attrs.get("stash_type", 1))
    return F.group_norm(xf, groups, scale.to(xf.dtype), bias.to(xf.dtype), attrs["epsilon"]).to(x.dtype)


@op("RMSNormalization", since=23)
def rms_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale = inputs
    ax = axis_of(attrs["axis"], x.dim())
    xf = _stash(x, attrs.get("stash_type", 1))
    dims = tuple(range(ax, x.dim()))
    y = xf * torch.rsqrt((xf * xf).mean(dim=dims, keepdim=True) + attrs["epsilon"])
    return y.to(x.dtype) * scale


@op("LRN")
def lrn(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, size = inputs[0], attrs["size"]
    if size % 2 == 1:
        return F.local_response_norm(x, size, attrs["alpha"], attrs["beta"], attrs["bias"])
    # Even windows: ONNX centres them one way, torch the other.
    sq = F.pad((x * x).unsqueeze(1), [0, 0] * (x.dim() - 2) + [(size - 1) // 2, size // 2])
    total = sum(sq[:, 0, i:i + x.shape[1]] for i in range(size))
    return x / (attrs["bias"] + attrs["alpha"] / size * total) ** attrs["beta"]


@op("MeanVarianceNormalization")
def mvn(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    dims = tuple(attrs.get("axes") or [0, 2, 3])
    mean = x.mean(dim=dims, keepdim=True)
    var = (x * x).mean(dim=dims, keepdim=True) - mean * mean
    return (x - mean) / (torch.sqrt(var) + 1e-9)


@op("LpNormalization")
def lp_norm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    norm = torch.linalg.vector_norm(x, ord=attrs["p"], dim=attrs["axis"], keepdim=True)
    return torch.where(norm == 0, torch.zeros_like(x), x / norm)


def _coerced(fn: Callable[..., Any]) -> OpFn:
    """Softmax family: before opset 13 the input is flattened to 2-D at `axis` (default 1)."""
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        x = inputs[0]
        ax = axis_of(attrs.get("axis", -1 if ctx.opset >= 13 else 1), x.dim())
        if ctx.opset >= 13:
            return fn(x, ax)
        return fn(x.reshape(math.prod(x.shape[:ax]), -1), 1).reshape(x.shape)
    return run


def _hardmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    return F.one_hot(torch.argmax(x, dim=dim), x.shape[dim]).movedim(-1, dim).to(x.dtype)


op("Softmax")(_coerced(lambda x, d: torch.softmax(x, d)))
op("LogSoftmax")(_coerced(lambda x, d: torch.log_softmax(x, d)))
op("Hardmax")(_coerced(_hardmax))


@op("Dropout")
def dropout(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    ratio = attrs.get("ratio", 0.5) if ctx.opset < 12 else (float(inputs[1]) if arg(inputs, 1) is not None else 0.5)
    training = ctx.opset >= 12 and arg(inputs, 2) is not None and bool(inputs[2])
    if training and ratio > 0:
        raise unsupported(ctx, "training_mode=1 (random)")
    # inference keeps every element: the mask is all ones, bool from opset 10, the data's type before
    return [x, torch.ones_like(x, dtype=torch.bool if ctx.opset >= 10 else x.dtype)]


@op("Gemm")
def gemm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    A, B, C = inputs[0], inputs[1], arg(inputs, 2)
    alpha, beta, ta, tb = attrs["alpha"], attrs["beta"], attrs["transA"], attrs["transB"]
    if (A.is_floating_point() and tb and not ta and alpha == 1.0 and beta == 1.0
            and (C is None or (C.dim() == 1 and C.shape[0] == B.shape[0]))):
        return F.linear(A, B, C)  # nn.Linear's kernel: the common exported case
    A, B = (A.T if ta else A), (B.T if tb else B)
    y = torch.matmul(widen(A), widen(B))
    if alpha != 1.0:
        y = y * alpha
    if C is not None and beta != 0.0:
        y = y + (widen(C) * beta if beta != 1.0 else widen(C))
    return y.to(A.dtype)


@op("MatMul")
def matmul(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    A, B = inputs
    return torch.matmul(widen(A), widen(B)).to(A.dtype)
