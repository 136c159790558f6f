"""Shape inference that follows computed shapes: a graph that reshapes by `Reshape(x, Concat(Slice(Shape(y)), c))`
has an output shape only once that small integer computation is evaluated. ONNX's data propagation follows it at
opset 17 but not at opset 12, PaddleOCR's recognizer's (tests/test_sizes.py builds both).

`infer(proto)` alternates onnx shape inference with evaluating, on onnx's reference runtime, the nodes that compute
a small tensor from values known before the run: `Shape` and `Size` of a tensor whose shape inference fixed,
constants, small inline initializers, and the cheap integer and shape ops below over those. Each value a node that
does not fold reads, where inference left one of that node's outputs without a shape, is fed to it as an
initializer, and inference runs again, until nothing more folds. Ops whose output may be large for a small input
(ConstantOfShape, Expand, Tile, Range) and ops that depend on data (NonZero, TopK) never fold: what they feed keeps
its inferred shape, or none.
"""
from __future__ import annotations

from typing import Any

import numpy as np

ROUNDS = 8  # inference passes at most: each folds at least one more node, and real graphs settle in two or three
SMALL = 1024  # elements: constants and computed values over this are left alone
FOLDABLE = frozenset({
    "Abs", "Add", "And", "Cast", "Ceil", "Concat", "Constant", "Div", "Equal", "Flatten", "Floor", "Gather",
    "Greater", "GreaterOrEqual", "Identity", "Less", "LessOrEqual", "Max", "Min", "Mod", "Mul", "Neg", "Not", "Or",
    "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSum", "Reshape", "Shape", "Size", "Slice", "Squeeze",
    "Sub", "Transpose", "Unsqueeze", "Where",
})


def infer(proto: Any) -> Any:
    """A shape-inferred copy of `proto` (left as it is) in which every computation that fixes a shape and can be
    evaluated before the run feeds its value to the nodes that read it; inference's own exceptions are the
    caller's."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    for _ in range(ROUNDS):
        if not _fold(inferred):
            break
        inferred = onnx.shape_inference.infer_shapes(inferred, check_type=False, strict_mode=False, data_prop=True)
    return inferred


def known_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """The inferred shapes of `graph`'s inputs, values and outputs whose every dim is a number. Unlike a model's own
    annotations, where a dim of 0 means dynamic as ONNX Runtime reads them (model.shape_of), an inferred dim of 0 is
    an empty axis."""
    found = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = vi.type
        if t.WhichOneof("value") == "tensor_type" and t.tensor_type.HasField("shape") and all(
                d.HasField("dim_value") and d.dim_value >= 0 for d in t.tensor_type.shape.dim):
            found[vi.name] = tuple(int(d.dim_value) for d in t.tensor_type.shape.dim)
    return found


def _fold(proto: Any) -> bool:
    """One round: evaluate the foldable nodes whose values a node that does not fold reads while shape inference
    left one of its outputs without a shape, and feed that node the values as initializers (`<name>.folded`: the
    folding nodes stay, so that every tensor keeps its producer). Whether any was fed."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    shapes = known_shapes(graph)
    values: dict[str, np.ndarray] = {}  # known before the run
    for init in graph.initializer:
        if init.data_location != init.EXTERNAL and np.prod(init.dims, dtype=np.int64) <= SMALL:
            values[init.name] = numpy_helper.to_array(init)
    producer: dict[str, Any] = {}  # output -> the folding node that makes it
    for node in graph.node:
        if node.op_type not in FOLDABLE or node.domain not in ("", "ai.onnx") or any(
                a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute):
            continue
        if node.op_type in ("Shape", "Size"):
            if node.input[0] in shapes:
                values[node.output[0]] = _shape_value(node, shapes[node.input[0]])
                producer[node.output[0]] = node
        elif node.op_type == "Constant" and not _small_constant(node):
            continue  # weights stored as a Constant node: never read into this process
        elif all(not name or name in values or name in producer for name in node.input):
            producer.update((name, node) for name in node.output)
    folding = {id(n) for n in producer.values()}
    # what a node that does not fold reads from them, where inference could not shape one of its outputs
    targets = [(node, i, name) for node in graph.node if id(node) not in folding
               and any(out and out not in shapes for out in node.output)
               for i, name in enumerate(node.input) if name in producer]
    if not targets:
        return False
    chosen: dict[int, Any] = {}
    todo = [name for _, _, name in targets]
    while todo:  # the folding nodes the targets need, and theirs
        node = producer.get(todo.pop())
        if node is not None and id(node) not in chosen:
            chosen[id(node)] = node
            todo.extend(node.input)
    ordered = [n for n in graph.node if id(n) in chosen]  # graph order: each after what it reads
    measured = [n for n in ordered if n.op_type in ("Shape", "Size")]
    computed = [n for n in ordered if n.op_type not in ("Shape", "Size")]
    if computed:
        constants = [helper.make_node("Constant", [], [n.output[0]], value=numpy_helper.from_array(values[n.output[0]]))
                     for n in measured]
        given = sorted({name for n in computed for name in n.input if name and name not in producer})
        values.update(_evaluate(proto, constants + computed, {name: values[name] for name in given},
                                [name for n in computed for name in n.output]))
    fed = 0
    for node, i, name in targets:
        if name in values and values[name].size <= SMALL:
            if f"{name}.folded" not in values:
                graph.initializer.append(numpy_helper.from_array(np.asarray(values[name]), f"{name}.folded"))
                values[f"{name}.folded"] = values[name]
            node.input[i] = f"{name}.folded"
            fed += 1
    return fed > 0


def _small_constant(node: Any) -> bool:
    """Whether a Constant node's value holds SMALL elements or fewer."""
    for a in node.attribute:
        if a.name == "value":
            return bool(np.prod(a.t.dims, dtype=np.int64) <= SMALL)
        if a.name in ("value_ints", "value_floats", "value_strings"):
            return len(a.ints) + len(a.floats) + len(a.strings) <= SMALL
        if a.name in ("value_int", "value_float", "value_string"):
            return True
    return False  # sparse_value


def _shape_value(node: Any, shape: tuple[int, ...]) -> np.ndarray:
    """What a Shape (with its start and end, opset 15) or Size node gives for an input of this shape."""
    if node.op_type == "Size":
        return np.array(int(np.prod(shape, dtype=np.int64)), np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.array(shape[slice(start, end)], np.int64)


def _evaluate(proto: Any, nodes: list[Any], given: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """The values of `outputs` that `nodes` compute from `given` (as initializers), by onnx's reference runtime; {}
    when it cannot compute them."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = helper.make_graph(nodes, "fold", [], [helper.make_value_info(name, helper.TypeProto()) for name in outputs],
                              [numpy_helper.from_array(np.asarray(v), n) for n, v in given.items()])
    model = helper.make_model(graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    try:
        got = ReferenceEvaluator(model).run(None, {})
    except Exception:  # noqa: BLE001 - an estimate only: what they feed keeps the shape inference gave it
        return {}
    return {name: np.asarray(v) for name, v in zip(outputs, got) if isinstance(v, np.ndarray)}
