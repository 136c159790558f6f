"""`infercmp audit batch | threads | repeat`: does a sample's result depend on its batch, the thread count, or
the run? Registered on the app of comparator.cli.app as the command group `audit`.

Exit codes: 0 every variant ran (whatever the audit found: the JSON and the lines say it), 2 usage or bad
input, 3 a variant could not run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import outputs
from .app import Typer, app, quiet_blas
from .progress import stderr_phases

audit_app = Typer(no_args_is_help=True, help="Which settings keep a sample's result the same: across batches, "
                                             "thread counts, repeated runs.")
app.add_typer(audit_app, name="audit")

MODEL = typer.Argument(..., help="the .onnx model")
BACKENDS = typer.Option(["ort"], "--backends", "-b", help="variants, comma separated: ort,ort:opt=disable,torch")
INPUTS = typer.Option(None, help="feeds from .npz (keys = input names) or .npy")
SHAPE = typer.Option([], help="bind dynamic dims other than the batch: dimname=128 or input=... (repeatable)")
SEED = typer.Option(0, help="seed of the random feeds")
TAP = typer.Option("all", help="all | outputs | comma-separated tensor names or globs (all: find the first layer)")
TIMEOUT = typer.Option(600.0, help="seconds before a variant's worker is killed")
JOBS = typer.Option(0, help="variants run at the same time (0: one per core)")
JSON = typer.Option(None, "--json", help="write the audit as JSON here (- for stdout)")


def _ints(text: str, flag: str) -> list[int]:
    from ..errors import UsageError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: give comma-separated integers", f"e.g. {flag} 1,2,4") from None


def _audit(run: Any, model: Path, backends: list[str], inputs: Path | None, shape: list[str], seed: int, tap: str,
           timeout: float, jobs: int, json_out: Path | None, **extra: Any) -> None:
    """Check the arguments, run one audit with progress on stderr, print it and write its JSON."""
    quiet_blas()
    from .. import api
    from ..graph.inputs import parse_shapes
    from ..variant import parse_list

    _guard(json_out, inputs, model)
    timeout_s = api.check_numbers(timeout=timeout, seed=seed, jobs=jobs)
    with stderr_phases() as events:
        result = run(model, parse_list(backends), inputs, shapes=parse_shapes(shape), seed=seed, tap_spec=tap,
                     timeout=timeout_s, jobs=jobs, events=events, **extra)
    outputs.finish(result, json_out)


def _guard(json_out: Path | None, inputs: Path | None, model: Path) -> None:
    outputs.guard({"--json": json_out}, {"--inputs": inputs}, {"the model": model})


@audit_app.command("batch")
def batch(model: Path = MODEL, backends: list[str] = BACKENDS, inputs: Path | None = INPUTS,
          sizes: str = typer.Option("1,2,7,32", help="batch sizes the sample runs in (1: alone, always run)"),
          shape: list[str] = SHAPE, seed: int = SEED, tap: str = TAP, timeout: float = TIMEOUT, jobs: int = JOBS,
          json_out: Path | None = JSON) -> None:
    """Is each variant batch-invariant, and from which layer does a sample depend on its batch?

    One sample runs alone and inside batches of several sizes, at several positions, among different
    neighbours."""
    from ..audit.batch import audit_batch

    _audit(audit_batch, model, backends, inputs, shape, seed, tap, timeout, jobs, json_out,
           sizes=_ints(sizes, "--sizes"))


@audit_app.command("threads")
def threads(model: Path = MODEL, backends: list[str] = BACKENDS, inputs: Path | None = INPUTS,
            counts: str = typer.Option("1,2,4", "--threads", help="intra-op thread counts; each is compared "
                                                                  "with the first"),
            shape: list[str] = SHAPE, seed: int = SEED, tap: str = TAP, timeout: float = TIMEOUT, jobs: int = JOBS,
            json_out: Path | None = JSON) -> None:
    """Run each variant at several intra-op thread counts: is it thread-invariant, and where does it diverge?"""
    from ..audit.knobs import audit_threads

    _audit(audit_threads, model, backends, inputs, shape, seed, tap, timeout, jobs, json_out,
           threads=_ints(counts, "--threads"))


@audit_app.command("repeat")
def repeat(model: Path = MODEL, backends: list[str] = BACKENDS, inputs: Path | None = INPUTS,
           runs: int = typer.Option(5, "--runs", help="fresh sessions per variant"),
           shape: list[str] = SHAPE, seed: int = SEED, tap: str = TAP, timeout: float = TIMEOUT, jobs: int = JOBS,
           json_out: Path | None = JSON) -> None:
    """Run each variant in several fresh sessions: does it give the same numbers every time?"""
    from ..audit.knobs import audit_repeat

    _audit(audit_repeat, model, backends, inputs, shape, seed, tap, timeout, jobs, json_out, runs=runs)


@app.command("advise")
def advise(model: Path | None = typer.Argument(None, help="the .onnx model (not with --from)"),
           backends: list[str] = typer.Option([], "--backends", "-b", help="the sweep: settings to try, e.g. "
                                              "'ort:opt=disable|all:threads=1|2,torch:threads=1|2'"),
           from_report: Path | None = typer.Option(None, "--from", help="advise from a sweep already run: the JSON "
                                                   "report of `compare -b SWEEP --oracle --time N`"),
           target: list[str] = typer.Option([], "--target", help="what must agree: backends or variants, comma "
                                            "separated (default: every swept backend)"),
           atol: float | None = typer.Option(None, help="also count as agreeing final outputs within this "
                                                        "absolute difference"),
           max_ulp: int | None = typer.Option(None, "--max-ulp", help="also count as agreeing final outputs "
                                                                     "within this many ULPs"),
           time: int = typer.Option(5, "--time", help="latency: a warm-up, then the median of N runs"),
           top: int = typer.Option(10, "--top", help="rows of the ranked table"),
           inputs: Path | None = INPUTS, shape: list[str] = SHAPE, seed: int = SEED, timeout: float = TIMEOUT,
           json_out: Path | None = JSON) -> None:
    """Which swept settings make the targets agree, how far from the float64 oracle, at what latency.

    Agreeing is one class of bit-identical final outputs, or within --atol/--max-ulp. Only settings that ran are
    recommended."""
    quiet_blas()
    from .. import api
    from ..audit.advise import advise as run_advice, advise_report
    from ..errors import UsageError
    from ..graph.inputs import parse_shapes

    if top < 1:
        raise UsageError(f"--top {top}: give 1 or more rows")
    targets = [t for item in target for t in item.split(",") if t.strip()] or None
    if from_report is not None:
        if model is not None or backends:
            raise UsageError("--from takes the settings from the report", "drop MODEL and --backends")
        from ..report.json import read

        outputs.guard({"--json": json_out}, {"--from": from_report})
        advice = advise_report(read(from_report), targets, atol=atol, max_ulp=max_ulp)
        outputs.finish(advice, json_out, lambda _: advice.lines(top))
    if model is None or not backends:
        raise UsageError("give MODEL and -b SWEEP, or --from REPORT.json",
                         "e.g. infercmp advise model.onnx -b 'ort:opt=disable|all'")
    _guard(json_out, inputs, model)
    timeout_s = api.check_numbers(timeout=timeout, seed=seed, time=time)
    with stderr_phases() as events:
        result = run_advice(model, backends, targets, inputs, atol=atol, max_ulp=max_ulp, time=time,
                            shapes=parse_shapes(shape), seed=seed, timeout=timeout_s, events=events)
    outputs.finish(result, json_out, lambda _: result.lines(top))
