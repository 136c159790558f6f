"""Load and validate an ONNX model; build its tensor catalogue.

Rules enforced here, each with an error that says what to do:
- the file exists, parses as a ModelProto and passes onnx.checker; its weights are never loaded (graph/stored.py);
- external data stays inside the model's folder (no absolute paths, no `..` escape, no symlink escape);
- the catalogue lists every node output of the main graph in topological order, typed by shape inference, and
  every node output inside its subgraphs under a stable name (graph/subgraphs.py), before the node that holds
  the subgraph.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError
from . import stored, subgraphs
from .digest import FileDigest


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the main graph: a node output (or a graph input passed straight to the outputs)."""

    name: str
    op_type: str
    node: str
    index: int
    shape: tuple[Any, ...] | None  # ints, dim names (str) or None per axis; None when rank is unknown
    elem_type: int | None  # onnx TensorProto element type; None when shape inference could not type it
    is_output: bool = False
    # Inside a subgraph: where it lives (`If_0/then`, `Loop_3/body/If_1/else`); "" in the main graph. Its
    # name is then the stable name of graph/subgraphs.py; only backends that record subgraph tensors give it.
    scope: str = ""

    @property
    def dtype(self) -> str | None:
        return _elem_name(self.elem_type)


@dataclass(frozen=True)
class InputSpec:
    name: str
    elem_type: int
    shape: tuple[Any, ...] | None
    kind: str = "tensor"  # the ONNX type's kind: tensor, sequence, optional, map, sparse_tensor

    @property
    def dtype(self) -> str:
        return _elem_name(self.elem_type) or "unknown"


@dataclass
class Model:
    path: Path
    proto: Any  # onnx.ModelProto without its large weights (graph/stored.py: they stay in the files), shapes inferred
    digest: str | FileDigest  # sha256 of its files, or the hashing under way: read it as `sha256`
    inputs: list[InputSpec]
    outputs: list[str]
    tensors: list[TensorInfo]
    notes: list[str] = field(default_factory=list)
    data_dir: Path | None = None  # where its weights' files are (the input model's folder); None: path's folder
    # the tensors' shapes for the inputs' shapes last asked about (graph/sizes.run_shapes): (inputs, shapes)
    sized: tuple[Any, dict[str, tuple[int, ...]]] | None = field(default=None, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        return self.digest if isinstance(self.digest, str) else self.digest.value

    @property
    def opsets(self) -> dict[str, int]:
        return {(o.domain or "ai.onnx"): o.version for o in self.proto.opset_import}

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "ir_version": self.proto.ir_version,
            "opsets": self.opsets,
            "producer": f"{self.proto.producer_name} {self.proto.producer_version}".strip(),
            "inputs": [{"name": i.name, "dtype": i.dtype, "shape": _jsonable(i.shape)} for i in self.inputs],
            "outputs": list(self.outputs),
            "nodes": len(self.proto.graph.node),
            "notes": list(self.notes),
        }


def _jsonable(shape: tuple[Any, ...] | None) -> list[Any] | None:
    return None if shape is None else list(shape)


def _elem_name(elem_type: int | None) -> str | None:
    if not elem_type:
        return None
    import onnx

    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def shape_of(type_proto: Any) -> tuple[tuple[Any, ...] | None, int | None]:
    """(dims, element type) of an ONNX type: each dim an int, a dim name or None (dynamic); (None, None) for a
    non-tensor type, dims None when the rank is unknown."""
    if type_proto is None or type_proto.WhichOneof("value") != "tensor_type":
        return None, None
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return None, tt.elem_type or None
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        # As ONNX Runtime reads them: a positive dim_value is fixed; a non-positive one (exporters write -1), a
        # missing one and an unnamed or "?" dim_param are dynamic and unnamed; any other dim_param is a name.
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param.strip() not in ("", "?"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims), tt.elem_type or None


def _all_graphs(graph: Any):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                yield from _all_graphs(attr.g)
            for g in attr.graphs:
                yield from _all_graphs(g)


def _external_tensors(model: Any):
    for graph in _all_graphs(model.graph):
        yield from graph.initializer
        yield from (s.values for s in graph.sparse_initializer)
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def check_external_data(model: Any, base_dir: Path) -> list[Path]:
    """Refuse external data outside the model's folder; return the data files used."""
    import onnx

    base = base_dir.resolve()
    files: list[Path] = []
    for tensor in _external_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location or os.path.isabs(location) or location.startswith(("\\", "/")):
            raise ModelError(f"tensor {tensor.name!r} has external data at {location!r}: absolute or empty "
                             "paths are refused", "external data files must sit in the model's folder")
        target = (base / location).resolve()
        if base not in target.parents and target != base:
            raise ModelError(f"tensor {tensor.name!r} points its external data outside the model's folder "
                             f"({location!r}); refused", "keep the data files next to the .onnx file")
        if not target.is_file():
            raise ModelError(f"external data file {location!r} of tensor {tensor.name!r} is missing",
                             f"expected it at {target}")
        if target not in files:
            files.append(target)
    return files


