"""One ONNX graph walker for the framework executors (torch, TensorFlow).

An `OpTable` maps (domain, op_type) and an opset range to a plain function `fn(ctx, inputs, attrs) -> outputs`:
`inputs` are framework tensors (None for an omitted optional input), `attrs` holds every attribute of the node,
with the schema's defaults filled in (so op functions never repeat ONNX's defaults), and the function returns
a list (or a single tensor). `GraphExecutor` checks that every op of the model is in the table before running
anything, then walks the main graph in topological order keeping every tensor by its ONNX name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ...errors import BackendError, InfercmpError, UnsupportedError
from ...graph import subgraphs

OpFn = Callable[["OpContext", list[Any], dict[str, Any]], Any]


@dataclass
class OpContext:
    """What an op function may need beyond its inputs: its node, opset, and the executor (for subgraphs)."""

    node: Any
    opset: int
    executor: GraphExecutor
    options: Mapping[str, Any] = field(default_factory=dict)
    # The values visible where the node runs: a subgraph (If/Loop/Scan body) may read any of them by name.
    scope: Mapping[str, Any] = field(default_factory=dict)
    # Where the node lives, for recording subgraph tensors under their stable names (graph/subgraphs.py): its
    # attributes (to name the branch a subgraph is), its position in its graph, the path of the graph holding it
    # and the iteration labels of the loops around it; `runs` counts the runs of its loop body.
    attrs: Mapping[str, Any] = field(default_factory=dict)
    index: int = 0
    path: str = ""
    suffixes: tuple[tuple[str, ...], ...] = ((),)
    runs: int = 0

    def run_subgraph(self, graph: Any, feeds: Mapping[str, Any]) -> list[Any]:
        executor = self.executor
        if executor.recording is None:
            return executor.run_graph(graph, {**self.scope, **feeds})
        key = next((k for k, v in self.attrs.items() if v is graph), "body")
        path = f"{self.path}{subgraphs.node_key(self.node, self.index)}/{subgraphs.branch_name(key)}/"
        suffixes = self.suffixes
        if self.node.op_type in subgraphs.LOOPS:
            suffixes = tuple(subgraphs.extend(suffixes, subgraphs.iteration_labels(self.runs)))
            self.runs += 1
        return executor.run_graph(graph, {**self.scope, **feeds}, path=path, suffixes=suffixes)


def unsupported_op(ctx: OpContext, framework: str, what: str) -> UnsupportedError:
    """The error for a node a framework's table cannot compute as asked (raised by the caller)."""
    return UnsupportedError(f"op {ctx.node.op_type} (opset {ctx.opset}) with {what} is not supported by the "
                            f"{framework} backend", "compare with the ort or ref backends")


class OpFailure(BackendError):
    """A framework exception raised while a node ran, wrapped with the node that raised it (`cause`)."""

    def __init__(self, message: str, cause: BaseException, where: str, hint: str | None = None):
        super().__init__(message, hint)
        self.cause = cause
        self.where = where  # describe_node's text


def describe_value(value: Any) -> str:
    """A value's type and shape for an error message, by duck typing (`.shape`, `.dtype`): `float32[2, 3]`,
    `sequence of 4`, `omitted`. Unknown dimensions read `?`."""
    if value is None:
        return "omitted"
    if isinstance(value, (list, tuple)):
        return f"sequence of {len(value)}"
    dt = getattr(value, "dtype", None)
    name = getattr(dt, "name", None) if dt is not None else None
    kind = str(name if isinstance(name, str) else dt).replace("torch.", "") if dt is not None else type(value).__name__
    shape = getattr(value, "shape", None)
    try:
        dims = None if shape is None else list(shape)
    except (TypeError, ValueError):  # a tensor of unknown rank
        dims = None
    if dims is None:
        return f"{kind}[rank unknown]" if shape is not None else kind
    return f"{kind}[{', '.join('?' if d is None else str(int(d)) for d in dims)}]"


