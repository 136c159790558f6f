"""Transformer ops of recent opsets: Attention, RotaryEmbedding, LinearAttention, CausalConvWithState,
SwiGLU, TensorScatter. Arithmetic follows the order of the ONNX function bodies (scale split over Q and K,
softmax of masked scores, fully masked rows set to zero)."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..common import attention as shapes
from ..common.executor import OpContext
from .table import arg, axis_of, dtype, op, unsupported


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T, H*D) -> (B, H, T, D)."""
    return x.reshape(x.shape[0], x.shape[1], n, -1).transpose(1, 2)


def _frontier(bias: torch.Tensor, offset: Any, allowed_fn: shapes.Rule | None) -> torch.Tensor:
    """Add -inf where `allowed_fn(i + offset, j)` is false; a per-batch offset adds a batch axis."""
    if allowed_fn is None:
        return bias
    L, S = bias.shape[-2:]
    i = torch.arange(L, device=bias.device).reshape(L, 1)
    j = torch.arange(S, device=bias.device).reshape(1, S)
    if isinstance(offset, torch.Tensor):
        pos = i + offset.reshape(-1, 1, 1)
        allowed = allowed_fn(pos, j)
        add = torch.where(allowed, 0.0, float("-inf")).to(bias.dtype)
        return bias + add.reshape(add.shape[0], 1, L, S)
    allowed = allowed_fn(i + offset, j)
    return bias + torch.where(allowed, 0.0, float("-inf")).to(bias.dtype)


