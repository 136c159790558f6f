"""infercmp: compare one ONNX model across inference backends and kernel settings, layer by layer.

    import comparator
    report = comparator.compare("model.onnx", ["ort", "ort:opt=disable", "ref:dtype=float64"])
    print(report.summary())        # verdict; per variant: first divergence, first tensor beyond tolerance
    report.first_divergence, report.passed, report.to_dict()   # plain data; to_dict() is valid JSON

Importing this package imports no inference framework: the public names below load on first use. Arguments of
the wrong type to `compare` raise TypeError naming what to pass, before anything runs. Backends from other
packages register under the entry-point group `infercmp.backends` (docs/plugins.md).
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
    """The public names, imported on first access."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (and `__version__`), not the lazy machinery."""
    return [*__all__, "__version__"]
