"""LSTM, GRU and RNN, step by step with torch matmuls, so every ONNX attribute has its exact meaning
(activations, clip, peepholes, input_forget, linear_before_reset, sequence_lens, layout, directions)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F

from ..common.executor import OpContext
from .table import arg, op, unsupported

Act = Callable[[torch.Tensor], torch.Tensor]
_TAKES = {"Affine": 2, "LeakyRelu": 1, "ThresholdedRelu": 1, "ScaledTanh": 2, "HardSigmoid": 2, "Elu": 1}


def _activation(name: str, alpha: float | None, beta: float | None) -> Act:
    table: dict[str, Act] = {
        "Relu": torch.relu, "Tanh": torch.tanh, "Sigmoid": torch.sigmoid, "Softsign": F.softsign,
        "Softplus": F.softplus,
        "Affine": lambda x: x * cast(float, alpha) + cast(float, beta),
        "LeakyRelu": lambda x: F.leaky_relu(x, 0.01 if alpha is None else alpha),
        "ThresholdedRelu": lambda x: torch.where(x > (1.0 if alpha is None else alpha), x, torch.zeros_like(x)),
        "ScaledTanh": lambda x: cast(float, alpha) * torch.tanh(cast(float, beta) * x),
        "HardSigmoid": lambda x: torch.clamp(x * (0.2 if alpha is None else alpha) + (0.5 if beta is None else beta),
                                             0, 1),
        "Elu": lambda x: F.elu(x, 1.0 if alpha is None else alpha),
    }
    key = next((k for k in table if k.lower() == name.lower()), None)
    if key is None:
        raise KeyError(name)
    return table[key]


def _activations(ctx: OpContext, attrs: dict[str, Any], defaults: Sequence[str], directions: int) -> list[list[Act]]:
    names = list(attrs.get("activations") or list(defaults) * directions)
    alphas, betas = list(attrs.get("activation_alpha") or []), list(attrs.get("activation_beta") or [])
    acts: list[Act] = []
    for name in names:
        takes = _TAKES.get(name, 0)
        alpha = alphas.pop(0) if takes >= 1 and alphas else None
        beta = betas.pop(0) if takes >= 2 and betas else None
        try:
            acts.append(_activation(name, alpha, beta))
        except KeyError:
            raise unsupported(ctx, f"activation {name}") from None
    per = len(defaults)
    return [acts[d * per:(d + 1) * per] for d in range(directions)]


def _reverse_within(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Reverse each batch entry's first lens[b] steps of a [T, B, ...] tensor."""
    t = torch.arange(x.shape[0], device=x.device).reshape(-1, 1)
    idx = torch.where(t < lens.reshape(1, -1), lens.reshape(1, -1) - 1 - t, t)
    idx = idx.reshape(*idx.shape, *[1] * (x.dim() - 2)).expand_as(x)
    return torch.gather(x, 0, idx)


