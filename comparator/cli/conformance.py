"""`infercmp conformance`: the ONNX node test suite through one variant."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from .app import app


@app.command()
def conformance(
    backend: str = typer.Option(..., "--backends", "--backend", "-b",
                                help="one variant, e.g. torch or ort:opt=disable (the suite runs one at a time)"),
    op: list[str] = typer.Option([], "--op", help="only cases of this op type (repeatable)"),
    name: str | None = typer.Option(None, "--filter", help="only cases whose name contains this"),
    case_timeout: float = typer.Option(60.0, help="seconds one case may take before it counts as a hang"),
    json_out: Path | None = typer.Option(None, "--json", help="write per-case results here"),
    failures: bool = typer.Option(False, "--failures", help="list every case that did not pass"),
    shard: str | None = typer.Option(None, "--shard", help="K/N: only every N-th case from the K-th (0-based)"),
    expected: Path | None = typer.Option(None, "--expected", exists=True, dir_okay=False,
                                         help="expected-failure list: exit 1 naming every case that departs from it"),
    write_expected: Path | None = typer.Option(None, "--write-expected", dir_okay=False,
                                               help="write the expected-failure list for this run (keeps the reasons "
                                                    "of cases it already lists)"),
) -> None:
    """Run the ONNX backend node test suite through one variant; count passed/failed/unsupported per op."""
    from ..errors import UsageError
    from ..run import conformance as conf
    from ..variant import Variant

    variant = Variant.parse(backend)
    from .. import backends as registry

    registry.resolve_variant(variant)  # usage errors before the long run
    part: tuple[int, int] | None = None
    if shard is not None:
        k, _, n = shard.partition("/")
        if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
            raise typer.BadParameter(f"{shard!r}: want K/N with 0 <= K < N", param_hint="--shard")
        part = (int(k), int(n))
    if write_expected is not None and (op or name or part):
        raise UsageError("--write-expected lists the whole suite: drop --op, --filter and --shard")
    try:
        listed = conf.read_expected(expected) if expected is not None else None
        previous = conf.read_expected(write_expected) if write_expected is not None and write_expected.exists() \
            else {}
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    last = [0.0]

    def progress(done: int, total: int) -> None:
        import time

        if sys.stderr.isatty() and time.monotonic() - last[0] > 0.5:
            last[0] = time.monotonic()
            typer.echo(f"\r{done}/{total} cases", err=True, nl=False)

    result = conf.run(variant, ops=op or None, name_filter=name, case_timeout=case_timeout, progress=progress,
                      shard=part)
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
    if write_expected is not None:
        header = conf.expected_header(str(variant), len(result.cases), write_expected)
        write_expected.write_text(conf.format_expected(result.cases, previous, header), encoding="utf-8")
        typer.echo(f"expected-failure list: {write_expected}")
    if listed is not None:
        problems = conf.check_expected(result.cases, listed)
        for line in problems:
            typer.echo(line)
        typer.echo(f"{len(problems)} case(s) depart from {expected}" if problems else f"as expected by {expected}")
        if problems:
            raise typer.Exit(1)
