"""Control flow (If, Loop, Scan), sequences and optionals. A sequence is a Python list of tensors and an
empty optional is None; an op returning one sequence returns it wrapped in a one-element list."""
from __future__ import annotations

from typing import Any

import torch

from ..common.executor import OpContext
from .table import arg, axis_of, const, ints, op


@op("If")
def if_(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    branch = attrs["then_branch"] if bool(inputs[0].reshape(-1)[0]) else attrs["else_branch"]
    return list(ctx.run_subgraph(branch, {}))


@op("Loop")
def loop(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    body = attrs["body"]
    trip, cond = arg(inputs, 0), arg(inputs, 1)
    carried = list(inputs[2:])
    names = [i.name for i in body.input]
    n_carried = len(carried)
    scans: list[list[torch.Tensor]] = [[] for _ in range(len(body.output) - 1 - n_carried)]
    limit = None if trip is None else int(trip.reshape(-1)[0])
    go = True if cond is None else bool(cond.reshape(-1)[0])
    i = 0
    while go and (limit is None or i < limit):
        feeds = {names[0]: const(ctx, i, dt=torch.int64),
                 names[1]: const(ctx, go, dt=torch.bool)}
        feeds.update(zip(names[2:], carried))
        out = ctx.run_subgraph(body, feeds)
        go = bool(out[0].reshape(-1)[0])
        carried = list(out[1:1 + n_carried])
        for k, v in enumerate(out[1 + n_carried:]):
            scans[k].append(v)
        i += 1
    stacked = [torch.stack(s) if s else const(ctx, [], dt=torch.float32) for s in scans]
    return carried + stacked


@op("Scan", since=9)
def scan(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    body = attrs["body"]
    m = attrs["num_scan_inputs"]
    states, scanned = list(inputs[:len(inputs) - m]), list(inputs[len(inputs) - m:])
    in_axes = list(attrs.get("scan_input_axes") or [0] * m)
    in_dirs = list(attrs.get("scan_input_directions") or [0] * m)
    n_out = len(body.output) - len(states)
    out_axes = list(attrs.get("scan_output_axes") or [0] * n_out)
    out_dirs = list(attrs.get("scan_output_directions") or [0] * n_out)
    scanned = [x.movedim(axis_of(ax, x.dim()), 0) for x, ax in zip(scanned, in_axes)]
    scanned = [x.flip(0) if d else x for x, d in zip(scanned, in_dirs)]
    names = [i.name for i in body.input]
    steps = scanned[0].shape[0] if scanned else 0
    outs: list[list[torch.Tensor]] = [[] for _ in range(n_out)]
    for t in range(steps):
        feeds = dict(zip(names, states + [x[t] for x in scanned]))
        res = ctx.run_subgraph(body, feeds)
        states = list(res[:len(states)])
        for k, v in enumerate(res[len(states):]):
            outs[k].append(v)
    stacked = []
    for k in range(n_out):
        y = torch.stack(outs[k])
        if out_dirs[k]:
            y = y.flip(0)
        stacked.append(y.movedim(0, axis_of(out_axes[k], y.dim())))
    return states + stacked


@op("SequenceEmpty")
def sequence_empty(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [[]]


@op("SequenceConstruct")
def sequence_construct(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [list(inputs)]


def _position(seq: list, pos, default: int) -> int:
    p = default if pos is None else int(pos.reshape(-1)[0])
    return p + len(seq) if p < 0 else p


@op("SequenceInsert")
def sequence_insert(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    seq, x = list(inputs[0]), inputs[1]
    seq.insert(_position(seq, arg(inputs, 2), len(seq)), x)
    return [seq]


@op("SequenceAt")
def sequence_at(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return inputs[0][_position(inputs[0], inputs[1], 0)]


@op("SequenceErase")
def sequence_erase(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    seq = list(inputs[0])
    del seq[_position(seq, arg(inputs, 1), len(seq) - 1)]
    return [seq]


@op("SequenceLength")
def sequence_length(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return const(ctx, len(inputs[0]), dt=torch.int64)


@op("ConcatFromSequence")
def concat_from_sequence(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    seq = inputs[0]
    if attrs.get("new_axis", 0):
        return torch.stack(seq, dim=axis_of(attrs["axis"], seq[0].dim() + 1))
    return torch.cat(seq, dim=axis_of(attrs["axis"], seq[0].dim()))


@op("SequenceMap")
def sequence_map(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    body = attrs["body"]
    names = [i.name for i in body.input]
    n = len(inputs[0])
    outs: list[list[torch.Tensor]] = [[] for _ in body.output]
    for i in range(n):
        feeds = {name: (x[i] if isinstance(x, list) else x) for name, x in zip(names, inputs)}
        for k, v in enumerate(ctx.run_subgraph(body, feeds)):
            outs[k].append(v)
    return outs


@op("Optional")
def optional(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [arg(inputs, 0)]


@op("OptionalHasElement")
def optional_has_element(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return const(ctx, arg(inputs, 0) is not None, dt=torch.bool)


@op("OptionalGetElement")
def optional_get_element(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [inputs[0]]


@op("Identity")
def identity(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [inputs[0]]


@op("SplitToSequence")
def split_to_sequence(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, sizes = inputs[0], arg(inputs, 1)
    ax = axis_of(attrs.get("axis", 0), x.dim())
    if sizes is None:
        parts = list(torch.split(x, 1, dim=ax))
        return [[p.squeeze(ax) for p in parts] if not attrs.get("keepdims", 1) else parts]
    s = ints(ctx, sizes)
    return [list(torch.split(x, s if sizes.dim() else s[0], dim=ax))]
