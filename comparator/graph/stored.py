"""How a model's weights are stored, and reading them in place.

The parent never holds a model's weights. `skim()` reads an .onnx file's protobuf wire format and returns the
model without them: every main-graph initializer whose `raw_data` is over `INLINE_MAX` bytes becomes an external
data reference into the .onnx file itself (location = the file's name, offset and length of its bytes there),
a valid ONNX model that reads the same weights from the same file. Tensors already stored as external data keep
their references. Skipped bytes are never read (the file is memory-mapped), so skimming a 2 GB model costs its
graph, not its weights.

Models derived from it (the tapped copy, the isolated model) are written into the work folder with the metadata
key `EXTERNAL_DIR_KEY` naming the folder their external data resolves against: the input model's folder. Every
backend loads models through `load()` (or, for ONNX Runtime, `external_dir()`), which honours it; so no weight is
ever copied, and external data stays confined to the model's folder (onnx's own checks apply as for any model).
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

EXTERNAL_DIR_KEY = "infercmp.external_data_dir"
INLINE_MAX = 1024  # initializers up to this many bytes stay inline (shape inference may read small ones)

# field numbers of onnx.proto
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 9, 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or malformed varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: Any, start: int, end: int):
    """(field number, wire type, start of the field's bytes, start of its value, end) for each field."""
    pos = start
    while pos < end:
        first = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, after = _varint(buf, pos, end)
        elif wire == _I64:
            after = pos + 8
        elif wire == _I32:
            after = pos + 4
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            after = pos + length
        else:
            raise WireError(f"unsupported wire type {wire}")
        if after > end or number == 0:
            raise WireError("field runs past the end of its message")
        yield number, wire, first, pos, after
        pos = after


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def _entry(key: str, value: str) -> bytes:
    return _len_field(_TENSOR_EXTERNAL_DATA, _len_field(_ENTRY_KEY, key.encode()) + _len_field(_ENTRY_VALUE,
                                                                                             value.encode()))


def _tensor(buf: Any, start: int, end: int, location: str) -> bytes:
    """A TensorProto's bytes, its raw_data (when over INLINE_MAX) replaced by a reference to where it lies."""
    raw = next(((s, e) for n, w, _, s, e in _fields(buf, start, end) if n == _TENSOR_RAW_DATA and w == _LEN), None)
    if raw is None or raw[1] - raw[0] <= INLINE_MAX:
        return bytes(buf[start:end])
    out = bytearray()
    for number, _, first, _, after in _fields(buf, start, end):
        if number not in (_TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION):
            out += buf[first:after]
    out += _entry("location", location) + _entry("offset", str(raw[0])) + _entry("length", str(raw[1] - raw[0]))
    out += _encode_varint(_TENSOR_DATA_LOCATION << 3 | _VARINT) + _encode_varint(_EXTERNAL)
    return bytes(out)


def _graph(buf: Any, start: int, end: int, location: str) -> bytes:
    out = bytearray()
    for number, wire, first, value, after in _fields(buf, start, end):
        if number == _GRAPH_INITIALIZER and wire == _LEN:
            out += _len_field(_GRAPH_INITIALIZER, _tensor(buf, value, after, location))
        else:
            out += buf[first:after]
    return bytes(out)


def skim(path: str | os.PathLike[str]) -> bytes:
    """The serialized model at `path` without its large embedded weights (see the module docstring).
    Raises WireError when the file is not a well-formed protobuf message."""
    p = Path(path)
    with p.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return b""
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            out = bytearray()
            for number, wire, first, value, after in _fields(buf, 0, len(buf)):
                if number == _MODEL_GRAPH and wire == _LEN:
                    out += _len_field(_MODEL_GRAPH, _graph(buf, value, after, p.name))
                else:
                    out += buf[first:after]
            return bytes(out)


def metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The model's metadata_props, read without parsing its graph."""
    found: dict[str, str] = {}
    with Path(path).open("rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return found
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            for number, wire, _, value, after in _fields(buf, 0, len(buf)):
                if number == _MODEL_METADATA and wire == _LEN:
                    entry = {n: bytes(buf[s:e]).decode("utf-8", "replace")
                             for n, w, _, s, e in _fields(buf, value, after) if w == _LEN}
                    found[entry.get(_ENTRY_KEY, "")] = entry.get(_ENTRY_VALUE, "")
    return found


def external_dir(path: str | os.PathLike[str]) -> Path:
    """The folder the model's external data resolves against: its own, unless a derived model names another."""
    named = metadata(path).get(EXTERNAL_DIR_KEY)
    return Path(named) if named else Path(path).resolve().parent


def load(path: str | os.PathLike[str], weights: bool = True) -> Any:
    """The model at `path` as an onnx.ModelProto with every weight loaded, wherever it is stored. With `weights`
    false, the weights stored as external data stay references: a backend that copies each into its own tensors
    reads them one at a time from `external_dir(path)` (`numpy_helper.to_array(t, base_dir)`), and never holds
    the model's weights twice."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    proto = onnx.load(str(path), load_external_data=False)
    if weights:
        load_external_data_for_model(proto, str(external_dir(path)))
    return proto


def save_derived(proto: Any, path: Path, source_dir: Path) -> Path:
    """Save a model derived from a skimmed one (its weights still in the input model's files) at `path`."""
    import onnx

    for entry in proto.metadata_props:
        if entry.key == EXTERNAL_DIR_KEY:
            entry.value = str(source_dir.resolve())
            break
    else:
        entry = proto.metadata_props.add()
        entry.key, entry.value = EXTERNAL_DIR_KEY, str(source_dir.resolve())
    onnx.save(proto, str(path))
    return path


def checkable(proto: Any) -> Any:
    """A copy of the skimmed model for onnx.checker: initializers stored as external data become typed graph
    inputs (their files are checked by graph/model.py; the checker would resolve them against the working
    directory)."""
    import onnx

    view = onnx.ModelProto()
    view.CopyFrom(proto)
    graph = view.graph
    inputs = {i.name for i in graph.input}
    kept = []
    for t in graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            kept.append(t)
        elif t.name not in inputs:
            graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return view
