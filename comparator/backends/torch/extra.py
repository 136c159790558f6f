"""Quantization (integer types), signal processing (DFT, STFT, windows), NonMaxSuppression, Col2Im and the
preview training optimizers."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .table import FLOAT8, TABLE, arg, axis, const, dtype, ints, unsupported
from .math import to_type

reg = TABLE.register
_RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127), torch.uint16: (0, 65535), torch.int16: (-32768, 32767),
           torch.int32: (-2**31, 2**31 - 1)}


def _along(v: torch.Tensor, x: torch.Tensor, ax: int, block: int) -> torch.Tensor:
    """A scale/zero point made broadcastable to x: scalar, per-axis (1-D) or blocked."""
    if v.dim() == 0 or v.numel() == 1:
        return v.reshape(())
    if not block:
        shape = [1] * x.dim()
        shape[ax] = v.numel()
        return v.reshape(shape)
    return v.repeat_interleave(block, dim=ax).narrow(ax, 0, x.shape[ax])


@reg("QuantizeLinear", since=10)
def quantize_linear(ctx, xs, a):
    x, scale, zp = xs[0], xs[1], arg(xs, 2)
    ax, block = axis(a.get("axis", 1), x.dim()), a.get("block_size", 0)
    out = zp.dtype if zp is not None else (dtype(a["output_dtype"]) if a.get("output_dtype") else torch.uint8)
    if out not in _RANGES and out not in FLOAT8:
        raise unsupported(ctx, f"output type {out}")
    if a.get("precision"):
        p = dtype(a["precision"], "QuantizeLinear precision")
        y = x.to(p) / _along(scale, x, ax, block).to(p)
    else:
        y = x / _along(scale, x, ax, block)
    if out in FLOAT8:  # no zero point: the spec requires it to be 0
        return to_type(y, out, a.get("saturate", 1))
    q = torch.round(y).to(torch.int64)  # round half to even, as ONNX specifies
    if zp is not None:
        q = q + _along(zp.to(torch.int64), x, ax, block)
    lo, hi = _RANGES[out]
    return torch.clamp(q, lo, hi).to(out)


@reg("DequantizeLinear", since=10)
def dequantize_linear(ctx, xs, a):
    x, scale, zp = xs[0], xs[1], arg(xs, 2)
    ax, block = axis(a.get("axis", 1), x.dim()), a.get("block_size", 0)
    if x.dtype not in _RANGES and x.dtype not in FLOAT8:
        raise unsupported(ctx, f"input type {x.dtype}")
    dx = x.to(torch.float32)
    if zp is not None and x.dtype not in FLOAT8:
        dx = dx - _along(zp.to(torch.float32), x, ax, block)
    y = dx * _along(scale, x, ax, block)
    return y.to(dtype(a["output_dtype"]) if a.get("output_dtype") else scale.dtype)


@reg("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(ctx, xs, a):
    x = xs[0]
    lo = torch.clamp(x.min(), max=0.0)
    hi = torch.clamp(x.max(), min=0.0)
    scale = ((hi - lo) / 255.0).to(torch.float32)
    zp = torch.clamp(torch.round((0 - lo) / scale), 0, 255)
    y = torch.clamp(torch.round(x / scale) + zp, 0, 255)
    return [y.to(torch.uint8), scale, zp.to(torch.uint8)]


def _requantize(acc: torch.Tensor, factor: torch.Tensor, zp, like: torch.Tensor) -> torch.Tensor:
    out = zp.dtype if zp is not None else like.dtype
    d = acc.to(torch.float64) * factor.to(torch.float64)
    if zp is not None:
        d = d + zp.to(torch.float64)
    lo, hi = _RANGES[out]
    return torch.clamp(torch.round(d), lo, hi).to(out)


@reg("QLinearMatMul", since=10)
def qlinear_matmul(ctx, xs, a):
    qa, sa, za, qb, sb, zb, sy, zy = xs
    A = qa.to(torch.int64) - (za.to(torch.int64) if za is not None else 0)
    B = qb.to(torch.int64) - (zb.to(torch.int64) if zb is not None else 0)
    factor = sa.to(torch.float32) * sb.to(torch.float32) / sy.to(torch.float32)
    return _requantize(torch.matmul(A, B), factor.to(sa.dtype), zy, qa)


@reg("QLinearConv", since=10)
def qlinear_conv(ctx, xs, a):
    from .nn import conv

    x, sx, zx, w, sw, zw, sy, zy = xs[:8]
    b = arg(xs, 8)
    X = x.to(torch.float64) - (zx.to(torch.float64) if zx is not None else 0)
    W = w.to(torch.float64)
    if zw is not None:
        W = W - (zw.to(torch.float64).reshape(-1, *[1] * (w.dim() - 1)) if zw.numel() > 1 else zw.to(torch.float64))
    acc = conv(ctx, [X, W, None if b is None else b.to(torch.float64)], a)
    scale_w = sw.reshape(1, -1, *[1] * (x.dim() - 2)) if sw.numel() > 1 else sw
    return _requantize(acc, sx * scale_w / sy, zy, x)


def _window(fn):
    def run(ctx, xs, a):
        n = int(xs[0].reshape(-1)[0])
        denom = n if a.get("periodic", 1) else n - 1
        k = torch.arange(n, dtype=torch.float64, device=xs[0].device)
        return fn(2 * math.pi * k / denom).to(dtype(a.get("output_datatype", 1)))
    return run


reg("HannWindow", since=17)(_window(lambda t: 0.5 - 0.5 * torch.cos(t)))
reg("HammingWindow", since=17)(_window(lambda t: 25 / 46 - 21 / 46 * torch.cos(t)))
reg("BlackmanWindow", since=17)(_window(lambda t: 0.42 - 0.5 * torch.cos(t) + 0.08 * torch.cos(2 * t)))


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] == 1:
        return x[..., 0].to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    return torch.complex(x[..., 0], x[..., 1])


def _as_pairs(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.stack([z.real, z.imag], dim=-1).to(like.dtype)


@reg("DFT", since=17)
def dft(ctx, xs, a):
    x, n = xs[0], arg(xs, 1)
    if ctx.opset >= 20:
        ax = int(xs[2].reshape(-1)[0]) if arg(xs, 2) is not None else -2
    else:
        ax = a.get("axis", 1)
    ax = axis(ax, x.dim())
    inverse, onesided = a.get("inverse", 0), a.get("onesided", 0)
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


@reg("STFT", since=17)
def stft(ctx, xs, a):
    signal, step, window, length = xs[0], int(xs[1].reshape(-1)[0]), arg(xs, 2), arg(xs, 3)
    n = int(length.reshape(-1)[0]) if length is not None else window.shape[0]
    z = _as_complex(signal)  # [batch, samples]
    frames = z.unfold(1, n, step)  # [batch, frames, n]
    if window is not None:
        frames = frames * window
    y = torch.fft.fft(frames, dim=-1)
    if a.get("onesided", 1):
        y = y[..., :n // 2 + 1]
    return _as_pairs(y, signal)


def _corners(boxes: torch.Tensor, center: int) -> torch.Tensor:
    if center:
        xc, yc, w, h = boxes.unbind(-1)
        return torch.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], dim=-1)
    y1, x1, y2, x2 = boxes.unbind(-1)
    return torch.stack([torch.minimum(y1, y2), torch.minimum(x1, x2), torch.maximum(y1, y2),
                        torch.maximum(x1, x2)], dim=-1)


@reg("NonMaxSuppression", since=10)
def non_max_suppression(ctx, xs, a):
    boxes, scores = xs[0], xs[1]
    limit = int(xs[2].reshape(-1)[0]) if arg(xs, 2) is not None and xs[2].numel() else 0
    iou_t = float(xs[3].reshape(-1)[0]) if arg(xs, 3) is not None and xs[3].numel() else 0.0
    score_t = float(xs[4].reshape(-1)[0]) if arg(xs, 4) is not None and xs[4].numel() else None
    corners = _corners(boxes.double(), a.get("center_point_box", 0))
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


@reg("Col2Im", since=18)
def col2im(ctx, xs, a):
    x, image, block = xs[0], ints(xs[1]), ints(xs[2])
    if len(image) != 2:
        raise unsupported(ctx, f"{len(image)} spatial dimensions (torch's fold is 2-D)")
    pads = list(a.get("pads") or [0] * 4)
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise unsupported(ctx, "asymmetric pads")
    return F.fold(x, image, block, dilation=list(a.get("dilations") or [1, 1]), padding=pads[:2],
                  stride=list(a.get("strides") or [1, 1]))


_TRAINING = "ai.onnx.preview.training"


def _optimizer_groups(xs, per: int) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]]]:
    r, t, rest = xs[0], xs[1], xs[2:]
    n = len(rest) // per
    return r, t, [[rest[k * n + i] for k in range(per)] for i in range(n)]


@reg("Adagrad", domain=_TRAINING)
def adagrad(ctx, xs, a):
    r, t, groups = _optimizer_groups(xs, 3)
    rate = r / (1 + t * a["decay_factor"])
    xs_new, hs_new = [], []
    for x, g, h in groups:
        g = g + a["norm_coefficient"] * x
        h = h + g * g
        xs_new.append(x - rate * g / (torch.sqrt(h) + a["epsilon"]))
        hs_new.append(h)
    return xs_new + hs_new


@reg("Momentum", domain=_TRAINING)
def momentum(ctx, xs, a):
    r, t, groups = _optimizer_groups(xs, 3)
    alpha, beta, lam = a["alpha"], a["beta"], a["norm_coefficient"]
    xs_new, vs_new = [], []
    for x, g, v in groups:
        g = g + lam * x
        b = beta if int(t) > 0 else 1.0
        v = alpha * v + b * g
        xs_new.append(x - r * (g + alpha * v) if a["mode"] == "nesterov" else x - r * v)
        vs_new.append(v)
    return xs_new + vs_new


@reg("Adam", domain=_TRAINING)
def adam(ctx, xs, a):
    r, t, groups = _optimizer_groups(xs, 4)
    alpha, beta, lam, eps = a["alpha"], a["beta"], a["norm_coefficient"], a["epsilon"]
    outs: list[list[torch.Tensor]] = [[], [], []]
    for x, g, v, h in groups:
        g = g + lam * x
        v = alpha * v + (1 - alpha) * g
        h = beta * h + (1 - beta) * g * g
        root = torch.sqrt(h) + eps
        rate = r * torch.sqrt(1 - beta ** t) / (1 - alpha ** t) if int(t) > 0 else r
        x = x - rate * v / root
        x = x - a["norm_coefficient_post"] * x if a.get("norm_coefficient_post") else x
        for k, val in enumerate((x, v, h)):
            outs[k].append(val)
    return outs[0] + outs[1] + outs[2]
