"""The report: plain data, JSON round-trip with a versioned schema (see docs/report-schema.md)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ReportError
from .jsondata import decode, decode_figures, decode_metrics, plain

SCHEMA_VERSION = 1


@dataclass
class VariantReport:
    """One variant's run: its status (ok, failed, unsupported, crashed, timeout), error and hint when it did not
    run, provenance (library versions, effective knobs, the machine) and timings."""

    name: str
    backend: str
    options: dict[str, str]
    status: str
    error: str | None = None
    hint: str | None = None
    stderr_tail: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass
class TensorReport:
    """One tapped tensor: where it comes from (op type, node, position), its shape and type, and per variant its
    metrics against the reference."""

    name: str
    op_type: str
    node: str
    index: int
    shape: list[Any] | None
    dtype: str | None
    is_output: bool
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant name -> metrics
    # --isolate: the node replayed alone on the reference's inputs; same metric fields as `metrics`.
    local: dict[str, dict[str, Any]] = field(default_factory=dict)
    # --repeat: run-to-run spread of this tensor within each variant (max_abs, max_ulp over the repeats).
    spread: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Variants (the reference included) grouped by bit-identical values of this tensor.
    classes: list[list[str]] = field(default_factory=list)
    # --tap fused: the variants (the reference included) whose optimized graph computes no such tensor (fused into
    # another node, or rewritten to another layout): nothing of theirs is compared here.
    fused: list[str] = field(default_factory=list)

    def role(self, variant: str) -> str:
        """With --isolate: origin (the node itself adds error), propagated (it only inherits error), identical
        (no deviation); n/a where the variant has no metrics for this tensor."""
        acc, local = self.metrics.get(variant), self.local.get(variant)
        if acc is None:
            return "n/a"
        if local is not None and "error" not in local and not local["bit_identical"]:
            return "origin"
        return "identical" if ("error" not in acc and acc["bit_identical"]) else "propagated"

    def worst_element(self, variant: str, local: bool = False) -> tuple[int, list[int]] | None:
        """Where `variant`'s largest absolute error in this tensor is: (sample, index within the per-sample
        shape), from the metrics' flat `worst_index`; None when no element differs, or when the shape has a named
        dimension (then only `worst_index` says where)."""
        m = (self.local if local else self.metrics).get(variant) or {}
        flat, count = m.get("worst_index"), m.get("count")
        if flat is None or not isinstance(count, int) or self.shape is None \
                or not all(isinstance(d, int) and d > 0 for d in self.shape):
            return None
        per = math.prod(self.shape)
        if count % per:
            return None
        sample, rest = divmod(flat, per)
        index = []
        for d in reversed(self.shape):
            rest, i = divmod(rest, d)
            index.append(i)
        return sample, index[::-1]


@dataclass
class Report:
    """The result of `comparator.compare`: plain data. `summary()` is a short text, `to_dict()` valid JSON (see
    docs/report-schema.md); `first_divergence`, `first_beyond_tolerance`, `passed` and `exit_code` are the
    verdict, `tensors` the per-tensor metrics."""

    model: dict[str, Any]
    reference: str
    tolerance: dict[str, Any]
    variants: list[VariantReport]
    tensors: list[TensorReport]
    first_divergence: dict[str, str | None] = field(default_factory=dict)
    first_beyond_tolerance: dict[str, str | None] = field(default_factory=dict)
    equivalence_classes: list[list[str]] = field(default_factory=list)
    observer_effect: dict[str, bool] = field(default_factory=dict)
    observer_detail: dict[str, dict[str, Any]] = field(default_factory=dict)
    label_flips: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped_taps: list[list[str]] = field(default_factory=list)
    # Per variant that does not record tensors inside subgraphs (ORT, TVM, TF graph/xla): how many of the
    # catalogue's subgraph tensors it leaves out ("not tapped inside subgraphs"); absent when none.
    untapped_subgraphs: dict[str, int] = field(default_factory=dict)
    # --isolate: per variant, the nodes that add the most error themselves, largest first:
    # {"tensor", "node", "op_type", "max_ulp", "max_rel", "max_abs"}.
    origins: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # --repeat: per variant {"runs", "distinct_outputs", "suggested_tolerance": {"atol", "max_ulp"} or None}.
    determinism: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Pairwise distance between every two variants' final outputs: {"variants": [...], "max_ulp": [[...]],
    # "max_abs": [[...]]} (symmetric; the dendrogram is drawn from it).
    pairwise: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    # When the reference is one float64 oracle and the other ran too: {"variants": [reference, other],
    # "disagreements": [{"tensor", "node", "op_type", "snr_db", "max_abs", "max_rel"} or {..., "error"}]}.
    oracle: dict[str, Any] = field(default_factory=dict)
    # When a float64 oracle ran beside a reference that is not float64: how far every variant's final outputs are
    # from it, {"oracle", "max_ulp": {variant: n}, "max_abs": {variant: x}, "alone": the measures in which the
    # reference is "factor" (10) times further from it than every other float32 variant, "factor"}
    # (measure/analysis.oracle_distance).
    oracle_distance: dict[str, Any] = field(default_factory=dict)
    # Per variant whose final outputs pass: intermediate tensors beyond 1,000x the tolerance, {"count", "first",
    # "op_type", "max_abs", "max_rel"}.
    broken_middle: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per variant: intermediate tensors beyond 1,000x the tolerance that no final output is computed from
    # (graph/structure.dead_ends), in the same form; they cannot change the outputs, so they cast no doubt on a pass.
    dead_ends: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The model's nodes (graph/structure.py): {"id", "op_type", "domain", "inputs", "outputs", "parent"}.
    graph: list[dict[str, Any]] = field(default_factory=list)
    # --tap fused: per variant, what its taps are ("mode": "optimized" (the graph its runtime really runs),
    # "node-by-node" (every tensor is computed as tapped), "unavailable" (tapped as --tap all; "why")), and for
    # an optimized graph the groups of original nodes it runs as fewer nodes: [{"nodes", "ops", "outputs"}].
    fusion: dict[str, dict[str, Any]] = field(default_factory=dict)
    passed: bool = False
    exit_code: int = 0
    schema_version: int = SCHEMA_VERSION

    def variant(self, name: str) -> VariantReport:
        """The variant named `name` (its canonical string); KeyError if the report has none."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def tensor(self, name: str) -> TensorReport:
        """The tensor named `name` (its ONNX name); KeyError if it was not tapped."""
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def latency(self, variant: str) -> dict[str, Any] | None:
        """`variant`'s measured latency (`compare(time=N)`, `--time N`): {"runs", "warmup", "median_s", "min_s",
        "max_s", "sample"}, from its `timings["latency"]`; None when it was not timed (or is not in the report)."""
        try:
            timings = self.variant(variant).timings
        except KeyError:
            return None
        found = timings.get("latency") if isinstance(timings, dict) else None
        return found if isinstance(found, dict) and isinstance(found.get("median_s"), (int, float)) else None

    def latency_ratio(self, variant: str) -> float | None:
        """`variant`'s median latency over the reference's (0.5: twice as fast); None unless both were timed."""
        mine, ref = self.latency(variant), self.latency(self.reference)
        if mine is None or ref is None or not ref["median_s"] > 0:
            return None
        return float(mine["median_s"]) / float(ref["median_s"])

    def untapped_subgraph_note(self, variant: str) -> str | None:
        """What a view says of a variant that records no tensor inside subgraphs; None for one that does."""
        count = self.untapped_subgraphs.get(variant)
        if count is None:
            return None
        return (f"{variant}: not tapped inside subgraphs: {count} tensor{'s' if count != 1 else ''} (this variant "
                "records no tensor inside If, Loop or Scan bodies; they are not compared for it)")

    def fusion_note(self, variant: str) -> str | None:
        """What a view says of `variant`'s taps under `--tap fused`; None for a variant that runs node by node (or
        without --tap fused)."""
        found = self.fusion.get(variant)
        if not found or found.get("mode") == "node-by-node":
            return None
        if found.get("mode") != "optimized":
            return (f"{variant}: fusion-aware taps not available ({found.get('why', 'no reason given')}): tapped as "
                    "with --tap all, so tapping may change what it runs (the observer effect says whether it did)")
        away = sum(variant in t.fused for t in self.tensors)
        groups = found.get("groups", [])
        if not away and not groups:  # its optimized graph computes every tapped tensor: as with --tap all
            return None
        folded = found.get("folded", 0)
        text = (f"{variant}: tapped the graph it optimized, {found.get('tapped', 0):,} tensors; {away:,} it does not "
                f"compute {'is' if away == 1 else 'are'} \"fused\" in the tables"
                + (f" ({folded:,} of them folded into constants)" if folded else ""))
        if groups:
            big = max(groups, key=lambda g: len(g["nodes"]))
            ops = sorted(set(big["ops"]))
            text += (f"; {len(groups):,} group{'s' * (len(groups) != 1)} of nodes "
                     f"{'run' if len(groups) != 1 else 'runs'} fused, the largest "
                     f"{len(big['nodes']):,} nodes from {big['nodes'][0]}"
                     + (f" as {', '.join(ops[:3])}" + (" ..." if len(ops) > 3 else "") if ops else " (folded)"))
        if variant == self.reference and away:
            text += ("; the other variants are not compared on those tensors (a reference that runs node by node, "
                     "--reference ref, compares them all)")
        return text

    def __repr__(self) -> str:
        """One line: model, reference, the other variants (the first four), tensor count, verdict."""
        others = [v.name for v in self.variants if v.name != self.reference]
        shown = ", ".join(repr(n) for n in others[:4]) + (f", +{len(others) - 4} more" if len(others) > 4 else "")
        model = str(self.model.get("path", "?")).replace("\\", "/").rsplit("/", 1)[-1]
        return (f"Report(model={model!r}, reference={self.reference!r}, variants=[{shown}], "
                f"tensors={len(self.tensors)}, passed={self.passed}, exit_code={self.exit_code})")

    def beyond_tolerance(self, variant: str) -> list[str]:
        """Names of the tensors where `variant` is beyond tolerance (or could not be compared), in graph order."""
        return [t.name for t in self.tensors if (m := t.metrics.get(variant)) is not None and beyond(m)]

    def outputs_beyond(self, variant: str) -> bool:
        """Whether a final output of `variant` is beyond tolerance (or could not be compared)."""
        return any(beyond(m) for t in self.tensors if t.is_output and (m := t.metrics.get(variant)) is not None)

    def summary(self) -> str:
        """A short plain-text summary: the verdict, then per variant its first divergence, its first tensor
        beyond tolerance and how many tensors are beyond tolerance (or why it did not run)."""
        tol = ", ".join(f"{k} {v}" for k, v in self.tolerance.items() if v is not None)
        failed = [v for v in self.variants if v.status != "ok"]
        if self.passed:
            verdict = "PASS: every final output within tolerance"
        elif failed:
            verdict = f"FAIL: {len(failed)} variant{'s' * (len(failed) != 1)} could not run"
        else:
            verdict = "FAIL: final outputs beyond tolerance"
        model = str(self.model.get("path", "?")).replace("\\", "/").rsplit("/", 1)[-1]
        lines = [f"{model}: {verdict} ({tol}; reference {self.reference})"]
        ops = {t.name: t.op_type for t in self.tensors}

        def at(name: str | None, none: str) -> str:
            return none if name is None else f"{name} ({ops.get(name, '?')})"

        for v in self.variants:
            if v.name == self.reference and v.status == "ok":
                continue
            if v.status != "ok":
                lines.append(f"  {v.name}: {v.status}: {v.error or 'no error message'}")
                continue
            compared = sum(1 for t in self.tensors if v.name in t.metrics)
            beyond = len(self.beyond_tolerance(v.name))
            lines.append(f"  {v.name}: first divergence {at(self.first_divergence.get(v.name), 'none')}; "
                         f"first beyond tolerance {at(self.first_beyond_tolerance.get(v.name), 'none')}; "
                         f"{beyond} of {compared} tensors beyond tolerance")
        return "\n".join(lines)

    # -- what the views show and the analyses do not store: computed from the tensors' metrics --------------------

    def compared(self) -> list[str]:
        """The variants compared with the reference: every other variant that ran, in run order."""
        return [v.name for v in self.variants if v.name != self.reference and v.status == "ok"]

    def worst_tensors(self, variant: str | None = None, local: bool = False) -> list[TensorReport]:
        """The tensors that differ from the reference, worst first by `severity` (SNR, scale-free), for `variant`
        or for the worst of every compared variant; `local`: by the --isolate local error instead."""
        names = [variant] if variant is not None else self.compared()
        keyed = []
        for t in self.tensors:
            found = t.local if local else t.metrics
            keys = [severity(m) for v in names if (m := found.get(v)) is not None]
            if keys and min(keys)[0] < IDENTICAL:
                keyed.append((min(keys), t.index, t))
        return [t for *_, t in sorted(keyed, key=lambda k: k[:2])]

    def minimum_tolerance(self, variant: str) -> dict[str, Any]:
        """The smallest tolerance under which every final output of `variant` passes, as Polygraphy gives it:
        {"atol": at rtol 0, "rtol": at atol 0, "max_ulp": the ULP clause alone (None without ULPs)}, each enough
        on its own (with both atol and rtol set, less of each may do); {"none": why} when no tolerance can pass
        (a NaN or Inf mismatch, an output not compared); {} when the variant has no final output compared."""
        finals = [(t.name, m) for t in self.tensors if t.is_output and (m := t.metrics.get(variant)) is not None]
        if not finals:
            return {}
        for name, m in finals:
            if "error" in m:
                return {"none": f"{name} could not be compared"}
            if m.get("nan_mismatch") or m.get("inf_mismatch"):
                return {"none": f"{name} has NaN or Inf where the reference has not"}
        for name, m in finals:
            if not math.isfinite(m["max_abs"]):
                return {"none": f"{name} differs by more than any finite tolerance"}
        ulps = [u for _, m in finals if isinstance(u := m.get("max_ulp"), int)]
        return {"atol": max(float(m["max_abs"]) for _, m in finals),
                "rtol": max(float(m["max_rel"]) for _, m in finals),
                "max_ulp": max(ulps) if len(ulps) == len(finals) else None}

    def op_types(self) -> list[dict[str, Any]]:
        """Per op type, worst first: "op_type"; "tensors" compared; "differ" and "beyond" (tensors not
        bit-identical, beyond tolerance, in some compared variant); "worst": {"tensor", "variant", "snr_db",
        "max_rel", "max_ulp"} of its worst tensor by `severity`, None when every tensor is bit-identical;
        "max_ulp" over all (None without ULPs: ints against floats, strings). With --isolate also "origins"
        (tensors whose node adds error itself in some variant) and "local_worst", by the local error, which orders
        the list then: the op types that add error first."""
        variants = self.compared()
        isolated = any(t.local for t in self.tensors)
        groups: dict[str, dict[str, Any]] = {}
        for t in self.tensors:
            ms = {v: m for v in variants if (m := t.metrics.get(v)) is not None}
            if not ms:
                continue
            g = groups.setdefault(t.op_type, {"op_type": t.op_type, "tensors": 0, "differ": 0, "beyond": 0,
                                              "worst": None, "max_ulp": None, "_key": (IDENTICAL + 1,)})
            g["tensors"] += 1
            g["differ"] += any("error" in m or not m.get("bit_identical") for m in ms.values())
            g["beyond"] += any(beyond(m) for m in ms.values())
            ulps = [u for m in ms.values() if isinstance(u := m.get("max_ulp"), int)]
            if ulps:
                g["max_ulp"] = max(ulps + ([g["max_ulp"]] if g["max_ulp"] is not None else []))
            _worse(g, "worst", "_key", t, ms)
            if isolated:
                g.setdefault("origins", 0)
                g.setdefault("local_worst", None)
                g.setdefault("_local", (IDENTICAL + 1,))
                local = {v: m for v in variants if (m := t.local.get(v)) is not None}
                g["origins"] += any("error" not in m and not m.get("bit_identical") for m in local.values())
                _worse(g, "local_worst", "_local", t, local)
        order = sorted(groups.values(), key=lambda g: (g.get("_local", g["_key"]), g["_key"], g["op_type"]))
        for g in order:
            g.pop("_key")
            g.pop("_local", None)
        return order

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data: `json.dumps(report.to_dict(), allow_nan=False)` works. JSON has
        no NaN or infinity, so non-finite numbers are the strings "nan", "inf" and "-inf" (as the JSON report
        writes them), NumPy scalars plain numbers; `Report.from_dict` reads them back."""
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The report `to_dict` wrote (or the JSON report holds), schema version checked; ReportError when it is
        not one."""
        if not isinstance(data, dict) or "schema_version" not in data:
            raise ReportError("not an infercmp report (no schema_version)")
        version = data["schema_version"]
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ReportError(f"report schema version {version} is newer than this infercmp understands "
                              f"({SCHEMA_VERSION})", "upgrade infercmp")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            kwargs["variants"] = [VariantReport(**v) for v in data["variants"]]
            tensors = []
            for t in data["tensors"]:
                t = dict(t)
                for key in ("metrics", "local", "spread"):
                    t[key] = {k: decode_metrics(m) for k, m in t.get(key, {}).items()}
                tensors.append(TensorReport(**t))
            kwargs["tensors"] = tensors
            # Outside `metrics`, numbers that can be non-finite: observer differences, pairwise distances,
            # oracle disagreements and distances, broken middles.
            kwargs["observer_detail"] = {v: {o: decode_metrics(d) for o, d in outs.items()}
                                         for v, outs in data.get("observer_detail", {}).items()}
            if "disagreements" in kwargs.get("oracle", {}):
                kwargs["oracle"] = dict(kwargs["oracle"], disagreements=[
                    decode_figures(d) for d in kwargs["oracle"]["disagreements"]])
            for key in ("broken_middle", "dead_ends"):
                kwargs[key] = {v: decode_figures(d) for v, d in data.get(key, {}).items()}
            kwargs["origins"] = {v: [decode_figures(d) for d in found] for v, found in data.get("origins", {}).items()}
            kwargs["tolerance"] = {k: decode(v) for k, v in data.get("tolerance", {}).items()}
            if "max_abs" in kwargs.get("pairwise", {}):
                kwargs["pairwise"] = dict(kwargs["pairwise"], max_abs=[[decode(x) for x in row]
                                                                       for row in kwargs["pairwise"]["max_abs"]])
            if "max_abs" in kwargs.get("oracle_distance", {}):
                kwargs["oracle_distance"] = dict(kwargs["oracle_distance"], max_abs={
                    v: decode(x) for v, x in kwargs["oracle_distance"]["max_abs"].items()})
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # valid JSON, wrong shape
            raise ReportError(f"malformed report: {type(exc).__name__}: {exc}") from None


