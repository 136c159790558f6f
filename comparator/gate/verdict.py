"""Gate verdicts: a policy applied to reports, and the result a gate returns.

`evaluate` reads a report and the facts it was built from (runs' status, top-1 labels) and lists, per candidate variant,
every rule it breaks: tolerance (per tensor, from the policy), cosine floor, top-1 accuracy relative to the
reference's (MLPerf-style, with labels) or agreement with the reference's predictions (without), label-flip
budget. Final outputs always gate; intermediate tensors gate only where a policy rule names them.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from ..measure import analysis
from ..measure.facts import Facts
from ..graph.model import TensorInfo
from .policy import Policy
from ..result import Report

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def classifiers(tensors: Sequence[TensorInfo]) -> list[str]:
    """Final outputs shaped [N, C] (C >= 2) per sample, floating point: those whose top-1 class a label policy
    may gate (naming one in a policy is what makes it a classifier there, whatever op produced it)."""
    return [t.name for t in tensors if t.is_output and t.shape is not None and len(t.shape) == 2
            and isinstance(t.shape[1], int) and t.shape[1] >= 2 and t.elem_type in analysis.FLOAT_TYPES]


@dataclass
class GateResult:
    """The verdict of a gate, with the reports it is based on. `to_dict()` is what `--json` writes."""

    mode: str  # "baseline", "models" or "variants"
    reference: dict[str, Any]
    candidate: dict[str, Any]
    policy: dict[str, Any]
    reports: list[Report]
    matching: list[dict[str, str]] = field(default_factory=list)
    unmatched: dict[str, list[str]] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    updated: str | None = None
    not_updated: str | None = None  # why --update-baseline wrote nothing
    passed: bool = False
    exit_code: int = EXIT_OK

    @property
    def model_changed(self) -> bool:
        """Whether the model differs from the baseline's (by sha256)."""
        return self.reference.get("sha256") != self.candidate.get("sha256")

    def _verdict_code(self) -> int:
        required = [v for v in self.verdicts.values() if v["required"]]
        if any(v["status"] == "error" for v in required):
            return EXIT_FAILED
        if any(v["status"] == "fail" for v in required):
            return EXIT_REGRESSION
        return EXIT_OK

    def finish(self) -> GateResult:
        """Set `passed` and `exit_code` from the verdicts and the runs; returns self."""
        self.exit_code = self._verdict_code()
        self.passed = self.exit_code == EXIT_OK
        return self

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-able data."""
        return {"format": "infercmp-gate", "schema_version": 1, "mode": self.mode, "passed": self.passed,
                "exit_code": self.exit_code, "reference": self.reference, "candidate": self.candidate,
                "model_changed": self.model_changed, "policy": self.policy, "matching": self.matching,
                "unmatched": self.unmatched, "verdicts": self.verdicts, "updated": self.updated,
                "not_updated": self.not_updated,
                "reports": [r.to_dict() for r in self.reports]}

    def lines(self) -> list[str]:
        """The verdict as text: what was compared with what, then per variant its findings and numbers."""
        ref, cand = self.reference, self.candidate
        if self.mode == "variants":
            out = [f"gate: {cand.get('path')} (sha256 {cand.get('sha256', '')[:12]}): every variant against "
                   f"the reference {ref.get('path')}"]
        else:
            out = [f"gate: {cand.get('path')} (sha256 {cand.get('sha256', '')[:12]}) against {ref.get('kind')} "
                   f"{ref.get('path')} (model sha256 {ref.get('sha256', '')[:12]}"
                   + (f", captured {ref['created']} on {ref.get('host')}" if ref.get("created") else "") + "): "
                   + ("model changed" if self.model_changed else "same model")]
        if self.matching:
            hows: dict[str, int] = defaultdict(int)
            for m in self.matching:
                hows["name" if m["how"] == "name" else "structure"] += 1
            out.append(f"tensors: {len(self.matching)} matched (" + ", ".join(f"{n} by {h}" for h, n in hows.items())
                       + ")" + "".join(f"; {len(v)} {k} unmatched" for k, v in self.unmatched.items() if v))
            out.extend(f"  {m['tensor']} <- {m['source']} (by {m['how']})" for m in self.matching
                       if m["how"] != "name")
        for name, v in self.verdicts.items():
            out.extend(verdict_lines(name, v))
        if self.updated:
            out.append(f"baseline updated: {self.updated} (previous kept as {self.updated}.prev)")
        if self.not_updated:
            out.append(f"baseline not updated: {self.not_updated}")
        required = [v for v in self.verdicts.values() if v["required"]]
        failing = sum(v["status"] != "pass" for v in required)
        word = {EXIT_OK: "PASS", EXIT_REGRESSION: "FAIL (regression)", EXIT_FAILED: "FAIL (could not run)"}
        verdict = self._verdict_code()
        out.append(f"GATE {word[verdict]}: {len(required) - failing} of {len(required)} required "
                   f"variant(s) pass (exit {self.exit_code}"
                   + (": the baseline was not updated" if self.exit_code != verdict else "") + ")")
        return out

    def summary(self) -> str:
        """A few plain-text lines: the verdict and each failed check."""
        return "\n".join(self.lines())


def verdict_lines(name: str, v: dict[str, Any]) -> list[str]:
    """One gated variant's verdict as text: its status, each finding, label agreement and its worst tensor."""
    out = [f"{name}: {v['status'].upper()}" + ("" if v["required"] else " (not required)")]
    out.extend(f"  {f['message']}" for f in v["findings"])
    for output, info in v.get("labels", {}).items():
        text = (f"  {output}: top-1 agreement {100 * info['agreement']:.2f}% "
                f"({info['flips']} of {info['rows']} rows flip)")
        if "accuracy_candidate" in info:
            text += f"; accuracy {info['accuracy_candidate']:.4f} vs reference {info['accuracy_reference']:.4f}"
        if "note" in info:
            text += f" ({info['note']})"
        out.append(text)
    w = v.get("worst")
    if w is None:
        if v["status"] != "error":
            out.append("  bit-identical to the reference in every compared tensor")
        return out
    text = f"  first divergence {v.get('first_divergence') or 'none'}; worst tensor {w['tensor']}"
    text += "" if w.get("gated", True) else ", not gated"
    if "count" in w:
        text += (f" (max_abs {w['max_abs']:.3g}, max_ulp {w['max_ulp']}, cosine {_cosine(w['cosine'])}, "
                 f"{w['violations']} of {w['count']} elements beyond its tolerance)")
    else:
        text += f" ({w.get('error')})"
    return out + [text]


