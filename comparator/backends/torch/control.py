"""Control flow (If, Loop, Scan), sequences and optionals. A sequence is a Python list of tensors and an
empty optional is None; an op returning one sequence returns it wrapped in a one-element list."""
from __future__ import annotations

from typing import Any

import torch

from ..common import loops, sequences
from ..common.executor import OpContext
from .table import arg, axis_of, const, ints, op


@op("If")
def if_(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    branch = attrs["then_branch"] if bool(inputs[0].reshape(-1)[0]) else attrs["else_branch"]
    return list(ctx.run_subgraph(branch, {}))


def _first(x: Any) -> Any:
    """The one value of a scalar (or one-element) tensor, as a Python number or bool; None stays None."""
    return None if x is None else x.reshape(-1)[0].item()


@op("Loop")
def loop(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    trip, cond = _first(arg(inputs, 0)), _first(arg(inputs, 1))
    return loops.loop(attrs["body"], ctx.run_subgraph, None if trip is None else int(trip),
                      True if cond is None else bool(cond), inputs[2:],
                      counter=lambda i: const(ctx, i, dt=torch.int64), flag=lambda b: const(ctx, b, dt=torch.bool),
                      truth=lambda c: bool(_first(c)), stack=torch.stack,
                      empty=lambda: const(ctx, [], dt=torch.float32))


@op("Scan", since=9)
def scan(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return loops.scan(attrs["body"], ctx.run_subgraph, inputs, attrs, rank=torch.Tensor.dim,
                      unstack=lambda x, axis: list(torch.unbind(x, dim=axis)),
                      stack=lambda values, axis: torch.stack(values, dim=axis))


@op("SequenceEmpty")
def sequence_empty(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [[]]


@op("SequenceConstruct")
def sequence_construct(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [list(inputs)]


@op("SequenceInsert")
def sequence_insert(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [sequences.insert(inputs[0], inputs[1], _first(arg(inputs, 2)))]


@op("SequenceAt")
def sequence_at(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return sequences.at(inputs[0], _first(inputs[1]))


@op("SequenceErase")
def sequence_erase(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return [sequences.erase(inputs[0], _first(arg(inputs, 1)))]


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
    return loops.sequence_map(attrs["body"], ctx.run_subgraph, inputs)


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
