"""Elementwise ops: arithmetic, comparisons, logic, bit operations, activations, casts."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from typing import cast as typed

import torch
import torch.nn.functional as F

from ..common.executor import OpContext
from .table import arg, dtype, FLOAT8, op, unsupported, WIDE_UNSIGNED, widen


def _keep(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Compute on widened unsigned inputs and return the first input's dtype."""
    def run(*xs: torch.Tensor) -> torch.Tensor:
        want = xs[0].dtype
        if want not in WIDE_UNSIGNED and all(x.dtype not in WIDE_UNSIGNED for x in xs):
            return fn(*xs)
        out = fn(*(widen(x) for x in xs))
        return out.to(want) if want in WIDE_UNSIGNED and out.dtype != torch.bool else out
    return run


def _unary(name: str, fn: Callable[[torch.Tensor], torch.Tensor], since: int = 1) -> None:
    kept = _keep(fn)
    op(name, since=since)(lambda ctx, inputs, attrs: kept(inputs[0]))


for _op, _fn in {
    "Abs": torch.abs, "Neg": torch.neg, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt,
    "Reciprocal": torch.reciprocal, "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round,
    "Sign": torch.sign, "Sin": torch.sin, "Cos": torch.cos, "Tan": torch.tan, "Asin": torch.asin,
    "Acos": torch.acos, "Atan": torch.atan, "Sinh": torch.sinh, "Cosh": torch.cosh, "Asinh": torch.asinh,
    "Acosh": torch.acosh, "Atanh": torch.atanh, "Tanh": torch.tanh, "Sigmoid": torch.sigmoid, "Erf": torch.erf,
    "IsNaN": torch.isnan, "Not": torch.logical_not, "BitwiseNot": torch.bitwise_not, "Relu": torch.relu,
    "Softsign": F.softsign, "Mish": F.mish, "HardSwish": F.hardswish,
}.items():
    _unary(_op, typed(Callable[[torch.Tensor], torch.Tensor], _fn))


