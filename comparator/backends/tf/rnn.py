"""Recurrent ops (RNN, GRU, LSTM), unrolled over time with TF's matmul and activation kernels.

The sequence length is static by the time an op runs (eager, or traced with concrete shapes), so a Python loop
over time steps is what tf.function and XLA see: the same kernels as a Keras cell, step by step.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from ..common.executor import OpContext
from .table import arg, op, unsupported

# Activations of one direction when the node names none.
_DEFAULTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def _activation(name: str, alpha: float | None, beta: float | None) -> Callable[[Any], Any]:
    table: dict[str, Callable[[Any], Any]] = {
        "relu": tf.nn.relu, "tanh": tf.math.tanh, "sigmoid": tf.math.sigmoid, "softsign": tf.nn.softsign,
        "softplus": tf.math.softplus,
        "affine": lambda x: alpha * x + beta,
        "leakyrelu": lambda x: tf.nn.leaky_relu(x, alpha),
        "thresholdedrelu": lambda x: tf.where(x > alpha, x, tf.zeros_like(x)),
        "scaledtanh": lambda x: alpha * tf.math.tanh(beta * x),
        "hardsigmoid": lambda x: tf.clip_by_value(alpha * x + beta, 0.0, 1.0),
        "elu": lambda x: tf.where(x > 0, x, alpha * tf.math.expm1(x)),
    }
    return table[name.lower()]


_PARAM_DEFAULTS = {"affine": (1.0, 0.0), "leakyrelu": (0.01, None), "thresholdedrelu": (1.0, None),
                   "scaledtanh": (1.0, 1.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, None)}


def _activations(ctx: OpContext, attrs: dict[str, Any], dirs: int) -> list[Callable[[Any], Any]]:
    names = list(attrs.get("activations") or _DEFAULTS[ctx.node.op_type] * dirs)
    alphas = list(attrs.get("activation_alpha") or [])
    betas = list(attrs.get("activation_beta") or [])
    fns = []
    for name in names:
        # Parameters are consumed in order by the activations that take them.
        alpha, beta = _PARAM_DEFAULTS.get(name.lower(), (None, None))
        if alpha is not None and alphas:
            alpha = alphas.pop(0)
        if beta is not None and betas:
            beta = betas.pop(0)
        try:
            fns.append(_activation(name, alpha, beta))
        except KeyError:
            raise unsupported(ctx, f"activation {name}") from None
    return fns


def _clip(attrs: dict[str, Any]) -> Callable[[Any], Any]:
    c = attrs.get("clip")
    return (lambda v: v) if c is None else (lambda v: tf.clip_by_value(v, -c, c))


def _cell(kind: str, acts: list[Callable[[Any], Any]], clip: Callable[[Any], Any], attrs: dict[str, Any],
          w: Any, r: Any, b: Any, p: Any) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """One time step of one direction: (x_t, h, c) -> (h, c). Gate order is ONNX's (LSTM iofc, GRU zrh)."""
    wb, rb = (b[: b.shape[0] // 2], b[b.shape[0] // 2:]) if b is not None else (None, None)

    def lin(v: Any, m: Any, bias: Any) -> Any:
        y = tf.linalg.matmul(v, m, transpose_b=True)
        return y if bias is None else y + bias

    if kind == "RNN":
        def rnn(x: Any, h: Any, c: Any) -> tuple[Any, Any]:
            return acts[0](clip(lin(x, w, wb) + lin(h, r, rb))), c
        return rnn
    if kind == "GRU":
        before_reset = bool(attrs.get("linear_before_reset", 0))

        def gru(x: Any, h: Any, c: Any) -> tuple[Any, Any]:
            xw = lin(x, w, wb)
            xz, xr, xh = tf.split(xw, 3, axis=-1)
            rz, rr, rh = tf.split(r, 3, axis=0)
            bz, br, bh = tf.split(rb, 3) if rb is not None else (None, None, None)
            z = acts[0](clip(xz + lin(h, rz, bz)))
            rg = acts[0](clip(xr + lin(h, rr, br)))
            if before_reset:
                cand = acts[1](clip(xh + rg * lin(h, rh, bh)))
            else:
                cand = acts[1](clip(xh + lin(rg * h, rh, bh)))
            return (1 - z) * cand + z * h, c
        return gru
    couple = bool(attrs.get("input_forget", 0))
    pi, po, pf = tf.split(p, 3) if p is not None else (None, None, None)

    def lstm(x: Any, h: Any, c: Any) -> tuple[Any, Any]:
        gates = lin(x, w, wb) + lin(h, r, rb)
        gi, go, gf, gc = tf.split(gates, 4, axis=-1)
        i = acts[0](clip(gi + pi * c if pi is not None else gi))
        f = 1 - i if couple else acts[0](clip(gf + pf * c if pf is not None else gf))
        c_new = f * c + i * acts[1](clip(gc))
        o = acts[0](clip(go + po * c_new if po is not None else go))
        return o * acts[2](c_new), c_new
    return lstm


def _recurrent(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> list[Any]:
    kind = ctx.node.op_type
    def get(i: int) -> Any:
        return arg(inputs, i)

    x, w, r, b, lens, h0 = get(0), get(1), get(2), get(3), get(4), get(5)
    c0, p = (get(6), get(7)) if kind == "LSTM" else (None, None)
    if attrs.get("layout", 0):
        x = tf.transpose(x, [1, 0, 2])
    steps, batch = x.shape[0], tf.shape(x)[1]
    if steps is None:
        raise unsupported(ctx, "a sequence length unknown while tracing")
    hidden = r.shape[-1]
    direction = attrs.get("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    acts = _activations(ctx, attrs, dirs)
    per = len(acts) // dirs
    zeros = tf.zeros(tf.stack([batch, hidden]), x.dtype)
    valid = None
    if lens is not None:
        valid = tf.range(steps)[:, None] < tf.cast(lens, tf.int32)[None, :]  # [steps, batch]
    ys, hs, cs = [], [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        cell = _cell(kind, acts[d * per:(d + 1) * per], _clip(attrs), attrs, w[d], r[d],
                     b[d] if b is not None else None, p[d] if p is not None else None)
        seq = x
        if reverse:
            seq = tf.reverse(x, [0]) if lens is None else tf.reverse_sequence(x, lens, seq_axis=0, batch_axis=1)
        h = h0[d] if h0 is not None else zeros
        c = c0[d] if c0 is not None else zeros
        out = []
        for t in range(steps):
            h_new, c_new = cell(seq[t], h, c)
            if valid is not None:  # past a sequence's end the state holds and the output is zero
                keep = valid[t][:, None]
                h, c = tf.where(keep, h_new, h), tf.where(keep, c_new, c)
                out.append(tf.where(keep, h_new, tf.zeros_like(h_new)))
            else:
                h, c = h_new, c_new
                out.append(h_new)
        y = tf.stack(out)
        if reverse:
            y = tf.reverse(y, [0]) if lens is None else tf.reverse_sequence(y, lens, seq_axis=0, batch_axis=1)
        ys.append(y)
        hs.append(h)
        cs.append(c)
    y = tf.stack(ys, axis=1)  # [steps, dirs, batch, hidden]
    y_h, y_c = tf.stack(hs), tf.stack(cs)
    if attrs.get("layout", 0):
        y, y_h, y_c = tf.transpose(y, [2, 0, 1, 3]), tf.transpose(y_h, [1, 0, 2]), tf.transpose(y_c, [1, 0, 2])
    return [y, y_h, y_c][: 3 if kind == "LSTM" else 2]


op("RNN")(_recurrent)
op("GRU")(_recurrent)
op("LSTM")(_recurrent)
