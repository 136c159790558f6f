"""Run a model on a list of variants: the run's folder, the workers started while the model loads, the tap plan,
the feeds, the disk budget, the tapped copy, then every variant in its own worker (run/runner.py).

`api.run_variants` checks the arguments and calls `run` here; `api.compare` starts the workers itself
(`start_workers`), before it loads the model, and hands them over.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .. import backends, caches, scratch
from ..errors import UsageError
from ..events import Listener, emit
from ..fileio import available_memory, save_npz, write_error
from ..graph import inputs as feeds_mod, model as model_mod, sizes, tap
from ..variant import Variant
from . import spawn
from .record import VariantRun
from .runner import run_all


class Feeds(NamedTuple):
    """A run's feeds (each with a leading sample axis) and where they came from (the report's `inputs`)."""

    arrays: dict[str, np.ndarray]
    info: dict[str, Any]


def resolve_feeds(model: model_mod.Model, given: Any, shapes: Mapping[str, tuple[int, ...]], seed: int,
                  samples: int) -> Feeds:
    """Feeds (leading sample axis) from random data, a .npz/.npy path or arrays, and where they came from; feeds
    resolved already (a `Feeds`) as they are."""
    if isinstance(given, Feeds):
        return given
    if given is None:
        feeds = feeds_mod.make_feeds(model, shapes, seed=seed, samples=samples)
        source = {"source": "random", "seed": seed, "samples": samples}
    elif isinstance(given, (str, Path)):
        feeds = feeds_mod.load_feeds(model, given, shapes)
        source = {"source": str(given)}
    else:
        feeds = feeds_mod.check_feeds(model, given, shapes, source="inputs")
        source = {"source": "arrays"}
    source["shapes"] = {k: list(v.shape[1:]) for k, v in feeds.items()}
    source["samples"] = int(next(iter(feeds.values())).shape[0]) if feeds else 1
    return Feeds(feeds, source)




class Watcher(Protocol):
    """Hears of each variant's tapped run as soon as its files are written (measure/ahead.py's Ahead); its
    reference runs first."""

    reference: Variant

    def begin(self, catalogue: Sequence[model_mod.TensorInfo]) -> None:
        """The tapped tensors, before any worker runs."""

    def written(self, variant: Variant, folder: Path) -> None:
        """`variant`'s tapped run is written in `folder` (its manifest: `tapped.json`)."""


@dataclass
class RunSet:
    """What running variants leaves behind: the model, its taps, the feeds and one VariantRun per variant,
    whose tensor files live under `folder` until the caller removes it."""

    model: model_mod.Model
    plan: tap.TapPlan
    feeds: dict[str, np.ndarray]
    feed_info: dict[str, Any]
    runs: list[VariantRun]
    folder: Path


def worker_count(jobs: int, time: int, variants: int) -> int:
    """Workers at a time: `jobs`, or by default one per core. Timed variants run one at a time unless told
    otherwise: concurrent workers would compete for the cores."""
    return jobs or (1 if time > 0 else min(variants, os.cpu_count() or 1))


def _folders(folder: Path, variant_list: Sequence[Variant]) -> list[Path]:
    return [folder / f"{i:02d}-{v.slug}" for i, v in enumerate(variant_list)]


def _environments(variant_list: Sequence[Variant], jobs: int) -> dict[Variant, dict[str, str] | None]:
    """Each variant's worker environment; None for a variant whose backend is not installed (it will not run)."""
    resolved = {v: backends.resolve_variant(v) for v in variant_list}
    runnable = [v for v in variant_list if resolved[v][0].available()[0]]
    shared = jobs > 1 and len(runnable) > 1
    return {v: spawn.environment(resolved[v][0].environment(resolved[v][1]), shared) if v in runnable else None
            for v in variant_list}


def running_order(variant_list: Sequence[Variant], reference: Variant | None) -> list[int]:
    """The order the variants start in: the reference first (every other variant's tapped run can be compared as
    soon as it is written: measure/ahead.py), then the others as listed. Reports keep the order as listed."""
    return sorted(range(len(variant_list)), key=lambda i: variant_list[i] != reference)


