"""Reductions, Einsum and the loss ops."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .table import TABLE, arg, axis, ints, wants, widen

reg = TABLE.register
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


def _reduction(op: str) -> None:
    pre, fn, post, since = _REDUCTIONS[op]

    def run(ctx, xs, a):
        x = widen(xs[0])
        if ctx.opset < since:
            axes = a.get("axes")
        else:
            axes = ints(arg(xs, 1)) if arg(xs, 1) is not None else None
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return post(pre(x)).to(xs[0].dtype)
            axes = list(range(x.dim()))
        if x.dtype == torch.bool and op in ("ReduceMax", "ReduceMin"):
            dims = tuple(sorted(axis(v, x.dim()) for v in axes))
            fill = 0.0 if op == "ReduceMax" else 1.0
            return _extreme(torch.amax if op == "ReduceMax" else torch.amin, fill)(x.to(torch.uint8), dims, keep) \
                .to(torch.bool)
        dims = tuple(sorted(axis(v, x.dim()) for v in axes))
        if op == "ReduceLogSumExp" and x.numel() == 0:
            return _extreme(torch.amax, float("-inf"))(x, dims, keep)
        return post(fn(pre(x), dims, keep)).to(xs[0].dtype)

    reg(op)(run)


for _op in _REDUCTIONS:
    _reduction(_op)


@reg("Einsum")
def einsum(ctx, xs, a):
    return torch.einsum(a["equation"].replace(" ", ""), *[widen(x) for x in xs]).to(xs[0].dtype)


def _ignore(a: dict) -> int:
    # torch needs an int; without the attribute no label is ignored, and -100 is never a valid class.
    value = a.get("ignore_index")
    return -100 if value is None else int(value)


@reg("NegativeLogLikelihoodLoss")
def nll_loss(ctx, xs, a):
    x, target, weight = xs[0], xs[1].to(torch.int64), arg(xs, 2)
    return _nll(x, target, weight, a)


def _nll(logp: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, a: dict) -> torch.Tensor:
    ignore = _ignore(a)
    mode = a.get("reduction", "mean")
    if logp.dim() == 2 or logp.dim() == 4 or logp.dim() == 3:
        return F.nll_loss(logp, target, weight, ignore_index=ignore, reduction=mode)
    n, c = logp.shape[:2]
    flat = F.nll_loss(logp.reshape(n, c, -1), target.reshape(n, -1), weight, ignore_index=ignore, reduction=mode)
    return flat.reshape(target.shape) if mode == "none" else flat


@reg("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy(ctx, xs, a):
    scores, labels, weight = xs[0], xs[1].to(torch.int64), arg(xs, 2)
    logp = torch.log_softmax(scores, dim=1)
    loss = _nll(logp, labels, weight, a)
    return [loss, logp] if wants(ctx, 1) else loss
