"""The TensorFlow op table and what its op functions share.

Op functions live in the family modules beside it (`math`, `conv`, `nn`, `shape`, ...), imported by `ops.load()`;
each registers on the one `TABLE` through `op()`. This module and the family modules import TensorFlow at import
time: only `TfBackend.open()` imports them, after the worker's environment is in place.

Inputs may be eager tensors (eager mode, and initializers in every mode) or symbolic tensors (inside the traced
tf.function). Values that steer Python code (axes, shapes, pads) must be known while tracing: `known()` reads
them, and `op()` computes a node whose inputs are all known eagerly while tracing, which is what grappler's
constant folding would do, so shape arithmetic exported from PyTorch (Shape -> Gather -> Concat -> Reshape)
stays static in graph and XLA modes.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.ops import EagerTensor

from ...errors import UnsupportedError
from ..common.executor import OpContext, OpFn, OpTable, unsupported_op

TABLE = OpTable("tf")

# Ops never computed at trace time: random ones (fresh values every run) and those with subgraphs (which
# may read tensors of the traced scope).
_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
               "Bernoulli", "Dropout", "If", "Loop", "Scan", "SequenceMap"}


def op(*op_types: str, since: int = 1, until: int = 10**6, domain: str = "") -> Callable[[OpFn], OpFn]:
    """Register `fn` for `op_types`. While tracing, TF ops get the ONNX node's name as their scope (so an
    XLA or grappler error names the node) and all-constant nodes are computed at trace time."""
    def wrap(fn: OpFn) -> OpFn:
        @functools.wraps(fn)
        def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
            if tf.executing_eagerly():
                return fn(ctx, inputs, attrs)
            if ctx.node.op_type not in _NEVER_FOLD and all(x is None or isinstance(x, EagerTensor)
                                                           for x in inputs):
                with tf.init_scope():
                    return fn(ctx, inputs, attrs)
            with tf.name_scope(_scope_name(ctx.node)):
                try:
                    return fn(ctx, inputs, attrs)
                except (ValueError, TypeError) as exc:
                    # TF's shape inference while tracing: a tensor whose shape or rank only a run knows.
                    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                    raise unsupported(ctx, f"a shape known only at run time (tracing failed: {first})") from None
        return TABLE.register(*op_types, since=since, until=until, domain=domain)(run)
    return wrap


def _scope_name(node: Any) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", node.name or node.op_type).strip("/_") or node.op_type
    return name if name[0].isalnum() or name[0] == "." else f"n{name}"


def unsupported(ctx: OpContext, what: str) -> UnsupportedError:
    """The error for a node this table cannot compute (raised by the caller)."""
    return unsupported_op(ctx, "tf", what)


def static(x: Any) -> np.ndarray | None:
    """The value of `x` if it is known now (eager, or constant while tracing), else None."""
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, EagerTensor):
        return x.numpy()
    value = tf.get_static_value(x)
    return None if value is None else np.asarray(value)


def known(ctx: OpContext, x: Any, what: str) -> np.ndarray:
    """The value of an input that steers the computation; an error when only known at run time."""
    value = static(x)
    if value is None:
        raise unsupported(ctx, f"'{what}' computed at run time (graph/xla modes need it constant)")
    return value


def ints(ctx: OpContext, x: Any, what: str = "") -> list[int]:
    """A shape/axes/index input as a list of Python ints; an error when only known at run time."""
    return [int(v) for v in np.asarray(known(ctx, x, what)).reshape(-1)]


def dtype(ctx: OpContext, code: int) -> Any:
    """The tf.DType for an ONNX TensorProto element type."""
    import onnx

    try:
        return tf.as_dtype(onnx.helper.tensor_dtype_to_np_dtype(code))
    except (TypeError, KeyError, ValueError):
        raise unsupported(ctx, f"element type {onnx.TensorProto.DataType.Name(code)}") from None


def arg(inputs: Sequence[Any], i: int) -> Any:
    """Input i, or None where it is omitted (empty name or past the end)."""
    return inputs[i] if i < len(inputs) else None


def wants(ctx: OpContext, i: int) -> bool:
    """Whether the node asks for its optional output i."""
    return i < len(ctx.node.output) and bool(ctx.node.output[i])


def rank(x: Any) -> int:
    return len(x.shape)


def axis_of(axis: int, r: int) -> int:
    return axis + r if axis < 0 else axis


_PERMS: dict[tuple[int, ...], Any] = {}


def _perm(order: tuple[int, ...]) -> Any:
    """Eagerly, a permutation as a cached tensor: a Python list sends Transpose down a slower conversion path.
    While tracing, a list: it becomes a constant inside the function, which grappler needs to cancel
    transpose pairs and fuse across them (a captured tensor hides its value)."""
    if not tf.executing_eagerly():
        return list(order)
    if order not in _PERMS:
        _PERMS[order] = tf.constant(order, tf.int32)
    return _PERMS[order]


def to_last(x: Any) -> Any:
    """NC... -> N...C: the only layout TF's CPU conv and pool kernels take."""
    r = rank(x)
    return tf.transpose(x, _perm((0, *range(2, r), 1)))


def to_first(x: Any) -> Any:
    """N...C -> NC...: back to ONNX layout."""
    r = rank(x)
    return tf.transpose(x, _perm((0, r - 1, *range(1, r - 1))))
