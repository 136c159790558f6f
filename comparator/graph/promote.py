"""Rewrite a model to compute in float64: the oracle that tells which variant is closer to exact math.

Float initializers, graph inputs/outputs/value_info (sequences and optionals of float tensors too), Constant and
ConstantOfShape values (ConstantOfShape's default float32 zero included), Cast targets and `dtype` attributes of
float type (float32, float16, bfloat16) become float64, in subgraphs too. Integer and
boolean tensors are untouched. Quantization ops keep their float scales (the spec allows no float64 there) and
compute as the model says: a Cast to the scale's type feeds each quantizer, and a Cast to float64 follows each
DequantizeLinear, so the float64 part of the graph meets them at well-typed borders.

Weights still stored as external data (a derived copy loaded with graph/stored.load(weights=False)) are left as
they are, float32 references into their file: `read_weights` reads each one and widens it as the rewrite widens an
inline one, so that a backend never holds the model's float32 weights, a float64 copy of the proto and its own
tensors at once (on a 2.3 GB model, 11 GiB).
"""
from __future__ import annotations

from typing import Any

# quantization ops and the positions of their float scales (x_scale, w_scale, y_scale...)
_SCALES = {"QuantizeLinear": (1,), "DequantizeLinear": (1,), "DynamicQuantizeLinear": (),
           "QLinearConv": (1, 4, 6), "QLinearMatMul": (1, 4, 6)}
_QUANTIZERS = ("QuantizeLinear", "DynamicQuantizeLinear")  # their input 0 is the float tensor to quantize


def promote_float64(model: Any) -> Any:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    _graph(out.graph)
    return out


def _float_types() -> set[int]:
    import onnx

    return {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def widened(model: Any) -> set[str]:
    """The main-graph initializers promote_float64 widens to float64: the float ones that are no quantization
    scale (external ones included, which it leaves to `read_weights`)."""
    graph = model.graph
    keep = _scales(graph)
    return {t.name for t in graph.initializer if t.data_type in _float_types() and t.name not in keep}


def read_weights(model: Any, base_dir: str, float64: bool) -> Any:
    """Each main-graph initializer of `model` stored as external data, as (name, array), read from `base_dir` one at
    a time; widened to float64 where promote_float64 widens (with `float64`)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    wide = widened(model) if float64 else set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            arr = numpy_helper.to_array(t, base_dir)
            yield t.name, arr.astype(np.float64) if t.name in wide else arr


def _scales(graph: Any) -> set[str]:
    """The quantization scales among a graph's values: they keep their float type."""
    return {n.input[i] for n in graph.node for i in _SCALES.get(n.op_type, ()) if i < len(n.input)}


def _tensor(t: Any) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if t.data_location == onnx.TensorProto.EXTERNAL:
        return  # a reference into the weights' file: read_weights reads and widens it
    if t.data_type in _float_types():
        arr = numpy_helper.to_array(t).astype(np.float64)
        t.CopyFrom(numpy_helper.from_array(arr, t.name))


def _value_info(vi: Any) -> None:
    _type(vi.type)


def _type(tp: Any) -> None:
    """A float tensor type, or a sequence or optional of one, becomes float64."""
    import onnx

    kind = tp.WhichOneof("value")
    if kind == "tensor_type" and tp.tensor_type.elem_type in _float_types():
        tp.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    elif kind == "sequence_type":
        _type(tp.sequence_type.elem_type)
    elif kind == "optional_type":
        _type(tp.optional_type.elem_type)


def _graph(graph: Any) -> None:
    import onnx

    keep = _scales(graph)
    for t in graph.initializer:
        if t.name not in keep:
            _tensor(t)
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name not in keep:
            _value_info(vi)
    for node in graph.node:
        if node.op_type in _SCALES or node.op_type == "Constant" and node.output[0] in keep:
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
        if node.op_type == "ConstantOfShape" and not node.attribute:  # the default value is a float32 zero
            import numpy as np
            from onnx import numpy_helper

            node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(np.zeros(1))))
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name in ("value_float", "value_floats"):
            import numpy as np
            from onnx import numpy_helper

            a = node.attribute[0]
            arr = np.array(a.f if a.name == "value_float" else list(a.floats), dtype=np.float64)
            del node.attribute[:]
            node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(arr)))
    _quantization_borders(graph)  # after the rewrite above, which would widen the Casts into the quantizers


def _quantization_borders(graph: Any) -> None:
    """Casts around the quantization ops: float64 -> the scale's type into quantizers, and the dequantized
    result (the scale's type) -> float64."""
    import onnx
    from onnx import helper

    scale_types = {t.name: t.data_type for t in graph.initializer}
    scale_types.update({n.output[0]: a.t.data_type for n in graph.node if n.op_type == "Constant"
                        for a in n.attribute if a.name == "value"})
    taken = {v for n in graph.node for v in list(n.input) + list(n.output)} | {i.name for i in graph.input}

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    nodes = []
    for node in graph.node:
        if node.op_type in _QUANTIZERS and node.input and node.input[0]:
            scale = node.input[1] if node.op_type == "QuantizeLinear" and len(node.input) > 1 else ""
            to = scale_types.get(scale, onnx.TensorProto.FLOAT)
            narrow = fresh(f"{node.input[0]}_{helper.tensor_dtype_to_np_dtype(to).name}")
            nodes.append(helper.make_node("Cast", [node.input[0]], [narrow], to=to,
                                          name=fresh("infercmp_float64_border")))
            node.input[0] = narrow
        nodes.append(node)
        if node.op_type == "DequantizeLinear" and node.output and node.output[0]:
            wide = node.output[0]
            node.output[0] = fresh(f"{wide}_dequantized")
            nodes.append(helper.make_node("Cast", [node.output[0]], [wide], to=onnx.TensorProto.DOUBLE,
                                          name=fresh("infercmp_float64_border")))
    del graph.node[:]
    graph.node.extend(nodes)
