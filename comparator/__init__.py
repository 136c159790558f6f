"""infercmp: compare one ONNX model across inference backends and kernel settings, layer by layer.

    import comparator
    report = comparator.compare("model.onnx", ["ort", "ort:opt=disable", "ref:dtype=float64"])
    report.first_divergence, report.passed

Importing this package imports no inference framework: the public names below load on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what checkers and IDEs see; at run time each name is imported on first access
    from .api import compare
    from .errors import InfercmpError
    from .measure.metrics import Tolerance
    from .result import Report
    from .variant import Variant

__all__ = ["compare", "Variant", "Report", "Tolerance", "InfercmpError"]
__version__ = "0.1.0"

_LAZY = {"compare": ".api", "Variant": ".variant", "Report": ".result", "Tolerance": ".measure.metrics",
         "InfercmpError": ".errors"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
