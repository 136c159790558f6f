"""Thread-count and run-to-run invariance: the same variant under several intra-op thread counts, or run again.

`audit_threads` runs each variant at every thread count (its `threads` option) and compares each count with the
first, tensor by tensor: invariant when every tensor is bit-identical, else the first divergent tensor and the
change on the final outputs. `audit_repeat` runs each variant in N fresh sessions (compare's `--repeat`): the
number of distinct final outputs and the first tensor whose value varies between runs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import api, backends
from ..errors import UsageError
from ..result import Report
from ..variant import Variant

THREADS = (1, 2, 4)


@dataclass
class KnobAudit:
    """The result of `audit_threads` or `audit_repeat`; `to_dict()` is what `--json` writes."""

    audit: str  # "threads" | "repeat"
    model: dict[str, Any]
    settings: list[Any]  # thread counts, or [runs]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when every variant ran, 3 otherwise (the audit reports; a gate decides)."""
        return 3 if any(v["status"] != "ok" for v in self.variants.values()) else 0

    def to_dict(self) -> dict[str, Any]:
        return {"format": "infercmp-audit", "audit": self.audit, "schema_version": 1, "model": self.model,
                "settings": self.settings, "variants": self.variants, "exit_code": self.exit_code}

    def lines(self) -> list[str]:
        name = Path(str(self.model["path"])).name
        if self.audit == "threads":
            out = [f"thread invariance of {name}: intra-op threads {', '.join(map(str, self.settings))}, each "
                   f"compared with {self.settings[0]} thread(s), every tensor"]
        else:
            n = self.settings[0]
            out = [f"run-to-run invariance of {name}: {n} fresh sessions per variant and {n - 1} more run(s) of the "
                   "first, every tensor"]
        for variant, v in self.variants.items():
            if v["status"] != "ok":
                out.append(f"{variant}: {v['status']}: {v['error']}")
            elif v["invariant"]:
                out.append(f"{variant}: invariant: every tensor bit-identical "
                           + ("at every thread count" if self.audit == "threads" else "in every run"))
            elif self.audit == "threads":
                out.append(f"{variant}: NOT thread-invariant")
                for row in v["settings"]:
                    if not row["identical"]:
                        out.append(f"    threads={row['threads']}: diverges from {row['first_divergence']} "
                                   f"({row['op_type']}); final outputs max abs {row['outputs_max_abs']:.3g}, "
                                   f"max ULP {row['outputs_max_ulp']:,}")
            else:
                out.append(f"{variant}: NOT deterministic: {v['distinct_outputs']} distinct final outputs in "
                           f"{v['runs']} runs; the first tensor that varies: {v['first_varying']} "
                           f"({v['op_type']}), spread max abs {v['spread_max_abs']:.3g}, max ULP "
                           f"{v['spread_max_ulp']:,}")
        return out


def _with(variant: Variant, **options: Any) -> Variant:
    kept = {k: v for k, v in variant.options if k not in options}
    kept.update({k: str(v) for k, v in options.items()})
    return Variant(variant.backend, tuple(sorted(kept.items())))


def _outputs(report: Report, name: str) -> tuple[float, int]:
    abs_, ulp = 0.0, 0
    for t in report.tensors:
        m = t.metrics.get(name)
        if t.is_output and m and "error" not in m:
            abs_ = max(abs_, m.get("max_abs") or 0.0)
            ulp = max(ulp, m.get("max_ulp") or 0)
    return abs_, ulp


def _failed(report: Report) -> dict[str, Any] | None:
    bad = next((v for v in report.variants if v.status != "ok"), None)
    return None if bad is None else {"status": bad.status, "error": f"{bad.name}: {bad.error}", "hint": bad.hint}


def audit_threads(model: str | Path, variants: Sequence[str | Variant] | str, inputs: str | Path | None = None, *,
                  threads: Sequence[int] = THREADS, **kwargs: Any) -> KnobAudit:
    """Each variant at every thread count in `threads`, compared with the first count. `kwargs` go to
    comparator.compare (tap_spec, shapes, seed, samples, timeout, jobs, events)."""
    counts = list(dict.fromkeys(int(t) for t in threads))
    if len(counts) < 2 or any(t < 1 for t in counts):
        raise UsageError(f"--threads {','.join(map(str, counts))}: give two or more thread counts >= 1",
                         "e.g. --threads 1,2,4")
    chosen, _ = api.resolve_variants(variants, None)
    result: KnobAudit | None = None
    for variant in chosen:
        backend, _ = backends.resolve_variant(variant)
        if not any(o.name == "threads" for o in backend.options):
            raise UsageError(f"{variant}: the {variant.backend} backend has no threads option",
                             "audit threads runs ort, torch, tf or tvm variants")
        swept = [_with(variant, threads=t) for t in counts]
        report = api.compare(model, swept, inputs, reference=swept[0], **kwargs)
        if result is None:
            result = KnobAudit("threads", dict(report.model), counts)
        failed = _failed(report)
        if failed is not None:
            result.variants[str(variant)] = failed
            continue
        rows = []
        for t, v in zip(counts[1:], swept[1:]):
            first = report.first_divergence.get(str(v))
            info = next((x for x in report.tensors if x.name == first), None)
            abs_, ulp = _outputs(report, str(v))
            rows.append({"threads": t, "identical": first is None, "first_divergence": first,
                         "op_type": info.op_type if info else None, "node": info.node if info else None,
                         "outputs_max_abs": abs_, "outputs_max_ulp": ulp})
        result.variants[str(variant)] = {"status": "ok", "invariant": all(r["identical"] for r in rows),
                                         "settings": rows}
    assert result is not None
    return result


def audit_repeat(model: str | Path, variants: Sequence[str | Variant] | str, inputs: str | Path | None = None, *,
                 runs: int = 5, **kwargs: Any) -> KnobAudit:
    """Each variant in `runs` fresh sessions (compare's repeat): distinct final outputs and the first tensor
    whose value varies. `kwargs` go to comparator.compare."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise UsageError(f"--runs {runs}: give 2 or more runs")
    report = api.compare(model, variants, inputs, repeat=runs, **kwargs)
    result = KnobAudit("repeat", dict(report.model), [runs])
    for v in report.variants:
        if v.status != "ok":
            result.variants[v.name] = {"status": v.status, "error": v.error, "hint": v.hint}
            continue
        d: Mapping[str, Any] = report.determinism.get(v.name, {})
        varying = next((t for t in report.tensors if (t.spread.get(v.name) or {}).get("max_abs")), None)
        spread = varying.spread[v.name] if varying else {}
        result.variants[v.name] = {"status": "ok", "invariant": d.get("distinct_outputs", 1) <= 1 and varying is None,
                                   "runs": d.get("runs", runs), "distinct_outputs": d.get("distinct_outputs", 1),
                                   "first_varying": varying.name if varying else None,
                                   "op_type": varying.op_type if varying else None,
                                   "spread_max_abs": spread.get("max_abs", 0.0),
                                   "spread_max_ulp": spread.get("max_ulp", 0) or 0}
    return result
