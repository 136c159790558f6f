"""`infercmp conformance`: the ONNX node test suite through one variant."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from .app import app


@app.command()
def conformance(
    backend: str = typer.Option(..., "--backend", "-b", help="one variant, e.g. torch or ort:opt=disable"),
    op: list[str] = typer.Option([], "--op", help="only cases of this op type (repeatable)"),
    name: str | None = typer.Option(None, "--filter", help="only cases whose name contains this"),
    case_timeout: float = typer.Option(60.0, help="seconds one case may take before it counts as a hang"),
    json_out: Path | None = typer.Option(None, "--json", help="write per-case results here"),
    failures: bool = typer.Option(False, "--failures", help="list every case that did not pass"),
) -> None:
    """Run the ONNX backend node test suite through one variant; count passed/failed/unsupported per op."""
    from ..run import conformance as conf
    from ..variant import Variant

    variant = Variant.parse(backend)
    from .. import backends as registry

    registry.resolve_variant(variant)  # usage errors before the long run
    last = [0.0]

    def progress(done: int, total: int) -> None:
        import time

        if sys.stderr.isatty() and time.monotonic() - last[0] > 0.5:
            last[0] = time.monotonic()
            typer.echo(f"\r{done}/{total} cases", err=True, nl=False)

    result = conf.run(variant, ops=op or None, name_filter=name, case_timeout=case_timeout, progress=progress)
    if sys.stderr.isatty():
        typer.echo("", err=True)
    counts = result.counts()
    typer.echo(f"{variant}: {len(result.cases)} cases in {result.wall_s:.0f} s: "
               + ", ".join(f"{v} {k}" for k, v in counts.items()))
    typer.echo(f"{'op':<28} " + " ".join(f"{s:>11}" for s in conf.STATUSES))
    for op_type, c in result.per_op().items():
        typer.echo(f"{op_type:<28} " + " ".join(f"{c[s]:>11}" for s in conf.STATUSES))
    if failures:
        for case in result.cases:
            if case["status"] != "passed":
                typer.echo(f"{case['status']:<11} {case['name']}: {case['detail']}")
    if json_out is not None:
        from ..fileio import write_json

        write_json(json_out, result.to_dict())
        typer.echo(f"JSON: {json_out}")
