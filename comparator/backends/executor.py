"""One ONNX graph walker for the framework executors (torch, TensorFlow).

An `OpTable` maps (domain, op_type) and an opset range to a plain function `fn(ctx, inputs, attrs) -> outputs`:
`inputs` are framework tensors (None for an omitted optional input), `attrs` holds every attribute of the node,
with the schema's defaults filled in (so op functions never repeat ONNX's defaults), and the function returns
a list (or a single tensor). `GraphExecutor` checks that every op of the model is in the table before running
anything, then walks the main graph in topological order keeping every tensor by its ONNX name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import UnsupportedError

OpFn = Callable[["OpContext", list[Any], dict[str, Any]], Any]


@dataclass
class OpContext:
    """What an op function may need beyond its inputs: its node, opset, and the executor (for subgraphs)."""

    node: Any
    opset: int
    executor: "GraphExecutor"
    options: Mapping[str, Any] = field(default_factory=dict)

    def run_subgraph(self, graph: Any, feeds: Mapping[str, Any]) -> list[Any]:
        return self.executor.run_graph(graph, feeds)


class OpTable:
    def __init__(self, framework: str):
        self.framework = framework
        self._ops: dict[tuple[str, str], list[tuple[int, int, OpFn]]] = {}

    def register(self, *op_types: str, since: int = 1, until: int = 10**6, domain: str = "") -> Callable[[OpFn], OpFn]:
        """Decorator: the function implements `op_types` for opsets since..until (inclusive)."""
        def wrap(fn: OpFn) -> OpFn:
            for op in op_types:
                self._ops.setdefault((domain, op), []).append((since, until, fn))
            return fn
        return wrap

    def lookup(self, op_type: str, opset: int, domain: str = "") -> OpFn | None:
        for since, until, fn in self._ops.get((_domain(domain), op_type), []):
            if since <= opset <= until:
                return fn
        return None

    def op_types(self) -> list[str]:
        return sorted(op for _, op in self._ops)


def _domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def _attributes(node: Any, opset: int, domain: str) -> dict[str, Any]:
    import onnx
    from onnx import numpy_helper

    attrs: dict[str, Any] = {}
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, domain)
        for name, a in schema.attributes.items():
            if a.default_value is not None and a.default_value.type != 0:
                attrs[name] = onnx.helper.get_attribute_value(a.default_value)
    except Exception:  # noqa: BLE001 - unknown schema: no defaults to fill in
        pass
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.TENSOR:
            value = numpy_helper.to_array(value)
        elif a.type == onnx.AttributeProto.TENSORS:
            value = [numpy_helper.to_array(t) for t in value]
        elif isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf-8") for v in value]
        attrs[a.name] = value
    return attrs


@dataclass
class _Step:
    node: Any
    fn: OpFn
    attrs: dict[str, Any]
    opset: int


class GraphExecutor:
    """Runs an ONNX model with a framework's kernels. `to_tensor` turns NumPy arrays (initializers, feeds)
    into framework tensors; every value produced stays a framework tensor until the caller converts it."""

    def __init__(self, model: Any, table: OpTable, to_tensor: Callable[[np.ndarray], Any],
                 options: Mapping[str, Any] | None = None):
        from onnx import numpy_helper

        self.table = table
        self.to_tensor = to_tensor
        self.options = dict(options or {})
        self.opsets = {_domain(o.domain): o.version for o in model.opset_import}
        self.model = model
        self.constants = {t.name: to_tensor(numpy_helper.to_array(t)) for t in model.graph.initializer}
        self._plans: dict[int, list[_Step]] = {}
        missing = sorted(self._missing(model.graph))
        if missing:
            listed = "; ".join(f"op {op} (opset {v})" for op, v in missing)
            raise UnsupportedError(f"{listed} {'is' if len(missing) == 1 else 'are'} not supported by the "
                                   f"{table.framework} backend",
                                   "compare with the ort or ref backends, or add the op to the op table")
        self.outputs = [o.name for o in model.graph.output]
        self.inputs = [i.name for i in model.graph.input if i.name not in self.constants]

    def _missing(self, graph: Any) -> set[tuple[str, int]]:
        missing = set()
        for node in graph.node:
            domain = _domain(node.domain)
            opset = self.opsets.get(domain, 1)
            if self.table.lookup(node.op_type, opset, domain) is None:
                missing.add(((f"{domain}." if domain else "") + node.op_type, opset))
            for a in node.attribute:
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    missing |= self._missing(g)
        return missing

    def _plan(self, graph: Any) -> list[_Step]:
        key = id(graph)
        if key not in self._plans:
            steps = []
            for node in graph.node:
                domain = _domain(node.domain)
                opset = self.opsets.get(domain, 1)
                fn = self.table.lookup(node.op_type, opset, domain)
                assert fn is not None  # checked in __init__
                steps.append(_Step(node, fn, _attributes(node, opset, domain), opset))
            self._plans[key] = steps
        return self._plans[key]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        values = self.run_graph(self.model.graph, feeds, keep_all=False)
        return dict(zip(self.outputs, values))

    def run_graph(self, graph: Any, feeds: Mapping[str, Any], keep_all: bool = False) -> list[Any]:
        """Run `graph` (the main graph or a subgraph, which also sees the enclosing scope through feeds)."""
        from onnx import numpy_helper

        env: dict[str, Any] = dict(self.constants)
        env.update(feeds)
        for t in graph.initializer:
            if t.name not in env:
                env[t.name] = self.to_tensor(numpy_helper.to_array(t))
        for step in self._plan(graph):
            args = [env[name] if name else None for name in step.node.input]
            ctx = OpContext(step.node, step.opset, self, self.options)
            result = step.fn(ctx, args, step.attrs)
            results: Sequence[Any] = result if isinstance(result, (list, tuple)) else [result]
            for name, value in zip(step.node.output, results):
                if name:
                    env[name] = value
        return [env[o.name] for o in graph.output]
