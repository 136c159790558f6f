"""Control flow (If, Loop, Scan), sequences and optionals.

A sequence is a Python list of tensors and an empty optional is None; an op whose one output is a sequence
returns it wrapped in a one-element list. Subgraphs run through the walker, seeing the enclosing scope.
While tracing (graph and xla modes) loops are unrolled, so their trip counts must be known then; an If whose
condition is only known at run time becomes tf.cond.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from ..common import loops, sequences
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
    # A condition known only at run time: tf.cond traces both branches. Outputs whose ranks differ between
    # them would leave tensors of unknown rank that later nodes cannot trace: said here, naming this If.
    traced: dict[str, list[Any]] = {}

    def trace(key: str) -> Any:
        def run() -> list[Any]:
            traced[key] = list(ctx.run_subgraph(attrs[key], {}))
            return traced[key]
        return run

    result = tf.cond(tf.reshape(inputs[0], []), trace("then_branch"), trace("else_branch"))
    for k, (a, b) in enumerate(zip(traced.get("then_branch", []), traced.get("else_branch", []))):
        ra, rb = _rank_or_none(a), _rank_or_none(b)
        if ra is not None and rb is not None and ra != rb:
            raise unsupported(ctx, f"a condition known only at run time whose branches give output {k} "
                              f"({ctx.node.output[k] or '?'}) different ranks (then: rank {ra}, else: rank {rb}); "
                              "graph/xla modes trace both branches of such an If and cannot type what follows "
                              "(mode=eager runs only the taken branch)")
    return result


def _rank_or_none(x: Any) -> int | None:
    shape = getattr(x, "shape", None)
    return None if shape is None or shape.rank is None else int(shape.rank)


@op("Loop")
def loop(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    trip, cond = inputs[0], arg(inputs, 1)
    return loops.loop(attrs["body"], ctx.run_subgraph, None if trip is None else int(ints(ctx, trip, "trip count")[0]),
                      True if cond is None else _flag(ctx, cond, "loop condition"), inputs[2:],
                      counter=lambda i: tf.constant(i, tf.int64), flag=tf.constant,
                      truth=lambda c: _flag(ctx, c, "loop condition"), stack=tf.stack,
                      empty=lambda: tf.zeros([0], tf.float32))


@op("Scan", since=9)
def scan(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return loops.scan(attrs["body"], ctx.run_subgraph, inputs, attrs, rank=rank,
                      unstack=lambda x, axis: tf.unstack(x, axis=axis),
                      stack=lambda values, axis: tf.stack(values, axis=axis))


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


def _position(ctx: OpContext, x: Any) -> int | None:
    return None if x is None else ints(ctx, x, "position")[0]


@op("SequenceAt")
def sequence_at(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return sequences.at(inputs[0], _position(ctx, inputs[1]))


@op("SequenceInsert")
def sequence_insert(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [sequences.insert(inputs[0], inputs[1], _position(ctx, arg(inputs, 2)))]


@op("SequenceErase")
def sequence_erase(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [sequences.erase(inputs[0], _position(ctx, arg(inputs, 1)))]


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
    return loops.sequence_map(attrs["body"], ctx.run_subgraph, inputs)


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