def start_workers(variant_list: Sequence[Variant], folder: Path, jobs: int, time: int,
                  ready: spawn.Ready, reference: Variant | None = None, more: bool = False) -> spawn.Ready:
    """Create the run's folder and start, in `ready`, the workers of the variants that run first (see
    running_order) and have none waiting there (kept from the run before, while `ready` was serving): each imports
    its framework while this process loads the model (run/spawn.py). `more`: another run follows this one, and
    every worker is kept for it (`ready.serving`). The variants' folders must not exist yet: a run never reads what
    an earlier one left."""
    outs = _folders(folder, variant_list)
    stale = [p.name for p in outs if os.path.lexists(p)]
    if stale:
        raise UsageError(f"{folder} already holds a run ({stale[0]}): a run needs a fresh folder",
                         "let infercmp pick one (compare's --workdir makes a new run folder each time)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(folder, exc, "create") from None
    count = worker_count(jobs, time, len(variant_list))
    if not ready.environments:  # the pool's first run
        ready.environments = _environments(variant_list, count)
    environments = ready.environments
    ready.serving = more
    spawn.resume()
    first = [(variant_list[i], outs[i]) for i in running_order(variant_list, reference)
             if environments[variant_list[i]] is not None][:count]
    for v, out in first:
        if not ready.waiting(out):
            ready.start(v, environments[v] or {}, out)
    return ready


def run(model: str | Path | model_mod.Model, variant_list: Sequence[Variant], folder: Path,
        inputs: str | Path | Mapping[str, np.ndarray] | Feeds | None, tap_spec: str | Sequence[str] | tap.TapPlan,
        shapes: Mapping[str, tuple[int, ...]], seed: int, samples: int, timeout: float | None, jobs: int,
        repeat: int, kinds: Sequence[str], progress: Callable[[VariantRun], None] | None,
        events: Listener | None, max_disk: int | None, time: int, ready: spawn.Ready,
        ahead: Watcher | None = None, scratch: Path | None = None) -> RunSet:
    """Load (unless loaded), plan, check the disk budget, write the tapped copy and the feeds, and run every
    variant, `jobs` at a time (the arguments as `api.run_variants` checked them); `ready` holds the workers
    `start_workers` started for this run and every worker's environment. Each worker runs the tapped model
    first; `ahead` hears of each tapped run as it is written (measure/ahead.py), except with --tap fused, where
    each variant taps a graph of its own. `scratch`: a memory-backed folder (`memory_scratch`) the tensor files
    go to when they fit there (`memory_folder`) and every tapped tensor's size is known before the run (in the
    feeds' shapes: graph/sizes.py); they go to each variant's folder otherwise."""
    resolved = {v: backends.resolve_variant(v) for v in variant_list}
    loaded = model if isinstance(model, model_mod.Model) else load(model, events)
    plan = tap_spec if isinstance(tap_spec, tap.TapPlan) else tap.plan(loaded, tap_spec)
    feeds, feed_info = resolve_feeds(loaded, inputs, shapes, seed, samples)
    outs = _folders(folder, variant_list)  # created by start_workers, checked fresh there
    modes = {v: backends.fusion_mode(v)[0] for v in variant_list}
    saving = [v for v in variant_list if plan.fused and modes[v] == "optimized"]
    # A plan that taps final outputs only adds nothing to the graph: its untapped runs, of the model as given,
    # hold every tapped tensor, and no tapped copy is written. A variant that computes every tensor whether tapped
    # or not runs once, tapped: that run's final outputs are what it computes untapped (repeats and timing still
    # need a session of the untapped model).
    kinds, once, bare = run_kinds(loaded, plan, variant_list, kinds, repeat, time)
    shapes_now = sizes.run_shapes(loaded, sizes.per_sample(feeds))
    need = check_disk(plan, loaded, len(variant_list), samples, repeat, kinds, folder, max_disk,
                      weights(loaded) * len(saving) if "tapped" in kinds else 0, once=len(once), shapes=shapes_now)
    # Memory holds them only when the estimate is exact: a dim the feeds leave unknown counts 1 in it, and might
    # be 4,096.
    exact = sizes.all_known(plan.tapped, shapes_now)
    tensors = memory_folder(scratch, need) if exact else None
    if bare:
        untapped = tapped = tap.write_copies(loaded, plan, folder, with_tapped=False)[0]
    else:
        emit(events, "tap", "writing the tapped copy")
        untapped, tapped = tap.write_copies(loaded, plan, folder)
        emit(events, "tap", "writing the tapped copy", end=True)
    feeds_path = folder / "feeds.npz"
    save_npz(feeds_path, feeds)
    request = {"model": str(untapped), "tapped_model": str(tapped), "feeds": str(feeds_path), "repeat": repeat,
               "time": time,
               "feed_dtypes": {k: v.dtype.name for k, v in feeds.items() if v.dtype.type is not np.void
                               and v.dtype.kind == "V"},
               "runs": sorted(kinds, key=lambda kind: kind != "tapped"),  # tapped first: see measure/ahead.py
               "outputs": {"untapped": list(loaded.outputs),
                           "tapped": list(loaded.outputs) + [n for n in plan.names if n not in loaded.outputs]
                           + plan.inside},
               # Subgraph tensors: recorded by the backends that can, and absent where a branch did not run.
               "optional": plan.inside,
               "fused": plan.fused, "types": {t.name: t.elem_type for t in plan.tapped if plan.fused and t.elem_type}}
    tapped_only = dict(request, runs=["tapped"], finals_from_tapped=True)
    if tensors is not None:
        for out in outs:  # made here: a worker makes only the folders inside it (see worker.py)
            (tensors / out.name).mkdir()
    jobs_list = [(v, ready.environments[v] or {},
                  dict(tapped_only if v in once else request, **({} if tensors is None else
                                                                  {"tensor_dir": str(tensors / outs[i].name)})),
                  outs[i]) for i, v in enumerate(variant_list)]
    emit(events, "run", "running the variants", 0, len(jobs_list))
    finished: list[VariantRun] = []

    def done(run: VariantRun) -> None:
        finished.append(run)
        emit(events, "run", "running the variants", len(finished), len(jobs_list))
        emit(events, "variant", run.status, variant=str(run.variant), end=True)
        if progress is not None:
            progress(run)

    folders = dict(zip(variant_list, outs))
    if ahead is not None and not plan.fused:
        ahead.begin(plan.tapped)

    def phase(variant: Variant, what: str) -> None:
        if what == "tapped written" and ahead is not None:
            ahead.written(variant, folders[variant])
        elif not what.endswith(" written"):
            emit(events, "variant", what, variant=str(variant))

    order = running_order(variant_list, None if ahead is None else ahead.reference)
    ran = _execute([jobs_list[i] for i in order], resolved, timeout, jobs, done,
                   phase if events or ahead else None, ready)
    runs = [run for _, run in sorted(zip(order, ran), key=lambda pair: pair[0])]
    emit(events, "run", "running the variants", len(jobs_list), len(jobs_list), end=True)
    return RunSet(loaded, plan, feeds, feed_info, runs, folder)


def run_kinds(loaded: model_mod.Model, plan: tap.TapPlan, variant_list: Sequence[Variant], kinds: Sequence[str],
              repeat: int, time: int) -> tuple[Sequence[str], set[Variant], bool]:
    """The run kinds every variant's worker runs, the variants that run once, tapped, and whether the plan is
    bare (final outputs only: no tapped copy)."""
    bare = not plan.fused and not plan.inside and set(plan.names) <= set(loaded.outputs)
    if bare and "untapped" in kinds:
        kinds = ("untapped",)
    single = set(kinds) == {"untapped", "tapped"} and repeat == 1 and time == 0
    once = {v for v in variant_list if single and backends.fusion_mode(v)[0] == "node-by-node"}
    return kinds, once, bare


def load(path: str | Path, events: Listener | None) -> model_mod.Model:
    emit(events, "load", "loading and checking the model")
    loaded = model_mod.load(path)
    emit(events, "load", "loading and checking the model", end=True)
    return loaded


def weights(loaded: model_mod.Model) -> int:
    """Bytes of the model's file and its external data files (the loaded graph reads inline weights in place from
    the model's own file, so that file may be among them)."""
    files = {loaded.path.resolve()} | set(model_mod.check_external_data(loaded.proto,
                                                                         loaded.data_dir or loaded.path.parent))
    return sum(p.stat().st_size for p in files)


def check_disk(plan: tap.TapPlan, loaded: model_mod.Model, variants: int, samples: int, repeat: int,
               kinds: Sequence[str], folder: Path, max_disk: int | None, graphs: int = 0, once: int = 0,
               shapes: Mapping[str, sizes.Shape] | None = None) -> int:
    """Refuse, before anything runs, a plan whose tensors (and `graphs` bytes of optimized graphs the workers
    save, --tap fused) would not fit in `max_disk` bytes (default: 90% of the free space in folder); `once` of the
    variants run once, tapped, and write no untapped outputs. `shapes`: the run's shapes (graph/sizes.run_shapes);
    a dim they leave unknown counts 1, so the estimate is then a lower bound. Returns the bytes the plan needs."""
    per_sample = sizes.bytes_of(plan.tapped, shapes)
    outputs = sizes.bytes_of((t for t in loaded.tensors if t.is_output), shapes)
    need = disk_need(per_sample, outputs, variants, samples, repeat, kinds, graphs, once)
    budget = disk_budget(folder, max_disk)
    if need > budget:
        size = caches.format_size
        raise UsageError(f"the tapped tensors need at least {size(need)} of disk in {folder} ({len(plan.tapped)} "
                         f"tensors, {variants} variants, {samples} samples"
                         + (f", {size(graphs)} of optimized graphs" if graphs else "")
                         + f"), over the budget of {size(budget)}"
                         + (" (--max-disk)" if max_disk is not None else " (90% of the free space)"),
                         "tap fewer tensors (--tap outputs, or names and globs), run fewer variants or samples, "
                         "use a --workdir on a bigger disk, or raise --max-disk")
    return need


# Memory-backed on Linux (tmpfs): tensor files written there skip a disk file system's block allocation and journal,
# and are never written back (benchmarks/bench_core.py measures the difference).
MEMORY_DIR = Path("/dev/shm")


def memory_scratch() -> Path | None:
    """A fresh folder in MEMORY_DIR for a run's tensor files, this process's own (the caller removes it with
    `scratch.remove`), None where there is none. Folders that killed runs left there hold memory until the machine
    restarts: making one removes those first (scratch.make)."""
    try:
        return scratch.make(parent=MEMORY_DIR)
    except OSError:
        return None


def memory_folder(scratch: Path | None, need: int) -> Path | None:
    """A fresh folder in `scratch` for tensor files of `need` bytes when they take at most half its free space and
    a quarter of the available memory (the workers need the rest); None when they do not, or with no scratch."""
    if scratch is None:
        return None
    available = available_memory()
    try:
        if available is None or need > min(shutil.disk_usage(scratch).free // 2, available // 4):
            return None
        return Path(tempfile.mkdtemp(dir=scratch))
    except OSError:
        return None


def disk_need(per_sample: int, outputs: int, variants: int, samples: int, repeat: int, kinds: Sequence[str],
              graphs: int = 0, once: int = 0) -> int:
    """Bytes the workers write for `per_sample` bytes of tapped tensors and `outputs` bytes of final outputs per
    sample (see check_disk)."""
    writes = (2 * repeat - 1) * ((per_sample if "tapped" in kinds else 0) + (outputs if "untapped" in kinds else 0))
    return (writes * (variants - once) + per_sample * once) * samples + graphs


def disk_budget(folder: Path, max_disk: int | None) -> int:
    """--max-disk, or 90% of the free space in `folder`."""
    return max_disk if max_disk is not None else int(shutil.disk_usage(folder).free * 0.9)


def _execute(jobs_list: list[Any], resolved: dict[Variant, Any], timeout: float | None, jobs: int,
             progress: Callable[[VariantRun], None] | None, on_phase: Callable[[Variant, str], None] | None = None,
             ready: spawn.Ready | None = None) -> list[VariantRun]:
    runnable, unavailable = [], {}
    for job in jobs_list:
        ok, why = resolved[job[0]][0].available()
        if ok:
            runnable.append(job)
        else:
            unavailable[job[0]] = VariantRun(job[0], job[3], status="failed", error=f"backend unavailable: {why}")
    done = {r.variant: r for r in run_all(runnable, timeout, parallel=jobs, on_done=progress, on_phase=on_phase,
                                          ready=ready)}
    for run in unavailable.values():
        if progress is not None:
            progress(run)
    done.update(unavailable)
    return [done[job[0]] for job in jobs_list]
