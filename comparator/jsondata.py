"""Numbers JSON cannot hold, both ways: non-finite floats travel as the strings "nan", "inf" and "-inf" (as the JSON
reports and every JSON file infercmp writes hold them), NumPy scalars as plain numbers."""
from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def plain(obj: Any) -> Any:
    """`obj` as JSON-ready data: dataclasses as dicts (dataclasses.asdict without its deep copy of every leaf,
    immutable here: 5x faster on large reports), keys as strings, non-finite floats as "nan", "inf", "-inf", and
    NumPy scalars (anything with an `item()`) as Python numbers."""
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ("nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf"))
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
    if hasattr(obj, "item") and callable(obj.item):
        return plain(obj.item())
    return obj


def decode(v: Any) -> Any:
    """A number `plain` wrote: "nan", "inf", "-inf" back to floats; anything else as it is."""
    return NONFINITE[v] if isinstance(v, str) and v in NONFINITE else v


def decode_figures(d: dict[str, Any]) -> dict[str, Any]:
    """The error figures of a finding, decoded; its names (tensor, node, op type) kept as written."""
    return {k: (decode(v) if k in ("snr_db", "max_abs", "max_rel", "max_ulp") else v) for k, v in d.items()}


def decode_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """A metrics entry, decoded; its error message kept as written."""
    return {k: (v if k == "error" else decode(v)) for k, v in m.items()}
