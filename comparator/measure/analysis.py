"""From the facts of one pass over the runs' tensors (measure/facts.py) to the report's findings.

Pure functions of the facts: none of them opens a tensor file. Final outputs are compared on the untapped runs
(the numbers a deployment gets); intermediate tensors on the tapped runs.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..graph.model import TensorInfo
from ..result import TensorReport, beyond as beyond_tolerance  # noqa: F401 - the predicate beside diverges
from .facts import Facts, RunFacts, TensorFacts, repeats

MAX_LISTED_FLIPS = 100


def tensor_reports(catalogue: Iterable[TensorInfo], facts: Facts) -> list[TensorReport]:
    """One TensorReport per catalogue tensor with its metrics, classes, spread and local error (none when the
    reference failed: there is nothing to compare with)."""
    found = {t.name: t for t in facts.tensors}
    reports = []
    for info in catalogue:
        tf = found.get(info.name)
        if tf is None or (info.scope and not tf.produced):  # a subgraph tensor nobody produced or recorded
            continue
        reports.append(TensorReport(info.name, info.op_type, info.node, info.index,
                                    None if info.shape is None else list(info.shape), info.dtype, info.is_output,
                                    metrics=tf.metrics, local=tf.local, spread=tf.spread, classes=classes(tf),
                                    fused=tf.fused))
    return reports


def diverges(m: dict[str, Any]) -> bool:
    return "error" in m or not m.get("bit_identical", False)


def first(tensors: list[TensorReport], variant: str, test: Any) -> str | None:
    for t in tensors:
        m = t.metrics.get(variant)
        if m is not None and test(m):
            return t.name
    return None


def _grouped(keys: Iterable[tuple[str, Any]]) -> list[list[str]]:
    groups: dict[Any, list[str]] = {}
    for variant, key in keys:
        groups.setdefault(key, []).append(variant)
    return sorted(groups.values(), key=lambda g: (-len(g), g))


def classes(tensor: TensorFacts) -> list[list[str]]:
    """The variants (reference included) that produced this tensor, grouped by bit-identical values: with the
    reference those that hold the same array, the others by the digests of their values (facts.TensorFacts)."""
    def key(variant: str) -> Any:
        if tensor.same_as_reference.get(variant):
            return "reference"
        return tensor.digests.get(variant, ("alone", variant))

    return _grouped((v, key(v)) for v in tensor.produced)


def equivalence_classes(facts: Facts, outputs: Sequence[str]) -> list[list[str]]:
    """The variants that ran, grouped by bit-identical final outputs (untapped runs)."""
    return _grouped((name, rf.outputs_key(outputs)) for name, rf in facts.runs.items() if rf.ok)


def pairwise(facts: Facts, outputs: Sequence[str]) -> dict[str, Any]:
    """Max ULP and max abs distance between every two variants' final outputs (untapped runs)."""
    names = [name for name, rf in facts.runs.items() if rf.ok]
    n = len(names)
    ulp: list[list[int | None]] = [[0] * n for _ in range(n)]
    absd = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            found = facts.distances.get((names[i], names[j]), {})
            u: int | None = 0
            a = 0.0
            for name in outputs:
                m = found.get(name, {"error": "not compared"})
                if "error" in m:
                    u, a = None, float("inf")
                    break
                u, a = max(u or 0, m["max_ulp"] or 0), max(a, m["max_abs"])
            ulp[i][j] = ulp[j][i] = u
            absd[i][j] = absd[j][i] = a
    return {"variants": names, "max_ulp": ulp, "max_abs": absd}


def determinism(facts: Facts, outputs: Sequence[str]) -> dict[str, Any]:
    """Per variant run more than once: distinct final outputs over its runs and a tolerance that covers the
    run-to-run spread of its final outputs (when they differ)."""
    found: dict[str, Any] = {}
    for name, rf in facts.runs.items():
        extra = repeats(rf.run, "untapped") if rf.ok else []
        if not extra:
            continue
        kinds = ["untapped"] + extra
        distinct = len({rf.outputs_key(outputs, k) for k in kinds})
        worst_abs, worst_ulp = 0.0, 0
        for t in facts.tensors:
            s = t.spread.get(name)
            if s is not None and t.kind == "untapped":
                worst_abs, worst_ulp = max(worst_abs, s["max_abs"]), max(worst_ulp, s["max_ulp"])
        suggested = {"atol": worst_abs, "max_ulp": worst_ulp} if distinct > 1 else None
        found[name] = {"runs": len(kinds), "distinct_outputs": distinct, "suggested_tolerance": suggested}
    return found


