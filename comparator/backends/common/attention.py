"""The shape and position rules of ONNX Attention (opset 23 on), shared by the framework executors.

What is written here is the specification's geometry: the scale as a number, how far a short mask is padded,
which key positions a query may attend to (causal and sliding-window rules), and how grouped key/value heads are
repeated. The masks, biases and scores themselves are framework tensors, computed by the framework: a position
rule is a pair of comparisons the framework evaluates on its own index tensors.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

Rule = Callable[[Any, Any], Any]


def scale_root(scale: float | None, head_size: int) -> float:
    """The square root of the score scale (default 1/sqrt(head size)): the ONNX function scales Q and K by it
    each, not their product."""
    return math.sqrt(1 / math.sqrt(head_size) if scale is None else scale)


def mask_padding(mask_length: int, total_length: int) -> int:
    """How many key positions an attention mask shorter than the keys (past + present) is padded with at its end:
    masked out (False, or -inf for an additive mask)."""
    return max(total_length - mask_length, 0)


def kv_repeats(q_heads: int, kv_heads: int) -> int:
    """How many times each key/value head is repeated for grouped-query attention (1: as many heads as Q)."""
    return q_heads // kv_heads if q_heads != kv_heads and q_heads % kv_heads == 0 else 1


def position_rule(attrs: Mapping[str, Any]) -> Rule | None:
    """Which key position j a query at (absolute) position p may attend to, or None where every one may: causal
    (j <= p), then the sliding window (p - j <= left_window_size, j - p <= right_window_size; -1: unbounded).
    The rule takes the framework's index tensors and returns its boolean tensor, built with the framework's own
    comparisons and `&`."""
    left, right = attrs.get("left_window_size", -1), attrs.get("right_window_size", -1)
    rules: list[Rule] = []
    if attrs.get("is_causal"):
        rules.append(lambda p, j: j <= p)
    if left >= 0:
        rules.append(lambda p, j: p - j <= left)
    if right >= 0:
        rules.append(lambda p, j: j - p <= right)
    if not rules:
        return None

    def allowed(p: Any, j: Any) -> Any:
        ok = rules[0](p, j)
        for rule in rules[1:]:
            ok = ok & rule(p, j)
        return ok
    return allowed
