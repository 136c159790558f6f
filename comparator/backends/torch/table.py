"""The torch op table: ONNX ops as small functions over torch tensors, registered on one `OpTable("torch")`.

This module holds the table, the dtype map and the helpers every family module shares; the ops live in
the family modules beside it, which register on `TABLE` when `ops.load()` imports them. Importing this module imports
torch, so only the backend's `open()` does it.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ...errors import UnsupportedError
from ..common.executor import OpContext, OpFn, OpTable, unsupported_op

TABLE = OpTable("torch")


def op(*op_types: str, since: int = 1, until: int = 10**6, domain: str = "") -> Callable[[OpFn], OpFn]:
    """Register the decorated function for `op_types` (opsets since..until, inclusive)."""
    return TABLE.register(*op_types, since=since, until=until, domain=domain)


# ONNX TensorProto element type -> torch dtype. Strings, 4/2-bit integers, float4 and float8e8m0 have no torch
# kernels to speak of; the four float8 types only convert (Cast, QuantizeLinear, DequantizeLinear).
DTYPES: dict[int, torch.dtype] = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 4: torch.uint16, 5: torch.int16, 6: torch.int32,
    7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64, 12: torch.uint32, 13: torch.uint64,
    14: torch.complex64, 15: torch.complex128, 16: torch.bfloat16,
    17: torch.float8_e4m3fn, 18: torch.float8_e4m3fnuz, 19: torch.float8_e5m2, 20: torch.float8_e5m2fnuz,
}
FLOAT8 = {torch.float8_e4m3fn: "float8_e4m3fn", torch.float8_e4m3fnuz: "float8_e4m3fnuz",
          torch.float8_e5m2: "float8_e5m2", torch.float8_e5m2fnuz: "float8_e5m2fnuz"}
_BYTE_VIEWS = {torch.bfloat16: (np.int16, torch.int16), **{t: (np.uint8, torch.uint8) for t in FLOAT8}}
# Unsigned types wider than 8 bits exist in torch as storage types with few kernels: arithmetic widens them.
WIDE_UNSIGNED = {torch.uint16: torch.int32, torch.uint32: torch.int64, torch.uint64: torch.int64}


def element_type(onnx_type: int, what: str = "") -> torch.dtype:
    """The torch dtype of an ONNX element type, or UnsupportedError naming it."""
    if onnx_type in DTYPES:
        return DTYPES[onnx_type]
    import onnx

    name = onnx.TensorProto.DataType.Name(onnx_type) if onnx_type in onnx.TensorProto.DataType.values() \
        else str(onnx_type)
    raise UnsupportedError(f"{what + ': ' if what else ''}tensor type {name} is not supported by the torch backend",
                           "torch has no kernels for this type; compare with the ort or ref backends")


def dtype(ctx: OpContext, code: int) -> torch.dtype:
    """The torch dtype for an ONNX element type an op's attribute names."""
    return element_type(code, ctx.node.op_type)


def np_dtype_of(t: torch.dtype) -> Any:
    """The NumPy dtype a torch dtype is returned as (bfloat16 through ml_dtypes)."""
    if t == torch.bfloat16 or t in FLOAT8:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, FLOAT8.get(t, "bfloat16")))
    return torch.empty((), dtype=t).numpy().dtype


_NATIVE = frozenset("?bhilqBHILQefdFD")  # NumPy's own bool/int/float/complex type codes
_BY_NAME = {"bfloat16": torch.bfloat16, **{name: t for t, name in FLOAT8.items()}}


def from_numpy(a: np.ndarray, device: Any = "cpu") -> torch.Tensor:
    """A copy of `a` as a tensor on `device` (bfloat16 and float8 through ml_dtypes' byte layout). The copy goes
    into memory torch allocates, not into a NumPy array: NumPy asks the kernel for huge pages for a large array,
    whose first touch cost the decoder's 2.3 GB of weights 4.7 s against 1.6 s here (bench_torch.py --open)."""
    a = np.asarray(a)
    if a.dtype.char in _NATIVE:
        raw, want = a, None
    elif a.dtype.name in _BY_NAME:
        want = _BY_NAME[a.dtype.name]
        raw = a.view(_BYTE_VIEWS[want][0])
    else:
        raise UnsupportedError(f"{a.dtype} tensors are not supported by the torch backend",
                               "compare with the ort or ref backends")
    t = torch.empty(raw.shape, dtype=_torch_dtype(raw.dtype))
    t.numpy()[...] = raw
    if want is not None:
        t = t.view(want)
    return t if str(device) == "cpu" else t.to(device)


@functools.cache
def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


def to_numpy(t: Any) -> Any:
    """A tensor (or a sequence of them, or None) as NumPy."""
    if t is None:
        return None
    if isinstance(t, (list, tuple)):
        return [to_numpy(v) for v in t]
    t = t.detach().cpu()
    # A copy: the tensor may be a constant the executor keeps, or a view of one.
    if t.dtype in _BYTE_VIEWS:
        return t.view(_BYTE_VIEWS[t.dtype][1]).numpy().view(np_dtype_of(t.dtype)).copy()
    return t.numpy().copy()


def const(ctx: OpContext, value: Any, like: torch.Tensor | None = None, dt: torch.dtype | None = None) -> torch.Tensor:
    """A constant on the executor's device, with the dtype of `like` (or `dt`)."""
    device = like.device if like is not None else ctx.executor.options.get("device", "cpu")
    if dt is None and like is not None:
        dt = like.dtype
    return torch.as_tensor(value, dtype=dt, device=device)


def known(ctx: OpContext, x: Any, what: str) -> np.ndarray:
    """The value of an input that steers the computation (always known: torch runs eagerly)."""
    return to_numpy(x) if isinstance(x, torch.Tensor) else np.asarray(x)


def ints(ctx: OpContext, x: Any, what: str = "") -> list[int]:
    """A shape/axes/index input (or Python sequence) as a list of Python ints; [] for an omitted one."""
    if x is None:
        return []
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.reshape(-1).tolist()]
    return [int(v) for v in np.asarray(x).reshape(-1)]


def arg(inputs: Sequence[Any], i: int) -> Any:
    """Input i, or None where it is omitted (empty name or past the end)."""
    return inputs[i] if i < len(inputs) else None


def axis_of(axis: int, r: int) -> int:
    return axis + r if axis < 0 else axis


def rank(x: Any) -> int:
    return len(x.shape)


def wants(ctx: OpContext, i: int) -> bool:
    """Whether the node asks for its optional output i."""
    return i < len(ctx.node.output) and bool(ctx.node.output[i])


def widen(x: torch.Tensor) -> torch.Tensor:
    """Unsigned 16/32/64-bit tensors as a signed type torch has kernels for (values kept for uint16/uint32)."""
    return x.to(WIDE_UNSIGNED[x.dtype]) if x.dtype in WIDE_UNSIGNED else x


def unsupported(ctx: OpContext, what: str) -> UnsupportedError:
    """The error for a node this table cannot compute (raised by the caller)."""
    return unsupported_op(ctx, "torch", what)