def observer_effect(run: RunFacts, outputs: Sequence[str]) -> tuple[bool, dict[str, Any]]:
    """Do the tapped run's final outputs differ from the untapped run's? (Tapping can block fusions.)"""
    detail: dict[str, Any] = {}
    for name in outputs:
        out = run.outputs.get(name)
        m = None if out is None else out.observer
        if m is not None and "error" not in m and not m["bit_identical"]:
            detail[name] = {"max_ulp": m["max_ulp"], "max_abs": m["max_abs"]}
    return bool(detail), detail


SCORE_OPS = ("Softmax", "LogSoftmax")  # outputs these produce are class scores
FLOAT_TYPES = {1, 10, 11, 16}  # onnx FLOAT, FLOAT16, DOUBLE, BFLOAT16


def class_outputs(tensors: Iterable[TensorInfo], named: Sequence[str] = ()) -> list[str]:
    """The final outputs that are class scores: those a Softmax or LogSoftmax produces, plus `named` ones
    (`--classes`); each [N, C] or [N, T, C] per sample, floating point. A named output that cannot be one is a
    UsageError that says why."""
    from ..errors import UsageError

    outputs = {t.name: t for t in tensors if t.is_output}
    for name in named:
        t = outputs.get(name)
        if t is None:
            raise UsageError(f"--classes {name}: not a final output of the model",
                             f"final outputs: {', '.join(outputs) or '(none)'}")
        if not _scores_shaped(t):
            raise UsageError(f"--classes {name}: class scores are floating point, [N, C] or [N, T, C] per sample; "
                             f"{name} is {t.dtype} {list(t.shape) if t.shape is not None else '(unknown shape)'}")
    return [n for n, t in outputs.items() if n in named or (t.op_type in SCORE_OPS and _scores_shaped(t))]


def _scores_shaped(t: TensorInfo) -> bool:
    last = t.shape[-1] if t.shape else None
    return (t.shape is not None and len(t.shape) in (2, 3) and t.elem_type in FLOAT_TYPES
            and not (isinstance(last, int) and last < 2))


def label_flips(reference: RunFacts, run: RunFacts, classes: Sequence[str]) -> dict[str, Any]:
    """Per class-score output: the positions (rows, or rows and time steps) whose top-1 class differs from the
    reference's."""
    found: dict[str, Any] = {}
    for name in classes:
        ref, got = reference.outputs.get(name), run.outputs.get(name)
        if ref is None or got is None or ref.shape != got.shape:
            continue
        ref_labels, got_labels = ref.top1, got.top1
        if ref_labels is None or got_labels is None:
            continue
        where = np.argwhere(ref_labels != got_labels)
        rows = int(ref_labels.size)
        found[name] = {
            "rows": rows,
            "agreement": float((rows - len(where)) / rows) if rows else 1.0,
            "flip_count": int(len(where)),
            "flips": [_flip(ref_labels, got_labels, tuple(int(i) for i in at)) for at in where[:MAX_LISTED_FLIPS]],
        }
    return found


def _flip(ref: np.ndarray, got: np.ndarray, at: tuple[int, ...]) -> dict[str, int]:
    """One flipped position: sample and row, and the time step of an [N, T, C] output."""
    flip = {"sample": at[0], "row": at[1]}
    if len(at) == 3:
        flip["step"] = at[2]
    return {**flip, "reference": int(ref[at]), "variant": int(got[at])}


def top1(runs: Mapping[str, RunFacts], variant: str, output: str) -> np.ndarray | None:
    """The variant's top-1 class per row of a classifier output, None where it has none."""
    out = runs[variant].outputs.get(output)
    return None if out is None else out.top1


# -- doubts: a wrong oracle, a broken middle -------------------------------------------------------------------

# The two float64 executions that share no kernels (onnx.reference's NumPy and the torch executor).
ORACLES = ("ref:dtype=float64", "torch:dtype=float64")
# They agree to float64 noise when the signal-to-noise ratio of one against the other is at least this: a
# relative RMS difference of 1e-10, a thousandth of a float32 ULP. A deep network in float64 stays near 250 dB.
ORACLE_SNR_DB = 200.0
# An intermediate tensor is "far beyond" the tolerance when both its max_abs and its max_rel exceed it this often.
FAR_BEYOND = 1000


def other_oracle(reference: str) -> str | None:
    """The float64 oracle that checks `reference`, when the reference is one of the two."""
    return ORACLES[1 - ORACLES.index(reference)] if reference in ORACLES else None


