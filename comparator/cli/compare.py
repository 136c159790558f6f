"""`infercmp compare` and `infercmp backends`."""
from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import InfercmpError
from .app import app, quiet_blas
from .outputs import TABLE_HELP


@app.command()
def compare(
    model: Path = typer.Argument(..., help="the .onnx model"),
    backends: list[str] = typer.Option(["ort,ref"], "--backends", "-b",
                                       help="variants, comma separated: ort,ort:opt=disable,ref:dtype=float64; "
                                            "sweeps: ort:opt=basic|all"),
    reference: str | None = typer.Option(None, help="variant the others are compared with (default: first)"),
    tap: str = typer.Option("all", help="all | fused (per variant, only what its optimized graph computes: "
                                        "tapping changes nothing it runs) | outputs | tensor names or globs"),
    inputs: Path | None = typer.Option(None, help="feeds from .npz (keys = input names) or .npy"),
    shape: list[str] = typer.Option([], help="bind dynamic dims: input=1x3x224x224 or dimname=4 (repeatable)"),
    seed: int = typer.Option(0, help="seed of the random feeds"),
    samples: int = typer.Option(1, help="number of random samples (each a separate run)"),
    atol: float = typer.Option(1e-5, help="absolute tolerance on final outputs"),
    rtol: float = typer.Option(1e-5, help="relative tolerance on final outputs"),
    max_ulp: int | None = typer.Option(None, "--max-ulp", help="also accept elements within this many ULPs"),
    timeout: float = typer.Option(600.0, help="seconds before a variant's worker is killed"),
    jobs: int = typer.Option(0, help="variants run at the same time (0: one per core)"),
    json_out: Path | None = typer.Option(None, "--json", help="write the JSON report here (- for stdout)"),
    workdir: Path | None = typer.Option(None, help="keep the workers' tensors and logs in this folder"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the findings, not the tables"),
    table: str = typer.Option("worst", "--table", help=TABLE_HELP),
    top: int = typer.Option(15, "--top", help="rows of the table of the worst tensors"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the caches (TVM compiles, digests)"),
    repeat: int = typer.Option(1, help="run each variant N times: distinct outputs, run-to-run spread"),
    time_runs: int = typer.Option(0, "--time", help="time each variant's untapped run: a warm-up, then the median "
                                  "of N runs (variants then run one at a time)"),
    oracle: bool = typer.Option(False, "--oracle", help="compare with the float64 oracle that checks itself: "
                                "ref:dtype=float64 as the reference, torch:dtype=float64 beside it, every tensor "
                                "where the two disagree flagged"),
    classes: list[str] = typer.Option([], "--classes", help="outputs that are class scores ([N, C] or [N, T, C]) "
                                      "besides Softmax/LogSoftmax outputs: label flips (repeatable, comma list)"),
    isolate: bool = typer.Option(False, "--isolate", help="replay each node on the reference's inputs: "
                                                          "local error, origin vs propagation"),
    html_out: Path | None = typer.Option(None, "--html", help="write a self-contained HTML report here"),
    junit_out: Path | None = typer.Option(None, "--junit", help="write a JUnit XML report here"),
    model_explorer_out: Path | None = typer.Option(None, "--model-explorer", metavar="DIR",
                                                   help="write Model Explorer node data into this folder: one file "
                                                        "per variant and metric, to view over the model's graph"),
    max_disk: str | None = typer.Option(None, "--max-disk", help="disk the tapped tensors may take at once (500M, "
                                        "20G; default: 90% of the free space); a plan that needs more taps in "
                                        "windows, one slice of the graph at a time, or is refused before running"),
    max_memory: str | None = typer.Option(None, "--max-memory", help="memory one sample's tapped tensors may take "
                                          "in each worker (4G; default: half the available memory, shared by the "
                                          "workers); a plan that needs more taps in windows"),
    yes: bool = typer.Option(False, "--yes", help="run a sweep of more than 256 variants"),
) -> None:
    """Run MODEL on every variant, tap every tensor, and compare each variant with the reference."""
    if no_cache:
        os.environ["INFERCMP_NO_CACHE"] = "1"  # inherited by the workers
    quiet_blas()
    from .. import api
    from ..graph.inputs import parse_shapes
    from ..measure.metrics import Tolerance
    from ..variant import parse_list

    from .progress import stderr_phases

    from . import outputs

    outputs.check_table(table, top)
    reports = {"--json": json_out, "--html": html_out, "--junit": junit_out}
    outputs.guard(reports, {"--inputs": inputs}, {"the model": model}, {"--model-explorer": model_explorer_out})
    variants = parse_list(backends)
    api.check_sweep(variants, yes, jobs)
    with stderr_phases() as events:
        report = api.compare(model, variants, inputs=inputs, reference=reference, tap_spec=tap,
                             shapes=parse_shapes(shape), seed=seed, samples=samples,
                             tolerance=Tolerance(atol, rtol, max_ulp), timeout=timeout, jobs=jobs,
                             repeat=repeat, time=time_runs, isolate=isolate, workdir=workdir,
                             classes=[c for item in classes for c in item.split(",") if c.strip()], oracle=oracle,
                             events=events, max_disk=None if max_disk is None else api.parse_size(max_disk),
                             max_memory=None if max_memory is None else api.parse_size(max_memory, "--max-memory"))
    # A report on stdout (`--json -`) keeps stdout to itself: the table and findings go to stderr.
    out = outputs.console(to_stderr=outputs.takes_stdout(*reports.values()))
    outputs.show(report, out, table, top, quiet)
    outputs.write_reports(out, report, {**reports, "--model-explorer": model_explorer_out}, {"--inputs": inputs},
                          {"the model": model})
    raise typer.Exit(report.exit_code)


@app.command("backends")
def list_backends() -> None:
    """List the installed backends and every option: type, default, valid values. Imports no framework."""
    from .. import backends as registry

    for name in registry.names():
        try:
            backend = registry.get(name)
        except InfercmpError as exc:
            typer.echo(f"{name}: cannot load ({exc.message})")
            continue
        ok, why = backend.available()
        typer.echo(f"{name}: {backend.description}" + ("" if ok else f"  [unavailable: {why}]"))
        for opt in backend.options:
            typer.echo(f"    {opt.name:<18} {opt.type.__name__:<5} default {opt.format(opt.default):<11} "
                       f"{opt.describe_values():<30} {opt.help}")
