"""What the tvm backend does to a model before TVM's Relax ONNX frontend sees it.

`check_model` refuses, before anything compiles, ops the frontend has no converter for (naming their nodes) and
element types TVM lacks, and rewrites Constant nodes to the one form the frontend reads. `shapes_as_tensors`
casts Shape-derived values where a converter wants a tensor. `parameter_inputs` names the graph inputs that the
frontend can only convert as constants (ONNX's former attributes: axes, k, pads...).
Nothing here imports TVM at import time.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import UnsupportedError

_NO_TVM_TYPE = {"STRING", "COMPLEX64", "COMPLEX128", "INT4", "UINT4", "INT2", "UINT2", "FLOAT4E2M1"}
# Converters registered under these names implement com.microsoft ops, not the ONNX op of the same name.
_MICROSOFT = {"Attention", "FastGelu", "BiasGelu", "MatMulInteger16", "SkipLayerNormalization",
              "EmbedLayerNormalization", "AllClassNMS"}
# Inputs that ONNX turned from attributes into tensors over the opsets (op -> input positions). TVM's frontend
# converts them only when they are constants; a graph input there gets its run's value bound at compile time.
_REDUCE = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
_PARAMETERS = {**{op: (1,) for op in _REDUCE}, "TopK": (1,), "Reshape": (1,), "Resize": (1, 2, 3),
               "Upsample": (1,), "OneHot": (1, 2), "Split": (1,), "CumSum": (1,), "Pad": (1, 2, 3),
               "NonMaxSuppression": (2, 3, 4), "Tile": (1,), "Expand": (1,), "Slice": (1, 2, 3, 4),
               "ConstantOfShape": (0,), "Unsqueeze": (1,), "Squeeze": (1,)}


def parameter_inputs(proto: Any, inputs: list[str]) -> set[str]:
    """The graph inputs (of `inputs`) that feed an op where ONNX's former attributes are inputs."""
    wanted = set(inputs)
    return {node.input[i] for node in proto.graph.node if node.domain in ("", "ai.onnx")
            for i in _PARAMETERS.get(node.op_type, ()) if i < len(node.input) and node.input[i] in wanted}


def check_model(proto: Any) -> None:
    """UnsupportedError for ops the Relax frontend has no converter for, and for element types TVM lacks.
    Also rewrites Constant nodes to the one attribute form the frontend reads (`value`)."""
    import onnx
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    convert = _get_convert_map()
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}
    missing: dict[str, list[str]] = {}  # "op X (opset N)" -> the nodes of that op
    types: set[int] = set()

    def walk(graph: Any) -> None:
        types.update(t.data_type for t in graph.initializer)
        for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
            types.add(vi.type.tensor_type.elem_type)
        for index, node in enumerate(graph.node):
            domain = "" if node.domain == "ai.onnx" else node.domain
            known = node.op_type in convert or (not domain and node.op_type in ("If", "Constant"))
            # The frontend keys converters by op name only: an op of another domain would be misread, and a few
            # names belong to com.microsoft ops whose semantics differ from the ONNX op of the same name.
            if domain not in ("", "com.microsoft") or not known or (not domain and node.op_type in _MICROSOFT):
                op = f"op {(domain + '.') if domain else ''}{node.op_type} (opset {opsets.get(domain, 1)})"
                missing.setdefault(op, []).append(node.name or f"#{index} of graph {graph.name or '(unnamed)'}")
            types.update(a.i for a in node.attribute if a.name in ("to", "output_dtype") and a.type == a.INT)
            if node.op_type == "Constant" and not domain:
                _constant_value(node)
            for a in node.attribute:
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    walk(sub)

    walk(proto.graph)
    if missing:
        listed = "; ".join(f"{op} ({_nodes(missing[op])})" for op in sorted(missing))
        raise UnsupportedError(f"TVM's Relax ONNX frontend has no converter for {listed}: the tvm backend cannot "
                               "run this model", "compare with the ort or ref backends")
    bad = sorted({onnx.TensorProto.DataType.Name(t) for t in types if t} & _NO_TVM_TYPE)
    if bad:
        raise UnsupportedError(f"element type {', '.join(bad)} is not supported by the tvm backend",
                               "TVM has no sub-byte, string or complex tensors")
    for vi in list(proto.graph.input) + list(proto.graph.output):
        if vi.type.WhichOneof("value") != "tensor_type":
            raise UnsupportedError(f"{vi.type.WhichOneof('value')} value {vi.name!r} is not supported by the tvm "
                                   "backend", "TVM's frontend takes and returns tensors only")


def _nodes(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"node{'s' if len(names) > 1 else ''} {', '.join(names[:shown])}{more}"


def _constant_value(node: Any) -> None:
    """value_float(s) / value_int(s) -> an equivalent `value` tensor (the only form TVM's frontend reads)."""
    from onnx import helper, numpy_helper

    for a in list(node.attribute):
        if a.name in ("value_float", "value_floats", "value_int", "value_ints"):
            data = {"value_float": a.f, "value_floats": list(a.floats), "value_int": a.i, "value_ints": list(a.ints)}
            array = np.array(data[a.name], dtype=np.float32 if "float" in a.name else np.int64)
            node.attribute.remove(a)
            node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(array)))
        elif a.name in ("value_string", "value_strings", "sparse_value"):
            raise UnsupportedError(f"Constant with {a.name} is not supported by the tvm backend",
                                   "TVM's frontend reads dense numeric constants only")


def unknown_dims_symbolic(graph: Any) -> int:
    """Give every dimension declared -1 (as exporters and tapped copies write an unknown one) a name instead:
    TVM's frontend would take -1 as a fixed size and reject every feed. Returns how many were renamed."""
    renamed = 0
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value < 0:
                d.dim_param = f"{vi.name}_dim{i}"
                renamed += 1
    return renamed


# Ops whose converters take a Relax shape value (the output of Shape) as input, and those that pass one on.
_TAKES_SHAPE = {"Reshape", "Resize", "ConstantOfShape", "Gather", "Slice", "Shape", "Expand", "Concat", "Equal",
                "Where", "Cast", "CastLike", "Squeeze"}
_PASSES_SHAPE = {"Gather", "Slice", "Concat", "Squeeze"}


def shapes_as_tensors(graph: Any) -> None:
    """Insert Cast(to=INT64) where a Shape-derived tensor feeds an op whose converter rejects Relax shape values:
    the frontend turns a cast shape into a tensor, and the value (int64 already) is unchanged."""
    from onnx import TensorProto, helper

    shaped: set[str] = set()
    casts: dict[str, Any] = {}
    nodes = []
    for node in graph.node:
        takes = node.op_type in _TAKES_SHAPE
        if node.domain in ("", "ai.onnx") and not takes:
            for i, name in enumerate(node.input):
                if name in shaped:
                    if name not in casts:
                        casts[name] = helper.make_node("Cast", [name], [f"{name}::tensor"], to=TensorProto.INT64)
                        nodes.append(casts[name])
                    node.input[i] = f"{name}::tensor"
        nodes.append(node)
        passes = takes and node.op_type in _PASSES_SHAPE and any(x in shaped for x in node.input)
        if node.op_type == "Shape" or passes:
            shaped.update(node.output)
    if casts:
        del graph.node[:]
        graph.node.extend(nodes)
