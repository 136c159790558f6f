"""Indexing ops: gathers and scatters, index-producing ops (TopK, ArgMax, NonZero, Unique), running sums."""
from __future__ import annotations

import math
from typing import Any

import torch

from ..common.executor import OpContext
from .table import arg, axis_of, ints, op


def _positive(idx: torch.Tensor, dim: int) -> torch.Tensor:
    idx = idx.to(torch.int64)
    return torch.where(idx < 0, idx + dim, idx)


@op("Gather")
def gather(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx = inputs
    ax = axis_of(attrs["axis"], x.dim())
    flat = _positive(idx, x.shape[ax]).reshape(-1)
    out = x.index_select(ax, flat)
    return out.reshape((*x.shape[:ax], *idx.shape, *x.shape[ax + 1:]))


@op("GatherElements")
def gather_elements(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx = inputs
    ax = axis_of(attrs["axis"], x.dim())
    return torch.gather(x, ax, _positive(idx, x.shape[ax]))


@op("GatherND")
def gather_nd(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx = inputs
    b = attrs.get("batch_dims", 0)
    m = idx.shape[-1]
    batch = math.prod(x.shape[:b])
    xr = x.reshape(batch, *x.shape[b:])
    ir = idx.to(torch.int64).reshape(batch, -1, m)
    rows = torch.arange(batch, device=x.device).reshape(batch, 1)
    out = xr[tuple([rows, *ir.unbind(-1)])]
    return out.reshape((*idx.shape[:-1], *x.shape[b + m:]))


_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


@op("ScatterElements", "Scatter")
def scatter_elements(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx, upd = inputs
    ax = axis_of(attrs.get("axis", 0), x.dim())
    idx = _positive(idx, x.shape[ax])
    mode = attrs.get("reduction", "none")
    if mode == "none":
        return torch.scatter(x, ax, idx, upd)
    return torch.scatter_reduce(x, ax, idx, upd, _REDUCE[mode], include_self=True)


@op("ScatterND")
def scatter_nd(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, idx, upd = inputs
    mode = attrs.get("reduction", "none")
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


@op("OneHot")
def one_hot(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    idx, depth, values = inputs
    d = int(depth.reshape(-1)[0].item())
    idx = idx.to(torch.int64)
    idx = torch.where(idx < 0, idx + d, idx)
    rank = idx.dim() + 1
    ax = axis_of(attrs.get("axis", -1), rank)
    hot = idx.unsqueeze(-1) == torch.arange(d, device=idx.device)
    hot = hot.movedim(-1, ax)
    return torch.where(hot, values[1], values[0])


@op("Trilu")
def trilu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, k = inputs[0], arg(inputs, 1)
    k = int(k.item()) if k is not None else 0
    return torch.triu(x, k) if attrs.get("upper", 1) else torch.tril(x, k)


@op("ReverseSequence")
def reverse_sequence(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, lens = inputs
    b_ax, t_ax = attrs["batch_axis"], attrs["time_axis"]
    out = x.clone()
    for b, n in enumerate(ints(ctx, lens)):
        part = x.select(b_ax, b)
        t = t_ax if t_ax < b_ax else t_ax - 1
        head = part.narrow(t, 0, n).flip(t)
        out.select(b_ax, b).narrow(t, 0, n).copy_(head)
    return out


@op("Compress")
def compress(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, cond = inputs
    keep = torch.nonzero(cond.reshape(-1)).reshape(-1)
    if attrs.get("axis") is None:
        return x.reshape(-1).index_select(0, keep)
    return x.index_select(axis_of(attrs["axis"], x.dim()), keep)


@op("NonZero")
def nonzero(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    if x.dim() == 0:
        return torch.zeros((0, int(bool(x.item()))), dtype=torch.int64, device=x.device)
    return torch.nonzero(x).T.contiguous()


@op("Unique")
def unique(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    ax = attrs.get("axis")
    if ax is None:
        x, dim = x.reshape(-1), 0
        values, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    else:
        dim = axis_of(ax, x.dim())
        values, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True, dim=dim)
    n = x.shape[dim]
    first = torch.full((values.shape[dim],), n, dtype=torch.int64, device=x.device)
    first = first.scatter_reduce(0, inverse, torch.arange(n, device=x.device), "amin")
    if not attrs.get("sorted", 1):
        order = torch.argsort(first)
        values, first, counts = values.index_select(dim, order), first[order], counts[order]
        inverse = torch.argsort(order)[inverse]
    return [values, first, inverse, counts]