def _binary(name: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    kept = _keep(fn)
    op(name)(lambda ctx, inputs, attrs: kept(inputs[0], inputs[1]))


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point() or a.is_complex():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")  # ONNX integer Div truncates, like C


for _op, _fn in {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": _div,
    "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
    "BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or, "BitwiseXor": torch.bitwise_xor,
    "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt, "LessOrEqual": torch.le, "GreaterOrEqual": torch.ge,
}.items():
    _binary(_op, typed(Callable[[torch.Tensor, torch.Tensor], torch.Tensor], _fn))


@op("Pow")
def pow_(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    base, exp = inputs
    # The result has the base's type whatever the exponent's (e.g. int base ** float exponent).
    return torch.pow(widen(base), widen(exp)).to(base.dtype)


@op("Mod")
def mod(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    fn = torch.fmod if attrs.get("fmod", 0) else torch.remainder
    return _keep(fn)(inputs[0], inputs[1])


@op("BitShift")
def bitshift(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    fn = torch.bitwise_left_shift if attrs["direction"] == "LEFT" else torch.bitwise_right_shift
    return _keep(fn)(inputs[0], inputs[1])


def _variadic(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    kept = _keep(lambda *v: functools.reduce(fn, v))
    return lambda ctx, inputs, attrs: kept(*inputs)


op("Max")(_variadic(torch.maximum))
op("Min")(_variadic(torch.minimum))
op("Sum")(_variadic(torch.add))


@op("Mean")
def mean(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return functools.reduce(torch.add, inputs) / len(inputs)


@op("Where")
def where(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    cond, x, y = inputs
    return _keep(lambda p, q: torch.where(cond, p, q))(x, y)


@op("Clip", until=10)
def clip_attr(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return torch.clamp(inputs[0], attrs.get("min"), attrs.get("max"))


@op("Clip", since=11)
def clip(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    lo, hi = arg(inputs, 1), arg(inputs, 2)
    if lo is None and hi is None:
        return x
    return _keep(lambda v: torch.clamp(v, None if lo is None else widen(lo), None if hi is None else widen(hi)))(x)


@op("Cast")
def cast(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return to_type(inputs[0], dtype(ctx, attrs["to"]), attrs.get("saturate", 1))


@op("CastLike")
def cast_like(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return to_type(inputs[0], inputs[1].dtype, attrs.get("saturate", 1))


def to_type(x: torch.Tensor, to: torch.dtype, saturate: int = 1) -> torch.Tensor:
    """ONNX Cast: C-like integer conversion; float8 targets saturate or overflow as `saturate` says."""
    if x.dtype == to:
        return x
    if to in FLOAT8:
        return _to_float8(x.to(torch.float32) if x.dtype != torch.float64 else x, to, saturate)
    if x.dtype in FLOAT8:
        x = x.to(torch.float32)
    if to in WIDE_UNSIGNED and (x.is_floating_point() or x.dtype == torch.bool):
        # torch converts float -> uint32/uint64 without wrapping negative values; go through int64 like C does.
        return x.to(torch.int64).to(to)
    return x.to(to)


def _to_float8(x: torch.Tensor, to: torch.dtype, saturate: int) -> torch.Tensor:
    top = torch.finfo(to).max
    if saturate:
        return torch.clamp(x, -top, top).to(to)
    if to == torch.float8_e4m3fn:  # torch saturates this one by itself; ONNX wants NaN past the rounding edge
        return torch.where(x.abs() > top + 16, torch.full_like(x, float("nan")), x).to(to)
    return x.to(to)


@op("IsInf")
def isinf(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    pos = torch.isposinf(x) if attrs.get("detect_positive", 1) else torch.zeros_like(x, dtype=torch.bool)
    neg = torch.isneginf(x) if attrs.get("detect_negative", 1) else torch.zeros_like(x, dtype=torch.bool)
    return pos | neg


@op("LeakyRelu")
def leaky_relu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return F.leaky_relu(inputs[0], attrs["alpha"])


@op("Elu")
def elu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return F.elu(inputs[0], attrs["alpha"])


@op("Selu")
def selu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return F.elu(inputs[0], attrs["alpha"]) * attrs["gamma"]


@op("Celu")
def celu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return F.celu(inputs[0], attrs["alpha"])


@op("HardSigmoid")
def hard_sigmoid(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return torch.clamp(inputs[0] * attrs["alpha"] + attrs["beta"], 0, 1)


@op("ThresholdedRelu")
def thresholded_relu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return torch.where(x > attrs["alpha"], x, torch.zeros_like(x))


@op("Softplus")
def softplus(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    # F.softplus switches to the identity above 20: ONNX's log(exp(x) + 1) has no such threshold.
    return torch.log1p(torch.exp(x)) if x.dtype == torch.float64 else F.softplus(x)


@op("Gelu", since=20)
def gelu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return F.gelu(inputs[0], approximate=attrs["approximate"])


@op("Shrink")
def shrink(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    lambd, bias = attrs["lambd"], attrs["bias"]
    zero = torch.zeros_like(x)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero)).to(x.dtype)


@op("PRelu")
def prelu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, slope = inputs
    return torch.where(x < 0, x * slope, x).to(x.dtype)


@op("Swish", since=24)
def swish(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x = inputs[0]
    return x * torch.sigmoid(x * attrs["alpha"])


@op("Det")
def det(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return torch.linalg.det(inputs[0])


@op("BitCast", since=26)
def bitcast(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, to = inputs[0], dtype(ctx, attrs["to"])
    if x.dtype == torch.bool or to == torch.bool:
        raise unsupported(ctx, "bool")
    return x.view(to) if x.element_size() == torch.empty((), dtype=to).element_size() else _bitcast_resize(x, to)


def _bitcast_resize(x: torch.Tensor, to: torch.dtype) -> torch.Tensor:
    # Wider -> narrower adds a trailing axis; narrower -> wider consumes one (ONNX BitCast's shape rule).
    size_in, size_out = x.element_size(), torch.empty((), dtype=to).element_size()
    if size_in > size_out:
        return x.contiguous().view(to).reshape(*x.shape, size_in // size_out)
    return x.contiguous().view(to).reshape(tuple(x.shape[:-1]))
