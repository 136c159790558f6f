"""Rewrite a model to compute in float64: the oracle that tells which variant is closer to exact math.

Float initializers, graph inputs/outputs/value_info, Constant and ConstantOfShape values, Cast targets and
`dtype` attributes of float type (float32, float16, bfloat16) become float64, in subgraphs too. Integer and
boolean tensors are untouched. Quantization ops keep their float scales (the spec requires float32 there).
"""
from __future__ import annotations

from typing import Any

_KEEP_FLOAT = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul"}


def promote_float64(model: Any) -> Any:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    _graph(out.graph)
    return out


def _float_types() -> set[int]:
    import onnx

    return {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def _tensor(t: Any) -> None:
    import numpy as np
    from onnx import numpy_helper

    if t.data_type in _float_types():
        arr = numpy_helper.to_array(t).astype(np.float64)
        t.CopyFrom(numpy_helper.from_array(arr, t.name))


def _value_info(vi: Any) -> None:
    if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.elem_type in _float_types():
        import onnx

        vi.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE


def _graph(graph: Any) -> None:
    import onnx

    keep = {i for n in graph.node if n.op_type in _KEEP_FLOAT for i in n.input}
    for t in graph.initializer:
        if t.name not in keep:
            _tensor(t)
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name not in keep:
            _value_info(vi)
    for node in graph.node:
        if node.op_type in _KEEP_FLOAT:
            continue
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                _tensor(attr.t)
            elif attr.type == onnx.AttributeProto.GRAPH:
                _graph(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _graph(g)
            elif attr.name in ("to", "dtype") and attr.type == onnx.AttributeProto.INT and attr.i in _float_types():
                attr.i = onnx.TensorProto.DOUBLE
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name in ("value_float", "value_floats"):
            import numpy as np
            from onnx import numpy_helper

            a = node.attribute[0]
            arr = np.array(a.f if a.name == "value_float" else list(a.floats), dtype=np.float64)
            del node.attribute[:]
            node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(arr)))
