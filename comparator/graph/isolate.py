"""Origin vs propagation: replay every node alone, fed the reference's values of its inputs.

One rewritten model does it for all nodes at once (one worker per variant, not one per node): every node input
that another node produces is cut loose and becomes a graph input `NAME::ref`, fed with the reference's tapped
value. So each node computes from exact copies of the reference's inputs, and its output's error against the
reference is the error the node *adds* (local error). Initializers stay initializers; multi-output nodes keep all
outputs. Limits: only main-graph nodes are isolated (a subgraph of If/Loop/Scan still reads the values computed in
this run); a tensor without an inferred type, or that the reference did not record, cannot be fed, so its
consumers read the locally computed value;
and nodes no longer fuse with each other, so an error that only a fusion causes shows as accumulated, not local.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import stored
from .model import Model

FED = "::ref"


def isolated_model(model: Model, recorded: Mapping[str, Sequence[int]]) -> tuple[Any, list[str], list[str]]:
    """(model proto, tensors fed from the reference, tensors that could not be fed). `recorded`: the tensors the
    reference's tapped run holds, each with the shape of one sample; only these can be fed. A fed tensor's graph
    input takes the type shape inference gave it, its shape replaced by the recorded rank with every dim dynamic
    where the two disagree (no shape inferred, or shape inference and the runtime differ: Paddle's exports type a
    scalar Constant that ONNX Runtime returns with shape [1])."""
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    graph = proto.graph
    produced = {name for node in graph.node for name in node.output if name}
    typed = {vi.name: vi for vi in list(graph.value_info) + list(graph.output)
             if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.elem_type}
    fed: list[str] = []
    unfed: list[str] = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name not in produced:
                continue
            if name not in typed or name not in recorded:
                if name not in unfed:
                    unfed.append(name)
                continue
            node.input[i] = name + FED
            if name not in fed:
                fed.append(name)
                vi = graph.input.add()
                vi.CopyFrom(typed[name])
                vi.name = name + FED
                if not _fits(vi.type.tensor_type, recorded[name]):
                    vi.type.tensor_type.ClearField("shape")
                    vi.type.tensor_type.shape.dim.extend([onnx.TensorShapeProto.Dimension()] * len(recorded[name]))
    return proto, fed, unfed


def _fits(tensor_type: Any, shape: Sequence[int]) -> bool:
    """Whether a value of this shape fits the type's shape (same rank, equal static dims)."""
    if not tensor_type.HasField("shape") or len(tensor_type.shape.dim) != len(shape):
        return False
    return all(not d.HasField("dim_value") or d.dim_value == n for d, n in zip(tensor_type.shape.dim, shape))


def write(model: Model, folder: Path, recorded: Mapping[str, Sequence[int]]) -> tuple[Path, list[str], list[str]]:
    """Write the isolated model into folder (its weights read from the input model's files); see isolated_model."""
    proto, fed, unfed = isolated_model(model, recorded)
    path = stored.save_derived(proto, folder / "isolated.onnx", model.data_dir or model.path.resolve().parent)
    return path, fed, unfed
