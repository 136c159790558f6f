"""Shape and data-movement ops: constants, reshapes, slicing, concatenation, padding."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .table import TABLE, arg, axis, const, dtype, ints, unsupported

reg = TABLE.register


@reg("Constant")
def constant(ctx, xs, a):
    # Tensor attributes arrive as tensors (the session converts them once, see torch.tensor_attributes).
    if "value" in a:
        return a["value"]
    device = ctx.executor.options.get("device", "cpu")
    for key, dt in (("value_float", torch.float32), ("value_floats", torch.float32), ("value_int", torch.int64),
                    ("value_ints", torch.int64)):
        if key in a:
            return torch.tensor(a[key], dtype=dt, device=device)
    raise unsupported(ctx, f"attribute {next(iter(a), '?')}")


@reg("Reshape", since=5)
def reshape(ctx, xs, a):
    x, shape = xs[0], ints(xs[1])
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@reg("Reshape", until=4)
def reshape_attr(ctx, xs, a):
    return reshape(ctx, [xs[0], a["shape"]], {})


@reg("Flatten")
def flatten(ctx, xs, a):
    x = xs[0]
    ax = axis(a.get("axis", 1), x.dim())
    return x.reshape(math.prod(x.shape[:ax]), math.prod(x.shape[ax:]))


@reg("Transpose")
def transpose(ctx, xs, a):
    x = xs[0]
    perm = a.get("perm") or list(reversed(range(x.dim())))
    return x.permute(perm)


def _axes(ctx, xs, a, since: int) -> list[int] | None:
    """Axes from the attribute (before `since`) or from input 1."""
    if ctx.opset < since:
        return a.get("axes")
    given = arg(xs, 1)
    return None if given is None else ints(given)


@reg("Squeeze")
def squeeze(ctx, xs, a):
    x = xs[0]
    axes = _axes(ctx, xs, a, 13)
    if not axes:
        return x.reshape([s for s in x.shape if s != 1])
    drop = {axis(i, x.dim()) for i in axes}
    return x.reshape([s for i, s in enumerate(x.shape) if i not in drop])


@reg("Unsqueeze")
def unsqueeze(ctx, xs, a):
    x = xs[0]
    axes = _axes(ctx, xs, a, 13) or []
    rank = x.dim() + len(axes)
    for i in sorted(axis(v, rank) for v in axes):
        x = x.unsqueeze(i)
    return x


@reg("Concat")
def concat(ctx, xs, a):
    parts = [x for x in xs if x is not None]
    return torch.cat(parts, dim=axis(a["axis"], parts[0].dim()))


@reg("Split")
def split(ctx, xs, a):
    x = xs[0]
    ax = axis(a.get("axis", 0), x.dim())
    sizes = a.get("split") if ctx.opset < 13 else None
    if arg(xs, 1) is not None:  # opset 1 and 13+
        sizes = ints(xs[1])
    n = len(ctx.node.output)
    if not sizes:
        count = a.get("num_outputs") or n
        chunk = math.ceil(x.shape[ax] / count) if a.get("num_outputs") else x.shape[ax] // count
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


@reg("Slice", since=10)
def slice_(ctx, xs, a):
    x = xs[0]
    starts, ends = ints(xs[1]), ints(xs[2])
    axes = ints(arg(xs, 3)) if arg(xs, 3) is not None else list(range(len(starts)))
    steps = ints(arg(xs, 4)) if arg(xs, 4) is not None else [1] * len(starts)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        x = _slice_axis(x, axis(ax, x.dim()), s, e, st)
    return x


@reg("Slice", until=9)
def slice_attr(ctx, xs, a):
    starts, ends = a["starts"], a["ends"]
    axes = a.get("axes") or list(range(len(starts)))
    x = xs[0]
    for s, e, ax in zip(starts, ends, axes):
        x = _slice_axis(x, axis(ax, x.dim()), s, e, 1)
    return x


@reg("Expand")
def expand(ctx, xs, a):
    x, shape = xs[0], ints(xs[1])
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(shape)))


@reg("Tile")
def tile(ctx, xs, a):
    return xs[0].repeat(ints(xs[1]))


@reg("Shape")
def shape(ctx, xs, a):
    dims = list(xs[0].shape)
    start, end = a.get("start", 0), a.get("end")
    return const(ctx, dims[start:end], dt=torch.int64).reshape(-1)


@reg("Size")
def size(ctx, xs, a):
    return const(ctx, xs[0].numel(), dt=torch.int64)


@reg("ConstantOfShape")
def constant_of_shape(ctx, xs, a):
    value = a.get("value")
    if value is None:
        value = torch.zeros(1, dtype=torch.float32, device=ctx.executor.options.get("device", "cpu"))
    return value.reshape(-1)[0].expand(ints(xs[0])).clone()


@reg("Range")
def range_(ctx, xs, a):
    start, limit, delta = xs
    out = torch.arange(start.item(), limit.item(), delta.item(), device=start.device)
    return out.to(start.dtype)


@reg("EyeLike")
def eye_like(ctx, xs, a):
    x = xs[0]
    dt = dtype(a["dtype"], "EyeLike") if a.get("dtype") else x.dtype
    rows = torch.arange(x.shape[0], device=x.device).reshape(-1, 1)
    cols = torch.arange(x.shape[1], device=x.device).reshape(1, -1)
    return (cols - rows == a.get("k", 0)).to(dt)


@reg("DepthToSpace")
def depth_to_space(ctx, xs, a):
    x, bs = xs[0], a["blocksize"]
    b, c, h, w = x.shape
    if a.get("mode", "DCR") == "CRD":
        return F.pixel_shuffle(x, bs)
    y = x.reshape(b, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(b, c // (bs * bs), h * bs, w * bs)


@reg("SpaceToDepth")
def space_to_depth(ctx, xs, a):
    x, bs = xs[0], a["blocksize"]
    b, c, h, w = x.shape
    if a.get("mode", "DCR") == "CRD":  # opset 28
        return F.pixel_unshuffle(x, bs)
    y = x.reshape(b, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(b, c * bs * bs, h // bs, w // bs)


@reg("Pad")
def pad(ctx, xs, a):
    x = xs[0]
    r = x.dim()
    if ctx.opset < 11:
        pads, value, axes = list(a["pads"]), a.get("value", 0.0), list(range(r))
    else:
        pads = ints(xs[1])
        value = arg(xs, 2)
        value = value.reshape(-1)[0].item() if value is not None and value.numel() else 0
        axes = [axis(v, r) for v in ints(arg(xs, 3))] if arg(xs, 3) is not None else list(range(r))
    n = len(axes)
    per_axis = {ax: (pads[i], pads[i + n]) for i, ax in enumerate(axes)}
    mode = a.get("mode", "constant")
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


@reg("CenterCropPad")
def center_crop_pad(ctx, xs, a):
    x, shape = xs[0], ints(xs[1])
    axes = [axis(v, x.dim()) for v in (a.get("axes") or range(x.dim()))]
    for ax, want in zip(axes, shape):
        have = x.shape[ax]
        if have > want:
            x = x.narrow(ax, (have - want) // 2, want)
        elif have < want:
            before = (want - have) // 2
            flat = [0, 0] * (x.dim() - 1 - ax) + [before, want - have - before]
            x = F.pad(x, flat)
    return x


@reg("SplitToSequence")
def split_to_sequence(ctx, xs, a):
    x, sizes = xs[0], arg(xs, 1)
    ax = axis(a.get("axis", 0), x.dim())
    if sizes is None:
        parts = list(torch.split(x, 1, dim=ax))
        return [[p.squeeze(ax) for p in parts] if not a.get("keepdims", 1) else parts]
    s = ints(sizes)
    return [list(torch.split(x, s if sizes.dim() else s[0], dim=ax))]

