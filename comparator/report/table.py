"""`--table full`: a row per tensor and variant in topological order (runs of tensors bit-identical in every variant
folded into one row), then the findings, as a rich table on the terminal."""
from __future__ import annotations

from typing import Any

from ..result import Report, TensorReport
from .text import (COLUMNS, LISTED_DOUBTS, VERDICTS, broken_lines, metric_cells, observer_text, oracle_lines,
                   verdict_text)


def _all_identical(t: TensorReport) -> bool:
    return bool(t.metrics) and all("error" not in m and m["bit_identical"] for m in t.metrics.values())


def render(report: Report, console: Any = None, collapse: int = 3) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    model = report.model
    console.print(f"[bold]{model['path']}[/] sha256 {model['sha256'][:12]}  opsets {model['opsets']}  "
                  f"reference [bold]{report.reference}[/]")
    for note in model.get("notes", []):
        console.print(f"  note: {note}")
    variants = [v.name for v in report.variants if v.name != report.reference and v.status == "ok"]
    table = Table(show_lines=False, header_style="bold", pad_edge=False)
    for col in ("#", "tensor", "op", "variant") + COLUMNS:
        table.add_column(col, justify="right" if col not in ("tensor", "op", "variant") else "left",
                         overflow="fold")
    with_local = any(t.local for t in report.tensors)
    if with_local:
        table.add_column("local", justify="right")
        table.add_column("role")
    run: list[TensorReport] = []

    def flush() -> None:
        if len(run) >= collapse:
            table.add_row("", f"[dim]{run[0].name} .. {run[-1].name}[/]", "",
                          f"[green]{len(run)} tensors bit-identical in every variant[/]",
                          *[""] * (len(COLUMNS) + (2 if with_local else 0)))
        else:
            for t in run:
                _rows(table, t, variants, with_local)
        run.clear()

    for t in report.tensors:
        if _all_identical(t) and not t.is_output:
            run.append(t)
            continue
        flush()
        _rows(table, t, variants, with_local)
    flush()
    if report.tensors and variants:
        console.print(table)
    render_findings(report, console)


def _rows(table: Any, t: TensorReport, variants: list[str], with_local: bool = False) -> None:

    for i, v in enumerate(variants):
        m = t.metrics.get(v)
        if m is None:
            continue
        name = (t.name + (" (output)" if t.is_output else "")) if i == 0 else ""
        extra = []
        if with_local:
            local = t.local.get(v)
            if local is None or "error" in local:
                extra = ["-", ""]
            else:
                extra = ["==" if local["bit_identical"] else f"{local['max_ulp']} ulp", t.role(v)]
        table.add_row(str(t.index) if i == 0 else "", name, t.op_type if i == 0 else "", v, *metric_cells(m), *extra)
    for k, v in enumerate(t.fused):  # --tap fused: no value of this tensor in that variant's optimized graph
        first = k == 0 and not any(v in t.metrics for v in variants)
        table.add_row(str(t.index) if first else "", t.name if first else "", t.op_type if first else "", v,
                      "[dim]fused[/]", *[""] * (len(COLUMNS) - 1 + (2 if with_local else 0)))


def render_findings(report: Report, console: Any) -> None:
    for v in report.variants:
        if v.status != "ok":
            console.print(f"[red]{v.name}: {v.status}[/]: {v.error}")
            if v.hint:
                console.print(f"  hint: {v.hint}")
            if v.stderr_tail:
                console.print("  stderr (last lines):")
                for line in v.stderr_tail.splitlines():
                    console.print(f"    {line}", markup=False, highlight=False)
    for name, tensor in report.first_divergence.items():
        beyond = report.first_beyond_tolerance.get(name)
        console.print(f"{name}: first divergence {tensor or 'none (bit-identical throughout)'}"
                      + (f"; first beyond tolerance {beyond}" if beyond else ""))
    for name, effect in report.observer_effect.items():
        if effect:
            console.print(f"[yellow]{name}: observer effect[/]: tapping changed its final outputs "
                          f"{observer_text(report, name)}; its intermediate tensors come from a "
                          "differently fused graph")
    for name, outputs in report.label_flips.items():
        for out, info in outputs.items():
            console.print(f"{name}: {out} top-1 agreement {100 * info['agreement']:.2f}% "
                          f"({info['flip_count']} of {info['rows']} rows flip)")
    for name, nodes in report.origins.items():
        if nodes:
            causes = "; ".join(f"{n['tensor']} ({n['op_type']}) {n['max_ulp']} ulp" for n in nodes)
            console.print(f"{name}: origins by local error: {causes}")
        else:
            console.print(f"{name}: no node adds error on its own (every deviation is fusion or propagation)")
    for name, d in report.determinism.items():
        text = f"{name}: {d['runs']} runs, {d['distinct_outputs']} distinct final output(s)"
        tol = d.get("suggested_tolerance")
        if tol:
            text += f"; not deterministic: suggested tolerance atol {tol['atol']:.3g}, max_ulp {tol['max_ulp']}"
        console.print(text)
    if report.equivalence_classes:
        classes = "  ".join("{" + ", ".join(c) + "}" for c in report.equivalence_classes)
        console.print(f"bit-identical final outputs: {classes}")
    for name, why in report.skipped_taps:
        console.print(f"[dim]not tapped: {name} ({why})[/]")
    for variant in report.untapped_subgraphs:
        console.print(report.untapped_subgraph_note(variant), style="dim", markup=False, highlight=False)
    for variant in report.fusion:
        fused = report.fusion_note(variant)
        if fused:
            console.print(fused, style="dim", markup=False, highlight=False)
    for line in oracle_lines(report, LISTED_DOUBTS) + broken_lines(report):
        console.print(line, style="yellow" if "agree on every" not in line else None, markup=False, highlight=False)
    verdict = verdict_text(report)
    colour = "green" if report.exit_code == 0 and verdict == VERDICTS[0] else (
        "yellow" if report.exit_code == 0 else "red")
    tol = report.tolerance
    console.print(f"{verdict} (atol {tol['atol']:g}, rtol {tol['rtol']:g}"
                  + (f", max_ulp {tol['max_ulp']}" if tol.get("max_ulp") is not None else "") + ")",
                  style=colour, markup=False, highlight=False)


# -- the summary: findings first, one screen whatever the model, no number ever folded ---------------------------
