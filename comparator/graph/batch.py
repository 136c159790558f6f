"""A model's leading (batch) dimension made dynamic, so that one sample can run alone and inside batches.

A model whose inputs already share a dynamic leading dim is used as it is. One exported with a fixed batch
(every input's leading dim the same number N) is rewritten: that dim of each input, and of each output whose
leading dim is N, becomes the named dim `batch`, the inferred shapes are dropped, and ONNX shape inference runs
again. The rewrite is refused, with the reason, where the graph pins the batch (a Reshape to a constant shape,
a Constant or an initializer shaped by it). A Reshape whose constant target starts with the exported batch is
rewritten to copy the input's leading dim (target 0), which is what exporters meant; any other node that still
fixes the leading dim of a batch-led tensor, or an output with a fixed leading dim, is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import model as model_mod
from . import stored
from .model import Model, TensorInfo

DIM = "batch"


@dataclass(frozen=True)
class Batchable:
    """The model to run at any batch size, the dim name to bind (`--shape NAME=B`), and how it was made."""

    model: Model
    dim: str | None  # the leading dim's name, None when unnamed (bound per input then)
    exported: int | None  # the fixed batch the model was exported with; None when it was dynamic already
    rewritten: bool


def dynamic(model: Model, folder: Path) -> Batchable:
    """`model` with a dynamic leading dim on every input (a rewritten copy in `folder` when needed)."""
    import onnx

    inputs = [i for i in model.inputs if i.kind == "tensor"]
    if not inputs:
        raise UsageError("the model has no tensor inputs: there is no batch to vary")
    for spec in inputs:
        if not spec.shape:
            raise UsageError(f"input {spec.name!r} has {'no known rank' if spec.shape is None else 'rank 0'}: "
                             "there is no leading (batch) dim to vary", "batch audits need inputs shaped [N, ...]")
    leads = {spec.shape[0] for spec in inputs if spec.shape}
    fixed = {d for d in leads if isinstance(d, int)}
    if not fixed:
        named = [d for d in leads if isinstance(d, str)]
        if len(named) > 1:
            raise UsageError(f"the inputs' leading dims have different names ({', '.join(sorted(named))})",
                             "batch audits need one batch dim shared by every input")
        return Batchable(model, named[0] if named else None, None, False)
    if len(fixed) > 1 or len(leads) > 1:
        raise UsageError(f"the inputs' leading dims differ ({', '.join(sorted(map(str, leads)))}): no shared "
                         "batch dim", "batch audits need every input shaped [N, ...] with one N")
    n = fixed.pop()
    proto = onnx.ModelProto()
    proto.ParseFromString(stored.skim(model.path.resolve()))
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}
    del graph.value_info[:]
    for vi in graph.input:
        if vi.name not in initializers:
            _rename_lead(vi, n)
    for vi in graph.output:
        _rename_lead(vi, n)
    # Exporters write a fixed batch into Reshape targets: copy the input's instead. Each pass frees the batch
    # further down the graph, so repeat (shape inference in memory) until nothing changes; then save and load once.
    for _ in range(len(graph.node)):
        if not _unpin_reshapes(proto, _shapes(proto), n):
            break
    path = stored.save_derived(proto, folder / "batch.onnx", model.data_dir or model.path.resolve().parent)
    loaded = model_mod.load(path, derived=True)
    shapes = {t.name: t.shape for t in loaded.tensors}
    for node in loaded.proto.graph.node:
        if node.op_type == "Reshape" and _lead(shapes, node.input[0]) == DIM and isinstance(
                _lead(shapes, node.output[0]), int):
            raise UsageError(f"the model was exported with batch {n}: Reshape node {node.name!r} reshapes to a "
                             "leading dim computed from something other than the batch, so the model cannot run "
                             "at other batch sizes", "re-export it with a dynamic batch dim "
                             "(torch.onnx.export(..., dynamic_axes=...) or dynamic_shapes)")
    by_name = {t.name: t for t in loaded.tensors}
    for out in loaded.outputs:
        t = by_name.get(out)
        if t is not None and t.shape and isinstance(t.shape[0], int):
            pin = _first_pin(loaded.tensors, t)
            raise UsageError(f"the model was exported with batch {n} and cannot run at other batch sizes: output "
                             f"{out!r} keeps a fixed leading dim {t.shape[0]}"
                             + (f", first fixed at {pin.name!r} ({pin.op_type} node {pin.node!r})" if pin else ""),
                             "re-export it with a dynamic batch dim (torch.onnx.export(..., dynamic_axes=...) "
                             "or dynamic_shapes), or audit batch sizes it allows")
    return Batchable(loaded, DIM, n, True)


def _lead(shapes: dict[str, tuple[Any, ...] | None], name: str) -> object:
    shape = shapes.get(name)
    return shape[0] if shape else None


def _shapes(proto: Any) -> dict[str, tuple[Any, ...] | None]:
    """Every typed value's shape after ONNX shape inference of `proto` (its weights are not read)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    g = inferred.graph
    return {vi.name: model_mod.shape_of(vi.type)[0] for vi in list(g.input) + list(g.value_info) + list(g.output)}


def _unpin_reshapes(proto: Any, shapes: dict[str, tuple[Any, ...] | None], n: int) -> bool:
    """Rewrite, in `proto`, each Reshape of a batch-led tensor (by `shapes`) whose constant target starts with the
    exported batch `n` so that it copies the input's leading dim (0) instead; True when any was rewritten."""
    import numpy as np
    from onnx import numpy_helper

    graph = proto.graph
    constants = {i.name: i for i in graph.initializer}
    made = {o: node for node in graph.node if node.op_type == "Constant" for o in node.output}
    changed = False
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or _lead(shapes, node.input[0]) != DIM:
            continue
        if any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        target = node.input[1]
        if target in constants:
            value = numpy_helper.to_array(constants[target])
        elif target in made and made[target].attribute and made[target].attribute[0].name == "value":
            value = numpy_helper.to_array(made[target].attribute[0].t)
        else:
            continue
        if value.ndim != 1 or not len(value) or int(value[0]) != n:
            continue
        fixed = value.astype(np.int64).copy()
        fixed[0] = 0
        name = f"{target}__batch_copy_{len(graph.initializer)}"
        graph.initializer.append(numpy_helper.from_array(fixed, name))
        node.input[1] = name
        changed = True
    return changed


def _rename_lead(vi: object, n: int) -> None:
    dims = vi.type.tensor_type.shape.dim  # type: ignore[attr-defined]
    if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == n:
        dims[0].dim_param = DIM


def _first_pin(tensors: list[TensorInfo], output: TensorInfo) -> TensorInfo | None:
    """The first tensor (in graph order) whose leading dim shape inference fixed, up to `output`: where the batch
    stops flowing (a Reshape to a constant shape, most often)."""
    for t in tensors:
        if t.index > output.index:
            break
        if t.shape and isinstance(t.shape[0], int) and t.op_type not in ("Constant", "Shape"):
            return t
    return None