def describe_node(node: Any, opset: int, inputs: Sequence[Any] | None = None,
                  describe: Callable[[Any], str] = describe_value) -> str:
    """`node 'name' (op Shape, opset 16, domain d; inputs: x float32[2, 3], ...)` for an error message."""
    domain = _domain(node.domain)
    where = f"op {node.op_type}, opset {opset}" + (f", domain {domain}" if domain else "")
    text = f"node {node.name or '(unnamed)'!r} ({where}"
    if inputs is not None:
        shown = ", ".join(f"{name or '(omitted)'} {describe(v) if name else 'omitted'}"
                          for name, v in zip(node.input, inputs))
        text += f"; inputs: {shown or 'none'}"
    return text + ")"


def node_error(exc: BaseException, node: Any, opset: int, inputs: Sequence[Any], framework: str,
               describe: Callable[[Any], str] = describe_value) -> BaseException:
    """`exc`, raised while `node` ran, as an error naming the node: an InfercmpError gets the node appended to
    its message (once: the innermost node of nested subgraphs wins); any other exception becomes an
    OpFailure."""
    if getattr(exc, "node_described", False):
        return exc
    where = describe_node(node, opset, inputs, describe)
    if isinstance(exc, InfercmpError):
        exc.message = f"{exc.message} [in {where}]"
        exc.args = (exc.message,)
        out: BaseException = exc
    else:
        first = (str(exc).strip().splitlines() or [""])[0][:500]
        out = OpFailure(f"{framework} failed in {where}: {type(exc).__name__}: {first}", exc, where,
                        "compare with the ort or ref backends to see whether the model or the "
                        f"{framework} backend is at fault")
    out.node_described = True  # type: ignore[attr-defined]
    return out


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

    def value(a: Any) -> Any:
        v = onnx.helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.TENSOR:
            return numpy_helper.to_array(v)
        if a.type == onnx.AttributeProto.TENSORS:
            return [numpy_helper.to_array(t) for t in v]
        if isinstance(v, bytes):
            return v.decode("utf-8")
        if isinstance(v, list) and v and isinstance(v[0], bytes):
            return [x.decode("utf-8") for x in v]
        return v

    attrs: dict[str, Any] = {}
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, domain)
        for name, a in schema.attributes.items():
            if a.default_value is not None and a.default_value.type != 0:
                attrs[name] = value(a.default_value)  # defaults get the same conversion as given values
    except Exception:  # noqa: BLE001 - unknown schema: no defaults to fill in
        pass
    for a in node.attribute:
        attrs[a.name] = value(a)
    return attrs


@dataclass
class _Step:
    node: Any
    fn: OpFn
    attrs: dict[str, Any]
    opset: int
    # Names copied out of the protobuf once: reading node.input on every run costs more than most kernels.
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    index: int = 0  # position in its graph


