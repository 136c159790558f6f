"""`halfref`: an example infercmp backend (docs/plugins.md).

It runs the model on the ONNX reference evaluator (onnx.reference, NumPy) and then stores every tensor it
returns in a narrower format, the way a device that keeps its results in float16 or bfloat16 reports them: the
arithmetic itself is the reference's. Comparing `ref` with `halfref:round=float16` shows what that storage alone
costs, tensor by tensor.

Everything a backend needs is here: a name, a description, declared options, `available()` that imports
nothing, `environment()` for variables the worker needs before any import, `validate()` for option combinations,
and `open()`, which runs in the worker process and returns a session with `run()` and `provenance()`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from comparator.backends.contract import BackendBase
from comparator.backends.options import Option
from comparator.errors import BackendError

__version__ = "0.1.0"


class HalfRefBackend(BackendBase):
    """onnx.reference, every returned floating-point tensor rounded to `round` (none, float16, bfloat16)."""

    name = "halfref"
    description = "example plugin: onnx.reference with its results stored in float16 or bfloat16"
    requires = ("onnx", "ml_dtypes")  # available() checks these import, without importing them
    options = (
        Option("round", str, "float16", "the format every floating-point result is stored in",
               ("none", "float16", "bfloat16")),
        Option("threads", int, 0, "threads of NumPy's BLAS (0: its default)", minimum=0),
    )

    def environment(self, options: Mapping[str, Any]) -> dict[str, str]:
        """Set in the worker before anything is imported: a BLAS reads its thread count at import."""
        n = options["threads"]
        return {"OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n)} if n else {}

    def open(self, model_path: str, options: Mapping[str, Any]) -> HalfRefSession:
        """Load the model (in the worker process) and build the evaluator."""
        import onnx
        from onnx.reference import ReferenceEvaluator

        # infercmp hands backends a rewritten copy (every tapped tensor a graph output) that holds the graph only
        # and reads its weights from the input model's folder: load it through comparator.graph.stored, never
        # with a bare onnx.load.
        from comparator.graph import stored

        model = stored.load(model_path)
        try:
            evaluator = ReferenceEvaluator(model)
        except Exception as exc:  # noqa: BLE001 - say which model and why, in one line
            raise BackendError(f"onnx.reference could not load the model: {type(exc).__name__}: {exc}") from None
        return HalfRefSession(evaluator, [o.name for o in model.graph.output], options["round"], onnx.__version__)


class HalfRefSession:
    """One opened model: `run()` returns every graph output by name, rounded; `provenance()` says what ran."""

    def __init__(self, evaluator: Any, outputs: list[str], rounding: str, onnx_version: str):
        self._evaluator, self._outputs, self._round = evaluator, outputs, rounding
        self._info = {"backend": "halfref", "halfref": __version__, "onnx": onnx_version, "round": rounding}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on `feeds` (one sample, keyed by input name)."""
        values = self._evaluator.run(None, dict(feeds))
        return {name: self._rounded(np.asarray(v)) for name, v in zip(self._outputs, values)}

    def _rounded(self, value: np.ndarray) -> np.ndarray:
        if self._round == "none" or value.dtype.kind != "f":
            return value
        if self._round == "float16":
            narrow: Any = np.float16
        else:
            import ml_dtypes

            narrow = ml_dtypes.bfloat16
        return value.astype(narrow).astype(value.dtype)  # stored narrow, returned in the model's declared type

    def provenance(self) -> dict[str, Any]:
        """Library versions and the effective options: what a report records for this variant."""
        return dict(self._info)
