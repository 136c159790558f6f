"""`--table full`: a row per tensor and variant in topological order (runs of tensors bit-identical in every variant
folded into one row), then the findings, as a rich table on the terminal."""
from __future__ import annotations

from typing import Any

from ..result import Report, TensorReport
from .text import (COLUMNS, LISTED_DOUBTS, VERDICTS, doubt_lines, metric_cells, observer_text, stderr_lines,
                   verdict_text)


def _all_identical(t: TensorReport) -> bool:
    return bool(t.metrics) and all("error" not in m and m["bit_identical"] for m in t.metrics.values())


# Where the terminal is too narrow for every column, these are left out first (a note names them); numbers are
# never folded, and the tensor name folds down to TENSOR_MIN characters a line.
LEAVE_OUT = ("mean_abs", "max_rel", "cosine", "nan/inf", "p99_ulp", "snr_dB", "op", "max_abs")
TENSOR_MIN = 16
Row = tuple[list[str], bool]  # the cells, and whether they count when fitting the columns (notes span and fold)


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
    with_local = any(t.local for t in report.tensors)
    headers = ["#", "tensor", "op", "variant", *COLUMNS] + (["local", "role"] if with_local else [])
    rows: list[Row] = []
    run: list[TensorReport] = []

    def flush() -> None:
        if len(run) >= collapse:
            rows.append((["", f"[dim]{run[0].name} .. {run[-1].name}[/]", "",
                          f"[green]{len(run)} tensors bit-identical in every variant[/]",
                          *[""] * (len(headers) - 4)], False))
        else:
            for t in run:
                rows.extend(_rows(t, variants, with_local))
        run.clear()

    for t in report.tensors:
        if _all_identical(t) and not t.is_output:
            run.append(t)
            continue
        flush()
        rows.extend(_rows(t, variants, with_local))
    flush()
    if report.tensors and variants:
        widths = _widths(headers, rows)
        keep = _fit(headers, widths, console.width)
        table = Table(show_lines=False, header_style="bold", pad_edge=False)
        for i in keep:
            col = headers[i]
            text = col in ("tensor", "op", "variant", "role")
            table.add_column(col, justify="left" if text else "right", overflow="fold",
                             no_wrap=not text and col != "identical",
                             min_width=min(TENSOR_MIN, widths[i]) if col == "tensor" else None)
        for cells, _ in rows:
            table.add_row(*[cells[i] for i in keep])
        console.print(table)
        left_out = [h for i, h in enumerate(headers) if i not in keep]
        if left_out:
            console.print(f"[dim]left out at {console.width} columns: {', '.join(left_out)} (a wider terminal, "
                          "COLUMNS=200 when piped, or the --json and --html reports show them)[/]")
    render_findings(report, console)


def _plain(cell: str) -> str:
    from rich.text import Text

    return Text.from_markup(cell).plain if "[" in cell else cell


def _widths(headers: list[str], rows: list[Row]) -> list[int]:
    """Each column's widest cell (the header included) over the rows that count."""
    return [max([len(h)] + [len(_plain(cells[i])) for cells, counts in rows if counts])
            for i, h in enumerate(headers)]


def _fit(headers: list[str], widths: list[int], width: int) -> list[int]:
    """The columns to show (their widest cells: `widths`): all of them where they fit in `width`, else without
    LEAVE_OUT's, in its order, until they fit (or none of those is left)."""
    keep = list(range(len(headers)))

    def need() -> int:  # each column's cells plus a border and a space either side
        return sum(min(widths[i], TENSOR_MIN) if headers[i] == "tensor" else widths[i] for i in keep) + 3 * len(keep)

    for name in LEAVE_OUT:
        if need() <= width:
            break
        keep.remove(headers.index(name))
    return keep


def _rows(t: TensorReport, variants: list[str], with_local: bool = False) -> list[Row]:
    rows: list[Row] = []
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
        rows.append(([str(t.index) if i == 0 else "", name, t.op_type if i == 0 else "", v, *metric_cells(m), *extra],
                     "error" not in m))
    for k, v in enumerate(t.fused):  # --tap fused: no value of this tensor in that variant's optimized graph
        first = k == 0 and not any(v in t.metrics for v in variants)
        rows.append(([str(t.index) if first else "", t.name if first else "", t.op_type if first else "", v,
                      "[dim]fused[/]", *[""] * (len(COLUMNS) - 1 + (2 if with_local else 0))], True))
    return rows


def render_findings(report: Report, console: Any) -> None:
    for v in report.variants:
        if v.status != "ok":
            console.print(f"[red]{v.name}: {v.status}[/]: {v.error}")
            if v.hint:
                console.print(f"  hint: {v.hint}")
            tail = stderr_lines(v)
            if tail:
                console.print("  stderr (last lines):")
                for line in tail:
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
    for line, doubt in doubt_lines(report, LISTED_DOUBTS):
        console.print(line, style="yellow" if doubt else None, markup=False, highlight=False)
    verdict = verdict_text(report)
    colour = "green" if report.exit_code == 0 and verdict == VERDICTS[0] else (
        "yellow" if report.exit_code == 0 else "red")
    tol = report.tolerance
    console.print(f"{verdict} (atol {tol['atol']:g}, rtol {tol['rtol']:g}"
                  + (f", max_ulp {tol['max_ulp']}" if tol.get("max_ulp") is not None else "") + ")",
                  style=colour, markup=False, highlight=False)


# -- the summary: findings first, one screen whatever the model, no number ever folded ---------------------------
