"""Control flow (If, Loop, Scan), sequences and optionals. A sequence is a Python list of tensors and an
empty optional is None; an op returning one sequence returns it wrapped in a one-element list."""
from __future__ import annotations

import torch

from .table import TABLE, arg, axis, const

reg = TABLE.register


@reg("If")
def if_(ctx, xs, a):
    branch = a["then_branch"] if bool(xs[0].reshape(-1)[0]) else a["else_branch"]
    return list(ctx.run_subgraph(branch, {}))


@reg("Loop")
def loop(ctx, xs, a):
    body = a["body"]
    trip, cond = arg(xs, 0), arg(xs, 1)
    carried = list(xs[2:])
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


@reg("Scan", since=9)
def scan(ctx, xs, a):
    body = a["body"]
    m = a["num_scan_inputs"]
    states, inputs = list(xs[:len(xs) - m]), list(xs[len(xs) - m:])
    in_axes = list(a.get("scan_input_axes") or [0] * m)
    in_dirs = list(a.get("scan_input_directions") or [0] * m)
    n_out = len(body.output) - len(states)
    out_axes = list(a.get("scan_output_axes") or [0] * n_out)
    out_dirs = list(a.get("scan_output_directions") or [0] * n_out)
    inputs = [x.movedim(axis(ax, x.dim()), 0) for x, ax in zip(inputs, in_axes)]
    inputs = [x.flip(0) if d else x for x, d in zip(inputs, in_dirs)]
    names = [i.name for i in body.input]
    steps = inputs[0].shape[0] if inputs else 0
    outs: list[list[torch.Tensor]] = [[] for _ in range(n_out)]
    for t in range(steps):
        feeds = dict(zip(names, states + [x[t] for x in inputs]))
        res = ctx.run_subgraph(body, feeds)
        states = list(res[:len(states)])
        for k, v in enumerate(res[len(states):]):
            outs[k].append(v)
    stacked = []
    for k in range(n_out):
        y = torch.stack(outs[k])
        if out_dirs[k]:
            y = y.flip(0)
        stacked.append(y.movedim(0, axis(out_axes[k], y.dim())))
    return states + stacked


@reg("SequenceEmpty")
def sequence_empty(ctx, xs, a):
    return [[]]


@reg("SequenceConstruct")
def sequence_construct(ctx, xs, a):
    return [list(xs)]


def _position(seq: list, pos, default: int) -> int:
    p = default if pos is None else int(pos.reshape(-1)[0])
    return p + len(seq) if p < 0 else p


@reg("SequenceInsert")
def sequence_insert(ctx, xs, a):
    seq, x = list(xs[0]), xs[1]
    seq.insert(_position(seq, arg(xs, 2), len(seq)), x)
    return [seq]


@reg("SequenceAt")
def sequence_at(ctx, xs, a):
    return xs[0][_position(xs[0], xs[1], 0)]


@reg("SequenceErase")
def sequence_erase(ctx, xs, a):
    seq = list(xs[0])
    del seq[_position(seq, arg(xs, 1), len(seq) - 1)]
    return [seq]


@reg("SequenceLength")
def sequence_length(ctx, xs, a):
    return const(ctx, len(xs[0]), dt=torch.int64)


@reg("ConcatFromSequence")
def concat_from_sequence(ctx, xs, a):
    seq = xs[0]
    if a.get("new_axis", 0):
        return torch.stack(seq, dim=axis(a["axis"], seq[0].dim() + 1))
    return torch.cat(seq, dim=axis(a["axis"], seq[0].dim()))


@reg("SequenceMap")
def sequence_map(ctx, xs, a):
    body = a["body"]
    names = [i.name for i in body.input]
    n = len(xs[0])
    outs: list[list[torch.Tensor]] = [[] for _ in body.output]
    for i in range(n):
        feeds = {name: (x[i] if isinstance(x, list) else x) for name, x in zip(names, xs)}
        for k, v in enumerate(ctx.run_subgraph(body, feeds)):
            outs[k].append(v)
    return outs


@reg("Optional")
def optional(ctx, xs, a):
    return [arg(xs, 0)]


@reg("OptionalHasElement")
def optional_has_element(ctx, xs, a):
    return const(ctx, arg(xs, 0) is not None, dt=torch.bool)


@reg("OptionalGetElement")
def optional_get_element(ctx, xs, a):
    return [xs[0]]
