"""Release gates: a model against a captured baseline (`check`), two exports of one network against each other
(`compare_models`), variants against a reference (`agree`), and bundles from different machines (`diff`).

Each gate builds ordinary reports with `assemble.build_report` (the reference run from a bundle or a second model,
its tensors re-keyed to the candidate's names) and then applies a policy (comparator.policy): per-tensor
tolerances and cosine floors, label budgets, required variants. Exit codes: 0 pass, 1 regression, 2 usage or
configuration error (raised before anything runs), 3 a required variant could not run.
"""
from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..measure.ahead import Ahead
from ..measure.facts import kind_for
from .. import api, assemble, scratch
from . import bundle as bundle_mod, bundle_writer
from ..graph import model as model_mod
from ..errors import UsageError
from ..events import Listener, emit
from ..run.variants import load as load_model
from ..measure.metrics import Tolerance
from ..graph.model import Model, TensorInfo
from .policy import Policy, load as load_policy
from ..result import Report
from ..run import spawn
from ..run.record import VariantRun
from ..graph.tap import TapPlan, plan as tap_plan
from ..variant import parse_list
from ..workspace import Workspace, temp_dir
from .verdict import EXIT_USAGE, GateResult, classifiers, evaluate, note_rules


@dataclass(frozen=True)
class Match:
    """A candidate tensor, the reference tensor it is compared with, and how they were paired."""

    tensor: TensorInfo
    source: TensorInfo
    how: str  # "name", "output #k" (graph output position) or "OpType #k" (k-th output of that op type)


def match_tensors(old: Sequence[TensorInfo], new: Sequence[TensorInfo], old_outputs: Sequence[str],
                  new_outputs: Sequence[str]) -> tuple[list[Match], list[str], list[str]]:
    """Pair tensors by name first; then graph outputs by position; then the k-th tensor of each op type, in
    topological order. Structural pairs need the same shape and element type. Returns (matches in the new
    model's order, unmatched old names, unmatched new names)."""
    by_name = {t.name: t for t in old}
    pairs: dict[str, tuple[TensorInfo, str]] = {t.name: (by_name[t.name], "name") for t in new if t.name in by_name}
    taken = {src.name for src, _ in pairs.values()}
    old_info, new_info = {t.name: t for t in old}, {t.name: t for t in new}

    def same_kind(a: TensorInfo, b: TensorInfo) -> bool:
        return a.shape == b.shape and a.elem_type == b.elem_type

    for k, (o, n) in enumerate(zip(old_outputs, new_outputs)):
        if n in new_info and o in old_info and n not in pairs and o not in taken \
                and same_kind(old_info[o], new_info[n]):
            pairs[n] = (old_info[o], f"output #{k}")
            taken.add(o)
    old_ops: dict[str, list[TensorInfo]] = defaultdict(list)
    new_ops: dict[str, list[TensorInfo]] = defaultdict(list)
    for t in old:
        old_ops[t.op_type].append(t)
    for t in new:
        new_ops[t.op_type].append(t)
    for op, news in new_ops.items():
        for k, (src, dst) in enumerate(zip(old_ops.get(op, []), news)):
            if dst.name not in pairs and src.name not in taken and same_kind(src, dst):
                pairs[dst.name] = (src, f"{op} #{k}")
                taken.add(src.name)
    matches = [Match(t, *pairs[t.name]) for t in new if t.name in pairs]
    return (matches, [t.name for t in old if t.name not in taken], [t.name for t in new if t.name not in pairs])


def rekey(run: VariantRun, matches: Sequence[Match]) -> VariantRun:
    """A copy of `run` whose tensors are keyed by the candidate's names (only matched tensors kept)."""
    tensors: dict[str, dict[str, Any]] = {}
    for m in matches:
        entry = run.tensors.get(kind_for(m.source), {}).get(m.source.name)
        if entry is not None:
            tensors.setdefault(kind_for(m.tensor), {})[m.tensor.name] = entry
        if m.source.is_output and m.tensor.is_output and m.source.name in run.tensors.get("tapped", {}):
            tensors.setdefault("tapped", {})[m.tensor.name] = run.tensors["tapped"][m.source.name]
    return dataclasses.replace(run, tensors=tensors)


