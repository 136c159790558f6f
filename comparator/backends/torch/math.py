"""Elementwise ops: arithmetic, comparisons, logic, bit operations, activations, casts."""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .table import FLOAT8, TABLE, WIDE_UNSIGNED, arg, dtype, unsupported, widen

reg = TABLE.register


def _keep(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Compute on widened unsigned inputs and return the first input's dtype."""
    def run(*xs: torch.Tensor) -> torch.Tensor:
        want = xs[0].dtype
        if want not in WIDE_UNSIGNED and all(x.dtype not in WIDE_UNSIGNED for x in xs):
            return fn(*xs)
        out = fn(*(widen(x) for x in xs))
        return out.to(want) if want in WIDE_UNSIGNED and out.dtype != torch.bool else out
    return run


def _unary(op: str, fn: Callable[[torch.Tensor], torch.Tensor], since: int = 1) -> None:
    kept = _keep(fn)
    reg(op, since=since)(lambda ctx, xs, a: kept(xs[0]))


for _op, _fn in {
    "Abs": torch.abs, "Neg": torch.neg, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt,
    "Reciprocal": torch.reciprocal, "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round,
    "Sign": torch.sign, "Sin": torch.sin, "Cos": torch.cos, "Tan": torch.tan, "Asin": torch.asin,
    "Acos": torch.acos, "Atan": torch.atan, "Sinh": torch.sinh, "Cosh": torch.cosh, "Asinh": torch.asinh,
    "Acosh": torch.acosh, "Atanh": torch.atanh, "Tanh": torch.tanh, "Sigmoid": torch.sigmoid, "Erf": torch.erf,
    "IsNaN": torch.isnan, "Not": torch.logical_not, "BitwiseNot": torch.bitwise_not, "Relu": torch.relu,
    "Softsign": F.softsign, "Mish": F.mish, "HardSwish": F.hardswish,
}.items():
    _unary(_op, _fn)


def _binary(op: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    kept = _keep(fn)
    reg(op)(lambda ctx, xs, a: kept(xs[0], xs[1]))


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
    _binary(_op, _fn)


@reg("Pow")
def pow_(ctx, xs, a):
    base, exp = xs
    # The result has the base's type whatever the exponent's (e.g. int base ** float exponent).
    return torch.pow(widen(base), widen(exp)).to(base.dtype)


@reg("Mod")
def mod(ctx, xs, a):
    fn = torch.fmod if a.get("fmod", 0) else torch.remainder
    return _keep(fn)(xs[0], xs[1])


@reg("BitShift")
def bitshift(ctx, xs, a):
    fn = torch.bitwise_left_shift if a["direction"] == "LEFT" else torch.bitwise_right_shift
    return _keep(fn)(xs[0], xs[1])


def _variadic(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    kept = _keep(lambda *v: functools.reduce(fn, v))
    return lambda ctx, xs, a: kept(*xs)


reg("Max")(_variadic(torch.maximum))
reg("Min")(_variadic(torch.minimum))
reg("Sum")(_variadic(torch.add))


@reg("Mean")
def mean(ctx, xs, a):
    return functools.reduce(torch.add, xs) / len(xs)


@reg("Where")
def where(ctx, xs, a):
    cond, x, y = xs
    return _keep(lambda p, q: torch.where(cond, p, q))(x, y)


@reg("Clip", until=10)
def clip_attr(ctx, xs, a):
    return torch.clamp(xs[0], a.get("min"), a.get("max"))


@reg("Clip", since=11)
def clip(ctx, xs, a):
    x = xs[0]
    lo, hi = arg(xs, 1), arg(xs, 2)
    if lo is None and hi is None:
        return x
    return _keep(lambda v: torch.clamp(v, None if lo is None else widen(lo), None if hi is None else widen(hi)))(x)


@reg("Identity")
def identity(ctx, xs, a):
    return [xs[0]]


@reg("Cast")
def cast(ctx, xs, a):
    return to_type(xs[0], dtype(a["to"], "Cast"), a.get("saturate", 1))


@reg("CastLike")
def cast_like(ctx, xs, a):
    return to_type(xs[0], xs[1].dtype, a.get("saturate", 1))


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


@reg("IsInf")
def isinf(ctx, xs, a):
    x = xs[0]
    pos = torch.isposinf(x) if a.get("detect_positive", 1) else torch.zeros_like(x, dtype=torch.bool)
    neg = torch.isneginf(x) if a.get("detect_negative", 1) else torch.zeros_like(x, dtype=torch.bool)
    return pos | neg


@reg("LeakyRelu")
def leaky_relu(ctx, xs, a):
    return F.leaky_relu(xs[0], a["alpha"])


@reg("Elu")
def elu(ctx, xs, a):
    return F.elu(xs[0], a["alpha"])


@reg("Selu")
def selu(ctx, xs, a):
    return F.elu(xs[0], a["alpha"]) * a["gamma"]


@reg("Celu")
def celu(ctx, xs, a):
    return F.celu(xs[0], a["alpha"])


@reg("HardSigmoid")
def hard_sigmoid(ctx, xs, a):
    return torch.clamp(xs[0] * a["alpha"] + a["beta"], 0, 1)


@reg("ThresholdedRelu")
def thresholded_relu(ctx, xs, a):
    x = xs[0]
    return torch.where(x > a["alpha"], x, torch.zeros_like(x))


@reg("Softplus")
def softplus(ctx, xs, a):
    x = xs[0]
    # F.softplus switches to the identity above 20: ONNX's log(exp(x) + 1) has no such threshold.
    return torch.log1p(torch.exp(x)) if x.dtype == torch.float64 else F.softplus(x)


@reg("Gelu", since=20)
def gelu(ctx, xs, a):
    return F.gelu(xs[0], approximate=a["approximate"])


@reg("Shrink")
def shrink(ctx, xs, a):
    x = xs[0]
    lambd, bias = a["lambd"], a["bias"]
    zero = torch.zeros_like(x)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero)).to(x.dtype)


@reg("PRelu")
def prelu(ctx, xs, a):
    x, slope = xs
    return torch.where(x < 0, x * slope, x).to(x.dtype)


@reg("Swish", since=24)
def swish(ctx, xs, a):
    x = xs[0]
    return x * torch.sigmoid(x * a["alpha"])


@reg("Det")
def det(ctx, xs, a):
    return torch.linalg.det(xs[0])


@reg("BitCast", since=26)
def bitcast(ctx, xs, a):
    x, to = xs[0], dtype(a["to"], "BitCast")
    if x.dtype == torch.bool or to == torch.bool:
        raise unsupported(ctx, "bool")
    return x.view(to) if x.element_size() == torch.empty((), dtype=to).element_size() else _bitcast_resize(x, to)


def _bitcast_resize(x: torch.Tensor, to: torch.dtype) -> torch.Tensor:
    # Wider -> narrower adds a trailing axis; narrower -> wider consumes one (ONNX BitCast's shape rule).
    size_in, size_out = x.element_size(), torch.empty((), dtype=to).element_size()
    if size_in > size_out:
        return x.contiguous().view(to).reshape(*x.shape, size_in // size_out)
    return x.contiguous().view(to).reshape(tuple(x.shape[:-1]))