class GraphExecutor:
    """Runs an ONNX model with a framework's kernels. `to_tensor` turns NumPy arrays (initializers, feeds)
    into framework tensors; every value produced stays a framework tensor until the caller converts it."""

    def __init__(self, model: Any, table: OpTable, to_tensor: Callable[[np.ndarray], Any],
                 options: Mapping[str, Any] | None = None, describe: Callable[[Any], str] = describe_value,
                 base_dir: str = "", float64: bool = False):
        import onnx
        from onnx import numpy_helper

        from ...graph.promote import read_weights

        self.table = table
        self.describe = describe  # a value's type and shape in an error message
        self.to_tensor = to_tensor
        self.options = dict(options or {})
        self.opsets = {_domain(o.domain): o.version for o in model.opset_import}
        self.model = model
        self.constants = {t.name: to_tensor(numpy_helper.to_array(t)) for t in model.graph.initializer
                          if t.data_location != onnx.TensorProto.EXTERNAL}
        # Weights still stored as external data (graph/stored.load(weights=False)), one at a time: read from
        # `base_dir` (widened as graph/promote widens, with `float64`), copied into the framework's tensor, let go.
        for name, value in read_weights(model, base_dir, float64):
            self.constants[name] = to_tensor(value)
        self.graph = model.graph  # one wrapper object for the whole run: plans are cached by its id
        self._plans: dict[int, tuple[Any, list[_Step], tuple[Any, ...], tuple[str, ...]]] = {}
        missing = sorted(self._missing(model.graph))
        if missing:
            listed = "; ".join(f"op {op} (opset {v})" for op, v in missing)
            raise UnsupportedError(f"{listed} {'is' if len(missing) == 1 else 'are'} not supported by the "
                                   f"{table.framework} backend",
                                   "compare with the ort or ref backends, or add the op to the op table")
        self.outputs = [o.name for o in model.graph.output]
        self.inputs = [i.name for i in model.graph.input if i.name not in self.constants]
        # The subgraph tensors a tapped copy asks for (None: none, or a session that cannot record them, such
        # as a traced one, sets it to None); `recording` holds them during one run.
        self.wanted: set[str] | None = subgraphs.read_metadata(model)
        self.recording: dict[str, Any] | None = None

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

    def _plan(self, graph: Any) -> tuple[Any, list[_Step], tuple[Any, ...], tuple[str, ...]]:
        # protobuf hands out a new wrapper object per attribute access: the cache keeps the graph it was
        # keyed on alive, so an id is never reused by another graph.
        key = id(graph)
        if key not in self._plans:
            steps = []
            for index, node in enumerate(graph.node):
                domain = _domain(node.domain)
                opset = self.opsets.get(domain, 1)
                fn = self.table.lookup(node.op_type, opset, domain)
                assert fn is not None  # checked in __init__
                steps.append(_Step(node, fn, _attributes(node, opset, domain), opset, tuple(node.input),
                                   tuple(node.output), index))
            self._plans[key] = (graph, steps, tuple((t.name, t) for t in graph.initializer),
                                tuple(o.name for o in graph.output))
        return self._plans[key]

    def tensor_attributes(self, graph: Any = None) -> None:
        """Plan `graph` (default: the main graph) and its subgraphs now, turning every tensor-valued attribute
        into a framework tensor once (with `to_tensor`): op functions see the framework's own type, and no
        conversion happens per run. The walker plans lazily; this plans eagerly through its cache."""
        for step in self._plan(self.graph if graph is None else graph)[1]:
            for key, value in step.attrs.items():
                if isinstance(value, np.ndarray):
                    step.attrs[key] = self.to_tensor(value)
                elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
                    step.attrs[key] = [self.to_tensor(v) for v in value]
                elif hasattr(value, "node") and hasattr(value, "initializer"):  # a subgraph (GraphProto)
                    self.tensor_attributes(value)
                elif isinstance(value, list) and value and hasattr(value[0], "node"):
                    for g in value:
                        self.tensor_attributes(g)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Every graph output by name; with `wanted`, the subgraph tensors recorded too (those that ran)."""
        if not self.wanted:
            return dict(zip(self.outputs, self.run_graph(self.graph, feeds, keep_all=False)))
        recorded: dict[str, Any] = {}
        self.recording = recorded
        try:
            values = self.run_graph(self.graph, feeds, keep_all=False)
        finally:
            self.recording = None
        recorded.update(zip(self.outputs, values))
        return recorded

    def run_graph(self, graph: Any, feeds: Mapping[str, Any], keep_all: bool = False, path: str = "",
                  suffixes: tuple[tuple[str, ...], ...] = ((),)) -> list[Any]:
        """Run `graph` (the main graph or a subgraph, which also sees the enclosing scope through feeds). `path`
        and `suffixes` place a subgraph for recording its tensors (see OpContext)."""
        from onnx import numpy_helper

        _, steps, initializers, outputs = self._plan(graph)
        env: dict[str, Any] = dict(self.constants)
        env.update(feeds)
        for name, t in initializers:
            if name not in env:
                env[name] = self.to_tensor(numpy_helper.to_array(t))
        for step in steps:
            args = [env[name] if name else None for name in step.inputs]
            ctx = OpContext(step.node, step.opset, self, self.options, env, step.attrs, step.index, path, suffixes)
            try:
                result = step.fn(ctx, args, step.attrs)
            except Exception as exc:  # noqa: BLE001 - every failure names its node
                err = node_error(exc, step.node, step.opset, args, self.table.framework, self.describe)
                if err is exc:
                    raise
                raise err from exc
            results: Sequence[Any] = result if isinstance(result, (list, tuple)) else [result]
            for name, value in zip(step.outputs, results):
                if name:
                    env[name] = value
            if path and self.recording is not None and self.wanted:
                for name, value in zip(step.outputs, results):
                    for labels in suffixes:
                        key = path + name + subgraphs.suffix(labels)
                        if key in self.wanted:
                            self.recording[key] = value
        return [env[name] for name in outputs]
