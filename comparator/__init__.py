"""infercmp: compare one ONNX model across inference backends and kernel settings, layer by layer.

    import comparator
    report = comparator.compare("model.onnx", ["ort", "ort:opt=disable", "ref:dtype=float64"])
    report.first_divergence, report.passed

Importing this package imports no inference framework.
"""
from __future__ import annotations

from typing import Any

__all__ = ["compare", "Variant", "Report", "Tolerance", "InfercmpError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:  # lazy, so `import comparator` stays cheap
    if name == "compare":
        from .api import compare

        return compare
    if name == "Variant":
        from .variant import Variant

        return Variant
    if name == "Report":
        from .result import Report

        return Report
    if name == "Tolerance":
        from .measure.metrics import Tolerance

        return Tolerance
    if name == "InfercmpError":
        from .errors import InfercmpError

        return InfercmpError
    raise AttributeError(name)
