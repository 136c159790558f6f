"""Tapping in windows, when the tapped tensors of one pass would not fit the disk budget (--max-disk, by default 90%
of the free space where they are written), or one sample's would not fit the memory a worker may give them at once
(--max-memory, by default half the available memory, shared by the workers that run at once).

`split` cuts the plan's tensors, in graph order, into windows whose tensors fit the budget. The variants then run
once per window, each tapping its window's tensors and the final outputs (the first window also runs every variant
untapped); each window's tensors are compared with the reference's, and their files deleted, before the next
window runs (api.compare). Every tensor is compared with the reference's value from a run that tapped it, as in one
pass, so the first divergence is as exact; the broken-middle check, which reads the files of a few candidates
again, is done for each window before its files go (`far_elements`).
"""
from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from . import caches
from .measure import analysis
from .measure.facts import Facts, far_apart
from .measure.metrics import Tolerance
from .graph import model as model_mod, sizes, tap
from .result import TensorReport
from .run import variants as variants_mod
from .run.record import VariantRun
from .variant import Variant


@dataclasses.dataclass
class Windows:
    """The windows of a plan: each one's tensors (graph order); what one pass would write against the disk budget,
    and what each worker would hold at once (one sample's tapped tensors) against the memory budget."""

    slices: list[list[model_mod.TensorInfo]]
    need: int
    budget: int
    held: int = 0
    memory: int | None = None

    @property
    def option(self) -> str:
        """The budget one pass is over: `--max-disk` (said first when both are), or `--max-memory`."""
        return "--max-disk" if self.need > self.budget else "--max-memory"

    def reason(self) -> str:
        """Why one pass does not do."""
        size = caches.format_size
        if self.option == "--max-disk":
            return f"one pass needs {size(self.need)} of disk, over the budget of {size(self.budget)}"
        return (f"one pass holds {size(self.held)} of tensors per sample in each worker, over the memory budget of "
                f"{size(self.memory or 0)}")

    def catalogue(self, i: int, outputs: Sequence[model_mod.TensorInfo]) -> list[model_mod.TensorInfo]:
        """The tensors window `i` compares: its own, less the final outputs, which the first window compares (its
        runs alone include the untapped ones that final outputs are compared from)."""
        own = [t for t in self.slices[i] if not t.is_output]
        return own + [o for o in outputs if o.is_output] if i == 0 else own

    def plan(self, i: int, outputs: Sequence[model_mod.TensorInfo], skipped: Sequence[tuple[str, str]]
             ) -> tap.TapPlan:
        """Window `i`'s tap plan: its tensors and every final output (the skipped taps are said once, first)."""
        own = self.slices[i]
        return tap.TapPlan(own + [o for o in outputs if o not in own], list(skipped) if i == 0 else [])


def split(loaded: model_mod.Model, plan: tap.TapPlan, variant_list: Sequence[Variant], samples: int, repeat: int,
          kinds: Sequence[str], time: int, folder: Path, max_disk: int | None,
          memory: int | None = None, shapes: Mapping[str, tuple[int, ...]] | None = None) -> Windows | None:
    """The windows that fit the budgets, when one pass does not: the disk (`max_disk`, see run/variants.check_disk)
    and, with `memory`, the bytes of one sample's tapped tensors that a worker holds at once (a backend returns a
    run's outputs together). None when one pass fits, when the plan cannot be cut (--tap fused, or final outputs
    only), or when one window cannot hold the final outputs and one tensor beside them (then one pass runs: its
    disk check refuses, with the number it needs). `shapes`: the run's shapes (graph/sizes.run_shapes)."""
    if plan.fused:
        return None
    first_kinds, once, bare = variants_mod.run_kinds(loaded, plan, variant_list, kinds, repeat, time)
    if bare:
        return None
    budget = variants_mod.disk_budget(folder, max_disk)
    outputs = sizes.bytes_of((t for t in loaded.tensors if t.is_output), shapes)

    def need(per_sample: int, first: bool) -> int:
        return variants_mod.disk_need(per_sample, outputs, len(variant_list), samples, repeat,
                                      first_kinds if first else ("tapped",), once=len(once) if first else 0)

    limit = memory if memory is not None else float("inf")
    per_sample = sizes.bytes_of(plan.tapped, shapes)
    whole = need(per_sample, True)
    if whole <= budget and per_sample <= limit:
        return None
    slices: list[list[model_mod.TensorInfo]] = [[]]
    held = outputs  # the final outputs are tapped in every window
    for t in plan.tapped:
        size = 0 if t.is_output else sizes.tensor_bytes(t, shapes)
        if need(held + size, len(slices) == 1) > budget or held + size > limit:
            if not slices[-1] or need(outputs + size, False) > budget or outputs + size > limit:
                return None
            slices.append([])
            held = outputs
        slices[-1].append(t)
        held += size
    return Windows(slices, whole, budget, per_sample, memory)


def far_elements(facts: Facts, runs: Sequence[VariantRun], ref: Variant, tolerance: Tolerance
                 ) -> dict[tuple[str, str], bool]:
    """For each (variant, tensor) of a window whose maxima make it a broken-middle candidate, whether one element is
    that far itself (facts.far_apart, read from the window's files before they are deleted)."""
    reference = next(r for r in runs if r.variant == ref)
    by_name = {str(r.variant): r for r in runs}
    atol, rtol = analysis.FAR_BEYOND * tolerance.atol, analysis.FAR_BEYOND * tolerance.rtol
    return {(name, tf.name): far_apart(reference, by_name[name], tf.name, tf.kind, atol, rtol)
            for tf in facts.tensors for name, m in tf.metrics.items() if analysis.far_by_maxima(m, atol, rtol)}


def element_far(found: dict[tuple[str, str], bool]) -> Callable[[str], Callable[[TensorReport, float, float], bool]]:
    """assemble.build's `element_far` from what far_elements found (a candidate it did not see: the maxima stand)."""
    return lambda name: lambda t, atol, rtol: found.get((name, t.name), True)


def drop_tensors(runs: Sequence[VariantRun]) -> None:
    """Delete a window's tensor files (its logs and manifests stay)."""
    for run in runs:
        for folder in {path.parent for kind, files in run.tensors.items() for name in files
                       if (path := run.path(kind, name)) is not None}:
            shutil.rmtree(folder, ignore_errors=True)


def merge(parts: Sequence[tuple[Facts, list[VariantRun]]]) -> tuple[Facts, list[VariantRun]]:
    """One set of facts and runs from the windows' (in window order): the first window's runs, each failed when it
    failed in any window, with the seconds of all; every window's tensors; the first window's final outputs."""
    first, runs = parts[0][0], [dataclasses.replace(r) for r in parts[0][1]]
    for _, later in parts[1:]:
        for i, r in enumerate(later):
            runs[i].wall_s += r.wall_s
            if runs[i].ok and not r.ok:
                runs[i] = dataclasses.replace(runs[i], status=r.status, error=r.error, hint=r.hint,
                                              stderr_tail=r.stderr_tail)
    facts = Facts(first.reference, {str(r.variant): dataclasses.replace(first.runs[str(r.variant)], run=r)
                                    for r in runs},
                  [t for part, _ in parts for t in part.tensors], first.distances)
    return facts, runs