def _cosine(c: float) -> str:
    return "1" if c == 1.0 else (f"1-{1 - c:.1e}" if c > 0.99 else f"{c:.6g}")


def _worst(report: Report, variant: str) -> dict[str, Any] | None:
    best: tuple[Any, ...] | None = None
    found = None
    for t in report.tensors:
        m = t.metrics.get(variant)
        if m is None:
            continue
        if "error" in m:
            return {"tensor": t.name, "error": m["error"]}
        key = (m["violations"] / max(1, m["count"]), m["max_abs"], m["max_ulp"] or 0)
        if key > (best or (0, 0.0, 0)):
            best, found = key, {"tensor": t.name, "violations": m["violations"], "count": m["count"],
                                "max_abs": m["max_abs"], "max_ulp": m["max_ulp"], "cosine": m["cosine"]}
    return found


def evaluate(report: Report, facts: Facts, policy: Policy, infos: Mapping[str, TensorInfo],
             labels: np.ndarray | None, classifier_outputs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Apply `policy` to every non-reference variant of `report`, built from `facts`."""
    ref = facts.runs[report.reference].run
    verdicts = {}
    for vr in report.variants:
        if vr.name == report.reference:
            continue
        run = facts.runs[vr.name].run
        plain = str(getattr(run.variant, "plain", run.variant))
        findings: list[dict[str, Any]] = []
        verdict: dict[str, Any] = {"status": "pass", "required": policy.required(plain), "findings": findings,
                                   "labels": {}, "first_divergence": report.first_divergence.get(vr.name),
                                   "worst": _worst(report, vr.name)}
        verdicts[vr.name] = verdict
        if verdict["worst"] is not None:
            info = infos[verdict["worst"]["tensor"]]
            verdict["worst"]["gated"] = info.is_output or policy.rule_for(info).explicit
        for who, r in (("reference " + report.reference, ref), (vr.name, run)):
            if not r.ok:
                findings.append({"rule": "run", "tensor": None, "message": f"{who} {r.status}: {r.error}"
                                 + (f" (hint: {r.hint})" if r.hint else "")})
        if findings:
            verdict["status"] = "error"
            continue
        for t in report.tensors:
            m = t.metrics.get(vr.name)
            rule = policy.rule_for(infos[t.name])
            if m is None or not (t.is_output or rule.explicit):
                continue
            tol = rule.tolerance
            if "error" in m:
                findings.append({"rule": "compare", "tensor": t.name, "message": f"{t.name}: {m['error']}"})
                continue
            if m["violations"]:
                findings.append({"rule": "tolerance", "tensor": t.name, "message":
                                 f"{t.name}: {m['violations']} of {m['count']} elements beyond atol {tol.atol:g} "
                                 f"rtol {tol.rtol:g}" + (f" max_ulp {tol.max_ulp}" if tol.max_ulp is not None else "")
                                 + f" (max_abs {m['max_abs']:.3g}, max_rel {m['max_rel']:.3g}, "
                                 f"max_ulp {m['max_ulp']})"})
            if rule.cosine is not None and m["cosine"] < rule.cosine:
                findings.append({"rule": "cosine", "tensor": t.name, "message":
                                 f"{t.name}: cosine {_cosine(m['cosine'])} below the floor {rule.cosine:g}"})
        _labels(verdict, report, facts, vr.name, policy, labels, classifier_outputs)
        verdict["status"] = "fail" if findings else "pass"
    return verdicts


def _labels(verdict: dict[str, Any], report: Report, facts: Facts, name: str, policy: Policy,
            labels: np.ndarray | None, classifier_outputs: Sequence[str]) -> None:
    output = policy.labels_output(classifier_outputs)
    flips = report.label_flips.get(name, {}).get(output) if output else None
    if output is None or flips is None:
        return
    info: dict[str, Any] = {"rows": flips["rows"], "flips": flips["flip_count"], "agreement": flips["agreement"]}
    ref_pred, got_pred = analysis.top1(facts.runs, report.reference, output), analysis.top1(facts.runs, name, output)
    if labels is not None and ref_pred is not None and got_pred is not None:
        if labels.size == ref_pred.size:
            truth = labels.reshape(ref_pred.shape)
            info["accuracy_reference"] = float(np.mean(ref_pred == truth))
            info["accuracy_candidate"] = float(np.mean(got_pred == truth))
        else:
            info["note"] = (f"{labels.size} labels for {ref_pred.size} rows of {output}: accuracy not scored, "
                            "agreement with the reference used instead")
    verdict["labels"][output] = info
    findings = verdict["findings"]
    if policy.min_agreement is not None:
        if "accuracy_reference" in info:
            floor = policy.min_agreement * info["accuracy_reference"]
            if info["accuracy_candidate"] < floor:
                findings.append({"rule": "accuracy", "tensor": output, "message":
                                 f"{output}: top-1 accuracy {info['accuracy_candidate']:.4f} is below "
                                 f"{policy.min_agreement:g} x the reference's {info['accuracy_reference']:.4f}"})
        elif info["agreement"] < policy.min_agreement:
            findings.append({"rule": "agreement", "tensor": output, "message":
                             f"{output}: top-1 agreement with the reference {info['agreement']:.4f} is below "
                             f"{policy.min_agreement:g}"})
    if policy.max_flips is not None and info["flips"] > policy.max_flips:
        findings.append({"rule": "flips", "tensor": output, "message":
                         f"{output}: {info['flips']} rows change their top-1 class (budget {policy.max_flips})"})


def note_rules(report: Report, pol: Policy) -> None:
    """Say in the report's notes which tensors have their own tolerance (its verdict line shows the defaults)."""
    # No square brackets: the console renderer would read them as markup.
    rules = [f"output {n}" for n in pol.outputs] + [f"tensors {p}" for p in pol.tensors]
    if rules:
        report.model.setdefault("notes", []).append(
            f"tolerances from {pol.source}: own rules for {', '.join(rules)}; its defaults elsewhere")