@op("Attention", since=23)
def attention(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    q, k, v = inputs[:3]
    mask, past_k, past_v, nonpad = arg(inputs, 3), arg(inputs, 4), arg(inputs, 5), arg(inputs, 6)
    rank3 = q.dim() == 3
    batch = q.shape[0]
    if rank3:
        q, k, v = _heads(q, attrs["q_num_heads"]), _heads(k, attrs["kv_num_heads"]), _heads(v, attrs["kv_num_heads"])
    root = torch.tensor(shapes.scale_root(attrs.get("scale"), q.shape[3]), dtype=q.dtype, device=q.device)
    if past_k is not None:
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
    present_k, present_v = k, v
    L, S = q.shape[2], k.shape[2]
    zeros = torch.zeros((L, S), dtype=q.dtype, device=q.device)
    if mask is not None and (short := shapes.mask_padding(mask.shape[-1], S)):
        mask = F.pad(mask, [0, short],
                     value=False if mask.dtype == torch.bool else float("-inf"))
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.where(mask, 0.0, float("-inf")).to(q.dtype)
    if past_k is None and nonpad is not None:
        offset = nonpad.reshape(-1).to(torch.int64) - L
    else:
        offset = past_k.shape[2] if past_k is not None else 0
    bias = _frontier(zeros if mask is None else zeros + mask, offset, shapes.position_rule(attrs))
    if nonpad is not None:
        keep = torch.arange(S, device=q.device).reshape(1, S) < nonpad.reshape(-1, 1)
        bias = bias + torch.where(keep, 0.0, float("-inf")).to(bias.dtype).reshape(batch, 1, 1, S)
    repeats = shapes.kv_repeats(q.shape[1], k.shape[1])
    if repeats > 1:
        k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
    qk = torch.matmul(q * root, k.transpose(2, 3) * root)
    softcap = attrs.get("softcap", 0.0)
    if softcap and softcap > 0:
        qk = torch.tanh(qk / softcap) * softcap
    scores = qk + bias
    mode = attrs.get("qk_matmul_output_mode", 0)
    exposed = scores if mode == 2 else qk
    if attrs.get("softmax_precision"):
        scores = scores.to(dtype(ctx, attrs["softmax_precision"]))
    probs = torch.softmax(scores, dim=-1)
    # A row whose bias is -inf everywhere attends to nothing: zeros, not softmax's NaN; other NaN becomes zero too.
    masked_row = torch.isneginf(bias.amax(dim=-1, keepdim=True))
    probs = torch.where(masked_row, torch.zeros((), dtype=probs.dtype, device=q.device), probs)
    probs = torch.nan_to_num(probs, nan=0.0) if torch.isnan(probs).any() else probs
    if mode == 3:
        exposed = probs
    y = torch.matmul(probs.to(q.dtype), v)
    if rank3:
        y = y.transpose(1, 2).reshape(batch, L, -1)
    return [y, present_k, present_v, exposed.to(q.dtype)]


@op("RotaryEmbedding", since=23)
def rotary_embedding(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, cos, sin, pos = inputs[0], inputs[1], inputs[2], arg(inputs, 3)
    shape = x.shape
    x = x.transpose(1, 2) if x.dim() == 4 else x.reshape(shape[0], shape[1], attrs["num_heads"], -1)
    dim = attrs.get("rotary_embedding_dim") or x.shape[3]
    rot, rest = x[..., :dim], x[..., dim:]
    if pos is not None:
        cos, sin = cos[pos.to(torch.int64)], sin[pos.to(torch.int64)]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    if attrs.get("interleaved"):
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot.chunk(2, dim=-1)
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if attrs.get("interleaved"):
        rot = torch.stack([real, imag], dim=-1).reshape(rot.shape)
    else:
        rot = torch.cat([real, imag], dim=-1)
    y = torch.cat([rot, rest], dim=-1)
    return y.reshape(shape) if len(shape) == 3 else y.transpose(1, 2)


@op("SwiGLU", since=28)
def swiglu(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, gate = inputs
    return x * torch.sigmoid(x * attrs.get("alpha", 1.0)) * gate


@op("TensorScatter", since=24)
def tensor_scatter(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    cache, update, where = inputs[0], inputs[1], arg(inputs, 2)
    ax = axis_of(attrs.get("axis", -2), cache.dim())
    out = cache.clone()
    starts = [0] * cache.shape[0] if where is None else [int(v) for v in where.tolist()]
    n, size = update.shape[ax], cache.shape[ax]
    for b, start in enumerate(starts):
        idx = torch.arange(start, start + n, device=cache.device)
        if attrs.get("mode", "linear") == "circular":
            idx = idx % size
        out[b].index_copy_(ax - 1, idx, update[b])
    return out


@op("CausalConvWithState", since=27)
def causal_conv_with_state(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, w, b, past = inputs[0], inputs[1], arg(inputs, 2), arg(inputs, 3)
    k = w.shape[2]
    if past is None:
        past = torch.zeros((x.shape[0], x.shape[1], k - 1), dtype=x.dtype, device=x.device)
    padded = torch.cat([past, x], dim=2)
    y = F.conv1d(padded, w, b, groups=x.shape[1])
    act = attrs.get("activation", "none")
    if act in ("silu", "swish"):
        y = F.silu(y.float()).to(x.dtype)
    elif act != "none":
        raise unsupported(ctx, f"activation={act}")
    return [y, padded[:, :, padded.shape[2] - (k - 1):]]


@op("LinearAttention", since=27)
def linear_attention(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    q, k, v = inputs[:3]
    past, decay, beta = arg(inputs, 3), arg(inputs, 4), arg(inputs, 5)
    hq, hk = attrs["q_num_heads"], attrs["kv_num_heads"]
    rule = attrs.get("update_rule", "gated_delta")
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    b, t = q.shape[:2]
    q4, k4, v4 = _heads(q, hq).float(), _heads(k, hk).float(), _heads(v, hk).float()
    dk, dv = q4.shape[-1], v4.shape[-1]
    if decay is not None:
        d4 = decay.reshape(b, t, hk, 1).transpose(1, 2) if decay.shape[-1] == hk else _heads(decay, hk)
        d4 = d4.float()
    if beta is not None:
        b4 = beta.reshape(b, t, beta.shape[-1], 1).transpose(1, 2).float()
    state = past.float().clone() if past is not None else q4.new_zeros((b, hk, dk, dv))
    scale = attrs.get("scale") or 1.0 / math.sqrt(dk)
    outs = []
    for i in range(t):
        k_t, v_t = k4[:, :, i], v4[:, :, i]
        if gating:
            state = state * torch.exp(d4[:, :, i]).unsqueeze(-1)
        if delta:
            v_t = b4[:, :, i] * (v_t - torch.einsum("bhdm,bhd->bhm", state, k_t))
        state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        read = state.repeat_interleave(hq // hk, dim=1) if hq != hk else state
        outs.append(scale * torch.einsum("bhd,bhdm->bhm", q4[:, :, i], read))
    y = torch.stack(outs, dim=2).transpose(1, 2).reshape(b, t, hq * dv)
    return [y.to(q.dtype), state.to(past.dtype if past is not None else q.dtype)]
