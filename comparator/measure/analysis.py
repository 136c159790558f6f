"""From the workers' tensor files to the report's findings.

Arrays are memory-mapped and compared one pair at a time in chunks, so the parent holds at most one chunk pair
in memory whatever the model's size. Final outputs are compared on the untapped runs (the numbers a deployment
gets); intermediate tensors on the tapped runs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable

import numpy as np

from . import metrics
from ..graph.model import TensorInfo
from ..result import TensorReport
from ..run.record import VariantRun

MAX_LISTED_FLIPS = 100


def load(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def kind_for(info: TensorInfo | TensorReport) -> str:
    """Final outputs are read from the untapped run (what a deployment gets), the rest from the tapped one."""
    return "untapped" if info.is_output else "tapped"


def compare_pair(ref_path: Path | None, got_path: Path | None, tolerance: metrics.Tolerance) -> dict[str, Any]:
    if ref_path is None or got_path is None:
        return {"error": "not produced by " + ("the reference" if ref_path is None else "this variant")}
    ref, got = load(ref_path), load(got_path)
    try:
        return metrics.compare(ref, got, tolerance)
    except metrics.ShapeMismatch as exc:
        return {"error": str(exc)}
    except TypeError as exc:
        return {"error": f"cannot compare {ref.dtype} with {got.dtype}: {exc}"}


def compare_tensors(catalogue: Iterable[TensorInfo], reference: VariantRun, others: list[VariantRun],
                    tolerance: metrics.Tolerance,
                    tolerance_for: Callable[[TensorInfo], metrics.Tolerance] | None = None) -> list[TensorReport]:
    """`tolerance_for(info)`, when given, overrides `tolerance` per tensor (a gate policy's per-tensor rules)."""
    reports = []
    for info in catalogue:
        kind = kind_for(info)
        tol = tolerance if tolerance_for is None else tolerance_for(info)
        entry = TensorReport(info.name, info.op_type, info.node, info.index,
                             None if info.shape is None else list(info.shape), info.dtype, info.is_output)
        ref_path = reference.path(kind, info.name)
        for run in others:
            if run.ok:
                entry.metrics[str(run.variant)] = compare_pair(ref_path, run.path(kind, info.name), tol)
        reports.append(entry)
    return reports


def diverges(m: dict[str, Any]) -> bool:
    return "error" in m or not m.get("bit_identical", False)


def beyond_tolerance(m: dict[str, Any]) -> bool:
    return "error" in m or m.get("violations", 0) > 0


def first(tensors: list[TensorReport], variant: str, test: Any) -> str | None:
    for t in tensors:
        m = t.metrics.get(variant)
        if m is not None and test(m):
            return t.name
    return None


def file_digest(path: Path | None, h: Any = None) -> str:
    """sha256 of an array file's dtype, shape and data bytes, read in blocks: equal digests = bit-identical."""
    h = h or hashlib.sha256()
    if path is None:
        h.update(b"missing")
        return h.hexdigest()
    arr = load(path)
    h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    flat = arr.reshape(-1)
    step = max(1, (1 << 24) // max(1, arr.dtype.itemsize))
    for i in range(0, flat.size, step):
        h.update(np.ascontiguousarray(flat[i:i + step]).tobytes())
    return h.hexdigest()


def outputs_digest(run: VariantRun, outputs: list[str], kind: str = "untapped") -> str:
    """One hash over every final output of one run kind."""
    h = hashlib.sha256()
    for name in outputs:
        h.update(name.encode() + b"|")
        file_digest(run.path(kind, name), h)
    return h.hexdigest()


def tensor_classes(reports: list[TensorReport], runs: list[VariantRun]) -> None:
    """Group the variants (reference included) by bit-identical values of each tensor."""
    ok = [r for r in runs if r.ok]
    for t in reports:
        groups: dict[str, list[str]] = {}
        kind = kind_for(t)
        for run in ok:
            path = run.path(kind, t.name)
            if path is not None:
                groups.setdefault(file_digest(path), []).append(str(run.variant))
        t.classes = sorted(groups.values(), key=lambda g: (-len(g), g))


def pairwise(runs: list[VariantRun], outputs: list[str]) -> dict[str, Any]:
    """Max ULP and max abs distance between every two variants' final outputs (untapped runs)."""
    ok = [r for r in runs if r.ok]
    n = len(ok)
    ulp = [[0] * n for _ in range(n)]
    absd = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            u, a = 0, 0.0
            for name in outputs:
                m = compare_pair(ok[i].path("untapped", name), ok[j].path("untapped", name), metrics.Tolerance())
                if "error" in m:
                    u, a = None, float("inf")
                    break
                u, a = max(u, m["max_ulp"] or 0), max(a, m["max_abs"])
            ulp[i][j] = ulp[j][i] = u
            absd[i][j] = absd[j][i] = a
    return {"variants": [str(r.variant) for r in ok], "max_ulp": ulp, "max_abs": absd}


def repeats(run: VariantRun, base: str) -> list[str]:
    """The run kinds that repeat `base` (fresh sessions `base.N`, same-session `base.sameN`)."""
    return sorted(k for k in run.tensors if k.startswith(base + "."))


def determinism(reports: list[TensorReport], runs: list[VariantRun], outputs: list[str]) -> dict[str, Any]:
    """Per variant: distinct final outputs over its repeats; per tensor: run-to-run spread."""
    found: dict[str, Any] = {}
    zero = metrics.Tolerance(0.0, 0.0)
    for run in runs:
        extra = repeats(run, "untapped") if run.ok else []
        if not extra:
            continue
        name = str(run.variant)
        kinds = ["untapped"] + extra
        distinct = len({outputs_digest(run, outputs, k) for k in kinds})
        worst_abs, worst_ulp = 0.0, 0
        for t in reports:
            base = kind_for(t)
            spread_abs, spread_ulp = 0.0, 0
            for k in repeats(run, base):
                m = compare_pair(run.path(base, t.name), run.path(k, t.name), zero)
                if "error" not in m:
                    spread_abs, spread_ulp = max(spread_abs, m["max_abs"]), max(spread_ulp, m["max_ulp"] or 0)
            t.spread[name] = {"max_abs": spread_abs, "max_ulp": spread_ulp}
            if t.is_output:
                worst_abs, worst_ulp = max(worst_abs, spread_abs), max(worst_ulp, spread_ulp)
        suggested = {"atol": worst_abs, "max_ulp": worst_ulp} if distinct > 1 else None
        found[name] = {"runs": len(kinds), "distinct_outputs": distinct, "suggested_tolerance": suggested}
    return found


def equivalence_classes(runs: list[VariantRun], outputs: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for run in runs:
        if run.ok:
            groups.setdefault(outputs_digest(run, outputs), []).append(str(run.variant))
    return sorted(groups.values(), key=lambda g: (-len(g), g))


def observer_effect(run: VariantRun, outputs: list[str]) -> tuple[bool, dict[str, Any]]:
    """Do the tapped run's final outputs differ from the untapped run's? (Tapping can block fusions.)"""
    detail: dict[str, Any] = {}
    for name in outputs:
        untapped, tapped = run.path("untapped", name), run.path("tapped", name)
        if untapped is None or tapped is None:
            continue
        m = metrics.compare(load(untapped), load(tapped), metrics.Tolerance(0.0, 0.0))
        if not m["bit_identical"]:
            detail[name] = {"max_ulp": m["max_ulp"], "max_abs": m["max_abs"]}
    return bool(detail), detail


def is_classifier(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Per-sample output shape [N, C] with C >= 2 classes, floating point."""
    return len(shape) == 2 and shape[1] >= 2 and (dtype.kind == "f" or dtype.name == "bfloat16")


def label_flips(reference: VariantRun, run: VariantRun, outputs: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in outputs:
        rp, gp = reference.path("untapped", name), run.path("untapped", name)
        if rp is None or gp is None:
            continue
        ref, got = load(rp), load(gp)
        if ref.shape != got.shape or not is_classifier(ref.shape[1:], ref.dtype):
            continue
        ref_labels = np.asarray(ref, dtype=np.float64).argmax(axis=-1)
        got_labels = np.asarray(got, dtype=np.float64).argmax(axis=-1)
        where = np.argwhere(ref_labels != got_labels)
        rows = int(ref_labels.size)
        found[name] = {
            "rows": rows,
            "agreement": float((rows - len(where)) / rows) if rows else 1.0,
            "flip_count": int(len(where)),
            "flips": [{"sample": int(s), "row": int(r), "reference": int(ref_labels[s, r]),
                       "variant": int(got_labels[s, r])} for s, r in where[:MAX_LISTED_FLIPS]],
        }
    return found
