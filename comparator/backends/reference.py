"""The ONNX reference evaluator (onnx.reference), optionally computing the whole model in float64."""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import numpy as np

from ..errors import BackendError, UnsupportedError
from ..graph import stored
from .contract import BackendBase
from .options import Option


class ReferenceBackend(BackendBase):
    name = "ref"
    description = "onnx.reference evaluator (NumPy); dtype=float64 is the exact-math oracle"
    requires = ("onnx",)
    options = (Option("dtype", str, "model", "compute in the model's own types, or promote floats to float64",
                      ("model", "float64")),)

    def open(self, model_path: str, options: Mapping[str, Any]) -> ReferenceSession:
        import onnx
        from onnx.reference import ReferenceEvaluator

        from ..graph.promote import promote_float64, read_weights
        from ..graph.subgraphs import read_metadata

        model = stored.load(model_path, weights=False)
        wanted = read_metadata(model)
        float64 = options["dtype"] == "float64"
        if float64:
            model = promote_float64(model)
        # The weights stored as external data are read one at a time (widened with float64) and given to every run
        # as values, as initializers are: the evaluator would copy each out of the proto and keep both.
        weights = dict(read_weights(model, str(stored.external_dir(model_path)), float64))
        kept = [t for t in model.graph.initializer if t.name not in weights]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        try:
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
            evaluator = _evaluator_class(ReferenceEvaluator)(model, new_ops=_kernels(opset))
        except NotImplementedError as exc:
            raise UnsupportedError(f"the onnx reference evaluator lacks an op: {exc}") from None
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"onnx.reference could not load the model: {type(exc).__name__}: {exc}") from None
        evaluator.wanted = wanted or set()
        return ReferenceSession(evaluator, model, options, onnx.__version__, weights)

    def taps_subgraphs(self, options: Mapping[str, Any]) -> bool:
        return True

    def fusion(self, options: Mapping[str, Any]) -> tuple[str, str]:
        return "node-by-node", ""


def _evaluator_class(base: type) -> type:
    """onnx.reference's evaluator, with two additions.

    - Nodes name themselves when they fail: onnx.reference's errors name no node, so each node's kernel is
      wrapped to add the node's name, op type, opset and input types and shapes.
    - Subgraph tensors are recorded: If, Loop and Scan run their branches and bodies with evaluators built from
      the same class; each such evaluator knows the node and attribute it belongs to, runs its graph keeping
      every intermediate result, and records those the tapped copy asks for under their stable names
      (graph/subgraphs.py) into the top evaluator's `recording`.
    """
    from ..graph import subgraphs

    class Evaluator(base):
        recording: dict[str, Any] | None = None
        wanted: set[str] = set()
        path = ""
        suffixes: tuple[tuple[str, ...], ...] = ((),)
        owner: Any = None  # for a subgraph's evaluator: the evaluator of the graph holding its node
        place: tuple[str, str, bool] = ("", "", False)  # node key, branch, whether the node is a loop
        runs = 0  # runs of this body since its node started

        def _init(self) -> None:
            super()._init()
            for index, node in enumerate(self.rt_nodes_):
                inner = []
                for a in node.onnx_node.attribute:
                    sub = getattr(node, a.name, None) if a.HasField("g") else None
                    if isinstance(sub, Evaluator):
                        sub.owner = self
                        sub.place = (subgraphs.node_key(node.onnx_node, index), subgraphs.branch_name(a.name),
                                     node.onnx_node.op_type in subgraphs.LOOPS)
                        inner.append(sub)
                node.run = _named(node.run, node.onnx_node, self.opsets, inner)

        def run(self, output_names: Any, feed_inputs: Any, *args: Any, **kwargs: Any) -> Any:
            owner = self.owner
            if owner is None or owner.recording is None or args or kwargs.get("intermediate"):
                return super().run(output_names, feed_inputs, *args, **kwargs)
            key, branch, loop = self.place
            self.recording, self.wanted = owner.recording, owner.wanted
            self.path = f"{owner.path}{key}/{branch}/"
            self.suffixes = owner.suffixes
            if loop:
                self.suffixes = tuple(subgraphs.extend(owner.suffixes, subgraphs.iteration_labels(self.runs)))
                self.runs += 1
            results = super().run(output_names, feed_inputs, intermediate=True, **kwargs)
            for node in self.rt_nodes_:
                for name in node.onnx_node.output:
                    if name and name in results:
                        for labels in self.suffixes:
                            tapped = self.path + name + subgraphs.suffix(labels)
                            if tapped in self.wanted:
                                self.recording[tapped] = results[name]
            return [results[name] for name in (output_names or self.output_names)]

    return Evaluator


