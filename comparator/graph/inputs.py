"""Feeds: seeded random inputs per element type, or the user's .npz/.npy, checked against the signature.

Feeds always carry a leading sample axis: `feeds[name].shape == (samples, *input_shape)`. Workers run the
model once per sample; every tensor they write keeps that leading axis.
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError, UsageError
from .model import InputSpec, Model

# What an unbound dynamic first axis of an input (of rank 2 or more) is set to in random feeds: the batch.
DEFAULT_BATCH = 1
_SHAPE = re.compile(r"^\s*([^=]+?)\s*=\s*(\d+(?:[x,]\d+)*)\s*$")


def parse_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """`--shape input=1x3x224x224` binds a whole input; `--shape batch=4` binds a named dimension."""
    out: dict[str, tuple[int, ...]] = {}
    for item in items:
        for part in (p for p in item.split(";") if p.strip()):
            m = _SHAPE.match(part)
            if not m:
                raise UsageError(f"--shape {part!r} is not NAME=DIMS", "e.g. --shape input=1x3x224x224 or batch=4")
            out[m.group(1)] = tuple(int(d) for d in re.split("[x,]", m.group(2)))
    return out


def resolve_shape(spec: InputSpec, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    if spec.name in shapes:
        given = shapes[spec.name]
        if spec.shape is not None:
            if len(given) != len(spec.shape):
                raise InputError(f"--shape {spec.name}={'x'.join(map(str, given))} has rank {len(given)}, "
                                 f"the model's input has rank {len(spec.shape)} {_fmt(spec.shape)}")
            for want, got in zip(spec.shape, given):
                if isinstance(want, int) and want != got:
                    raise InputError(f"--shape {spec.name}={'x'.join(map(str, given))} contradicts the model's "
                                     f"fixed shape {_fmt(spec.shape)}")
        return given
    if spec.shape is None:
        raise InputError(f"input {spec.name!r} has unknown rank", f"bind it: --shape {spec.name}=1x3x224x224")
    dims = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int):
            dims.append(d)
        elif isinstance(d, str) and d in shapes and len(shapes[d]) == 1:
            dims.append(shapes[d][0])
        elif i == 0 and len(spec.shape) > 1:
            dims.append(DEFAULT_BATCH)  # a dynamic batch axis: one sample per run unless bound
        else:
            label = repr(d) if d else f"#{i}"
            hint = f"--shape {d}=N" if d else f"--shape {spec.name}=" + "x".join(
                str(x) if isinstance(x, int) else "N" for x in spec.shape)
            raise InputError(f"input {spec.name!r} {_fmt(spec.shape)} has an unbound dimension {label}",
                             f"bind it: {hint}")
    return tuple(dims)


def _fmt(shape: Sequence[Any] | None) -> str:
    return "[?]" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def random_array(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values a model can take without tripping range checks: floats N(0,1) clipped to +-4, small
    non-negative integers (safe as indices and lengths), full range for 8-bit types, random bits for bool."""
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "fV" or dtype.name in ("bfloat16",) or dtype.name.startswith("float"):
        return np.clip(rng.standard_normal(size=shape), -4, 4).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(size=shape) + 1j * rng.standard_normal(size=shape)).astype(dtype)
    if dtype.kind in "iu":
        if dtype.itemsize == 1:
            info = np.iinfo(dtype)
            return rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)
        return rng.integers(0, 8, size=shape).astype(dtype)
    if dtype.kind in "OU":
        words = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])
        return words[rng.integers(0, len(words), size=shape)].astype(np.str_)
    raise InputError(f"cannot generate random data of type {dtype}", "pass --inputs FILE.npz")


def np_dtype(spec: InputSpec) -> np.dtype:
    import onnx

    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(spec.elem_type))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"input {spec.name!r} has element type {spec.dtype} that infercmp cannot feed") from None


