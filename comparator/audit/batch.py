"""Batch invariance: does a sample's result change with what else is in its batch?

One sample (the target) runs alone, then inside batches of several sizes, at the first, the middle and the last
position, beside two different sets of neighbours. Every tensor is tapped; for each tensor that carries one row
per sample (its leading dim follows the batch size), the target's row inside each batch is compared bit for bit
with its value alone. Per variant: whether every such row is bit-identical (batch-invariant), the largest change
on the final outputs, and the first tensor, in graph order, whose value depends on the batch, with its node.
Tensors that do not carry one row per sample (a reduction across the batch, shapes, constants) are listed as
"not per sample"; those whose value inside a batch differs from their value alone (a reduction across the batch,
a shape) are batch-wide, and the first dependent node's batch-wide inputs are named, since a batch-dependence can
enter there. The others (weights held in Constant nodes) are the same in every batch and are not named.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import api
from ..errors import UsageError
from ..events import Listener
from ..graph import batch as batch_mod
from ..graph import model as model_mod
from ..graph.inputs import load_feeds, make_feeds
from ..measure import metrics
from ..run import spawn
from ..run.record import VariantRun
from ..variant import Variant
from ..workspace import Workspace

SIZES = (1, 2, 7, 32)


@dataclass(frozen=True)
class Composition:
    """One batch: its size, where the target sits, and which examples are its neighbours."""

    size: int
    position: int
    neighbours: tuple[int, ...]  # example indices, in batch order, the target left out
    label: str  # "neighbours A" / "neighbours B"

    def members(self) -> list[int]:
        rest = list(self.neighbours)
        return rest[:self.position] + [0] + rest[self.position:]

    def describe(self) -> str:
        where = "alone" if self.size == 1 else f"at {self.position} of {self.size}, {self.label}"
        return f"batch {self.size} ({where})"


def compositions(sizes: Sequence[int], pool: int) -> list[Composition]:
    """The batches for `sizes`: alone first, then per size the target first and last among neighbours A and in
    the middle among neighbours B (other examples where the pool has them). Example 0 is the target."""
    out = [Composition(1, 0, (), "alone")]
    for size in sorted(set(sizes) - {1}):
        a = tuple(1 + (k % (pool - 1)) for k in range(size - 1)) if pool > 1 else (0,) * (size - 1)
        b = tuple(1 + ((size - 1 + k) % (pool - 1)) for k in range(size - 1)) if pool > 1 else a
        seen = set()
        for position, nb, label in ((0, a, "neighbours A"), (size - 1, a, "neighbours A"),
                                    (size // 2, b, "neighbours B")):
            if (position, nb) not in seen:
                seen.add((position, nb))
                out.append(Composition(size, position, nb, label))
    return out


@dataclass
class BatchAudit:
    """The result of `audit_batch`. `to_dict()` is what `--json` writes; `lines()` what the terminal shows."""

    model: dict[str, Any]
    sizes: list[int]
    exported_batch: int | None
    rewritten: bool
    compositions: list[Composition]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_wide: list[str] = field(default_factory=list)
    constants: int = 0  # tensors not per sample whose value is the same in every batch
    tensors: int = 0

    @property
    def exit_code(self) -> int:
        """0 when every variant ran (invariant or not: the audit reports, a gate decides), 3 otherwise."""
        return 3 if any(v["status"] != "ok" for v in self.variants.values()) else 0

    def to_dict(self) -> dict[str, Any]:
        return {"format": "infercmp-audit", "audit": "batch", "schema_version": 1, "model": self.model,
                "sizes": self.sizes, "exported_batch": self.exported_batch, "rewritten": self.rewritten,
                "compositions": [{"size": c.size, "position": c.position, "neighbours": list(c.neighbours),
                                  "label": c.label} for c in self.compositions],
                "tensors_compared": self.tensors, "batch_wide": self.batch_wide, "constants": self.constants,
                "variants": self.variants,
                "exit_code": self.exit_code}

    def lines(self) -> list[str]:
        how = (f"exported with batch {self.exported_batch}, its batch dim made dynamic" if self.rewritten
               else "dynamic batch dim")
        out = [f"batch invariance of {Path(str(self.model['path'])).name} ({how}): one sample alone and in batches "
               f"of {', '.join(map(str, self.sizes))} ({len(self.compositions) - 1} batches), {self.tensors} "
               "per-sample tensors compared"
               + (f", {len(self.batch_wide)} batch-wide (shapes, reductions across the batch)"
                  if self.batch_wide else "")
               + (f", {self.constants} the same in every batch (constants)" if self.constants else "")]
        for name, v in self.variants.items():
            if v["status"] != "ok":
                out.append(f"{name}: {v['status']}: {v['error']}")
                continue
            if v["invariant"]:
                out.append(f"{name}: batch-invariant: the sample's every tensor is bit-identical in every batch")
                continue
            first = v["first"]
            change = ("final outputs unchanged" if not v["outputs_max_abs"] and not v["outputs_max_ulp"] else
                      f"final outputs change by up to {_num(v['outputs_max_abs'])} abs, "
                      f"{_num(v['outputs_max_ulp'])} ULP")
            out.append(f"{name}: NOT batch-invariant: the sample's values depend on its batch from {first['tensor']} "
                       f"({first['op_type']} node {first['node']!r}) in {first['batch']}; {change}")
            if first.get("batch_wide_inputs"):
                out.append(f"    its batch-wide inputs: {', '.join(first['batch_wide_inputs'])}")
            for row in v["batches"]:
                if row["identical"]:
                    continue
                out.append(f"    {row['batch']}: from {row['first']}; outputs max abs {_num(row['outputs_max_abs'])}"
                           f", max ULP {_num(row['outputs_max_ulp'])}, {row['differing']} tensor(s) differ")
        return out


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.3g}"


def audit_batch(model: str | Path, variants: Sequence[str | Variant] | str, inputs: str | Path | None = None, *,
                sizes: Sequence[int] = SIZES, shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0,
                tap_spec: str | Sequence[str] = "all", timeout: float | None = 600.0, jobs: int = 0,
                events: Listener | None = None,
                progress: Callable[[VariantRun], None] | None = None) -> BatchAudit:
    """Run one sample alone and inside batches of `sizes` on every variant and report where its values start to
    depend on the batch. `inputs`: a .npz/.npy of real samples (each sample's batch split into examples; the
    first example is the target), else seeded random examples."""
    chosen, _ = api.resolve_variants(variants, None)
    given = [int(s) for s in sizes]
    sizes = sorted(set(given) | {1})
    if any(s < 1 for s in sizes) or len(sizes) < 2:
        raise UsageError(f"--sizes {','.join(map(str, given))}: give batch sizes >= 1, at least one above 1",
                         "e.g. --sizes 1,2,7,32")
    loaded = model_mod.load(model)
    work = Workspace("infercmp-audit-")
    folder = work.folder
    try:
        made = batch_mod.dynamic(loaded, folder)
        dyn = made.model
        pool = _examples(dyn, made.dim, inputs, shapes or {}, seed, 2 * max(sizes))
        batches = compositions(sizes, len(next(iter(pool.values()))))
        runs: dict[int, list[VariantRun]] = {}
        plan = None
        with spawn.Ready() as ready:  # each variant's worker serves every size: one framework import
            for i, size in enumerate(sizes):
                group = [c for c in batches if c.size == size]
                feeds = {k: np.stack([np.concatenate([v[m] for m in c.members()]) for c in group])
                         for k, v in pool.items()}
                api.start_workers(chosen, folder / f"batch-{size}", jobs, 0, ready, more=i < len(sizes) - 1)
                rs = api.run_variants(dyn, chosen, folder / f"batch-{size}", feeds, tap_spec=tap_spec,
                                      timeout=timeout, jobs=jobs, kinds=("tapped",), events=events,
                                      progress=progress, ready=ready, scratch=work.memory)
                runs[size] = rs.runs
                plan = rs.plan
        assert plan is not None
        result = BatchAudit({"path": str(loaded.path), "sha256": loaded.sha256}, sizes, made.exported, made.rewritten,
                            batches)
        _analyse(result, dyn, plan.tapped, chosen, runs, batches)
        return result
    finally:
        work.close()


def _examples(model: model_mod.Model, dim: str | None, inputs: str | Path | None,
              shapes: Mapping[str, tuple[int, ...]], seed: int, count: int) -> dict[str, np.ndarray]:
    """Examples, one row each: input -> [examples, 1, ...] (the target first)."""
    if inputs is not None:
        feeds = load_feeds(model, inputs, shapes)
        rows = {k: v.reshape(-1, 1, *v.shape[2:]) for k, v in feeds.items()}
        n = {len(v) for v in rows.values()}
        if len(n) != 1:
            raise UsageError("the inputs hold different numbers of examples per input",
                             "give every input the same batch")
        return rows
    bound = dict(shapes)
    if dim is not None:
        bound[dim] = (1,)
    else:
        for spec in model.inputs:
            if spec.shape and spec.name not in bound and all(isinstance(d, int) for d in spec.shape[1:]):
                bound[spec.name] = (1, *spec.shape[1:])
    return make_feeds(model, bound, seed=seed, samples=count)


def _analyse(result: BatchAudit, model: model_mod.Model, tapped: Sequence[model_mod.TensorInfo],
             chosen: Sequence[Variant], runs: Mapping[int, list[VariantRun]], batches: Sequence[Composition]) -> None:
    inputs_of = {n.name: list(n.input) for n in model.proto.graph.node}
    order = [t for t in tapped if not t.scope]
    per_sample: set[str] = set()
    wide: set[str] = set()
    fixed: set[str] = set()
    for i, variant in enumerate(chosen):
        name = str(variant)
        alone = runs[1][i]
        failed = next((r for size in runs for r in [runs[size][i]] if not r.ok), None)
        if failed is not None:
            result.variants[name] = {"status": failed.status, "error": failed.error, "hint": failed.hint}
            continue
        rows = []
        for size in sorted(runs):
            if size == 1:
                continue
            run = runs[size][i]
            for k, comp in enumerate(c for c in batches if c.size == size):
                rows.append(_compare_batch(comp, k, alone, run, order, per_sample, wide, fixed))
        bad = [r for r in rows if not r["identical"]]
        first = min(bad, key=lambda r: r["first_index"]) if bad else None
        entry: dict[str, Any] = {"status": "ok", "invariant": not bad, "batches": [_public(r) for r in rows],
                                 "outputs_max_abs": max((r["outputs_max_abs"] or 0.0 for r in rows), default=0.0),
                                 "outputs_max_ulp": max((r["outputs_max_ulp"] or 0 for r in rows), default=0),
                                 "first": None}
        if first is not None:
            t = next(t for t in order if t.name == first["first"])
            entry["first"] = {"tensor": t.name, "op_type": t.op_type, "node": t.node, "batch": first["batch"],
                              "batch_wide_inputs": [x for x in inputs_of.get(t.node, []) if x in wide]}
        result.variants[name] = entry
    result.tensors = len(per_sample)
    result.batch_wide = [t.name for t in order if t.name in wide and t.name not in per_sample]
    result.constants = len(fixed - wide - per_sample)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "first_index"}


def _compare_batch(comp: Composition, k: int, alone: VariantRun, run: VariantRun,
                   order: Sequence[model_mod.TensorInfo], per_sample: set[str], wide: set[str],
                   fixed: set[str]) -> dict[str, Any]:
    """The target's row in batch `comp` (sample k of this size's run) against its value alone."""
    row: dict[str, Any] = {"batch": comp.describe(), "size": comp.size, "position": comp.position,
                           "identical": True, "first": None, "first_index": len(order), "differing": 0,
                           "outputs_max_abs": 0.0, "outputs_max_ulp": 0}
    for index, t in enumerate(order):
        a_path, b_path = alone.path("tapped", t.name), run.path("tapped", t.name)
        if a_path is None or b_path is None:
            continue
        a = np.load(a_path, mmap_mode="r", allow_pickle=False)
        b = np.load(b_path, mmap_mode="r", allow_pickle=False)
        # one row per sample: the leading dim is 1 alone and the batch size in the batch, the rest the same
        if a.ndim < 2 or a.shape[1] != 1 or b.shape[1] != comp.size or a.shape[2:] != b.shape[2:]:
            # not one row per sample: batch-wide where its value in the batch differs from its value alone
            same = a.shape[1:] == b.shape[1:] and np.array_equal(np.asarray(a[0]).reshape(-1).view(np.uint8),
                                                                  np.asarray(b[k]).reshape(-1).view(np.uint8))
            (fixed if same else wide).add(t.name)
            continue
        per_sample.add(t.name)
        m = metrics.compare(np.asarray(a[0, 0]), np.asarray(b[k, comp.position]))
        same = bool(m.get("bit_identical"))
        if t.is_output:
            row["outputs_max_abs"] = max(row["outputs_max_abs"], m.get("max_abs") or 0.0)
            row["outputs_max_ulp"] = max(row["outputs_max_ulp"], m.get("max_ulp") or 0)
        if not same:
            row["differing"] += 1
            if row["identical"]:
                row.update(identical=False, first=t.name, first_index=index)
    return row