def oracle_disagreements(tensors: Sequence[TensorReport], reference: str) -> list[dict[str, Any]]:
    """Tensors where the two float64 oracles disagree beyond float64 noise, in graph order; empty unless the
    reference is one oracle and the other is among the variants."""
    other = other_oracle(reference)
    if other is None:
        return []
    found = []
    for t in tensors:
        m = t.metrics.get(other)
        if m is None:
            continue
        if "error" in m:
            found.append({"tensor": t.name, "node": t.node, "op_type": t.op_type, "error": m["error"]})
        elif m["nan_mismatch"] or m["inf_mismatch"] or m["snr_db"] < ORACLE_SNR_DB:
            found.append({"tensor": t.name, "node": t.node, "op_type": t.op_type, "snr_db": m["snr_db"],
                          "max_abs": m["max_abs"], "max_rel": m["max_rel"]})
    return found


# The reference stands alone at the final outputs when it is at least this many times further from a float64 oracle
# than every other float32 variant (in max ULP, or in max abs): the others' differences from it there are then its
# own error, to within 1 / ALONE (the triangle inequality, element by element: ULPs count float32 steps, the
# oracle's values rounded to float32). It must be the furthest in the other measure too: near zero a few ULPs of
# the tensor's scale are millions of ULPs of the value, so a reference that returns 0 where exact math gives 1.5e-9
# would stand alone in max ULP while it is the closest of all in max abs.
ALONE = 10


def oracle_distance(pairwise: Mapping[str, Any], reference: str, float64: Iterable[str],
                    oracles: Sequence[str] = ORACLES) -> dict[str, Any]:
    """How far every variant's final outputs are from a float64 oracle (the first of `oracles`, the names of the
    runs that are one, that ran: `ref:dtype=float64@machine-a` in a diff of bundles), when the reference is not a
    float64 variant: {"oracle", "max_ulp": {variant: n, None where not compared}, "max_abs":
    {variant: x, inf where not compared}, "alone": the measures, of "max_ulp" and "max_abs", in which the reference
    is ALONE times further from the oracle than every other variant that is not float64, provided it is the
    furthest in both (none when there is no such variant), "factor": ALONE}; {} when no oracle ran, or the
    reference is float64 (its metrics say it then)."""
    names = list(pairwise.get("variants", []))
    wide = set(float64)
    oracle = next((o for o in oracles if o in names), None)
    if oracle is None or reference in wide or reference not in names:
        return {}
    i = names.index(oracle)
    ulp = {v: pairwise["max_ulp"][i][j] for j, v in enumerate(names) if v != oracle}
    absd = {v: pairwise["max_abs"][i][j] for j, v in enumerate(names) if v != oracle}
    others = [v for v in ulp if v != reference and v not in wide]
    alone = []
    for measure, far in (("max_ulp", ulp), ("max_abs", absd)):
        own = far[reference]
        if others and own is not None and 0 < own < math.inf and all(
                far[v] is not None and ALONE * far[v] <= own for v in others):
            alone.append(measure)
    furthest = all(far[reference] is not None and all(far[v] is not None and far[v] <= far[reference] for v in others)
                   for far in (ulp, absd))
    if not furthest:
        alone = []
    return {"oracle": oracle, "max_ulp": ulp, "max_abs": absd, "alone": alone, "factor": ALONE}


def far_by_maxima(m: dict[str, Any], atol: float, rtol: float) -> bool:
    """Whether a tensor's metrics could hold an element further than atol + rtol * |reference|: its max_abs is over
    atol and its max_rel over rtol (necessary, not enough: the two maxima may come from different elements)."""
    return "error" not in m and m["max_abs"] > atol and m["max_rel"] > rtol


def broken_middle(tensors: Sequence[TensorReport], variant: str, tolerance: Mapping[str, Any],
                  element_far: Callable[[TensorReport, float, float], bool] | None = None) -> dict[str, Any]:
    """The intermediate tensors of `variant` with an element more than FAR_BEYOND times its tolerance away from
    the reference's: {"count", "first", "op_type", "max_abs", "max_rel"}, or {} when none.

    The metrics hold maxima only: max_abs above FAR_BEYOND * atol and max_rel above FAR_BEYOND * rtol are
    necessary, and enough when no `element_far` is given. The two maxima may come from different elements (a large
    error on a large value, a large relative error on a value near zero: ordinary float32 rounding), so
    `element_far(tensor, atol, rtol)` says whether one element exceeds atol + rtol * |reference| itself (assemble
    reads the two files again for these candidates alone)."""
    atol, rtol = FAR_BEYOND * tolerance["atol"], FAR_BEYOND * tolerance["rtol"]
    far = [t for t in tensors if not t.is_output and (m := t.metrics.get(variant)) is not None
           and far_by_maxima(m, atol, rtol) and (element_far is None or element_far(t, atol, rtol))]
    if not far:
        return {}
    m = far[0].metrics[variant]
    return {"count": len(far), "first": far[0].name, "op_type": far[0].op_type, "max_abs": m["max_abs"],
            "max_rel": m["max_rel"]}
