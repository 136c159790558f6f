"""Reductions, Einsum and the loss ops."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..common.executor import OpContext, OpFn
from .table import arg, axis_of, ints, op, wants, widen

Fn = Callable[[torch.Tensor], torch.Tensor]


def _ident(x: torch.Tensor) -> torch.Tensor:
    return x


def _prod(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, dim=d, keepdim=keep)
    return x


def _extreme(fn: Callable[..., torch.Tensor], empty: float) -> Callable[..., torch.Tensor]:
    def run(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
        if any(x.shape[d] == 0 for d in dims):  # max of nothing: the identity element, as ONNX defines it
            shape = [1 if d in dims else s for d, s in enumerate(x.shape)] if keep else \
                [s for d, s in enumerate(x.shape) if d not in dims]
            return torch.full(shape, empty, dtype=x.dtype, device=x.device)
        return fn(x, dim=dims, keepdim=keep)
    return run


def _sum(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    return torch.sum(x, dim=dims, keepdim=keep, dtype=x.dtype)


def _mean(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    if x.is_floating_point():
        return torch.mean(x, dim=dims, keepdim=keep)
    return torch.mean(x.double(), dim=dims, keepdim=keep).to(x.dtype)


def _float_post(fn: Fn) -> Fn:
    # sqrt/log of an integer sum: computed in float64, truncated back like the reference does.
    return lambda x: fn(x) if x.is_floating_point() else fn(x.double()).to(x.dtype)


_REDUCTIONS: dict[str, tuple[Fn, Callable[..., torch.Tensor], Fn, int]] = {
    # name: (elementwise before, reduction, elementwise after, first opset taking axes as an input)
    "ReduceSum": (_ident, _sum, _ident, 13),
    "ReduceSumSquare": (lambda x: x * x, _sum, _ident, 18),
    "ReduceL1": (torch.abs, _sum, _ident, 18),
    "ReduceL2": (lambda x: x * x, _sum, _float_post(torch.sqrt), 18),
    "ReduceLogSum": (_ident, _sum, _float_post(torch.log), 18),
    "ReduceMean": (_ident, _mean, _ident, 18),
    "ReduceMax": (_ident, _extreme(torch.amax, float("-inf")), _ident, 18),
    "ReduceMin": (_ident, _extreme(torch.amin, float("inf")), _ident, 18),
    "ReduceProd": (_ident, _prod, _ident, 18),
    "ReduceLogSumExp": (_ident, lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k), _ident, 18),
}


def _reduction(name: str) -> None:
    pre, fn, post, since = _REDUCTIONS[name]

    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        x = widen(inputs[0])
        if ctx.opset < since:
            axes = attrs.get("axes")
        else:
            axes = ints(ctx, arg(inputs, 1)) if arg(inputs, 1) is not None else None
        keep = bool(attrs.get("keepdims", 1))
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return post(pre(x)).to(inputs[0].dtype)
            axes = list(range(x.dim()))
        if x.dtype == torch.bool and name in ("ReduceMax", "ReduceMin"):
            dims = tuple(sorted(axis_of(v, x.dim()) for v in axes))
            fill = 0.0 if name == "ReduceMax" else 1.0
            return _extreme(torch.amax if name == "ReduceMax" else torch.amin, fill)(x.to(torch.uint8), dims, keep) \
                .to(torch.bool)
        dims = tuple(sorted(axis_of(v, x.dim()) for v in axes))
        if name == "ReduceLogSumExp" and x.numel() == 0:
            return _extreme(torch.amax, float("-inf"))(x, dims, keep)
        return post(fn(pre(x), dims, keep)).to(inputs[0].dtype)

    op(name)(run)


for _op in _REDUCTIONS:
    _reduction(_op)


@op("Einsum")
def einsum(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return torch.einsum(attrs["equation"].replace(" ", ""), *[widen(x) for x in inputs]).to(inputs[0].dtype)


def _ignore(attrs: dict[str, Any]) -> int:
    # torch needs an int; without the attribute no label is ignored, and -100 is never a valid class.
    value = attrs.get("ignore_index")
    return -100 if value is None else int(value)


@op("NegativeLogLikelihoodLoss")
def nll_loss(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, target, weight = inputs[0], inputs[1].to(torch.int64), arg(inputs, 2)
    return _nll(x, target, weight, attrs)


def _nll(logp: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, attrs: dict[str, Any]) -> torch.Tensor:
    ignore = _ignore(attrs)
    mode = attrs.get("reduction", "mean")
    if logp.dim() == 2 or logp.dim() == 4 or logp.dim() == 3:
        return F.nll_loss(logp, target, weight, ignore_index=ignore, reduction=mode)
    n, c = logp.shape[:2]
    flat = F.nll_loss(logp.reshape(n, c, -1), target.reshape(n, -1), weight, ignore_index=ignore, reduction=mode)
    return flat.reshape(target.shape) if mode == "none" else flat


@op("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    scores, labels, weight = inputs[0], inputs[1].to(torch.int64), arg(inputs, 2)
    logp = torch.log_softmax(scores, dim=1)
    loss = _nll(logp, labels, weight, attrs)
    return [loss, logp] if wants(ctx, 1) else loss


def _cumulative(fn: Callable[..., Any]) -> OpFn:
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        x, ax = widen(inputs[0]), axis_of(int(inputs[1].item()), inputs[0].dim())
        if attrs.get("reverse"):
            x = x.flip(ax)
        y = fn(x, ax, dtype=x.dtype)
        if attrs.get("exclusive"):
            first = torch.zeros_like(y.narrow(ax, 0, 1)) if fn is torch.cumsum else torch.ones_like(y.narrow(ax, 0, 1))
            y = torch.cat([first, y.narrow(ax, 0, y.shape[ax] - 1)], dim=ax)
        if attrs.get("reverse"):
            y = y.flip(ax)
        return y.to(inputs[0].dtype)
    return run


op("CumSum")(_cumulative(torch.cumsum))


op("CumProd")(_cumulative(torch.cumprod))


@op("TopK")
def topk(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    k = attrs["k"] if ctx.opset < 10 else int(inputs[1].reshape(-1)[0].item())
    ax = axis_of(attrs.get("axis", -1), x.dim())
    # A stable sort keeps the lower index first among equal values, as ONNX requires.
    values, idx = torch.sort(widen(x), dim=ax, descending=bool(attrs.get("largest", 1)), stable=True)
    return [values.narrow(ax, 0, k).to(x.dtype), idx.narrow(ax, 0, k)]


def _arg(fn: Callable[..., Any]) -> OpFn:
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        x = widen(inputs[0])
        ax = axis_of(attrs.get("axis", 0), x.dim())
        keep = bool(attrs.get("keepdims", 1))
        if attrs.get("select_last_index"):
            return x.shape[ax] - 1 - fn(x.flip(ax), dim=ax, keepdim=keep)
        return fn(x, dim=ax, keepdim=keep)
    return run


op("ArgMax")(_arg(torch.argmax))


op("ArgMin")(_arg(torch.argmin))
