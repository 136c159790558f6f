"""ONNX sequence ops on the executors' sequences (Python lists of framework tensors): positions and list edits.

The framework reads a position input into a Python int (or None where it is omitted); these functions apply
the specification's defaults and negative positions and edit the list. They never touch a tensor's values.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def position(pos: int | None, n: int, default: int, end: bool = False) -> int:
    """A position in a sequence of length `n`: `default` where the input is omitted, a negative one counted from
    the end. Valid positions are -n..n-1 (-n..n with `end`, where one past the last element is a place too)."""
    p = default if pos is None else int(pos)
    if not -n <= p < n + end:
        raise IndexError(f"position {p} is outside a sequence of {n} tensor(s)")
    return p + n if p < 0 else p


def at(seq: Sequence[Any], pos: int | None) -> Any:
    """SequenceAt: the element at `pos`."""
    return seq[position(pos, len(seq), 0)]


def insert(seq: Sequence[Any], value: Any, pos: int | None) -> list[Any]:
    """SequenceInsert: a new list with `value` at `pos` (default: appended)."""
    where = position(pos, len(seq), len(seq), end=True)
    return [*seq[:where], value, *seq[where:]]


def erase(seq: Sequence[Any], pos: int | None) -> list[Any]:
    """SequenceErase: a new list without the element at `pos` (default: the last)."""
    where = position(pos, len(seq), len(seq) - 1)
    return [*seq[:where], *seq[where + 1:]]