def load(path: str | os.PathLike[str], derived: bool = False) -> Model:
    """Load, validate and catalogue a model without holding its weights (graph/stored.py). Raises ModelError with
    a hint on every bad input. `derived`: a model infercmp wrote (graph/stored.save_derived), whose external data
    lies in the folder its metadata names; a user's model naming one is refused."""
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file {str(p)!r} does not exist", "check the path")
    if not p.is_file():
        raise ModelError(f"{str(p)!r} is not a file", "pass the path of a .onnx file")
    if p.stat().st_size == 0:
        raise ModelError(f"{str(p)!r} is empty", "re-export the model")
    real = p.resolve()  # weights are read from the file itself, wherever a link to it points
    try:
        proto = onnx.load_from_string(stored.skim(real))
    except (stored.WireError, DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{str(p)!r} is not a readable ONNX model ({type(exc).__name__}: {exc})",
                         "the file is truncated or not ONNX; re-export or re-download it") from None
    if not proto.HasField("graph") or not proto.opset_import:
        raise ModelError(f"{str(p)!r} parsed, but holds no graph or no opset import: truncated or not ONNX",
                         "re-export or re-download the model")
    named = {e.key: e.value for e in proto.metadata_props}.get(stored.EXTERNAL_DIR_KEY)
    if named and not derived:
        raise ModelError(f"{str(p)!r} carries the metadata key {stored.EXTERNAL_DIR_KEY!r}, which infercmp reserves "
                         "for its own copies of a model", "remove that metadata entry from the model")
    base = Path(named) if named else real.parent
    digest = FileDigest([real] + [f for f in check_external_data(proto, base) if f != real])
    try:
        onnx.checker.check_model(stored.checkable(proto))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if derived:  # infercmp wrote it from a model that passed: the rewrite is at fault, not the user's model
            raise ModelError(f"infercmp's rewritten copy of the model ({p.name}) fails the ONNX checker: {first}",
                             "this is a bug in infercmp: please report it with the model") from None
        raise ModelError(f"{str(p)!r} fails the ONNX checker: {first}",
                         "fix the exporter or the graph; onnx.checker.check_model shows the full message") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - inference is best effort; the model itself is valid
        inferred = proto
        note = f"shape inference failed ({type(exc).__name__}); only annotated tensors can be tapped"
    else:
        note = ""
    model = Model(path=p, proto=inferred, digest=digest, inputs=[], outputs=[], tensors=[],
                  data_dir=base)
    if note:
        model.notes.append(note)
    _catalogue(model)
    return model


def _catalogue(model: Model) -> None:
    graph = model.proto.graph
    init_names = {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    initializers = {i.name: i.data_type for i in graph.initializer}
    types: dict[str, Any] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        types[vi.name] = vi.type
    for vi in graph.input:
        if vi.name in init_names:
            continue
        shape, elem = shape_of(vi.type)
        kind = (vi.type.WhichOneof("value") or "tensor_type").removesuffix("_type")
        model.inputs.append(InputSpec(vi.name, elem or 0, shape, kind))
    model.outputs = [o.name for o in graph.output]
    outputs = set(model.outputs)
    seen: set[str] = set()
    inner_types: dict[str, Any] = {}
    for g in list(_all_graphs(graph))[1:]:
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            inner_types.setdefault(vi.name, vi.type)
    for index, node in enumerate(graph.node):
        for base, inner, out, loops in subgraphs.inside(node, index):
            shape, elem = shape_of(inner_types.get(out))
            for name in subgraphs.names(base, loops):
                if name not in seen:
                    seen.add(name)
                    model.tensors.append(TensorInfo(name, inner.op_type, inner.name, len(model.tensors), shape,
                                                    elem, False, base[:-len(out) - 1]))
        for name in node.output:
            if not name or name in seen:
                continue
            seen.add(name)
            shape, elem = shape_of(types.get(name))
            if elem is None:  # shape inference skipped it (an optional output): the op's schema may still say
                elem = _schema_type(node, list(node.output).index(name), model.opsets, types, initializers)
            model.tensors.append(TensorInfo(name, node.op_type, node.name, len(model.tensors), shape, elem,
                                            name in outputs))
    for name in model.outputs:  # a graph input or initializer passed straight through
        if name not in seen:
            shape, elem = shape_of(types.get(name))
            model.tensors.append(TensorInfo(name, "(input)", "", len(model.tensors), shape, elem, True))


def _schema_type(node: Any, index: int, opsets: dict[str, int], types: dict[str, Any],
                 initializers: dict[str, int]) -> int | None:
    """The element type of a node's output as its op's schema fixes it: a concrete type (`tensor(bool)`), or a
    type variable that one of the node's typed inputs binds (Dropout-7's mask is `T`, like its data). None when
    the schema leaves it open."""
    import onnx

    domain = node.domain or ""
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get(domain or "ai.onnx", 1), domain)
    except Exception:  # noqa: BLE001 - an op from an unknown domain: no schema
        return None
    if not schema.outputs:
        return None
    wanted = schema.outputs[min(index, len(schema.outputs) - 1)].type_str
    if wanted.startswith("tensor(") and wanted.endswith(")"):
        return _elem_from_str(wanted)
    for i, formal in enumerate(schema.inputs):
        if formal.type_str == wanted and i < len(node.input) and node.input[i]:
            name = node.input[i]
            elem = shape_of(types.get(name))[1] if name in types else initializers.get(name)
            if elem:
                return int(elem)
    allowed = next((list(c.allowed_type_strs) for c in schema.type_constraints if c.type_param_str == wanted), [])
    return _elem_from_str(allowed[0]) if len(allowed) == 1 else None


def _elem_from_str(type_str: str) -> int | None:
    """`tensor(float)` -> TensorProto.FLOAT; None for anything else."""
    import onnx

    inner = type_str[len("tensor("):-1] if type_str.startswith("tensor(") else ""
    names = {"float": "FLOAT", "double": "DOUBLE", "float16": "FLOAT16", "bool": "BOOL", "string": "STRING"}
    try:
        return int(onnx.TensorProto.DataType.Value(names.get(inner, inner.upper())))
    except ValueError:
        return None
