"""Origin vs propagation, the analysis half of `--isolate`: feed the isolated model (graph/isolate.py) the
reference's tensors, then rank the nodes by the error each adds on its own (local error, gathered with the other
facts in measure/facts.py), measured on the tensor's own scale: SNR first (result.severity), so that a MatMul
whose outputs near zero are 524,288 ULP off at an absolute error of 5e-6 does not outrank a node that really
loses precision."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..graph.isolate import FED
from ..result import TensorReport, severity
from ..run.record import VariantRun

TOP = 5


def feeds(reference: VariantRun, fed: list[str], base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The original feeds plus the reference's tapped value of every fed tensor (leading sample axis kept)."""
    out = dict(base)
    for name in fed:
        path = reference.path("tapped", name)
        if path is None:
            raise KeyError(f"the reference run has no value for {name!r}")
        out[name + FED] = np.load(path, allow_pickle=False)
    return out


def rank(tensors: list[TensorReport], isolated: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The top nodes by local error (`tensor.local`) per isolated variant, worst first by `result.severity`: NaN
    or Inf mismatches, then the lowest SNR, then the largest max rel; max ULP is given beside, not ranked on (it
    counts steps of the tensor's own spacing, which is tiny near zero)."""
    origins: dict[str, list[dict[str, Any]]] = {}
    for name in isolated:
        ranked = []
        for t in tensors:
            m = t.local.get(name)
            if m is not None and "error" not in m and not m["bit_identical"]:
                ranked.append((severity(m), t.name, {
                    "tensor": t.name, "node": t.node, "op_type": t.op_type, "snr_db": m["snr_db"],
                    "max_rel": m["max_rel"], "max_abs": m["max_abs"], "max_ulp": m["max_ulp"]}))
        ranked.sort(key=lambda r: r[:2])
        origins[name] = [r[2] for r in ranked[:TOP]]
    return origins