def base_name(tensor: str) -> str:
    """A catalogue tensor's name without its loop-iteration suffix (`Loop_2/body/x@iter=0` -> `Loop_2/body/x`): the
    name `Report.graph` lists among its node's outputs."""
    at = tensor.rfind("@iter=")
    return tensor[:at] if at > 0 else tensor


IDENTICAL = 3  # severity's first member for a bit-identical pair


def beyond(m: dict[str, Any]) -> bool:
    """Whether one metrics entry is beyond tolerance, or could not be compared."""
    return "error" in m or m.get("violations", 0) > 0


def severity(m: dict[str, Any]) -> tuple[Any, ...]:
    """How far one metrics entry (`TensorReport.metrics[v]` or `.local[v]`) is from the reference, as a sort key,
    smallest first is worst: not comparable, then NaN/Inf mismatches (most first), then the lowest SNR (the error's
    energy against the signal's: a figure that does not depend on the tensor's scale, unlike max ULP or max abs),
    then the largest max rel; bit-identical last."""
    if "error" in m:
        return (0, 0.0, 0.0)
    mismatches = (m.get("nan_mismatch") or 0) + (m.get("inf_mismatch") or 0)
    if mismatches:
        return (1, -float(mismatches), 0.0)
    if m.get("bit_identical"):
        return (IDENTICAL, 0.0, 0.0)
    snr, rel = m.get("snr_db"), m.get("max_rel")
    snr = math.inf if not isinstance(snr, (int, float)) or math.isnan(snr) else float(snr)
    rel = float(rel) if isinstance(rel, (int, float)) and not math.isnan(rel) else 0.0
    return (2, snr, -rel)


def _worse(group: dict[str, Any], slot: str, key_slot: str, t: TensorReport, found: dict[str, dict[str, Any]]) -> None:
    """Keep in group[slot] the worst (tensor, variant) entry seen so far by `severity`."""
    for v, m in found.items():
        key = severity(m)
        if key < group[key_slot] and key[0] < IDENTICAL:
            group[key_slot] = key
            group[slot] = {"tensor": t.name, "variant": v, "snr_db": m.get("snr_db"), "max_rel": m.get("max_rel"),
                           "max_ulp": m.get("max_ulp"), "error": m.get("error")}
