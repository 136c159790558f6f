"""Resize/Upsample, GridSample and AffineGrid.

Resize uses `F.interpolate` where its arithmetic is ONNX's (nearest/asymmetric/floor, nearest-exact,
linear with half_pixel or align_corners, cubic with A=-0.75): that is torch's own kernel, the one a torch
model would run. Every other combination (other rounding modes, cubic coefficients, exclude_outside,
antialias, tf_crop_and_resize, keep_aspect_ratio_policy) is resized one axis at a time with per-axis
index/weight tables computed the way the ONNX specification defines them.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..common.executor import OpContext
from ..common.resize import axis_rois, nearest_indices, output_geometry, source_coordinates
from .table import arg, axis_of, op, unsupported

_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _coeffs(attrs: dict[str, Any], ratio: float, scale: float) -> np.ndarray:
    mode, aa = attrs["mode"], attrs.get("antialias", 0)
    if mode == "linear":
        if not aa:
            return np.array([1 - ratio, ratio])
        s = min(scale, 1.0)
        start = int(np.floor(-1 / s) + 1)
        c = np.clip(1 - np.abs((np.arange(start, start + 2 - 2 * start) - ratio) * s), 0, 1)
        return c / c.sum()
    A = attrs.get("cubic_coeff_a", -0.75)
    s = min(scale, 1.0) if aa else 1.0
    start = int(np.floor(-2 / s) + 1) if aa else -1
    t = np.abs(s * (np.arange(start, 2 - start) - ratio))
    c = np.where(t <= 1, (A + 2) * t ** 3 - (A + 3) * t ** 2 + 1,
                 np.where(t < 2, A * t ** 3 - 5 * A * t ** 2 + 8 * A * t - 4 * A, 0.0))
    return c / c.sum() if aa else c


def _resize_axis(x: torch.Tensor, ax: int, scale: float, n_out: int, attrs: dict[str, Any],
                 roi: Any) -> torch.Tensor:
    n_in = x.shape[ax]
    src, outside = source_coordinates(attrs["coordinate_transformation_mode"], n_in, n_out, scale, roi)
    work = x if x.is_floating_point() else x.double()
    if attrs["mode"] == "nearest":
        pick = nearest_indices(attrs.get("nearest_mode", "round_prefer_floor"), src, n_in)
        y = work.index_select(ax, torch.as_tensor(pick, device=x.device))
        return _extrapolate(x, y, ax, outside, attrs)
    base = np.floor(src).astype(np.int64)
    ratios = np.where(src == base, 1.0, src - base)
    coeffs = np.stack([_coeffs(attrs, float(r), scale) for r in ratios]) if n_out else np.zeros((0, 2))
    k = coeffs.shape[1]
    pad = int(np.ceil(k / 2))
    padded = src + pad
    p = np.floor(padded).astype(np.int64)
    frac = padded - p
    if k % 2 == 0:
        offset = np.where(frac == 0, -(k // 2), -(k // 2) + 1)
    else:
        offset = np.where(frac <= 0.5, -((k - 1) // 2), -((k - 1) // 2) + 1)
    idx = (p + offset)[:, None] + np.arange(k)[None, :] - pad
    if attrs.get("exclude_outside"):
        coeffs = np.where((idx < 0) | (idx >= n_in), 0.0, coeffs)
        total = coeffs.sum(axis=-1, keepdims=True)
        coeffs = coeffs / np.where(total == 0, 1.0, total)
    idx = np.clip(idx, 0, n_in - 1)
    gathered = work.index_select(ax, torch.as_tensor(idx.reshape(-1), device=x.device))
    gathered = gathered.reshape(*x.shape[:ax], n_out, k, *x.shape[ax + 1:])
    w = torch.as_tensor(coeffs, dtype=work.dtype, device=x.device).reshape(n_out, k, *[1] * (x.dim() - ax - 1))
    return _extrapolate(x, (gathered * w).sum(dim=ax + 1), ax, outside, attrs)


def _extrapolate(x: torch.Tensor, y: torch.Tensor, ax: int, outside: np.ndarray | None,
                 attrs: dict[str, Any]) -> torch.Tensor:
    """tf_crop_and_resize's extrapolation_value where the source falls outside, and x's dtype back."""
    n_out = y.shape[ax]
    if outside is not None and outside.any():
        mask = torch.as_tensor(outside, device=x.device).reshape(n_out, *[1] * (x.dim() - ax - 1))
        y = torch.where(mask, torch.full_like(y, attrs.get("extrapolation_value", 0.0)), y)
    return y if x.is_floating_point() else y.round().to(x.dtype)


def _torch_mode(attrs: dict[str, Any], dims: list[int], rank: int, sizes_given: bool,
                exact: bool) -> tuple[str, bool] | None:
    """The F.interpolate mode computing exactly this ONNX resize, if there is one."""
    if dims != list(range(rank - len(dims), rank)) or not dims or rank - len(dims) < 2 or attrs.get("antialias"):
        return None
    mode, coord = attrs["mode"], attrs["coordinate_transformation_mode"]
    if mode == "nearest":
        rule = attrs.get("nearest_mode", "round_prefer_floor")
        if coord == "asymmetric" and rule == "floor":
            return "nearest", False
        if coord == "half_pixel" and rule == "round_prefer_ceil" and sizes_given:
            return "nearest-exact", False
        return None
    if coord == "align_corners" and not exact:
        return None  # ONNX divides by scale * in - 1, torch by out - 1: equal only when out == scale * in
    if mode == "linear" and len(dims) <= 3 and coord in ("half_pixel", "align_corners"):
        return _LINEAR[len(dims)], coord == "align_corners"
    if mode == "cubic" and len(dims) == 2 and coord in ("half_pixel", "align_corners") \
            and attrs.get("cubic_coeff_a", -0.75) == -0.75 and not attrs.get("exclude_outside"):
        return "bicubic", coord == "align_corners"
    return None


def _resize(ctx: OpContext, x: torch.Tensor, roi: Any, scales: Any, sizes: Any,
            attrs: dict[str, Any]) -> torch.Tensor:
    r = x.dim()
    axes = [axis_of(v, r) for v in (attrs.get("axes") or range(r))]
    sc, out = output_geometry(list(x.shape), axes, scales, sizes, attrs.get("keep_aspect_ratio_policy", "stretch"))
    rois = axis_rois(roi, axes)
    if attrs["mode"] not in ("nearest", "linear", "cubic"):
        raise unsupported(ctx, f"mode={attrs['mode']}")
    changed = [d for d in range(r) if out[d] != x.shape[d] or not math.isclose(sc[d], 1.0)
               or (rois is not None and rois.get(d, (0.0, 1.0)) != (0.0, 1.0))]
    if attrs["coordinate_transformation_mode"] == "tf_crop_and_resize" and rois is None:
        raise unsupported(ctx, "tf_crop_and_resize without roi")
    fast = None if rois is not None and attrs["coordinate_transformation_mode"] == "tf_crop_and_resize" \
        else _torch_mode(attrs, changed, r, sizes is not None,
                         all(out[d] == sc[d] * x.shape[d] for d in changed))
    if fast is not None and x.is_floating_point():
        mode, corners = fast
        kwargs = {"align_corners": corners} if mode not in ("nearest", "nearest-exact") else {}
        if sizes is not None:
            return F.interpolate(x, size=[out[d] for d in changed], mode=mode, **kwargs)
        return F.interpolate(x, scale_factor=[sc[d] for d in changed], mode=mode, recompute_scale_factor=False,
                             **kwargs)
    for d in changed:
        x = _resize_axis(x, d, sc[d], out[d], attrs, None if rois is None else rois.get(d, (0.0, 1.0)))
    return x


def _floats(t: Any) -> list[float] | None:
    return None if t is None or t.numel() == 0 else [float(v) for v in t.reshape(-1).tolist()]


@op("Resize", since=11)
def resize(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, roi, scales, sizes = inputs[0], _floats(arg(inputs, 1)), _floats(arg(inputs, 2)), arg(inputs, 3)
    sizes = None if sizes is None or sizes.numel() == 0 else [int(v) for v in sizes.tolist()]
    return _resize(ctx, x, roi, None if sizes is not None else scales, sizes, attrs)


def _legacy(ctx: OpContext, x: torch.Tensor, scales: list[float], attrs: dict[str, Any]) -> torch.Tensor:
    mode = {"bilinear": "linear"}.get(attrs.get("mode", "nearest"), attrs.get("mode", "nearest"))
    legacy = {"mode": mode, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    return _resize(ctx, x, None, scales, None, legacy)


@op("Resize", since=10, until=10)
def resize_10(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    return _legacy(ctx, inputs[0], _floats(inputs[1]) or [], attrs)


@op("Upsample")
def upsample(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    scales = attrs.get("scales") if ctx.opset < 9 else _floats(inputs[1])
    return _legacy(ctx, inputs[0], list(scales or []), attrs)


_GRID_MODES = {"linear": "bilinear", "bilinear": "bilinear", "nearest": "nearest", "cubic": "bicubic",
               "bicubic": "bicubic"}


@op("GridSample", since=16)
def grid_sample(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    x, grid = inputs
    mode = _GRID_MODES.get(attrs["mode"])
    if mode is None or x.dim() - 2 not in (2, 3) or (x.dim() == 5 and mode == "bicubic"):
        raise unsupported(ctx, f"mode={attrs['mode']} on a {x.dim()}-D input")
    return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode=attrs["padding_mode"],
                         align_corners=bool(attrs["align_corners"]))


@op("AffineGrid", since=20)
def affine_grid(ctx: OpContext, inputs: list[Any], attrs: dict[str, Any]) -> Any:
    theta, size = inputs
    return F.affine_grid(theta, [int(v) for v in size.tolist()], align_corners=bool(attrs["align_corners"]))
