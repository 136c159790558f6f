"""Quantization (integer types), signal processing (DFT, STFT, windows), NonMaxSuppression, Col2Im and the
preview training optimizers."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..common.executor import OpContext, OpFn
from .table import arg, axis_of, const, dtype, ints, op, unsupported


def _window(fn: Callable[..., Any]) -> OpFn:
    def run(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        n = int(inputs[0].reshape(-1)[0])
        denom = n if attrs.get("periodic", 1) else n - 1
        k = torch.arange(n, dtype=torch.float64, device=inputs[0].device)
        return fn(2 * math.pi * k / denom).to(dtype(ctx, attrs.get("output_datatype", 1)))
    return run


op("HannWindow", since=17)(_window(lambda t: 0.5 - 0.5 * torch.cos(t)))
op("HammingWindow", since=17)(_window(lambda t: 25 / 46 - 21 / 46 * torch.cos(t)))
op("BlackmanWindow", since=17)(_window(lambda t: 0.42 - 0.5 * torch.cos(t) + 0.08 * torch.cos(2 * t)))


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] == 1:
        return x[..., 0].to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    return torch.complex(x[..., 0], x[..., 1])


def _as_pairs(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.stack([z.real, z.imag], dim=-1).to(like.dtype)


@op("DFT", since=17)
def dft(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, n = inputs[0], arg(inputs, 1)
    if ctx.opset >= 20:
        ax = int(inputs[2].reshape(-1)[0]) if arg(inputs, 2) is not None else -2
    else:
        ax = attrs.get("axis", 1)
    ax = axis_of(ax, x.dim())
    inverse, onesided = attrs.get("inverse", 0), attrs.get("onesided", 0)
    if n is None or n.numel() == 0:
        length = 2 * (x.shape[ax] - 1) if inverse and onesided else x.shape[ax]
    else:
        length = int(n.reshape(-1)[0])
    z = _as_complex(x)
    if inverse:
        if onesided:
            return torch.fft.irfft(z, n=length, dim=ax).unsqueeze(-1).to(x.dtype)
        return _as_pairs(torch.fft.ifft(z, n=length, dim=ax), x)
    y = torch.fft.fft(z, n=length, dim=ax)
    if onesided:
        y = y.narrow(ax, 0, length // 2 + 1)
    return _as_pairs(y, x)


@op("STFT", since=17)
def stft(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    signal, step, window, length = inputs[0], int(inputs[1].reshape(-1)[0]), arg(inputs, 2), arg(inputs, 3)
    n = int(length.reshape(-1)[0]) if length is not None else window.shape[0]
    z = _as_complex(signal)  # [batch, samples]
    frames = z.unfold(1, n, step)  # [batch, frames, n]
    if window is not None:
        frames = frames * window
    y = torch.fft.fft(frames, dim=-1)
    if attrs.get("onesided", 1):
        y = y[..., :n // 2 + 1]
    return _as_pairs(y, signal)


def _corners(boxes: torch.Tensor, center: int) -> torch.Tensor:
    if center:
        xc, yc, w, h = boxes.unbind(-1)
        return torch.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], dim=-1)
    y1, x1, y2, x2 = boxes.unbind(-1)
    return torch.stack([torch.minimum(y1, y2), torch.minimum(x1, x2), torch.maximum(y1, y2),
                        torch.maximum(x1, x2)], dim=-1)


@op("NonMaxSuppression", since=10)
def non_max_suppression(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    boxes, scores = inputs[0], inputs[1]
    limit = int(inputs[2].reshape(-1)[0]) if arg(inputs, 2) is not None and inputs[2].numel() else 0
    iou_t = float(inputs[3].reshape(-1)[0]) if arg(inputs, 3) is not None and inputs[3].numel() else 0.0
    score_t = float(inputs[4].reshape(-1)[0]) if arg(inputs, 4) is not None and inputs[4].numel() else None
    corners = _corners(boxes.double(), attrs.get("center_point_box", 0))
    area = (corners[..., 2] - corners[..., 0]) * (corners[..., 3] - corners[..., 1])
    found = []
    for b in range(scores.shape[0]):
        lo, hi = corners[b, :, :2], corners[b, :, 2:]
        inter = (torch.minimum(hi[:, None], hi[None]) - torch.maximum(lo[:, None], lo[None])).clamp(min=0).prod(-1)
        union = area[b][:, None] + area[b][None] - inter
        iou = torch.where((union > 0) & (inter > 0), inter / union, torch.zeros_like(inter))
        for c in range(scores.shape[1]):
            s = scores[b, c]
            order = torch.sort(s, descending=True, stable=True).indices.tolist()
            if score_t is not None:
                order = [i for i in order if float(s[i]) > score_t]
            kept: list[int] = []
            for i in order:
                if len(kept) >= limit:
                    break
                if all(float(iou[i, j]) <= iou_t for j in kept):
                    kept.append(i)
            found += [[b, c, i] for i in kept]
    return const(ctx, found, dt=torch.int64).reshape(-1, 3)


@op("Col2Im", since=18)
def col2im(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, image, block = inputs[0], ints(ctx, inputs[1]), ints(ctx, inputs[2])
    if len(image) != 2:
        raise unsupported(ctx, f"{len(image)} spatial dimensions (torch's fold is 2-D)")
    pads = list(attrs.get("pads") or [0] * 4)
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise unsupported(ctx, "asymmetric pads")
    return F.fold(x, tuple(image), tuple(block), dilation=tuple(attrs.get("dilations") or [1, 1]),
                  padding=tuple(pads[:2]), stride=tuple(attrs.get("strides") or [1, 1]))


_TRAINING = "ai.onnx.preview.training"


def _optimizer_groups(inputs: list[Any], per: int) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]]]:
    r, t, rest = inputs[0], inputs[1], inputs[2:]
    n = len(rest) // per
    return r, t, [[rest[k * n + i] for k in range(per)] for i in range(n)]


@op("Adagrad", domain=_TRAINING)
def adagrad(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    r, t, groups = _optimizer_groups(inputs, 3)
    rate = r / (1 + t * attrs["decay_factor"])
    xs_new, hs_new = [], []
    for x, g, h in groups:
        g = g + attrs["norm_coefficient"] * x
        h = h + g * g
        xs_new.append(x - rate * g / (torch.sqrt(h) + attrs["epsilon"]))
        hs_new.append(h)
    return xs_new + hs_new


@op("Momentum", domain=_TRAINING)
def momentum(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    r, t, groups = _optimizer_groups(inputs, 3)
    alpha, beta, lam = attrs["alpha"], attrs["beta"], attrs["norm_coefficient"]
    xs_new, vs_new = [], []
    for x, g, v in groups:
        g = g + lam * x
        b = beta if int(t) > 0 else 1.0
        v = alpha * v + b * g
        xs_new.append(x - r * (g + alpha * v) if attrs["mode"] == "nesterov" else x - r * v)
        vs_new.append(v)
    return xs_new + vs_new


@op("Adam", domain=_TRAINING)
def adam(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    r, t, groups = _optimizer_groups(inputs, 4)
    alpha, beta, lam, eps = attrs["alpha"], attrs["beta"], attrs["norm_coefficient"], attrs["epsilon"]
    outs: list[list[torch.Tensor]] = [[], [], []]
    for x, g, v, h in groups:
        g = g + lam * x
        v = alpha * v + (1 - alpha) * g
        h = beta * h + (1 - beta) * g * g
        root = torch.sqrt(h) + eps
        rate = r * torch.sqrt(1 - beta ** t) / (1 - alpha ** t) if int(t) > 0 else r
        x = x - rate * v / root
        x = x - attrs["norm_coefficient_post"] * x if attrs.get("norm_coefficient_post") else x
        for k, val in enumerate((x, v, h)):
            outs[k].append(val)
    return outs[0] + outs[1] + outs[2]
