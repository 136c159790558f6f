"""Feeds: seeded random inputs per element type, or the user's .npz/.npy, checked against the signature.

Feeds always carry a leading sample axis: `feeds[name].shape == (samples, *input_shape)`. Workers run the
model once per sample; every tensor they write keeps that leading axis.
"""
from __future__ import annotations

import io
import math
import os
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError, UsageError
from ..fileio import available_memory, size_text
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


def resolve_shape(spec: InputSpec, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int | None, ...]:
    """The shape of one sample of `spec` as `shapes` (--shape) binds it; None for each dimension still unbound
    (see unbound_error). A dynamic first axis of rank 2 or more is the batch: DEFAULT_BATCH unless bound."""
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
    dims: list[int | None] = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int):
            dims.append(d)
        elif isinstance(d, str) and d in shapes and len(shapes[d]) == 1:
            dims.append(shapes[d][0])
        elif i == 0 and len(spec.shape) > 1:
            dims.append(DEFAULT_BATCH)  # a dynamic batch axis: one sample per run unless bound
        else:
            dims.append(None)
    return tuple(dims)


def with_batch(specs: Sequence[InputSpec], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """`shapes` with the named dimensions it binds implicitly: a name is one value wherever it appears (ONNX's
    symbolic dims). The names in an input's whole shape given by --shape take its values; a name that is some
    input's dynamic batch axis (its first, of rank 2 or more) is DEFAULT_BATCH unless bound. So `state [2, batch,
    128]` gets the batch that `input [batch, sequence]` does."""
    out = dict(shapes)
    inputs = {spec.name for spec in specs}

    def bind(name: Any, value: int) -> None:
        if isinstance(name, str) and name and name not in out and name not in inputs:
            out[name] = (value,)

    for spec in specs:  # an input's whole shape, given, binds the names of its dims
        if spec.name in shapes and spec.shape is not None and len(shapes[spec.name]) == len(spec.shape):
            for name, value in zip(spec.shape, shapes[spec.name]):
                bind(name, value)
    for spec in specs:
        if spec.name not in shapes and spec.shape is not None and len(spec.shape) > 1:
            bind(spec.shape[0], DEFAULT_BATCH)
    return out


def unbound_error(resolved: Sequence[tuple[InputSpec, tuple[int | None, ...]]]) -> InputError | None:
    """One error for every dimension that `resolve_shape` left unbound, in every input, with the --shape
    arguments that bind them all (a named dimension once, by its name; an unnamed one by its input's whole shape):
    one more try then runs. None when nothing is unbound."""
    found: list[str] = []
    hints: list[str] = []
    unbound = 0
    for spec, dims in resolved:
        gaps = [i for i, d in enumerate(dims) if d is None]
        if not gaps:
            continue
        unbound += len(gaps)
        names = [spec.shape[i] if spec.shape else None for i in gaps]
        found.append(f"input {spec.name!r} {_fmt(spec.shape)} has {'an ' if len(gaps) == 1 else ''}unbound "
                     f"dimension{'s' if len(gaps) > 1 else ''} "
                     + ", ".join(repr(d) if d else f"#{i}" for i, d in zip(gaps, names)))
        if all(names):
            hints.extend(f"--shape {d}=N" for d in names if f"--shape {d}=N" not in hints)
        else:
            hints.append(f"--shape {spec.name}=" + "x".join("N" if d is None else str(d) for d in dims))
    if not found:
        return None
    return InputError("; ".join(found), f"bind {'them' if unbound > 1 else 'it'}: " + " ".join(hints))


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

    if spec.kind != "tensor":
        raise InputError(f"input {spec.name!r} is a{'n' if spec.kind[0] in 'aeiou' else ''} {spec.kind}, not a "
                         "tensor: infercmp feeds tensor inputs only, not yet sequences, optionals or maps",
                         "compare a model whose inputs are tensors (e.g. a wrapper graph that builds the "
                         f"{spec.kind} from tensors)")
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(spec.elem_type))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"input {spec.name!r} has element type {spec.dtype} that infercmp cannot feed") from None


def make_feeds(model: Model, shapes: Mapping[str, tuple[int, ...]], seed: int = 0,
               samples: int = 1) -> dict[str, np.ndarray]:
    if samples < 1:
        raise UsageError("--samples must be >= 1")
    _check_shape_keys(model, shapes)
    shapes = with_batch(model.inputs, shapes)
    typed = [(spec, np_dtype(spec), resolve_shape(spec, shapes)) for spec in model.inputs]
    error = unbound_error([(spec, dims) for spec, _, dims in typed])
    if error is not None:
        raise error
    planned = [(spec, dtype, (samples, *(int(d) for d in dims if d is not None))) for spec, dtype, dims in typed]
    _check_memory([(spec.name, shape, dtype) for spec, dtype, shape in planned])
    feeds = {}
    for spec, dtype, shape in planned:
        # Seeded per input name, so adding an input to the model leaves the others' data unchanged.
        rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
        feeds[spec.name] = random_array(dtype, shape, rng)
    return feeds


