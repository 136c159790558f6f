"""The ONNX reference evaluator (onnx.reference), optionally computing the whole model in float64."""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import numpy as np

from ..errors import BackendError, UnsupportedError
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

        model = onnx.load(model_path)
        if options["dtype"] == "float64":
            from ..graph.promote import promote_float64

            model = promote_float64(model)
        try:
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
            evaluator = ReferenceEvaluator(model, new_ops=_kernels(opset))
        except NotImplementedError as exc:
            raise UnsupportedError(f"the onnx reference evaluator lacks an op: {exc}") from None
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"onnx.reference could not load the model: {type(exc).__name__}: {exc}") from None
        return ReferenceSession(evaluator, model, options, onnx.__version__)


def _kernels(opset: int) -> list[type]:
    """Kernels replacing or completing onnx.reference's.

    - Erf: onnx.reference stores math.erf's double result as float32 whatever the input type, so a float64 model
      (and Gelu, whose function body calls Erf) is only good to ~3e-8 there; this one keeps the double and rounds
      once to the input's type (bit-identical for float32).
    - DequantizeLinear before opset 19: onnx.reference's kernels start at opset 19; the newest one takes every
      attribute the evaluator passes and computes the older opsets' cases (int8, uint8, int32 with float32
      scales, per-tensor or per-axis) the same way.
    """
    import math

    from onnx.reference.ops._op import OpRunUnaryNum

    erf = np.vectorize(math.erf, otypes=[np.float64])

    class Erf(OpRunUnaryNum):
        op_domain = ""

        def _run(self, x):  # noqa: ANN001, ANN202
            return (erf(x).astype(x.dtype, copy=False),)

    kernels: list[type] = [Erf]
    if opset < 19:
        from onnx.reference.ops import op_dequantize_linear as dq

        newest = max((k for k in vars(dq) if k.startswith("DequantizeLinear_")), key=lambda k: int(k.split("_")[1]))
        kernels.append(type("DequantizeLinear", (getattr(dq, newest),), {"op_domain": ""}))
    return kernels


class ReferenceSession:
    def __init__(self, evaluator: Any, model: Any, options: Mapping[str, Any], version: str):
        import onnx

        self._evaluator = evaluator
        self._inputs = {}
        for vi in model.graph.input:
            if vi.type.WhichOneof("value") == "tensor_type":
                self._inputs[vi.name] = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        self._outputs = [o.name for o in model.graph.output]
        self._dtypes = {o.name: onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type)
                        for o in model.graph.output if o.type.tensor_type.elem_type}
        self._info = {"backend": "onnx.reference", "onnx": version, "dtype": options["dtype"]}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cast = {k: (v.astype(self._inputs[k]) if k in self._inputs and v.dtype != self._inputs[k] else v)
                for k, v in feeds.items()}
        values = self._evaluator.run(None, cast)
        out = {}
        for name, value in zip(self._outputs, values):
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
