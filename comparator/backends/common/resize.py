"""ONNX Resize's coordinate transformation, shared by the framework executors.

Where along an input axis each output position samples from, and which input position nearest mode reads: pure
NumPy on index vectors (no tensor data), so torch and TensorFlow build the same gather positions and weights from
one definition of the spec.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def source_coordinates(mode: str, n_in: int, n_out: int, scale: float, roi: tuple[float, float] | None) -> tuple[
        np.ndarray, np.ndarray | None]:
    """Source coordinate of every output position along one axis, and which ones fall outside (crop mode)."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in
    outside = None
    if mode == "align_corners":
        x = np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        lo, hi = roi if roi is not None else (0.0, 1.0)
        x = np.full(n_out, (hi - lo) * (n_in - 1) / 2) if width == 1 else y * (hi - lo) * (n_in - 1) / (width - 1)
        x = x + lo * (n_in - 1)
        outside = (x < 0) | (x > n_in - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise ValueError(mode)
    return x, outside


def output_geometry(shape: Sequence[int], axes: Sequence[int], scales: Sequence[float] | None,
                    sizes: Sequence[int] | None, policy: str = "stretch") -> tuple[list[float], list[int]]:
    """Per-axis scale and output size of a Resize over an input of `shape`: from `sizes` (with
    keep_aspect_ratio_policy) when given, else from `scales` (output = floor(input * scale))."""
    r = len(shape)
    if sizes is not None:
        out = list(shape)
        for d, n in zip(axes, sizes):
            out[d] = int(n)
        sc = [out[i] / shape[i] for i in range(r)]
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            s = pick(sc[d] for d in axes)
            sc = [s if i in axes else 1.0 for i in range(r)]
            out = [int(s * shape[i] + 0.5) if i in axes else shape[i] for i in range(r)]
        return sc, out
    sc = [1.0] * r
    for d, s in zip(axes, scales or []):
        sc[d] = float(s)
    return sc, [int(math.floor(shape[i] * sc[i])) for i in range(r)]


def axis_rois(roi: Sequence[float] | None, axes: Sequence[int]) -> dict[int, tuple[float, float]] | None:
    """tf_crop_and_resize's roi [starts..., ends...] over `axes` as {axis: (start, end)}; None when empty."""
    if roi is None or not len(roi):
        return None
    flat = [float(v) for v in np.asarray(roi, dtype=np.float64).reshape(-1)]
    k = len(flat) // 2
    return {d: (flat[i], flat[i + k]) for i, d in enumerate(axes)}


# ONNX nearest_mode: whether a source coordinate with fractional part `frac` (0 < frac < 1) rounds up to the
# next input position. An integer coordinate is that position in every mode.
NEAREST_ROUNDS_UP = {
    "round_prefer_floor": lambda frac: frac > 0.5,
    "round_prefer_ceil": lambda frac: frac >= 0.5,
    "floor": lambda frac: np.zeros_like(frac, dtype=bool),
    "ceil": lambda frac: frac > 0,
}


def nearest_indices(nearest_mode: str, coords: np.ndarray, n_in: int) -> np.ndarray:
    """The input position nearest Resize reads for each source coordinate (from `source_coordinates`), rounded as
    `nearest_mode` says and clamped into the input: int64 indices, for the framework's own gather."""
    base = np.floor(coords)
    frac = coords - base
    up = NEAREST_ROUNDS_UP[nearest_mode](frac) & (frac > 0)
    return np.clip(base + up, 0, n_in - 1).astype(np.int64)