def make_feeds(model: Model, shapes: Mapping[str, tuple[int, ...]], seed: int = 0,
               samples: int = 1) -> dict[str, np.ndarray]:
    if samples < 1:
        raise UsageError("--samples must be >= 1")
    _check_shape_keys(model, shapes)
    feeds = {}
    for spec in model.inputs:
        shape = resolve_shape(spec, shapes)
        # Seeded per input name, so adding an input to the model leaves the others' data unchanged.
        rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
        feeds[spec.name] = random_array(np_dtype(spec), (samples, *shape), rng)
    return feeds


def _check_shape_keys(model: Model, shapes: Mapping[str, tuple[int, ...]]) -> None:
    known = {s.name for s in model.inputs} | {d for s in model.inputs for d in (s.shape or ()) if isinstance(d, str)}
    for key in shapes:
        if key not in known:
            raise UsageError(f"--shape {key}=... names neither an input nor a dimension of the model",
                             f"inputs and named dimensions: {', '.join(sorted(known)) or '(none)'}")


def load_feeds(model: Model, path: str | Path, shapes: Mapping[str, tuple[int, ...]] | None = None
               ) -> dict[str, np.ndarray]:
    """User feeds from .npz (keys = input names) or .npy (single-input models). An array of the input's rank is
    one sample; one more leading axis is a stack of samples."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"inputs file {str(p)!r} does not exist")
    try:
        if p.suffix == ".npy":
            if len(model.inputs) != 1:
                raise InputError(f"{p.name} holds one array but the model has {len(model.inputs)} inputs",
                                 f"save an .npz with keys {', '.join(i.name for i in model.inputs)}")
            raw = {model.inputs[0].name: np.load(p, allow_pickle=False)}
        else:
            with np.load(p, allow_pickle=False) as npz:
                raw = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        raise InputError(f"cannot read {str(p)!r} without pickle ({exc})",
                         "save arrays with numpy (np.savez), not object arrays") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {str(p)!r}: {exc}", "the file is not a valid .npz/.npy") from None
    return check_feeds(model, raw, shapes or {}, source=p.name)


def check_feeds(model: Model, raw: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
                source: str = "inputs") -> dict[str, np.ndarray]:
    names = [i.name for i in model.inputs]
    missing = [n for n in names if n not in raw]
    if missing:
        raise InputError(f"{source} lacks input {missing[0]!r}", f"the model's inputs are: {', '.join(names)}")
    # Keys that name no input (labels, say) are ignored.
    feeds: dict[str, np.ndarray] = {}
    counts = set()
    for spec in model.inputs:
        arr = np.asarray(raw[spec.name])
        want = np_dtype(spec)
        if arr.dtype != want and not (want.kind in "OU" and arr.dtype.kind in "OU"):
            raise InputError(f"{source}: input {spec.name!r} is {arr.dtype}, the model wants {want}",
                             f"convert it, e.g. array.astype(np.{want.name})")
        rank = None if spec.shape is None else len(spec.shape)
        if rank is not None and arr.ndim == rank:
            arr = arr[None]
        elif rank is not None and arr.ndim != rank + 1:
            raise InputError(f"{source}: input {spec.name!r} has shape {arr.shape}, the model wants "
                             f"{_fmt(spec.shape)} (or a stack of samples of it)")
        if spec.shape is not None:
            for axis, (d, n) in enumerate(zip(spec.shape, arr.shape[1:])):
                bound = shapes.get(d) if isinstance(d, str) else None
                if (isinstance(d, int) and d != n) or (bound is not None and bound[0] != n):
                    raise InputError(f"{source}: input {spec.name!r} has shape {arr.shape[1:]}, the model wants "
                                     f"{_fmt(spec.shape)} (axis {axis} differs)")
        counts.add(arr.shape[0])
        feeds[spec.name] = arr
    if len(counts) > 1:
        raise InputError(f"{source}: inputs disagree on the number of samples ({sorted(counts)})")
    return feeds
