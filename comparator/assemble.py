"""The Report of a set of runs: every per-tensor fact gathered in one pass over their tensor files
(measure/facts.py), the analyses over those facts (measure/analysis.py), what `--tap fused` tapped of each
variant, the verdict and the exit code. `api.compare` and the gate build their reports here."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict
from typing import Any
from collections.abc import Callable, Sequence

from . import backends
from .events import Listener, emit
from .graph import fusion, model as model_mod, structure, tap
from .measure import analysis
from .measure.ahead import Ahead
from .measure.facts import Facts, TensorFileError, far_apart, gather, kind_for
from .measure.metrics import Tolerance
from .result import Report, TensorReport, VariantReport
from .run.record import VariantRun
from .variant import Variant

EXIT_OK, EXIT_DEVIATION, EXIT_VARIANT_FAILED = 0, 1, 3  # 2 is for usage and input errors, which make no report


def _fusion(run: VariantRun, graph: list[dict[str, Any]]) -> dict[str, Any]:
    """What `--tap fused` tapped of one variant (Report.fusion): its mode, and for an optimized graph how many
    tensors it computes of those planned and the groups of original nodes it runs otherwise."""
    if run.fusion.get("mode") == "optimized":
        folded = run.fusion.get("folded", [])
        computed = {o for node in run.fusion["nodes"] for o in node[4]} | set(run.fusion["tapped"]) | set(folded)
        return {"mode": "optimized", "tapped": len(run.fusion["tapped"]), "folded": len(folded),
                "groups": fusion.groups(graph, computed, run.fusion["nodes"])}
    mode, why = backends.fusion_mode(run.variant)
    if mode == "optimized":  # it did not get as far as saving its graph
        mode, why = "unavailable", f"the variant {run.status}"
    return {"mode": mode, **({"why": why} if why else {})}


def build_report(loaded: model_mod.Model, plan: tap.TapPlan, runs: list[VariantRun], ref: Variant,
                 tolerance: Tolerance, feed_info: dict[str, Any],
                 tolerance_for: Callable[[model_mod.TensorInfo], Tolerance] | None = None,
                 classes: Sequence[str] | None = None) -> Report:
    """The report of `runs` against the run of `ref` (see analyse)."""
    return analyse(loaded, plan, runs, ref, tolerance, feed_info, tolerance_for, classes=classes)[0]


def _fail_owner(runs: list[VariantRun], exc: TensorFileError) -> bool:
    """Mark the run that wrote the unreadable file as failed (in place in `runs`); False when none did."""
    for i, run in enumerate(runs):
        if not run.ok:
            continue
        if any(run.folder / info["file"] == exc.path for entries in run.tensors.values() for info in entries.values()):
            runs[i] = dataclasses.replace(run, status="failed", error=f"its tensor file {exc.path} {exc.why}",
                                          hint="the file was changed or cut short after the worker wrote it "
                                               "(a full disk, or another process in the same folder); run again")
            return True
    return False


def analyse(loaded: model_mod.Model, plan: tap.TapPlan, runs: list[VariantRun], ref: Variant,
            tolerance: Tolerance, feed_info: dict[str, Any],
            tolerance_for: Callable[[model_mod.TensorInfo], Tolerance] | None = None,
            isolated: Sequence[VariantRun] = (), classes: Sequence[str] | None = None,
            events: Listener | None = None, ahead: Ahead | None = None) -> tuple[Report, Facts]:
    """The report of `runs` against the run of `ref`, and the facts it was built from (one pass over the runs'
    tensor files; `isolated`: the --isolate runs, for `tensor.local`; `classes`: the class-score outputs whose
    top-1 labels are compared, by default those of analysis.class_outputs; `ahead`: what was compared while the
    runs went on, stopped here and used)."""
    classes = analysis.class_outputs(loaded.tensors) if classes is None else list(classes)
    facts, runs, isolated = collect(plan, plan.tapped, loaded.outputs, runs, ref, tolerance, tolerance_for, isolated,
                                    classes, events, ahead)
    reference = next(r for r in runs if r.variant == ref)
    by_name = {str(r.variant): r for r in runs}

    def element_far(name: str) -> Callable[[TensorReport, float, float], bool]:
        return lambda t, atol, rtol: far_apart(reference, by_name[name], t.name, kind_for(t), atol, rtol)

    return build(loaded, plan, runs, ref, tolerance, feed_info, facts, classes, element_far), facts


def collect(plan: tap.TapPlan, catalogue: Sequence[model_mod.TensorInfo], outputs: Sequence[str],
            runs: Sequence[VariantRun], ref: Variant, tolerance: Tolerance,
            tolerance_for: Callable[[model_mod.TensorInfo], Tolerance] | None, isolated: Sequence[VariantRun],
            classes: Sequence[str], events: Listener | None, ahead: Ahead | None
            ) -> tuple[Facts, list[VariantRun], list[VariantRun]]:
    """The facts of `catalogue` (tensors of `plan`) and of the final `outputs` in the runs' files, and the runs and
    isolated runs, with any whose tensor file cannot be read marked failed."""
    blind = _blind(plan, runs)
    runs, isolated = list(runs), list(isolated)
    known = None if ahead is None else ahead.finish()
    while True:
        reference = next(r for r in runs if r.variant == ref)
        total = len(catalogue) if reference.ok else len(outputs)

        def counted(done: int, total: int = total) -> None:
            emit(events, "compare", "comparing tensors", done, total, end=done == total)

        try:
            facts = gather(catalogue, outputs, runs, reference, tolerance, tolerance_for, isolated,
                           classes, blind, counted if events is not None else None, known)
            return facts, runs, isolated
        except TensorFileError as exc:  # that run failed; the others are compared without it
            if not (_fail_owner(runs, exc) or _fail_owner(isolated, exc)):
                raise


def build(loaded: model_mod.Model, plan: tap.TapPlan, runs: list[VariantRun], ref: Variant, tolerance: Tolerance,
          feed_info: dict[str, Any], facts: Facts, classes: Sequence[str],
          element_far: Callable[[str], Callable[[TensorReport, float, float], bool]]) -> Report:
    """The report from the facts: `element_far(variant)(tensor, atol, rtol)` says whether one element of that
    variant's tensor is further than atol + rtol * |reference| from the reference's (analysis.broken_middle)."""
    reference = next(r for r in runs if r.variant == ref)
    blind = _blind(plan, runs)
    report = Report(
        model=loaded.summary(), reference=str(ref), tolerance=asdict(tolerance),
        variants=[VariantReport(str(r.variant), r.variant.backend, r.variant.option_dict, r.status, r.error,
                                r.hint, r.stderr_tail if not r.ok else "", r.provenance, r.timings, r.wall_s)
                  for r in runs],
        tensors=analysis.tensor_reports(plan.tapped, facts), skipped_taps=[list(s) for s in plan.skipped],
        inputs=feed_info,
        # a model read back from a bundle has no graph (a bundle keeps tensors, not the model): no graph view then
        graph=structure.nodes(loaded.proto) if getattr(loaded, "proto", None) is not None else [])
    # What a blind variant misses: the subgraph tensors the reference recorded (an untaken If branch produces
    # none), or every planned one when the reference is blind too.
    inside = set(plan.inside)
    missed = len(plan.inside) if str(ref) in blind else sum(t.name in inside for t in report.tensors)
    report.untapped_subgraphs = {name: missed for name in sorted(blind, key=list(facts.runs).index)}
    if plan.fused:
        report.fusion = {str(r.variant): _fusion(r, report.graph) for r in runs}
    ref_facts = facts.runs[str(ref)]
    for name, rf in facts.runs.items():
        if not rf.ok:
            continue
        if reference.ok and name != str(ref):
            report.first_divergence[name] = analysis.first(report.tensors, name, analysis.diverges)
            report.first_beyond_tolerance[name] = analysis.first(report.tensors, name, analysis.beyond_tolerance)
            flips = analysis.label_flips(ref_facts, rf, classes)
            if flips:
                report.label_flips[name] = flips
    for name, rf in facts.runs.items():
        if rf.ok:
            effect, detail = analysis.observer_effect(rf, loaded.outputs)
            report.observer_effect[name] = effect
            if detail:
                report.observer_detail[name] = detail
    other = analysis.other_oracle(str(ref))
    if reference.ok and other is not None:
        if facts.runs.get(other) is not None and facts.runs[other].ok:
            report.oracle = {"variants": [str(ref), other],
                             "disagreements": analysis.oracle_disagreements(report.tensors, str(ref))}
    report.equivalence_classes = analysis.equivalence_classes(facts, loaded.outputs)
    report.pairwise = analysis.pairwise(facts, loaded.outputs)
    if reference.ok:
        wide = [str(r.variant) for r in runs if r.variant.option_dict.get("dtype") == "float64"]
        plain = {str(r.variant): str(Variant(r.variant.backend, r.variant.options)) for r in runs}  # without @label
        oracles = sorted((n for n, p in plain.items() if p in analysis.ORACLES),
                         key=lambda n: analysis.ORACLES.index(plain[n]))
        report.oracle_distance = analysis.oracle_distance(report.pairwise, str(ref), wide, oracles)
    report.determinism = analysis.determinism(facts, loaded.outputs)
    finals = [t for t in report.tensors if t.is_output]
    within = all(not analysis.beyond_tolerance(m) for t in finals for m in t.metrics.values())
    dead = structure.dead_ends(report.graph, loaded.outputs)
    live = [t for t in report.tensors if t.name not in dead]
    unreached = [t for t in report.tensors if t.name in dead]
    for name in report.first_divergence:
        unread = analysis.broken_middle(unreached, name, report.tolerance, element_far(name))
        if unread:
            report.dead_ends[name] = unread
        if not any(analysis.beyond_tolerance(m) for t in finals if (m := t.metrics.get(name)) is not None):
            broken = analysis.broken_middle(live, name, report.tolerance, element_far(name))
            if broken:
                report.broken_middle[name] = broken
    failed = any(not r.ok for r in runs)
    if failed and feed_info.get("source") == "random" and not any(r.ok for r in runs) \
            and any(r.status == "failed" for r in runs):
        report.model.setdefault("notes", []).append(_random_feeds_note(loaded))
    report.passed = within and not failed
    report.exit_code = EXIT_VARIANT_FAILED if failed else (EXIT_OK if within else EXIT_DEVIATION)
    return report


def _blind(plan: tap.TapPlan, runs: Sequence[VariantRun]) -> set[str]:
    """The variants that record no tensor inside subgraphs, when the plan taps some there."""
    return {str(r.variant) for r in runs if plan.inside and not backends.taps_subgraphs(r.variant)}


def _random_feeds_note(loaded: model_mod.Model) -> str:
    """Why every variant may have failed: the inputs were random, and some models need meaningful values (a sample
    rate, a length, an index into a table)."""
    ints = ", ".join(repr(spec.name) for spec in loaded.inputs if spec.dtype.startswith(("int", "uint")))
    return ("every variant failed on random inputs" + (f" (integer inputs, here {ints}, get small random values)"
                                                       if ints else "")
            + ": the model may need real values; pass them with --inputs FILE.npz (one array per input name)")