def _check_memory(arrays: list[tuple[str, tuple[int, ...], np.dtype]]) -> None:
    """Refuse random feeds that would not fit in memory, saying how much they need, before allocating any."""
    have = available_memory()
    # Random floats are drawn in float64 first, then converted: count both while one input is made.
    sizes = [(name, shape, math.prod(shape) * (dtype.itemsize or 8), math.prod(shape) * 8)
             for name, shape, dtype in arrays]
    need = sum(s[2] for s in sizes) + max((s[3] for s in sizes), default=0)
    if have is not None and need > have:
        name, shape, nbytes, _ = max(sizes, key=lambda s: s[2])
        raise InputError(f"the random feeds need {size_text(need)} of memory (input {name!r} "
                         f"{'x'.join(map(str, shape))} alone {size_text(nbytes)}); {size_text(have)} is available",
                         "bind smaller dimensions with --shape, or use fewer --samples")


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
    kind = check_feed_file(p)
    try:
        if kind == "npy":
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
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InputError(f"inputs file {str(p)!r} is corrupt ({exc})",
                         "it is truncated or damaged; save it again with numpy.savez") from None
    except OSError as exc:
        raise InputError(f"cannot read inputs file {str(p)!r}: {exc.strerror or exc}") from None
    return check_feeds(model, raw, shapes or {}, source=p.name)


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_DEFLATE_RATIO = 1032  # deflate never expands more: a member declaring more is forged


def check_feed_file(path: str | Path, flag: str = "--inputs") -> str:
    """What an inputs file holds, "npz" or "npy" (by its bytes, not its name), after checking, without reading
    its data, that it is one of those, not truncated, and fits in memory; InputError otherwise."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p} is a folder, not an .npz or .npy file", "give the file holding the arrays")
    if not p.exists():
        raise InputError(f"inputs file {str(p)!r} does not exist", "check the path")
    if not p.is_file():
        raise InputError(f"{flag} {p} is not a regular file", "give an .npz or .npy file")
    try:
        with p.open("rb") as fh:
            head = fh.read(8)
            size = os.fstat(fh.fileno()).st_size
            if not head:
                raise InputError(f"inputs file {str(p)!r} is empty", "save the arrays with numpy.savez")
            if head.startswith(_NPY_MAGIC):
                fh.seek(0)
                arrays = [(p.name, _npy_header(fh, size, p.name))]
                kind = "npy"
            elif head.startswith(_ZIP_MAGIC):
                fh.seek(0)
                arrays = _npz_members(fh, p)
                kind = "npz"
            else:
                raise InputError(f"{flag} {p} is not an .npz or .npy file (it starts with {head!r})",
                                 "save the arrays with numpy.savez (keys = input names) or numpy.save")
    except OSError as exc:
        raise InputError(f"cannot read inputs file {str(p)!r}: {exc.strerror or exc}") from None
    need, have = sum(n for _, n in arrays), available_memory()
    if have is not None and need > have:
        raise InputError(f"{flag} {p} holds {size_text(need)} of arrays; {size_text(have)} of memory is available",
                         "use fewer samples per file")
    return kind


def _npy_header(fh: Any, available: int, name: str) -> int:
    """Bytes of data the .npy header at the file position declares, checked against the bytes that follow."""
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh, max_header_size=1 << 20)
    except (ValueError, EOFError, SyntaxError) as exc:
        raise InputError(f"{name} does not start with a readable .npy header ({exc})",
                         "the file is truncated or not written by numpy") from None
    nbytes = math.prod(shape) * dtype.itemsize
    left = available - fh.tell()
    if not dtype.hasobject and nbytes != left:
        raise InputError(f"{name}: its header declares {'x'.join(map(str, shape)) or 'a scalar'} {dtype} "
                         f"({size_text(nbytes)}), but {size_text(max(left, 0))} of data follow",
                         "the file is truncated or damaged; save it again")
    return nbytes


def _npz_members(fh: Any, p: Path) -> list[tuple[str, int]]:
    try:
        with zipfile.ZipFile(fh) as zf:
            found = []
            for info in zf.infolist():
                if info.compress_type != zipfile.ZIP_STORED and \
                        info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
                    raise InputError(f"inputs file {str(p)!r}: member {info.filename} declares {info.file_size} "
                                     f"bytes from {info.compress_size} compressed, more than deflate can produce",
                                     "the file is damaged or forged; save it again with numpy.savez")
                if info.filename.endswith(".npy"):
                    with zf.open(info) as member:  # the header only: a few hundred bytes decompressed
                        head = io.BytesIO(member.read(min(info.file_size, 1 << 16)))
                    found.append((info.filename, _npy_header(head, info.file_size, f"{p.name}:{info.filename}")))
            return found
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise InputError(f"inputs file {str(p)!r} is corrupt ({exc})",
                         "it is truncated or damaged; save it again with numpy.savez") from None


def as_declared(arr: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """`arr` viewed as `dtype` when it is raw bytes of that width: .npy files store ml_dtypes arrays (bfloat16,
    float8_*) as void (`|V2`, `|V1`), which NumPy reads back as such."""
    want = np.dtype(dtype) if not isinstance(dtype, str) else _dtype_named(dtype)
    raw = arr.dtype.type is np.void and not arr.dtype.names
    if raw and want is not None and want.type is not np.void and want.itemsize == arr.dtype.itemsize:
        return arr.view(want)
    return arr


def _dtype_named(name: str) -> np.dtype | None:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes

        found = getattr(ml_dtypes, name, None)
        return None if found is None else np.dtype(found)


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
        arr = as_declared(np.asarray(raw[spec.name]), np_dtype(spec))
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
