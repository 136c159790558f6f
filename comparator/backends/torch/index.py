"""Indexing ops: gathers and scatters, index-producing ops (TopK, ArgMax, NonZero, Unique), running sums."""
from __future__ import annotations

import math

import torch

from .table import TABLE, arg, axis, ints, widen

reg = TABLE.register


def _positive(idx: torch.Tensor, dim: int) -> torch.Tensor:
    idx = idx.to(torch.int64)
    return torch.where(idx < 0, idx + dim, idx)


@reg("Gather")
def gather(ctx, xs, a):
    x, idx = xs
    ax = axis(a["axis"], x.dim())
    flat = _positive(idx, x.shape[ax]).reshape(-1)
    out = x.index_select(ax, flat)
    return out.reshape((*x.shape[:ax], *idx.shape, *x.shape[ax + 1:]))


@reg("GatherElements")
def gather_elements(ctx, xs, a):
    x, idx = xs
    ax = axis(a["axis"], x.dim())
    return torch.gather(x, ax, _positive(idx, x.shape[ax]))


@reg("GatherND")
def gather_nd(ctx, xs, a):
    x, idx = xs
    b = a.get("batch_dims", 0)
    m = idx.shape[-1]
    batch = math.prod(x.shape[:b])
    xr = x.reshape(batch, *x.shape[b:])
    ir = idx.to(torch.int64).reshape(batch, -1, m)
    rows = torch.arange(batch, device=x.device).reshape(batch, 1)
    out = xr[(rows, *ir.unbind(-1))]
    return out.reshape((*idx.shape[:-1], *x.shape[b + m:]))


_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


@reg("ScatterElements", "Scatter")
def scatter_elements(ctx, xs, a):
    x, idx, upd = xs
    ax = axis(a.get("axis", 0), x.dim())
    idx = _positive(idx, x.shape[ax])
    mode = a.get("reduction", "none")
    if mode == "none":
        return torch.scatter(x, ax, idx, upd)
    return torch.scatter_reduce(x, ax, idx, upd, _REDUCE[mode], include_self=True)


@reg("ScatterND")
def scatter_nd(ctx, xs, a):
    x, idx, upd = xs
    mode = a.get("reduction", "none")
    out = x.clone()
    m = idx.shape[-1]
    key = tuple(idx.to(torch.int64).reshape(-1, m).unbind(-1))
    flat = upd.reshape(-1, *x.shape[m:])
    if mode in ("none", "add"):
        return out.index_put_(key, flat, accumulate=mode == "add")
    for i in range(flat.shape[0]):
        where = tuple(int(k[i]) for k in key)
        fn = {"mul": torch.mul, "max": torch.maximum, "min": torch.minimum}[mode]
        out[where] = fn(out[where], flat[i])
    return out


@reg("OneHot")
def one_hot(ctx, xs, a):
    idx, depth, values = xs
    d = int(depth.reshape(-1)[0].item())
    idx = idx.to(torch.int64)
    idx = torch.where(idx < 0, idx + d, idx)
    rank = idx.dim() + 1
    ax = axis(a.get("axis", -1), rank)
    hot = idx.unsqueeze(-1) == torch.arange(d, device=idx.device)
    hot = hot.movedim(-1, ax)
    return torch.where(hot, values[1], values[0])


@reg("Trilu")
def trilu(ctx, xs, a):
    x, k = xs[0], arg(xs, 1)
    k = int(k.item()) if k is not None else 0
    return torch.triu(x, k) if a.get("upper", 1) else torch.tril(x, k)


def _cumulative(fn):
    def run(ctx, xs, a):
        x, ax = widen(xs[0]), axis(int(xs[1].item()), xs[0].dim())
        if a.get("reverse"):
            x = x.flip(ax)
        y = fn(x, ax, dtype=x.dtype)
        if a.get("exclusive"):
            first = torch.zeros_like(y.narrow(ax, 0, 1)) if fn is torch.cumsum else torch.ones_like(y.narrow(ax, 0, 1))
            y = torch.cat([first, y.narrow(ax, 0, y.shape[ax] - 1)], dim=ax)
        if a.get("reverse"):
            y = y.flip(ax)
        return y.to(xs[0].dtype)
    return run


reg("CumSum")(_cumulative(torch.cumsum))
reg("CumProd")(_cumulative(torch.cumprod))


@reg("ReverseSequence")
def reverse_sequence(ctx, xs, a):
    x, lens = xs
    b_ax, t_ax = a["batch_axis"], a["time_axis"]
    out = x.clone()
    for b, n in enumerate(ints(lens)):
        part = x.select(b_ax, b)
        t = t_ax if t_ax < b_ax else t_ax - 1
        head = part.narrow(t, 0, n).flip(t)
        out.select(b_ax, b).narrow(t, 0, n).copy_(head)
    return out


@reg("Compress")
def compress(ctx, xs, a):
    x, cond = xs
    keep = torch.nonzero(cond.reshape(-1)).reshape(-1)
    if a.get("axis") is None:
        return x.reshape(-1).index_select(0, keep)
    return x.index_select(axis(a["axis"], x.dim()), keep)


@reg("NonZero")
def nonzero(ctx, xs, a):
    x = xs[0]
    if x.dim() == 0:
        return torch.zeros((0, int(bool(x.item()))), dtype=torch.int64, device=x.device)
    return torch.nonzero(x).T.contiguous()


@reg("TopK")
def topk(ctx, xs, a):
    x = xs[0]
    k = a["k"] if ctx.opset < 10 else int(xs[1].reshape(-1)[0].item())
    ax = axis(a.get("axis", -1), x.dim())
    # A stable sort keeps the lower index first among equal values, as ONNX requires.
    values, idx = torch.sort(widen(x), dim=ax, descending=bool(a.get("largest", 1)), stable=True)
    return [values.narrow(ax, 0, k).to(x.dtype), idx.narrow(ax, 0, k)]


def _arg(fn):
    def run(ctx, xs, a):
        x = widen(xs[0])
        ax = axis(a.get("axis", 0), x.dim())
        keep = bool(a.get("keepdims", 1))
        if a.get("select_last_index"):
            return x.shape[ax] - 1 - fn(x.flip(ax), dim=ax, keepdim=keep)
        return fn(x, dim=ax, keepdim=keep)
    return run


reg("ArgMax")(_arg(torch.argmax))
reg("ArgMin")(_arg(torch.argmin))


@reg("Unique")
def unique(ctx, xs, a):
    x = xs[0]
    ax = a.get("axis")
    if ax is None:
        x, dim = x.reshape(-1), 0
        values, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    else:
        dim = axis(ax, x.dim())
        values, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True, dim=dim)
    n = x.shape[dim]
    first = torch.full((values.shape[dim],), n, dtype=torch.int64, device=x.device)
    first = first.scatter_reduce(0, inverse, torch.arange(n, device=x.device), "amin")
    if not a.get("sorted", 1):
        order = torch.argsort(first)
        values, first, counts = values.index_select(dim, order), first[order], counts[order]
        inverse = torch.argsort(order)[inverse]
    return [values, first, inverse, counts]