def _named(run: Any, node: Any, opsets: Mapping[str, int], inner: list[Any]) -> Any:
    from .common.executor import node_error

    def named_run(*args: Any, **kwargs: Any) -> Any:
        for sub in inner:  # a loop body counts its iterations from 0 at each run of its node
            sub.runs = 0
        try:
            return run(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure names its node
            err = node_error(exc, node, opsets.get(node.domain or "", opsets.get("ai.onnx", 0)), args, "ref")
            if err is exc:
                raise
            raise err from exc

    return named_run


def _kernels(opset: int) -> list[type]:
    """Kernels replacing or completing onnx.reference's.

    - Erf: onnx.reference stores math.erf's double result as float32 whatever the input type, so a float64 model
      (and Gelu, whose function body calls Erf) is only good to ~3e-8 there; this one keeps the double and rounds
      once to the input's type (bit-identical for float32).
    - DequantizeLinear before opset 19: onnx.reference's kernels start at opset 19; the newest one takes every
      attribute the evaluator passes and computes the older opsets' cases (int8, uint8, int32 with float32
      scales, per-tensor or per-axis) the same way.
    - BatchNormalization at opsets 7-13: onnx.reference normalises with the batch's own statistics whenever
      `momentum` has a value, and the schema's default fills it in even when the node has none; a node with one
      output is in inference mode (as ONNX Runtime and the spec read it) and uses the running mean and variance.
    - GlobalMaxPool: onnx.reference reduces the wrong axes of a rank-3 input ([N, C, L] -> [N, 1]); the pooled
      axes are every axis after the channel axis, whatever the rank.
    - GatherElements: onnx.reference's np.choose fails once the gathered axis is longer than 64 (NumPy's limit
      of choices); take_along_axis has no such limit.
    - HardSwish and Gelu: onnx.reference expands their function bodies, whose constants (1/6, sqrt(2),
      sqrt(2/pi)) are float attributes, so a float64 model computes with float32-rounded constants (2e-8 off, a
      disagreement with torch's float64); these compute in the input's type with the constants rounded once to
      it, which for float32 is what the function bodies do.
    - Softmax, LogSoftmax and Hardmax before opset 13: onnx.reference applies opset 13's rule (one axis,
      default -1) to every opset; the older ones coerce the input to 2-D at `axis` (default 1) and normalise
      over everything after it, so a Softmax over [1, 1000, 1, 1] is a distribution, not all ones.
    """
    import math

    from onnx.reference.ops._op import OpRunUnaryNum

    erf = np.vectorize(math.erf, otypes=[np.float64])

    class Erf(OpRunUnaryNum):
        op_domain = ""

        def _run(self, x):  # noqa: ANN001, ANN202
            return (erf(x).astype(x.dtype, copy=False),)

    kernels: list[type] = [Erf, _global_max_pool(), _gather_elements(), *_exact_constants(erf)]
    if 7 <= opset < 14:
        kernels.append(_batch_normalization())
    if opset < 13:
        kernels.extend(_coerced_2d())
    if opset < 19:
        from onnx.reference.ops import op_dequantize_linear as dq

        newest = max((k for k in vars(dq) if k.startswith("DequantizeLinear_")), key=lambda k: int(k.split("_")[1]))
        kernels.append(type("DequantizeLinear", (getattr(dq, newest),), {"op_domain": ""}))
    return kernels


def _batch_normalization() -> type:
    from onnx.reference.ops import op_batch_normalization as bn

    base = bn.BatchNormalization_9

    class BatchNormalization(base):  # type: ignore[misc, valid-type]
        op_domain = ""

        def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None, **_):  # noqa: ANN001, ANN003, ANN202
            if sum(1 for o in self.onnx_node.output if o) == 1:  # inference mode: the running statistics
                return (bn._batchnorm_test_mode(x, scale, bias, mean, var, epsilon=1e-5 if epsilon is None
                                                else epsilon),)
            return super()._run(x, scale, bias, mean, var, epsilon=epsilon, momentum=momentum)

    return BatchNormalization


def _exact_constants(erf: Any) -> list[type]:
    """HardSwish and Gelu with their constants in the input's own type (see _kernels)."""
    import math

    from onnx.reference.ops._op import OpRunUnaryNum

    class HardSwish(OpRunUnaryNum):
        op_domain = ""

        def _run(self, x):  # noqa: ANN001, ANN202
            t = x.dtype.type
            return ((x * np.clip(x * (t(1) / t(6)) + t(0.5), 0, 1)).astype(x.dtype, copy=False),)

    class Gelu(OpRunUnaryNum):
        op_domain = ""

        def _run(self, x, approximate=None):  # noqa: ANN001, ANN202
            t = x.dtype.type
            approximate = approximate or getattr(self, "approximate", None) or "none"
            if approximate in ("tanh", b"tanh"):
                inner = t(math.sqrt(2 / math.pi)) * (x + t(0.044715) * x * x * x)
                return ((t(0.5) * x * (t(1) + np.tanh(inner))).astype(x.dtype, copy=False),)
            scaled = erf(x / t(math.sqrt(2))).astype(x.dtype, copy=False)
            return ((t(0.5) * x * (t(1) + scaled)).astype(x.dtype, copy=False),)

    return [HardSwish, Gelu]