def _policy(policy: Policy | str | Path | None, tolerance: Tolerance | None = None) -> Policy:
    if isinstance(policy, Policy):
        found = policy
    elif policy is not None:
        found = load_policy(policy)
    else:
        return Policy.from_tolerance(api.check_tolerance(tolerance)) if tolerance is not None else Policy()
    if tolerance is not None:
        raise UsageError("give either a tolerance or a policy, not both",
                         "put the tolerance in the policy's [defaults]")
    return found


def _label(run: VariantRun, label: str) -> VariantRun:
    v = getattr(run.variant, "plain", run.variant)
    return dataclasses.replace(run, variant=bundle_mod.LabeledVariant(v.backend, v.options, label))


def escape(name: str) -> str:
    """A tensor name as a tap pattern that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", name)


Pair = tuple[VariantRun, VariantRun]  # (reference run, candidate run) of one variant


def _gate(mode: str, reference: dict[str, Any], candidate: Model, pol: Policy, pairs: list[Pair],
          matches: list[Match], unmatched: tuple[list[str], list[str]], feed_info: dict[str, Any],
          labels: np.ndarray | None, skipped: list[tuple[str, str]], missing_outputs: list[str],
          events: Listener | None = None) -> GateResult:
    """One report per pair (reference tensors re-keyed to the candidate's names), then the policy's verdict."""
    infos = {m.tensor.name: m.tensor for m in matches}
    plan = TapPlan([m.tensor for m in matches], list(skipped))
    outs = classifiers(list(infos.values()))
    result = GateResult(mode, reference, {"path": str(candidate.path), "sha256": candidate.sha256},
                        pol.to_dict(), [],
                        [{"tensor": m.tensor.name, "source": m.source.name, "how": m.how} for m in matches],
                        {"reference": unmatched[0], "candidate": unmatched[1]})
    for ref_run, cand_run in pairs:
        ref_run = rekey(ref_run, matches)
        report, facts = assemble.analyse(candidate, plan, [ref_run, cand_run], ref_run.variant, pol.default_tolerance,
                                    feed_info, pol.tolerance_for, classes=outs, events=events)
        note_rules(report, pol)
        verdicts = evaluate(report, facts, pol, infos, labels, outs)
        for v in verdicts.values():
            for name in missing_outputs:
                v["findings"].append({"rule": "missing", "tensor": name, "message":
                                      f"reference output {name!r} has no counterpart in the candidate model"})
                if v["status"] == "pass":
                    v["status"] = "fail"
        result.verdicts.update(verdicts)
        result.reports.append(report)
    return result.finish()


def check(model: str | Path | Model, baseline: str | Path | bundle_mod.Bundle,
          policy: Policy | str | Path | None = None, *, variants: Sequence[str] | None = None,
          timeout: float | None = 600.0, jobs: int = 0, update_baseline: bool = False,
          progress: Callable[[VariantRun], None] | None = None, events: Listener | None = None) -> GateResult:
    """Run `model` now on the baseline's variants and inputs and gate it against the baseline bundle.

    A model that differs from the baseline's is the normal release case: tensors are matched by name, then by
    structure, and the result names both hashes. `update_baseline` rewrites the bundle with this run (keeping
    the previous one as `<baseline>.prev`) when every variant ran, whatever the verdict. `events`: progress, as
    api.compare's."""
    base = baseline if isinstance(baseline, bundle_mod.Bundle) else bundle_mod.Bundle.open(baseline)
    pol = _policy(policy)
    new = model if isinstance(model, Model) else load_model(model, events)
    chosen = list(base.variants) if variants is None else parse_list(variants)
    stray = [str(v) for v in chosen if v not in base.variants]
    if stray:
        raise UsageError(f"variant {stray[0]} is not in the baseline {base.path.name}",
                         f"its variants: {', '.join(str(v) for v in base.variants)}")
    if update_baseline and len(chosen) != len(base.variants):
        raise UsageError("--update-baseline needs every variant of the baseline", "drop --backends")
    stored = base.stored()
    # A baseline of final outputs only says nothing about intermediates: match those only when it holds some.
    pool = new.tensors if any(not t.is_output for t in stored) else [t for t in new.tensors if t.is_output]
    matches, old_un, new_un = match_tensors(stored, pool, base.outputs, new.outputs)
    pol.bind(new.tensors, new.outputs, chosen, classifiers(new.tensors))
    spec = base.meta["tap"].get("spec", "outputs")
    inner = [escape(m.tensor.name) for m in matches if not m.tensor.is_output]
    tap_spec: Any = "outputs" if not inner else ("all" if spec == "all" else inner)
    feeds, labels = base.feeds(), base.labels()
    work = Workspace("infercmp-check-")
    folder = work.folder
    try:
        emit(events, "baseline", "reading the baseline")
        reference = base.extract(folder / "baseline", "baseline")
        emit(events, "baseline", "reading the baseline", end=True)
        by_variant = {getattr(r.variant, "plain", r.variant): r for r in reference}
        rs = api.run_variants(new, chosen, folder / "candidate", feeds, tap_spec=tap_spec, timeout=timeout,
                              jobs=jobs, progress=progress, events=events, scratch=work.memory)
        pairs = [(by_variant[v], _label(run, "candidate")) for v, run in zip(chosen, rs.runs)]
        env = base.meta["environment"]
        ref_info = {"kind": "baseline", "path": str(base.path), "sha256": base.model_sha256, "created": base.created,
                    "host": env.get("host"), "model": base.meta["model"].get("path")}
        feed_info = {k: v for k, v in base.meta["inputs"].items() if k != "sha256"}
        result = _gate("baseline", ref_info, new, pol, pairs, matches, (old_un, new_un), feed_info, labels,
                       rs.plan.skipped, [o for o in base.outputs if o in old_un], events)
        failed = [str(r.variant) for r in rs.runs if not r.ok]
        if update_baseline and failed:
            result.not_updated = f"{', '.join(failed)} could not run"
        elif update_baseline:
            label = base.meta.get("labels") or {}
            try:
                bundle_writer.write(base.path, new, {"spec": spec, "tapped": rs.plan.names,
                                                     "skipped": rs.plan.skipped},
                                    rs.runs, feeds, feed_info, labels=labels, labels_key=label.get("key"), force=True,
                                    keep_previous=True, expect=base.stamp)
                result.updated = str(base.path)
            except bundle_mod.ChangedError:
                # Another --update-baseline replaced it while this gate ran against the old one: keeping theirs
                # keeps both versions (theirs, and the original in .prev); this verdict was about the original.
                result.not_updated = (f"{base.path} was replaced by another process while this check ran; "
                                      "run the check again against it")
                result.exit_code = max(result.exit_code, EXIT_USAGE)
                result.passed = False
        return result
    finally:
        work.close()


def compare_models(old: str | Path | Model, new: str | Path | Model, variants: Sequence[str] | str = "ort",
                   inputs: str | Path | Mapping[str, np.ndarray] | None = None,
                   policy: Policy | str | Path | None = None, *, shapes: Mapping[str, tuple[int, ...]] | None = None,
                   seed: int = 0, samples: int = 1, labels_key: str | None = None, tap_spec: str = "all",
                   timeout: float | None = 600.0, jobs: int = 0,
                   progress: Callable[[VariantRun], None] | None = None,
                   events: Listener | None = None) -> GateResult:
    """Compare two exports of one network on the same inputs, per variant: tensors matched by name, then by
    structure (graph output position; k-th tensor of an op type with the same shape and type). `events`:
    progress, as api.compare's."""
    pol = _policy(policy)
    old_m = old if isinstance(old, Model) else load_model(old, events)
    new_m = new if isinstance(new, Model) else load_model(new, events)
    chosen = parse_list([variants] if isinstance(variants, str) else list(variants))
    old_plan, new_plan = tap_plan(old_m, tap_spec), tap_plan(new_m, tap_spec)
    matches, old_un, new_un = match_tensors(old_plan.tapped, new_plan.tapped, old_m.outputs, new_m.outputs)
    pol.bind(new_m.tensors, new_m.outputs, chosen, classifiers(new_m.tensors))
    feeds, feed_info = api.resolve_feeds(new_m, inputs, shapes or {}, seed, samples)
    labels = bundle_mod.read_labels(inputs, labels_key)[0] if isinstance(inputs, (str, Path)) else None
    work = Workspace("infercmp-models-")
    folder = work.folder
    try:
        with spawn.Ready() as ready:  # each variant's worker serves both models: one framework import
            api.start_workers(chosen, folder / "old", jobs, 0, ready, more=True)
            rs_old = api.run_variants(old_m, chosen, folder / "old", feeds, tap_spec=tap_spec, timeout=timeout,
                                      jobs=jobs, progress=progress, events=events, ready=ready, scratch=work.memory)
            api.start_workers(chosen, folder / "new", jobs, 0, ready)
            rs_new = api.run_variants(new_m, chosen, folder / "new", feeds, tap_spec=tap_spec, timeout=timeout,
                                      jobs=jobs, progress=progress, events=events, ready=ready, scratch=work.memory)
        pairs = [(_label(a, "old"), _label(b, "new")) for a, b in zip(rs_old.runs, rs_new.runs)]
        ref_info = {"kind": "model", "path": str(old_m.path), "sha256": old_m.sha256}
        return _gate("models", ref_info, new_m, pol, pairs, matches, (old_un, new_un), feed_info, labels,
                     rs_new.plan.skipped, [o for o in old_m.outputs if o in old_un], events)
    finally:
        work.close()


def agree(model: str | Path | Model, variants: Sequence[str] | str,
          inputs: str | Path | Mapping[str, np.ndarray] | None = None, tolerance: Tolerance | None = None,
          policy: Policy | str | Path | None = None, *, shapes: Mapping[str, tuple[int, ...]] | None = None,
          seed: int = 0, samples: int = 1, labels_key: str | None = None, timeout: float | None = 600.0,
          jobs: int = 0, tap_spec: str | Sequence[str] = "all") -> GateResult:
    """Gate variants against the first one (the reference) on one model. `tap_spec`: "all" (every tensor),
    "outputs" (the final outputs only: one untapped run per variant), or tensor names and globs."""
    pol = _policy(policy, tolerance)
    loaded = model if isinstance(model, Model) else model_mod.load(model)
    variant_list, ref = api.resolve_variants(variants, None)
    pol.bind(loaded.tensors, loaded.outputs, variant_list, classifiers(loaded.tensors))
    labels = bundle_mod.read_labels(inputs, labels_key)[0] if isinstance(inputs, (str, Path)) else None
    work = Workspace("infercmp-agree-")
    folder = work.folder
    ahead = Ahead(ref, pol.default_tolerance, len(variant_list) > 2, pol.tolerance_for)
    try:
        rs = api.run_variants(loaded, variant_list, folder, inputs, tap_spec=tap_spec, shapes=shapes, seed=seed,
                              samples=samples, timeout=timeout, jobs=jobs, ahead=ahead, scratch=work.memory)
        report, facts = assemble.analyse(loaded, rs.plan, rs.runs, ref, pol.default_tolerance, rs.feed_info,
                                    pol.tolerance_for, classes=classifiers(loaded.tensors), ahead=ahead)
        infos = {t.name: t for t in rs.plan.tapped}
        note_rules(report, pol)
        result = GateResult("variants", {"kind": "variant", "path": str(ref), "sha256": loaded.sha256},
                            {"path": str(loaded.path), "sha256": loaded.sha256}, pol.to_dict(), [report])
        result.verdicts = evaluate(report, facts, pol, infos, labels, classifiers(loaded.tensors))
        return result.finish()
    finally:
        ahead.close()
        work.close()


class _BundleModel:
    """What build_report needs of a model, from a bundle: its summary and its outputs."""

    def __init__(self, b: bundle_mod.Bundle):
        self._bundle, self.outputs, self.sha256 = b, b.outputs, b.model_sha256

    def summary(self) -> dict[str, Any]:
        return self._bundle.summary()


def bundle_labels(paths: Sequence[str | Path]) -> list[str]:
    """One label per bundle: its file stem, made unique with -2, -3..."""
    labels: list[str] = []
    for p in paths:
        stem, k = Path(p).stem, 2
        label = stem
        while label in labels:
            label, k = f"{stem}-{k}", k + 1
        labels.append(label)
    return labels


def diff(paths: Sequence[str | Path], tolerance: Tolerance | None = None,
         allow_model_change: bool = False) -> Report:
    """Compare bundles captured on different machines or days; the first bundle's first run is the reference.

    Every run appears as `variant@label` (label: the file stem). Bundles of different models are refused unless
    `allow_model_change` (tensors are then matched by name and structure); bundles of different inputs always
    are, because their differences would measure the inputs, not the machines."""
    if len(paths) < 2:
        raise UsageError("diff needs at least two bundles", "infercmp diff A.icmp B.icmp [C.icmp ...]")
    tolerance = api.check_tolerance(tolerance or Tolerance())
    bundles = [bundle_mod.Bundle.open(p) for p in paths]
    ref = bundles[0]
    for b in bundles[1:]:
        if b.feeds_sha256 != ref.feeds_sha256:
            raise UsageError(f"{b.path.name} was captured on other inputs than {ref.path.name} (feeds sha256 "
                             f"{b.feeds_sha256[:12]} vs {ref.feeds_sha256[:12]})",
                             "capture both with the same --inputs file (or --seed, --samples, --shape)")
        if b.model_sha256 != ref.model_sha256 and not allow_model_change:
            raise UsageError(f"{b.path.name} was captured from another model than {ref.path.name} (sha256 "
                             f"{b.model_sha256[:12]} vs {ref.model_sha256[:12]})",
                             "to compare two versions of a model, pass --allow-model-change "
                             "(or gate the new model with `infercmp check NEW --baseline OLD.icmp`)")
    infos = ref.stored()
    folder = temp_dir("infercmp-diff-")
    try:
        runs: list[VariantRun] = []
        notes: list[str] = []
        for b, label in zip(bundles, bundle_labels(paths)):
            extracted = b.extract(folder / label, label)
            if b.model_sha256 != ref.model_sha256:
                matches, _, _ = match_tensors(b.stored(), infos, b.outputs, ref.outputs)
                extracted = [rekey(r, matches) for r in extracted]
                moved = [m for m in matches if m.how != "name"]
                notes.append(f"{b.path.name}: other model (sha256 {b.model_sha256[:12]}); {len(matches)} tensors "
                             f"matched, {len(moved)} by structure"
                             + "".join(f"; {m.tensor.name} <- {m.source.name} ({m.how})" for m in moved[:10]))
            runs.extend(extracted)
        kept = [t for t in infos if all(r.path(kind_for(t), t.name) is not None for r in runs)]
        if len(kept) < len(infos):
            notes.append(f"{len(infos) - len(kept)} tensors of {ref.path.name} are missing from another bundle "
                         "and are not compared")
        report = assemble.build_report(_BundleModel(ref), TapPlan(kept), runs, runs[0].variant,  # type: ignore[arg-type]
                                  tolerance or Tolerance(), dict(ref.meta["inputs"]), classes=classifiers(infos))
        report.model.setdefault("notes", []).extend(notes)
        return report
    finally:
        scratch.remove(folder)
