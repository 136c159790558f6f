"""Control flow (If, Loop, Scan), sequences and optionals.

A sequence is a Python list of tensors and an empty optional is None; an op whose one output is a sequence
returns it wrapped in a one-element list. Subgraphs run through the walker, seeing the enclosing scope.
While tracing (graph and xla modes) loops are unrolled, so their trip counts must be known then; an If whose
condition is only known at run time becomes tf.cond.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from ..common.executor import OpContext
from .table import arg, axis_of, ints, op, rank, static, unsupported


def _flag(ctx: OpContext, x: Any, what: str) -> bool:
    value = static(x)
    if value is None:
        raise unsupported(ctx, f"a {what} computed at run time (loops are unrolled while tracing)")
    return bool(value.reshape(-1)[0])


@op("If")
def if_(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    cond = static(inputs[0])
    if cond is not None:
        branch = attrs["then_branch"] if bool(cond.reshape(-1)[0]) else attrs["else_branch"]
        return list(ctx.run_subgraph(branch, {}))
    return tf.cond(tf.reshape(inputs[0], []), lambda: ctx.run_subgraph(attrs["then_branch"], {}),
                   lambda: ctx.run_subgraph(attrs["else_branch"], {}))


@op("Loop")
def loop(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    body = attrs["body"]
    trip, cond = inputs[0], arg(inputs, 1)
    carried = list(inputs[2:])
    names = [i.name for i in body.input]
    n_scan = len(body.output) - 1 - len(carried)
    scans: list[list[Any]] = [[] for _ in range(n_scan)]
    limit = None if trip is None else int(ints(ctx, trip, "trip count")[0])
    go = True if cond is None else _flag(ctx, cond, "loop condition")
    i = 0
    while go and (limit is None or i < limit):
        feeds = {names[0]: tf.constant(i, tf.int64), names[1]: tf.constant(go)}
        feeds.update(zip(names[2:], carried))
        out = ctx.run_subgraph(body, feeds)
        go = _flag(ctx, out[0], "loop condition")
        carried = list(out[1:1 + len(carried)])
        for k, v in enumerate(out[1 + len(carried):]):
            scans[k].append(v)
        i += 1
    return carried + [tf.stack(s) if s else tf.zeros([0], tf.float32) for s in scans]


@op("Scan", since=9)
def scan(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    body = attrs["body"]
    m = attrs["num_scan_inputs"]
    states, xs = list(inputs[:len(inputs) - m]), list(inputs[len(inputs) - m:])
    n_out = len(body.output) - len(states)
    in_axes = list(attrs.get("scan_input_axes") or [0] * m)
    in_dirs = list(attrs.get("scan_input_directions") or [0] * m)
    out_axes = list(attrs.get("scan_output_axes") or [0] * n_out)
    out_dirs = list(attrs.get("scan_output_directions") or [0] * n_out)
    seqs = []
    for x, a, d in zip(xs, in_axes, in_dirs):
        parts = tf.unstack(x, axis=axis_of(a, rank(x)))
        seqs.append(parts[::-1] if d else parts)
    names = [i.name for i in body.input]
    outs: list[list[Any]] = [[] for _ in range(n_out)]
    for t in range(len(seqs[0]) if seqs else 0):
        res = ctx.run_subgraph(body, dict(zip(names, states + [s[t] for s in seqs])))
        states = list(res[:len(states)])
        for k, v in enumerate(res[len(states):]):
            outs[k].append(v)
    stacked = []
    for k, vs in enumerate(outs):
        vs = vs[::-1] if out_dirs[k] else vs
        stacked.append(tf.stack(vs, axis=axis_of(out_axes[k], rank(vs[0]) + 1)))
    return states + stacked


@op("Identity")
def identity(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return [x] if x is None or isinstance(x, list) else tf.identity(x)


@op("SequenceEmpty")
def sequence_empty(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [[]]


@op("SequenceConstruct")
def sequence_construct(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [list(inputs)]


def _position(ctx: OpContext, inputs: list[Any], n: int, default: int) -> int:
    if len(inputs) < 2 or inputs[1] is None:
        return default
    p = ints(ctx, inputs[1], "position")[0]
    return p + n if p < 0 else p


@op("SequenceAt")
def sequence_at(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    seq = inputs[0]
    return seq[_position(ctx, inputs, len(seq), 0)]


@op("SequenceInsert")
def sequence_insert(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    seq = list(inputs[0])
    where = _position(ctx, [seq, arg(inputs, 2)], len(seq), len(seq))
    return [seq[:where] + [inputs[1]] + seq[where:]]


@op("SequenceErase")
def sequence_erase(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    seq = list(inputs[0])
    where = _position(ctx, inputs, len(seq), len(seq) - 1)
    return [seq[:where] + seq[where + 1:]]


@op("SequenceLength")
def sequence_length(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.constant(len(inputs[0]), tf.int64)


@op("ConcatFromSequence")
def concat_from_sequence(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    seq = inputs[0]
    if attrs.get("new_axis", 0):
        return tf.stack(seq, axis=axis_of(attrs["axis"], rank(seq[0]) + 1))
    return tf.concat(seq, axis=axis_of(attrs["axis"], rank(seq[0])))


@op("SplitToSequence")
def split_to_sequence(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    axis = axis_of(attrs["axis"], rank(x))
    split = arg(inputs, 1)
    if split is None:
        parts = tf.split(x, x.shape[axis], axis=axis)
        return [parts if attrs.get("keepdims", 1) else [tf.squeeze(p, axis) for p in parts]]
    sizes = ints(ctx, split, "split")
    if len(sizes) == 1 and rank(split) == 0:
        n = x.shape[axis]
        sizes = [sizes[0]] * (n // sizes[0]) + ([n % sizes[0]] if n % sizes[0] else [])
    return [tf.split(x, sizes, axis=axis)]


@op("SequenceMap")
def sequence_map(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    body = attrs["body"]
    names = [i.name for i in body.input]
    n = len(inputs[0])
    results: list[list[Any]] = [[] for _ in body.output]
    for i in range(n):
        args = [x[i] if isinstance(x, list) else x for x in inputs]
        for k, v in enumerate(ctx.run_subgraph(body, dict(zip(names, args)))):
            results[k].append(v)
    return results


@op("Optional")
def optional(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [inputs[0] if inputs else None]


@op("OptionalHasElement")
def optional_has_element(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return tf.constant(bool(inputs) and inputs[0] is not None)


@op("OptionalGetElement")
def optional_get_element(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    if inputs[0] is None:
        raise unsupported(ctx, "an empty optional")
    return [inputs[0]]