def _coerced_2d() -> list[type]:
    """Softmax, LogSoftmax and Hardmax as opsets 1-12 define them: over the input coerced to 2-D at `axis`."""
    from onnx.reference.op_run import OpRun

    def softmax(x: np.ndarray) -> np.ndarray:  # onnx.reference's arithmetic, over the last axis of a 2-D view
        y = np.exp(x - x.max(axis=1, keepdims=True))
        y /= y.sum(axis=1, keepdims=True)
        return y.astype(x.dtype)

    def log_softmax(x: np.ndarray) -> np.ndarray:
        y = softmax(x)
        np.log(y, out=y)
        return y

    def hardmax(x: np.ndarray) -> np.ndarray:
        y = np.zeros_like(x)
        np.put_along_axis(y, x.argmax(axis=1)[:, None], 1, axis=1)
        return y

    def kernel(name: str, fn: Any) -> type:
        def _run(self: Any, x: np.ndarray, axis: int = 1) -> tuple[np.ndarray]:
            if x.size == 0:
                return (x,)
            # The evaluator fills an absent axis with the newest schema's default (-1); these opsets' is 1.
            if not any(a.name == "axis" for a in self.onnx_node.attribute):
                axis = 1
            axis = axis % x.ndim
            rows = int(np.prod(x.shape[:axis], dtype=np.int64))
            return (fn(x.reshape(rows, -1)).reshape(x.shape),)

        return type(name, (OpRun,), {"op_domain": "", "_run": _run})

    return [kernel("Softmax", softmax), kernel("LogSoftmax", log_softmax), kernel("Hardmax", hardmax)]


def _global_max_pool() -> type:
    from onnx.reference.op_run import OpRun

    class GlobalMaxPool(OpRun):
        op_domain = ""

        def _run(self, x):  # noqa: ANN001, ANN202
            return (x.max(axis=tuple(range(2, x.ndim)), keepdims=True),)

    return GlobalMaxPool


def _gather_elements() -> type:
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        op_domain = ""

        def _run(self, data, indices, axis=0):  # noqa: ANN001, ANN202
            axis = axis % data.ndim
            # Output has the indices' shape; off the gathered axis it may be shorter than the data.
            data = data[tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(indices.shape))]
            indices = np.where(indices < 0, indices + data.shape[axis], indices).astype(np.int64)
            return (np.take_along_axis(data, indices, axis=axis),)

    return GatherElements


def _cast(value: Any, dtype: Any) -> Any:
    """A feed in the input's declared element type (every tensor of a sequence feed)."""
    if isinstance(value, list):
        return [_cast(v, dtype) for v in value]
    return value.astype(dtype) if value.dtype != dtype else value


class ReferenceSession:
    def __init__(self, evaluator: Any, model: Any, options: Mapping[str, Any], version: str,
                 weights: Mapping[str, np.ndarray] | None = None):
        import onnx

        self._evaluator = evaluator
        self._weights = dict(weights or {})  # initializers given to each run (ReferenceBackend.open)
        self._inputs = {}  # input -> the element type a feed is cast to (a sequence's tensors each)
        for vi in model.graph.input:
            tp = vi.type.sequence_type.elem_type if vi.type.WhichOneof("value") == "sequence_type" else vi.type
            if tp.WhichOneof("value") == "tensor_type" and tp.tensor_type.elem_type:
                self._inputs[vi.name] = onnx.helper.tensor_dtype_to_np_dtype(tp.tensor_type.elem_type)
        self._outputs = [o.name for o in model.graph.output]
        self._dtypes = {o.name: onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type)
                        for o in model.graph.output if o.type.tensor_type.elem_type}
        self._info = {"backend": "onnx.reference", "onnx": version, "dtype": options["dtype"]}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        cast = {k: _cast(v, self._inputs[k]) if k in self._inputs else v for k, v in feeds.items()}
        cast.update(self._weights)
        evaluator = self._evaluator
        evaluator.recording = {} if evaluator.wanted else None
        try:
            values = evaluator.run(None, cast)
            recorded = evaluator.recording or {}
        finally:
            evaluator.recording = None
        out: dict[str, Any] = {}
        for name, value in list(zip(self._outputs, values)) + list(recorded.items()):
            if value is None or isinstance(value, list):  # an empty optional, or a sequence: kept as they are
                out[name] = value if value is None else [np.asarray(v) for v in value]
                continue
            arr = np.asarray(value)
            want = self._dtypes.get(name)
            # Some reference kernels compute in float64 from float32 inputs; the declared type is what the
            # model promises, and rounding to it is the correctly rounded result of that computation.
            if want is not None and arr.dtype != want and arr.dtype.kind == "f" and np.dtype(want).kind == "f":
                rounded = self._info.setdefault("outputs_rounded_to_declared_type", [])
                if name not in rounded:
                    rounded.append(name)
                arr = arr.astype(want)
            out[name] = arr
        return out

    def provenance(self) -> dict[str, Any]:
        return dict(self._info)