def _scan(xw: torch.Tensor, states: list[torch.Tensor], step: Callable[..., list[torch.Tensor]],
          lens: torch.Tensor | None,
          reverse: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run `step(xw_t, states) -> states` over time; states[0] is the output. Padded steps keep the state
    and output zeros."""
    steps = xw.shape[0]
    if lens is None:
        lens = torch.full((xw.shape[1],), steps, dtype=torch.int64, device=xw.device)
    if reverse:
        xw = _reverse_within(xw, lens)
    outs = []
    for t in range(steps):
        new = step(xw[t], states)
        live = (t < lens).reshape(-1, 1)
        states = [torch.where(live, n, s) for n, s in zip(new, states)]
        outs.append(torch.where(live, new[0], torch.zeros_like(new[0])))
    y = torch.stack(outs) if outs else xw.new_zeros((0, xw.shape[1], states[0].shape[-1]))
    return (_reverse_within(y, lens) if reverse else y), states


def _common(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any], gates: int, defaults: Sequence[str]) -> Any:
    x, w, r, b = inputs[0], inputs[1], inputs[2], arg(inputs, 3)
    lens, h0 = arg(inputs, 4), arg(inputs, 5)
    layout = attrs.get("layout", 0)
    if layout:
        x = x.transpose(0, 1)
        h0 = None if h0 is None else h0.transpose(0, 1)
    dirs = 2 if attrs["direction"] == "bidirectional" else 1
    hidden = r.shape[-1]
    if b is None:
        b = torch.zeros((dirs, 2 * gates * hidden), dtype=x.dtype, device=x.device)
    if h0 is None:
        h0 = torch.zeros((dirs, x.shape[1], hidden), dtype=x.dtype, device=x.device)
    lens = None if lens is None else lens.to(torch.int64)
    acts = _activations(ctx, attrs, defaults, dirs)
    return x, w, r, b, lens, h0, layout, dirs, hidden, acts


def _clip(attrs: dict[str, Any]) -> Act:
    c = attrs.get("clip")
    return (lambda v: v) if c is None else (lambda v: torch.clamp(v, -c, c))


def _outputs(ctx: OpContext, ys: list[torch.Tensor], finals: list[list[torch.Tensor]],
             layout: int) -> list[torch.Tensor]:
    y = torch.stack(ys, dim=1)  # [T, dirs, B, H]
    out = [y.permute(2, 0, 1, 3) if layout else y]
    for k in range(len(finals[0])):
        s = torch.stack([f[k] for f in finals])  # [dirs, B, H]
        out.append(s.transpose(0, 1) if layout else s)
    return out


@op("LSTM")
def lstm(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w, r, b, lens, h0, layout, dirs, hidden, acts = _common(ctx, inputs, attrs, 4, ("Sigmoid", "Tanh", "Tanh"))
    c0, p = arg(inputs, 6), arg(inputs, 7)
    if c0 is None:
        c0 = torch.zeros_like(h0)
    elif layout:
        c0 = c0.transpose(0, 1)
    clip = _clip(attrs)
    ys, finals = [], []
    for d in range(dirs):
        f, g, h = acts[d]
        wb, rb = b[d].split(4 * hidden)
        xw = torch.matmul(x, w[d].T) + wb + rb
        pi, po, pf = (p[d].split(hidden) if p is not None else (None, None, None))

        def step(xw_t: torch.Tensor, states: list[torch.Tensor], d: int = d, f: Any = f, g: Any = g, h: Any = h,
                 pi: Any = pi, po: Any = po, pf: Any = pf) -> list[torch.Tensor]:
            h_prev, c_prev = states
            gi, go, gf, gc = (xw_t + torch.matmul(h_prev, r[d].T)).split(hidden, dim=-1)
            i = f(clip(gi + pi * c_prev if pi is not None else gi))
            fg = 1 - i if attrs.get("input_forget") else f(clip(gf + pf * c_prev if pf is not None else gf))
            c = fg * c_prev + i * g(clip(gc))
            o = f(clip(go + po * c if po is not None else go))
            return [o * h(c), c]

        y, states = _scan(xw, [h0[d], c0[d]], step, lens, d == 1 or attrs["direction"] == "reverse")
        ys.append(y)
        finals.append(states)
    return _outputs(ctx, ys, finals, layout)


@op("GRU")
def gru(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w, r, b, lens, h0, layout, dirs, hidden, acts = _common(ctx, inputs, attrs, 3, ("Sigmoid", "Tanh"))
    clip = _clip(attrs)
    before = bool(attrs.get("linear_before_reset", 0))
    ys, finals = [], []
    for d in range(dirs):
        f, g = acts[d]
        wb, rb = b[d].split(3 * hidden)
        rz, rr, rh = r[d].split(hidden)
        rbz, rbr, rbh = rb.split(hidden)
        xw = torch.matmul(x, w[d].T) + wb

        def step(xw_t: torch.Tensor, states: list[torch.Tensor], f: Any = f, g: Any = g, rz: Any = rz,
                 rr: Any = rr, rh: Any = rh, rbz: Any = rbz, rbr: Any = rbr, rbh: Any = rbh) -> list[torch.Tensor]:
            h_prev = states[0]
            xz, xr, xh = xw_t.split(hidden, dim=-1)
            z = f(clip(xz + torch.matmul(h_prev, rz.T) + rbz))
            rg = f(clip(xr + torch.matmul(h_prev, rr.T) + rbr))
            if before:
                hh = g(clip(xh + rg * (torch.matmul(h_prev, rh.T) + rbh)))
            else:
                hh = g(clip(xh + torch.matmul(rg * h_prev, rh.T) + rbh))
            return [(1 - z) * hh + z * h_prev]

        y, states = _scan(xw, [h0[d]], step, lens, d == 1 or attrs["direction"] == "reverse")
        ys.append(y)
        finals.append(states)
    return _outputs(ctx, ys, finals, layout)


@op("RNN")
def rnn(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w, r, b, lens, h0, layout, dirs, hidden, acts = _common(ctx, inputs, attrs, 1, ("Tanh",))
    clip = _clip(attrs)
    ys, finals = [], []
    for d in range(dirs):
        f = acts[d][0]
        wb, rb = b[d].split(hidden)
        xw = torch.matmul(x, w[d].T) + wb + rb

        def step(xw_t: torch.Tensor, states: list[torch.Tensor], d: int = d, f: Any = f) -> list[torch.Tensor]:
            return [f(clip(xw_t + torch.matmul(states[0], r[d].T)))]

        y, states = _scan(xw, [h0[d]], step, lens, d == 1 or attrs["direction"] == "reverse")
        ys.append(y)
        finals.append(states)
    return _outputs(ctx, ys, finals, layout)
