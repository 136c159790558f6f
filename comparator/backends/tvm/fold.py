"""Shape computations folded into constants, for input shapes that are all bound.

Exported models compute Reshape targets, Range bounds and Resize sizes from `Shape` of a tensor (Shape ->
Gather -> Concat -> Reshape). TVM's Relax ONNX frontend takes those operands only as constants, so it refuses
such a model even when every input shape is known. `fold_shapes` binds the input shapes, lets onnx's shape
inference give every tensor its shape, and replaces each node that computes only on constants and shapes by
initializers of its values, under the same tensor names, so taps line up.

What may be folded, so that every number of the model's tensors is still TVM's:
- `Shape` and `Size` of a tensor whose shape is static;
- an op of `_FOLDABLE` (index, shape and integer arithmetic) whose inputs are all constants, when one input
  is derived from a shape or its outputs are integer or boolean (exact arithmetic: whoever computes it gets the
  same value). Float arithmetic on weights is left to TVM.
Subgraphs (If/Loop/Scan) and ops of other domains are never folded. Values are computed with onnx.reference,
one node at a time. Nothing here imports TVM.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import numpy as np

VERSION = 1  # bump when what is folded changes: it is part of the compile cache's key
TOOL = "infercmp constant folding"
_MAX_ELEMENTS = 1 << 16  # larger constants stay computed by TVM
_ROUNDS = 8  # shape inference and folding alternate until nothing changes (sizes known only after a fold)
_FOLDABLE = {
    "Identity", "Cast", "CastLike", "Gather", "GatherElements", "GatherND", "Concat", "Unsqueeze", "Squeeze",
    "Slice", "Reshape", "Expand", "Flatten", "Tile", "Transpose", "Range", "ConstantOfShape", "Add", "Sub", "Mul",
    "Div", "Mod", "Neg", "Abs", "Floor", "Ceil", "Round", "Sqrt", "Reciprocal", "Max", "Min", "Clip", "Sign",
    "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "Where", "ReduceProd",
    "ReduceSum", "ReduceMax", "ReduceMin", "CumSum", "NonZero", "Split", "Pad",
}


def bound_shapes(proto: Any, shapes: Mapping[str, list[int]] | None) -> dict[str, list[int]] | None:
    """Every graph input's concrete shape (from `shapes`, else as declared), or None when one is unknown."""
    init = {t.name for t in proto.graph.initializer}
    out: dict[str, list[int]] = {}
    for vi in proto.graph.input:
        if vi.name in init:
            continue
        if shapes and vi.name in shapes:
            out[vi.name] = [int(d) for d in shapes[vi.name]]
            continue
        shape = _static(vi)
        if shape is None:
            return None
        out[vi.name] = list(shape)
    return out


def _static(vi: Any) -> tuple[int, ...] | None:
    """A value's declared shape when every dimension is a number (exporters write -1 for unknown ones)."""
    t = vi.type.tensor_type
    if vi.type.WhichOneof("value") != "tensor_type" or not t.HasField("shape") or \
            any(not d.HasField("dim_value") or d.dim_value < 0 for d in t.shape.dim):
        return None
    return tuple(d.dim_value for d in t.shape.dim)


def fold_shapes(proto: Any, shapes: Mapping[str, list[int]]) -> tuple[Any, dict[str, Any]]:
    """A copy of `proto` with its inputs bound to `shapes` and its shape computations folded (module docstring),
    and what was done: {"tool", "nodes_before", "nodes_after"}. Tensor names are kept; graph outputs that were
    folded become initializers of the same name."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for vi in model.graph.input:
        if vi.name in shapes:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for d in shapes[vi.name]:
                dims.add().dim_value = int(d)
    # A dimension declared -1 (exporters, tapped copies) would contradict the shape inference gives it.
    for vi in list(model.graph.output) + list(model.graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value < 0:
                d.ClearField("dim_value")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    before = len(model.graph.node)
    derived: set[str] = set()  # tensors computed from a shape, across rounds
    for _ in range(_ROUNDS):
        if not _fold_once(model, opset, derived):
            break
    return model, {"tool": TOOL, "nodes_before": before, "nodes_after": len(model.graph.node)}


def _static_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - a model inference cannot type still folds what its inputs' shapes give
        inferred = model
    g = inferred.graph
    out = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shape = _static(vi)
        if shape is not None:
            out[vi.name] = shape
    for t in g.initializer:
        out[t.name] = tuple(t.dims)
    return out


def _fold_once(model: Any, opset: int, derived: set[str]) -> bool:
    """One pass over the main graph; True when a node was folded. `derived` collects shape-derived tensors."""
    from onnx import numpy_helper

    graph = model.graph
    shapes = _static_shapes(model)
    inits = {t.name: t for t in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray | None:
        if name not in values and name in inits:
            t = inits[name]
            if int(np.prod(t.dims, dtype=np.int64)) > _MAX_ELEMENTS:
                return None
            values[name] = numpy_helper.to_array(t)
        return values.get(name)

    kept: list[Any] = []
    folded: dict[str, np.ndarray] = {}
    for node in graph.node:
        result = _evaluate(node, opset, shapes, value, derived)
        if result is None:
            kept.append(node)
            continue
        for name, array in zip(node.output, result):
            values[name] = folded[name] = array
        if node.op_type == "Constant":
            kept.append(node)  # dropped below if nothing reads it any more
    if not folded:
        return False
    used = {i for n in kept for i in _reads(n)} | {o.name for o in graph.output}
    kept = [n for n in kept if n.op_type != "Constant" or any(o in used for o in n.output)]
    constant_outputs = {o for n in kept for o in n.output}
    graph.initializer.extend(numpy_helper.from_array(a, name) for name, a in folded.items()
                             if name in used and name not in constant_outputs)
    folded_any = len(kept) < len(graph.node)
    del graph.node[:]
    graph.node.extend(kept)
    return folded_any


def _reads(node: Any) -> set[str]:
    """Tensors a node reads, its subgraphs' references to the outer scope included."""
    names = {i for i in node.input if i}
    for a in node.attribute:
        for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            for n in sub.node:
                names |= _reads(n)
    return names


def _evaluate(node: Any, opset: int, shapes: Mapping[str, tuple[int, ...]], value: Any,
              derived: set[str]) -> list[np.ndarray] | None:
    """The values of `node`'s outputs when it may be folded (module docstring), else None."""
    if node.domain not in ("", "ai.onnx") or any(a.HasField("g") or a.graphs for a in node.attribute):
        return None
    op = node.op_type
    if op in ("Shape", "Size"):
        shape = shapes.get(node.input[0])
        if shape is None:
            return None
        derived.update(node.output)
        if op == "Size":
            return [np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)]
        attrs = {a.name: a.i for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return [np.array(shape[start:end], dtype=np.int64)]
    if op != "Constant" and op not in _FOLDABLE:
        return None
    inputs = [value(i) if i else None for i in node.input]
    if any(a is None for i, a in zip(node.input, inputs) if i):
        return None
    from_shape = any(i in derived for i in node.input)
    try:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(node, opsets={"": opset})
        result = evaluator.run(None, {i: a for i, a in zip(node.input, inputs) if i})
    except Exception:  # noqa: BLE001 - a node the reference cannot evaluate stays for TVM
        return None
    arrays = [np.asarray(r) for r in result]
    if len(arrays) != len(node.output) or any(a.size > _MAX_ELEMENTS for a in arrays):
        return None
    if op != "Constant" and not from_shape and any(a.dtype.kind not in "iub" for a in arrays):
        return None
    if from_shape:
        derived.update(node.output)
    return arrays
