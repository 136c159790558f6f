"""Transformer ops of recent opsets (Attention, RotaryEmbedding, SwiGLU, TensorScatter, CausalConvWithState,
LinearAttention) and the loss ops. Arithmetic follows the order of the ONNX function bodies: the scale split
over Q and K, softcap before the mask, softmax of the masked scores, fully masked rows set to zero."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from ..common import attention as shapes
from ..common.executor import OpContext
from .table import arg, axis_of, dtype, ints, op, rank, unsupported


def _heads(x: Any, n: int) -> Any:
    """(B, T, H*D) -> (B, H, T, D)."""
    s = tf.shape(x)
    return tf.transpose(tf.reshape(x, tf.stack([s[0], s[1], n, -1])), [0, 2, 1, 3])


def _frontier(bias: Any, offset: Any, allowed: shapes.Rule | None) -> Any:
    """Add -inf where `allowed(i + offset, j)` is false; a per-batch offset (a tensor) adds a batch axis."""
    if allowed is None:
        return bias
    q, k = bias.shape[-2], bias.shape[-1]
    i = tf.range(q, dtype=tf.int64)[:, None]
    j = tf.range(k, dtype=tf.int64)[None, :]
    ninf = tf.constant(-np.inf, bias.dtype)
    if isinstance(offset, int):
        return bias + tf.where(allowed(i + offset, j), tf.zeros([], bias.dtype), ninf)
    pos = i[None] + tf.reshape(tf.cast(offset, tf.int64), [-1, 1, 1])
    add = tf.where(allowed(pos, j[None]), tf.zeros([], bias.dtype), ninf)
    return bias + tf.expand_dims(add, 1)


@op("Attention", since=23)
def attention(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    get = lambda i: inputs[i] if len(inputs) > i else None  # noqa: E731 - optional inputs
    q, k, v = inputs[:3]
    mask, past_k, past_v, nonpad = get(3), get(4), get(5), get(6)
    rank3 = rank(q) == 3
    if rank3:
        q, k, v = _heads(q, attrs["q_num_heads"]), _heads(k, attrs["kv_num_heads"]), _heads(v, attrs["kv_num_heads"])
    root = tf.cast(shapes.scale_root(attrs.get("scale"), q.shape[3]), q.dtype)
    if past_k is not None:
        k, v = tf.concat([past_k, k], 2), tf.concat([past_v, v], 2)
    present_k, present_v = k, v
    lq, lk = q.shape[2], k.shape[2]
    zeros = tf.zeros([lq, lk], q.dtype)
    ninf = tf.constant(-np.inf, q.dtype)
    if mask is not None and (short := shapes.mask_padding(mask.shape[-1], lk)):
        pad = [[0, 0]] * (rank(mask) - 1) + [[0, short]]
        mask = tf.pad(mask, pad, constant_values=False if mask.dtype == tf.bool else -np.inf)
    if mask is not None and mask.dtype == tf.bool:
        mask = tf.where(mask, tf.zeros([], q.dtype), ninf)
    offset: Any = past_k.shape[2] if past_k is not None else 0
    if past_k is None and nonpad is not None:
        offset = tf.cast(tf.reshape(nonpad, [-1]), tf.int64) - lq
    bias = _frontier(zeros if mask is None else zeros + mask, offset, shapes.position_rule(attrs))
    if nonpad is not None:
        keep = tf.range(lk, dtype=tf.int64)[None, :] < tf.reshape(tf.cast(nonpad, tf.int64), [-1, 1])
        bias = bias + tf.reshape(tf.where(keep, tf.zeros([], bias.dtype), ninf), [-1, 1, 1, lk])
    repeats = shapes.kv_repeats(q.shape[1], k.shape[1])
    if repeats > 1:
        k, v = tf.repeat(k, repeats, axis=1), tf.repeat(v, repeats, axis=1)
    qk = tf.linalg.matmul(q * root, k * root, transpose_b=True)
    softcap = attrs.get("softcap", 0.0)
    if softcap and softcap > 0:
        qk = tf.math.tanh(qk / softcap) * softcap
    scores = qk + bias
    mode = attrs.get("qk_matmul_output_mode", 0)
    exposed = scores if mode == 2 else qk
    if attrs.get("softmax_precision"):
        scores = tf.cast(scores, dtype(ctx, attrs["softmax_precision"]))
    probs = tf.nn.softmax(scores, axis=-1)
    # A row whose bias is -inf everywhere attends to nothing: zeros, not softmax's NaN.
    masked_row = tf.equal(tf.reduce_max(bias, axis=-1, keepdims=True), ninf)
    probs = tf.where(masked_row, tf.zeros([], probs.dtype), probs)
    # NaN from the inputs themselves (an inf score) becomes zero too, as in the torch executor.
    probs = tf.where(tf.math.is_nan(probs), tf.zeros([], probs.dtype), probs)
    if mode == 3:
        exposed = probs
    y = tf.linalg.matmul(tf.cast(probs, q.dtype), v)
    if rank3:
        s = tf.shape(y)
        y = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), tf.stack([s[0], lq, -1]))
    return [y, present_k, present_v, tf.cast(exposed, q.dtype)]


@op("RotaryEmbedding", since=23)
def rotary_embedding(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, cos, sin = inputs[:3]
    pos = arg(inputs, 3)
    shape = tf.shape(x)
    r = rank(x)
    if r == 4:
        x = tf.transpose(x, [0, 2, 1, 3])
    else:
        x = tf.reshape(x, tf.stack([shape[0], shape[1], attrs["num_heads"], -1]))
    dim = attrs.get("rotary_embedding_dim") or x.shape[3]
    rot, rest = x[..., :dim], x[..., dim:]
    if pos is not None:
        cos, sin = tf.gather(cos, tf.cast(pos, tf.int64)), tf.gather(sin, tf.cast(pos, tf.int64))
    cos, sin = cos[:, :, None], sin[:, :, None]
    interleaved = attrs.get("interleaved", 0)
    x1, x2 = (rot[..., 0::2], rot[..., 1::2]) if interleaved else tf.split(rot, 2, axis=-1)
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    rot = tf.reshape(tf.stack([real, imag], -1), tf.shape(rot)) if interleaved else tf.concat([real, imag], -1)
    y = tf.concat([rot, rest], -1)
    return tf.reshape(y, shape) if r == 3 else tf.transpose(y, [0, 2, 1, 3])


@op("SwiGLU", since=28)
def swiglu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, gate = inputs
    return x * tf.math.sigmoid(x * tf.cast(attrs.get("alpha", 1.0), x.dtype)) * gate


@op("TensorScatter", since=24)
def tensor_scatter(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    cache, update = inputs[:2]
    where = arg(inputs, 2)
    ax = axis_of(attrs.get("axis", -2), rank(cache))
    batch, n, size = cache.shape[0], update.shape[ax], cache.shape[ax]
    starts = [0] * batch if where is None else ints(ctx, where, "write_indices")
    rows = []
    for b, start in enumerate(starts):
        idx = np.arange(start, start + n)
        if attrs.get("mode", "linear") == "circular":
            idx = idx % size
        moved = tf.experimental.numpy.moveaxis(cache[b], ax - 1, 0)
        upd = tf.experimental.numpy.moveaxis(update[b], ax - 1, 0)
        moved = tf.tensor_scatter_nd_update(moved, idx[:, None], upd)
        rows.append(tf.experimental.numpy.moveaxis(moved, 0, ax - 1))
    return tf.stack(rows)


@op("CausalConvWithState", since=27)
def causal_conv_with_state(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w = inputs[:2]
    b = arg(inputs, 2)
    past = arg(inputs, 3)
    k = w.shape[2]
    if past is None:
        past = tf.zeros(tf.stack([tf.shape(x)[0], tf.shape(x)[1], k - 1]), x.dtype)
    padded = tf.concat([past, x], 2)
    # Depthwise 1-D convolution through TF's depthwise kernel (channels last, unit height).
    filt = tf.transpose(w, [2, 0, 1])[None]  # [1, k, C, 1]
    y = tf.nn.depthwise_conv2d(tf.transpose(padded, [0, 2, 1])[:, None], filt, [1, 1, 1, 1], "VALID")[:, 0]
    if b is not None:
        y = tf.nn.bias_add(y, b)
    y = tf.transpose(y, [0, 2, 1])
    act = attrs.get("activation", "none")
    if act in ("silu", "swish"):
        y = tf.cast(tf.nn.silu(tf.cast(y, tf.float32)), x.dtype)
    elif act != "none":
        raise unsupported(ctx, f"activation={act}")
    return [y, padded[:, :, padded.shape[2] - (k - 1):]]


@op("LinearAttention", since=27)
def linear_attention(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    get = lambda i: inputs[i] if len(inputs) > i else None  # noqa: E731 - optional inputs
    q, k, v = inputs[:3]
    past, decay, beta = get(3), get(4), get(5)
    hq, hk = attrs["q_num_heads"], attrs["kv_num_heads"]
    rule = attrs.get("update_rule", "gated_delta")
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    b, t = q.shape[0], q.shape[1]
    f32 = lambda x: tf.cast(x, tf.float32)  # noqa: E731
    q4, k4, v4 = f32(_heads(q, hq)), f32(_heads(k, hk)), f32(_heads(v, hk))
    dk, dv = q4.shape[-1], v4.shape[-1]
    if decay is not None:
        d4 = tf.transpose(tf.reshape(decay, [b, t, hk, 1]), [0, 2, 1, 3]) if decay.shape[-1] == hk \
            else _heads(decay, hk)
        d4 = f32(d4)
    if beta is not None:
        b4 = f32(tf.transpose(tf.reshape(beta, [b, t, beta.shape[-1], 1]), [0, 2, 1, 3]))
    state = f32(past) if past is not None else tf.zeros([b, hk, dk, dv], tf.float32)
    scale = attrs.get("scale") or 1.0 / math.sqrt(dk)
    outs = []
    for i in range(t):
        k_t, v_t = k4[:, :, i], v4[:, :, i]
        if gating:
            state = state * tf.math.exp(d4[:, :, i])[..., None]
        if delta:
            v_t = b4[:, :, i] * (v_t - tf.einsum("bhdm,bhd->bhm", state, k_t))
        state = state + k_t[..., None] * v_t[..., None, :]
        read = tf.repeat(state, hq // hk, axis=1) if hq != hk else state
        outs.append(scale * tf.einsum("bhd,bhdm->bhm", q4[:, :, i], read))
    y = tf.reshape(tf.transpose(tf.stack(outs, 2), [0, 2, 1, 3]), [b, t, hq * dv])
    return [tf.cast(y, q.dtype), tf.cast(state, past.dtype if past is not None else q.dtype)]
