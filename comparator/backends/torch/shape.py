"""Shape and data-movement ops: constants, reshapes, slicing, concatenation, padding."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..common.executor import OpContext
from .table import arg, axis_of, const, dtype, ints, op, unsupported


@op("Constant")
def constant(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    # Tensor attributes arrive as tensors (the session converts them once, see GraphExecutor.tensor_attributes).
    if "value" in attrs:
        return attrs["value"]
    device = ctx.executor.options.get("device", "cpu")
    for key, dt in (("value_float", torch.float32), ("value_floats", torch.float32), ("value_int", torch.int64),
                    ("value_ints", torch.int64)):
        if key in attrs:
            return torch.tensor(attrs[key], dtype=dt, device=device)
    raise unsupported(ctx, f"attribute {next(iter(attrs), '?')}")


@op("Reshape", since=5)
def reshape(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, shape = inputs[0], ints(ctx, inputs[1])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@op("Reshape", until=4)
def reshape_attr(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return reshape(ctx, [inputs[0], attrs["shape"]], {})


@op("Flatten")
def flatten(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    ax = axis_of(attrs.get("axis", 1), x.dim())
    return x.reshape(math.prod(x.shape[:ax]), math.prod(x.shape[ax:]))


@op("Transpose")
def transpose(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    perm = attrs.get("perm") or list(reversed(range(x.dim())))
    return x.permute(perm)


def _axes(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any], since: int) -> list[int] | None:
    """Axes from the attribute (before `since`) or from input 1."""
    if ctx.opset < since:
        return attrs.get("axes")
    given = arg(inputs, 1)
    return None if given is None else ints(ctx, given)


@op("Squeeze")
def squeeze(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    axes = _axes(ctx, inputs, attrs, 13)
    if not axes:
        return x.reshape([s for s in x.shape if s != 1])
    drop = {axis_of(i, x.dim()) for i in axes}
    return x.reshape([s for i, s in enumerate(x.shape) if i not in drop])


@op("Unsqueeze")
def unsqueeze(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    axes = _axes(ctx, inputs, attrs, 13) or []
    rank = x.dim() + len(axes)
    for i in sorted(axis_of(v, rank) for v in axes):
        x = x.unsqueeze(i)
    return x


@op("Concat")
def concat(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    parts = [x for x in inputs if x is not None]
    return torch.cat(parts, dim=axis_of(attrs["axis"], parts[0].dim()))


@op("Split")
def split(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    ax = axis_of(attrs.get("axis", 0), x.dim())
    sizes = attrs.get("split") if ctx.opset < 13 else None
    if arg(inputs, 1) is not None:  # opset 1 and 13+
        sizes = ints(ctx, inputs[1])
    n = len(ctx.node.output)
    if not sizes:
        count = attrs.get("num_outputs") or n
        chunk = math.ceil(x.shape[ax] / count) if attrs.get("num_outputs") else x.shape[ax] // count
        sizes = [chunk] * (count - 1) + [x.shape[ax] - chunk * (count - 1)]
    return list(torch.split(x, sizes, dim=ax))


def _slice_axis(x: torch.Tensor, ax: int, start: int, end: int, step: int) -> torch.Tensor:
    dim = x.shape[ax]
    start, end = (start + dim if start < 0 else start), (end + dim if end < 0 else end)
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    if step == 1:
        return x.narrow(ax, start, max(end - start, 0))
    index = torch.arange(start, end, step, device=x.device)
    return x.index_select(ax, index)


@op("Slice", since=10)
def slice_(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    starts, ends = ints(ctx, inputs[1]), ints(ctx, inputs[2])
    axes = ints(ctx, arg(inputs, 3)) if arg(inputs, 3) is not None else list(range(len(starts)))
    steps = ints(ctx, arg(inputs, 4)) if arg(inputs, 4) is not None else [1] * len(starts)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        x = _slice_axis(x, axis_of(ax, x.dim()), s, e, st)
    return x


@op("Slice", until=9)
def slice_attr(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    starts, ends = attrs["starts"], attrs["ends"]
    axes = attrs.get("axes") or list(range(len(starts)))
    x = inputs[0]
    for s, e, ax in zip(starts, ends, axes):
        x = _slice_axis(x, axis_of(ax, x.dim()), s, e, 1)
    return x


@op("Expand")
def expand(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, shape = inputs[0], ints(ctx, inputs[1])
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(shape)))


@op("Tile")
def tile(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return inputs[0].repeat(ints(ctx, inputs[1]))


@op("Shape")
def shape(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    dims = list(inputs[0].shape)
    start, end = attrs.get("start", 0), attrs.get("end")
    return const(ctx, dims[start:end], dt=torch.int64).reshape(-1)


@op("Size")
def size(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return const(ctx, inputs[0].numel(), dt=torch.int64)


@op("ConstantOfShape")
def constant_of_shape(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    value = attrs.get("value")
    if value is None:
        value = torch.zeros(1, dtype=torch.float32, device=ctx.executor.options.get("device", "cpu"))
    return value.reshape(-1)[0].expand(ints(ctx, inputs[0])).clone()


@op("Range")
def range_(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    start, limit, delta = inputs
    out = torch.arange(start.item(), limit.item(), delta.item(), device=start.device)
    return out.to(start.dtype)


@op("EyeLike")
def eye_like(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    dt = dtype(ctx, attrs["dtype"]) if attrs.get("dtype") else x.dtype
    rows = torch.arange(x.shape[0], device=x.device).reshape(-1, 1)
    cols = torch.arange(x.shape[1], device=x.device).reshape(1, -1)
    return (cols - rows == attrs.get("k", 0)).to(dt)


@op("DepthToSpace")
def depth_to_space(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, bs = inputs[0], attrs["blocksize"]
    b, c, h, w = x.shape
    if attrs.get("mode", "DCR") == "CRD":
        return F.pixel_shuffle(x, bs)
    y = x.reshape(b, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(b, c // (bs * bs), h * bs, w * bs)


@op("SpaceToDepth")
def space_to_depth(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, bs = inputs[0], attrs["blocksize"]
    b, c, h, w = x.shape
    if attrs.get("mode", "DCR") == "CRD":  # opset 28
        return F.pixel_unshuffle(x, bs)
    y = x.reshape(b, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(b, c * bs * bs, h // bs, w // bs)


@op("Pad")
def pad(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    r = x.dim()
    if ctx.opset < 11:
        pads, value, axes = list(attrs["pads"]), attrs.get("value", 0.0), list(range(r))
    else:
        pads = ints(ctx, inputs[1])
        value = arg(inputs, 2)
        value = value.reshape(-1)[0].item() if value is not None and value.numel() else 0
        axes = [axis_of(v, r) for v in ints(ctx, arg(inputs, 3))] if arg(inputs, 3) is not None else list(range(r))
    n = len(axes)
    per_axis = {ax: (pads[i], pads[i + n]) for i, ax in enumerate(axes)}
    mode = attrs.get("mode", "constant")
    if mode == "constant":
        flat: list[int] = []
        for ax in reversed(range(r)):
            flat += list(per_axis.get(ax, (0, 0)))
        return F.pad(x, flat, value=value)
    for ax, (begin, end) in per_axis.items():
        x = _pad_index(x, ax, begin, end, mode)
    return x


def _pad_index(x: torch.Tensor, ax: int, begin: int, end: int, mode: str) -> torch.Tensor:
    """Reflect/edge/wrap padding of one axis as an index gather (any rank, any dtype, negative pads crop)."""
    if begin < 0:
        x, begin = x.narrow(ax, -begin, x.shape[ax] + begin), 0
    if end < 0:
        x, end = x.narrow(ax, 0, x.shape[ax] + end), 0
    n = x.shape[ax]
    pos = np.arange(-begin, n + end)
    if mode == "edge":
        pos = np.clip(pos, 0, n - 1)
    elif mode == "wrap":
        pos = pos % n
    elif mode == "reflect":
        period = 2 * (n - 1) if n > 1 else 1
        pos = np.abs(pos) % period
        pos = np.where(pos >= n, period - pos, pos)
    return x.index_select(ax, torch.as_tensor(pos, device=x.device))


@op("CenterCropPad")
def center_crop_pad(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, shape = inputs[0], ints(ctx, inputs[1])
    axes = [axis_of(v, x.dim()) for v in (attrs.get("axes") or range(x.dim()))]
    for ax, want in zip(axes, shape):
        have = x.shape[ax]
        if have > want:
            x = x.narrow(ax, (have - want) // 2, want)
        elif have < want:
            before = (want - have) // 2
            flat = [0, 0] * (x.dim() - 1 - ax) + [before, want - have - before]
            x = F.pad(x, flat)
    return x
