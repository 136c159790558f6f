"""`compare()`: the one library entry point. The command line calls it too."""
from __future__ import annotations

import math
import os
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .measure import analysis
from . import backends
from . import caches
from . import assemble, windows
from .graph import inputs as feeds_mod, model as model_mod, sizes, tap
from .arguments import check_compare
from .errors import UsageError
from .events import Listener, emit
from .fileio import available_memory
from .measure.ahead import Ahead
from .measure.metrics import Tolerance
from .result import Report
from .run.record import VariantRun
from .run import spawn, variants as variants_mod
from .run.variants import RunSet, resolve_feeds, start_workers  # noqa: F401 - api's interface
from .variant import Variant, parse_list
from .workspace import Workspace, check_workdir, new_run_dir

MAX_VARIANTS = 256  # a sweep that expands to more variants runs only when confirmed (--yes)
MAX_ULP = (1 << 64) - 1  # ULP distances are counted in uint64


# -- arguments: checked before anything runs ----------------------------------------------------------------------

def check_tolerance(tolerance: Tolerance) -> Tolerance:
    """UsageError unless atol and rtol are finite numbers >= 0 and max_ulp an integer in [0, 2**64)."""
    for flag, value in (("--atol", tolerance.atol), ("--rtol", tolerance.rtol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise UsageError(f"{flag} must be a finite number >= 0, got {value!r}", "e.g. 1e-5; 0 asks for equality")
    ulp = tolerance.max_ulp
    if ulp is not None and (isinstance(ulp, bool) or not isinstance(ulp, int) or not 0 <= ulp <= MAX_ULP):
        raise UsageError(f"--max-ulp must be an integer from 0 to 2**64 - 1, got {ulp!r}",
                         "the number of representable values two elements may be apart")
    return tolerance


def check_numbers(*, timeout: float | None = None, seed: int = 0, samples: int = 1, jobs: int = 0,
                  repeat: int = 1, time: int = 0) -> float | None:
    """UsageError naming the flag for a number out of range; returns the timeout (None: no limit)."""
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout <= 0:
            raise UsageError(f"--timeout must be a number of seconds > 0, got {timeout!r}",
                             "the default is 600; pass inf for no limit")
        if math.isinf(timeout):
            timeout = None
    for flag, value, low in (("--seed", seed, 0), ("--samples", samples, 1), ("--jobs", jobs, 0),
                             ("--repeat", repeat, 1), ("--time", time, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{flag} must be an integer >= {low}, got {value!r}",
                             "0: one per core" if flag == "--jobs" else
                             "0: no timing; N: a warm-up, then the median of N runs" if flag == "--time" else None)
    return timeout


def check_sweep(variants: Sequence[Variant], yes: bool, jobs: int = 0) -> None:
    """A sweep of more than MAX_VARIANTS variants runs only when confirmed: UsageError saying how many."""
    n = len(variants)
    if n > MAX_VARIANTS and not yes:
        at_once = jobs or min(n, os.cpu_count() or 1)
        raise UsageError(f"the variants expand to {n} runs, over the limit of {MAX_VARIANTS} without --yes",
                         f"each is its own worker process (a Python start, a framework import and the model run "
                         f"at least twice, seconds each), {at_once} at a time; narrow the sweep, or pass --yes")


def resolve_variants(variants: Sequence[str | Variant] | str,
                     reference: str | Variant | None) -> tuple[list[Variant], Variant]:
    """Parse and expand the variants; the reference is the first unless named (and added if not listed)."""
    if isinstance(variants, str):
        variants = [variants]
    specs = [str(v) for v in variants]
    parsed = parse_list(specs)
    if reference is None:
        ref = parsed[0]
    else:
        ref = reference if isinstance(reference, Variant) else Variant.parse(str(reference))
        if ref not in parsed:
            parsed.insert(0, ref)
    return parsed, ref


def run_variants(model: str | Path | model_mod.Model, variant_list: Sequence[Variant], folder: Path,
                 inputs: str | Path | Mapping[str, np.ndarray] | variants_mod.Feeds | None = None, *,
                 tap_spec: str | Sequence[str] | tap.TapPlan = "all",
                 shapes: Mapping[str, tuple[int, ...]] | None = None,
                 seed: int = 0, samples: int = 1, timeout: float | None = 600.0, jobs: int = 0,
                 repeat: int = 1, kinds: Sequence[str] = ("untapped", "tapped"),
                 progress: Callable[[VariantRun], None] | None = None, events: Listener | None = None,
                 max_disk: int | None = None, time: int = 0, ready: spawn.Ready | None = None,
                 ahead: Ahead | None = None, scratch: Path | None = None) -> RunSet:
    """Validate everything, then run each variant in its own worker; tensors are written under `folder`
    (run/variants.py). `max_disk`: bytes the tensors may take (default: 90% of the free space there); a plan that
    needs more is refused before anything runs. The variants' folders under `folder` must not exist yet: a run
    never reads what an earlier one left. `time`: see `compare` (with time > 0 and jobs 0, one variant at a time).
    `ready`: the workers `start_workers` started for this call (else they start here, before the model loads).
    `ahead`: compares each written tapped run with the reference's while the others run (measure/ahead.py).
    `scratch`: a memory-backed folder the tensor files go to when they fit there (run/variants.memory_folder).
    `inputs` as `compare` takes them, or as `resolve_feeds` resolved them."""
    timeout = check_numbers(timeout=timeout, seed=seed, samples=samples, jobs=jobs, repeat=repeat, time=time)
    with spawn.Ready() as own:
        if ready is None:
            ready = start_workers(variant_list, folder, jobs, time, own, None if ahead is None else ahead.reference)
        return variants_mod.run(model, variant_list, folder, inputs, tap_spec, shapes or {}, seed, samples, timeout,
                                variants_mod.worker_count(jobs, time, len(variant_list)), repeat, kinds, progress,
                                events, max_disk, time, ready, ahead, scratch)


def parse_size(text: str, option: str = "--max-disk") -> int:
    """Bytes from a --max-disk or --max-memory value (`500M`, `20G`, `1.5T`); UsageError otherwise."""
    return caches.parse_size(text, option)


def compare(model: str | Path | model_mod.Model, variants: Sequence[str | Variant] | str,
            inputs: str | Path | Mapping[str, np.ndarray] | None = None, *,
            reference: str | Variant | None = None, tap_spec: str | Sequence[str] = "all",
            shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0, samples: int = 1,
            tolerance: Tolerance | None = None, timeout: float | None = 600.0, jobs: int = 0,
            repeat: int = 1, isolate: bool = False, workdir: str | Path | None = None,
            classes: Sequence[str] = (), oracle: bool = False,
            progress: Callable[[VariantRun], None] | None = None, events: Listener | None = None,
            max_disk: int | None = None, time: int = 0, max_memory: int | None = None) -> Report:
    """Run `model` on every variant, tap its tensors, and compare each variant with the reference.

    variants: variant strings (`ort`, `ort:opt=disable`, `ref:dtype=float64`, sweeps `ort:opt=basic|all`).
    inputs: None (seeded random, `seed`/`samples`), an .npz/.npy path, or a dict of arrays.
    reference: the variant others are compared with (default: the first; added if not listed).
    jobs: variants run at the same time (0: as many as there are cores). Concurrency changes timings only:
        each worker's knobs, thread counts included, are its own.
    repeat: run each variant N times (fresh sessions, and N runs of one session): distinct outputs and
        run-to-run spread per tensor land in `report.determinism` and `tensor.spread`.
    tap_spec: "all" (every tensor), "fused" (each variant taps what its own optimized graph computes, so tapping
        changes nothing it runs: `report.fusion`, `tensor.fused`; graph/fusion.py), "outputs", or names and globs.
    isolate: replay every node alone on the reference's inputs: local error in `tensor.local`, the nodes that
        cause deviation in `report.origins` (with tap_spec "all" only: it feeds every tapped tensor).
    workdir: keep the workers' tensors there; by default a temporary folder, removed afterwards (the tensor files
        in a memory-backed one, /dev/shm, when they take at most a quarter of the available memory).
    classes: outputs that are class scores ([N, C] or [N, T, C] per sample) besides those a Softmax or
        LogSoftmax produces: top-1 label flips are reported for these.
    oracle: compare against the float64 oracle that checks itself: `ref:dtype=float64` is the reference and
        `torch:dtype=float64` (no kernel in common) runs too; every tensor where the two disagree beyond float64
        noise is listed in `report.oracle`. Both are added to the variants if missing.
    time: 0, or time each variant's untapped run: the first run is the warm-up, then N more runs of that session
        on the first sample's feeds, their median, min and max in `variant.timings["latency"]`
        (`report.latency(name)`). With time > 0 and `jobs` left at 0 the variants run one at a time, so that
        their timings do not compete for the cores; pass `jobs` to run them together anyway.
    max_disk: bytes the tapped tensors may take at once (default: 90% of the free space where they are written).
        A plan that needs more taps in windows (windows.py: the variants run once per slice of the graph's
        tensors, each slice compared and deleted before the next; a note says so); one that cannot be cut so, or
        with `isolate`, is refused before anything runs, with the number it needs.
    max_memory: bytes of one sample's tapped tensors a worker may hold at once (a backend returns a run's outputs
        together; default: half the available memory, shared by the workers that run at once). A plan over it
        taps in windows too; one over a `max_memory` given that no window fits (or with `isolate`) is refused.
    Raises TypeError for an argument of the wrong type, InfercmpError subclasses for bad input; a variant that
    fails is reported, not raised.
    """
    check_compare(dict(locals()))  # types first, saying what to pass; then the values
    tolerance = check_tolerance(Tolerance() if tolerance is None else tolerance)
    timeout = check_numbers(timeout=timeout, seed=seed, samples=samples, jobs=jobs, repeat=repeat, time=time)
    if workdir is not None:
        check_workdir(workdir)
    if oracle:
        if reference is not None and str(reference) != analysis.ORACLES[0]:
            raise UsageError(f"--oracle compares every variant with {analysis.ORACLES[0]}, not {reference}",
                             "drop --reference, or drop --oracle")
        reference = analysis.ORACLES[0]
    if isolate and tap.is_fused(tap_spec):
        raise UsageError("--isolate replays every node of the model's own graph; --tap fused taps each variant's "
                         "optimized graph instead", "use --tap all with --isolate")
    if isolate and tap_spec != "all":
        raise UsageError("--isolate feeds every node the reference's values of its inputs, so it needs every "
                         "tensor tapped", "drop --tap (all is the default) with --isolate")
    variant_list, ref = resolve_variants(variants, reference)
    if oracle and Variant.parse(analysis.ORACLES[1]) not in variant_list:
        variant_list.append(Variant.parse(analysis.ORACLES[1]))
    if isinstance(classes, str):
        classes = [classes]
    for v in variant_list:  # usage errors in the variants come before any about the model
        backends.resolve_variant(v)
    own_dir = workdir is None  # --workdir keeps the tensors where it says
    work = Workspace("infercmp-") if own_dir else Workspace("", new_run_dir(str(workdir)), memory=False)
    folder, scratch = work.folder, work.memory
    ready = spawn.Ready()
    ahead = Ahead(ref, tolerance, hashing=len(variant_list) > 2)
    try:
        start_workers(variant_list, folder, jobs, time, ready, ref)  # their imports overlap loading the model
        loaded = model if isinstance(model, model_mod.Model) else variants_mod.load(model, events)
        scores = analysis.class_outputs(loaded.tensors, classes)
        run_args: dict[str, Any] = dict(shapes=shapes, seed=seed, samples=samples, timeout=timeout, jobs=jobs,
                                        repeat=repeat, progress=progress, events=events, max_disk=max_disk, time=time,
                                        scratch=scratch)
        plan = tap.plan(loaded, tap_spec)
        fed = resolve_feeds(loaded, inputs, shapes or {}, seed, samples)
        run_shapes = sizes.run_shapes(loaded, sizes.per_sample(fed.arrays))
        cut = None if isolate else windows.split(loaded, plan, variant_list, samples, repeat, ("untapped", "tapped"),
                                                 time, folder, max_disk,
                                                 _memory(max_memory, variants_mod.worker_count(jobs, time,
                                                                                               len(variant_list))),
                                                 run_shapes)
        if cut is None and max_memory is not None:
            _check_memory(plan, max_memory, isolate, run_shapes)
        unsized = _unsized(plan, run_shapes, max_disk, max_memory)
        if cut is not None:
            report = _windowed(loaded, plan, cut, variant_list, ref, folder, fed, tolerance, scores, ready, ahead,
                               run_args)
            report.model.setdefault("notes", []).extend(unsized)
            if not own_dir:
                report.model.setdefault("notes", []).append(f"--workdir: this run's logs are in {folder}")
            return report
        rs = run_variants(loaded, variant_list, folder, fed, tap_spec=plan, ready=ready, ahead=ahead, **run_args)
        if isolate:
            emit(events, "isolate", "replaying every node on the reference's inputs (--isolate)")
        iso = _isolate(rs, ref, timeout, jobs, progress, scratch) if isolate else None
        if isolate:
            emit(events, "isolate", "replaying every node on the reference's inputs (--isolate)", end=True)
        report, _ = assemble.analyse(rs.model, rs.plan, rs.runs, ref, tolerance, rs.feed_info,
                            isolated=[] if iso is None else iso[0], classes=scores, events=events,
                            ahead=ahead)
        if iso is not None:
            from .measure import origins

            report.origins = origins.rank(report.tensors, [str(r.variant) for r in iso[0] if r.ok])
            report.model.setdefault("notes", []).extend(iso[1])
        report.model.setdefault("notes", []).extend(unsized)
        if not own_dir:
            report.model.setdefault("notes", []).append(f"--workdir: this run's tensors and logs are in {folder}")
        return report
    finally:
        ahead.close()  # before the tensors it may be reading go
        ready.close()  # workers never handed a request: stopped, their folders gone; kept ones told to exit
        work.close()
        if not own_dir:
            try:
                folder.rmdir()  # only when nothing ran (an argument was refused): an empty run folder says nothing
            except OSError:
                pass


def _windowed(loaded: model_mod.Model, plan: tap.TapPlan, cut: windows.Windows, variant_list: list[Variant],
              ref: Variant, folder: Path, fed: variants_mod.Feeds, tolerance: Tolerance,
              classes: list[str], ready: spawn.Ready, ahead: Ahead, run_args: dict[str, Any]) -> Report:
    """Run and compare window by window (windows.py), each window's tensors deleted once compared; one report."""
    events: Listener | None = run_args["events"]
    count = len(cut.slices)
    outputs = [t for t in loaded.tensors if t.is_output]
    parts: list[tuple[Any, list[VariantRun]]] = []
    far: dict[tuple[str, str], bool] = {}
    text = f"tapping in {count} windows: {cut.reason()}"
    emit(events, "windows", text, 0, count)
    for i in range(count):
        catalogue = cut.catalogue(i, outputs)
        which = f"window {i + 1} of {count} ({len(catalogue)} tensors)"
        emit(events, "window", which)
        own = ahead if i == 0 else Ahead(ref, tolerance, hashing=len(variant_list) > 2)
        here = folder if i == 0 else folder / f"window-{i + 1}"
        # each variant's worker serves every window: one framework import per run
        if i:  # the workers of the window before wait in `ready`
            start_workers(variant_list, here, run_args["jobs"], run_args["time"], ready, ref, more=i < count - 1)
        else:  # compare started this window's workers
            ready.serving = count > 1
        try:
            rs = run_variants(loaded, variant_list, here, fed, tap_spec=cut.plan(i, outputs, plan.skipped),
                              kinds=("untapped", "tapped") if i == 0 else ("tapped",), ready=ready, ahead=own,
                              **run_args)
            facts, runs, _ = assemble.collect(rs.plan, catalogue, loaded.outputs if i == 0 else [], rs.runs, ref,
                                              tolerance, None, [], classes, events, own)
        finally:
            if i:
                own.close()
        far.update(windows.far_elements(facts, runs, ref, tolerance))
        windows.drop_tensors(runs)
        parts.append((facts, runs))
        emit(events, "window", which, end=True)
        emit(events, "windows", text, i + 1, count)
        if not next(r for r in runs if r.variant == ref).ok:
            break  # nothing to compare the next windows with
    emit(events, "windows", text, count, count, end=True)
    facts, runs = windows.merge(parts)
    report = assemble.build(loaded, plan, runs, ref, tolerance, fed.info, facts, classes, windows.element_far(far))
    report.model.setdefault("notes", []).append(
        f"tapped in {count} windows ({cut.option}): {cut.reason()}; "
        "each window's tensors were compared, then deleted")
    return report


def _unsized(plan: tap.TapPlan, shapes: Mapping[str, sizes.Shape], max_disk: int | None,
             max_memory: int | None) -> list[str]:
    """The note a report carries when a budget was given and tapped tensors have sizes that depend on the data
    (graph/sizes.py): the estimate checked against it counted each of their unknown dims as 1."""
    unknown = [t.name for t in plan.tapped if t.name not in shapes]
    flags = " and ".join(flag for flag, given in (("--max-disk", max_disk), ("--max-memory", max_memory))
                         if given is not None)
    if not unknown or not flags:
        return []
    if len(unknown) == 1:
        what = f"1 tapped tensor ({unknown[0]}) has a size that depends on the data"
    else:
        what = f"{len(unknown)} tapped tensors (the first: {unknown[0]}) have sizes that depend on the data"
    return [f"{what}: the estimate checked against {flags} counted each of {'its' if len(unknown) == 1 else 'their'} "
            "unknown dims as 1"]


def _check_memory(plan: tap.TapPlan, max_memory: int, isolate: bool, shapes: Mapping[str, sizes.Shape]) -> None:
    """Refuse, before anything runs, a plan whose one sample of tapped tensors (in the run's `shapes`) is over
    --max-memory when it is not tapped in windows (windows.split found none that fits, or --isolate or --tap
    fused)."""
    held = sizes.bytes_of(plan.tapped, shapes)
    if held <= max_memory:
        return
    why = ("--isolate feeds every tensor at once" if isolate else "--tap fused taps each variant's own graph"
           if plan.fused else "the final outputs and one more tensor are over it")
    size = caches.format_size
    raise UsageError(f"one sample's tapped tensors take {size(held)} in each worker, over the budget of "
                     f"{size(max_memory)} (--max-memory), and cannot be tapped in windows that fit it: {why}",
                     "raise --max-memory, or tap fewer tensors (--tap)")


def _memory(max_memory: int | None, workers: int) -> int | None:
    """Bytes of one sample's tapped tensors each worker may hold: `max_memory`, or half the available memory shared
    by the workers that run at once (None where the available memory is unknown)."""
    if max_memory is not None:
        return max_memory
    available = available_memory()
    return None if available is None else available // 2 // max(1, workers)


def _isolate(rs: RunSet, ref: Variant, timeout: float | None, jobs: int,
             progress: Callable[[VariantRun], None] | None,
             scratch: Path | None) -> tuple[list[VariantRun], list[str]] | None:
    """Run every other variant on the isolated model, fed the reference's tensors: the runs and the notes that
    say what was fed; None when there is nothing to isolate. `scratch`: see run_variants."""
    from .measure import origins
    from .graph import isolate

    reference = next(r for r in rs.runs if r.variant == ref)
    others = [r.variant for r in rs.runs if r.variant != ref and r.ok]
    if not reference.ok or not others:
        return None
    folder = rs.folder / "isolate"
    folder.mkdir(exist_ok=True)
    recorded = {name: info["shape"] for name, info in reference.tensors.get("tapped", {}).items()}  # one sample's
    path, fed, unfed = isolate.write(rs.model, folder, recorded)
    iso_model = model_mod.load(path, derived=True)
    feeds = origins.feeds(reference, fed, rs.feeds)
    for spec in iso_model.inputs:  # a float64 reference feeds the model's own types, correctly rounded
        want = feeds_mod.np_dtype(spec)
        if feeds[spec.name].dtype != want:
            feeds[spec.name] = feeds[spec.name].astype(want)
    iso = run_variants(iso_model, others, folder, feeds, tap_spec="all", timeout=timeout, jobs=jobs,
                       kinds=("tapped",), progress=progress, scratch=scratch)
    notes = [f"--isolate fed {len(fed)} tensors from {ref}"
             + (f"; {len(unfed)} tensors untyped or not recorded could not be fed: {', '.join(unfed[:5])}"
                if unfed else "")]
    notes.extend(f"--isolate: {run.variant} {run.status}: {run.error}" for run in iso.runs if not run.ok)
    return iso.runs, notes


