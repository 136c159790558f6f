"""Terminal rendering: a per-tensor table in topological order, then the findings."""
from __future__ import annotations

import math
from typing import Any

from ..result import Report, TensorReport

COLUMNS = ("identical", "max_abs", "mean_abs", "max_rel", "max_ulp", "p99_ulp", "cosine", "snr_dB", "nan/inf")


def _num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x == 0:
            return "0"
        return f"{x:.{digits}e}" if abs(x) < 1e-3 or abs(x) >= 1e5 else f"{x:.{digits + 2}g}"
    return str(x)


def metric_cells(m: dict[str, Any]) -> list[str]:
    if "error" in m:
        return [m["error"]] + [""] * (len(COLUMNS) - 1)
    ident = "==" if m["bit_identical"] else f"{100 * m['identical_fraction']:.1f}%"
    cos = m["cosine"]
    cos_text = "1" if cos == 1.0 else (f"1-{1 - cos:.1e}" if isinstance(cos, float) and cos > 0.99 else _num(cos))
    return [ident, _num(m["max_abs"]), _num(m["mean_abs"]), _num(m["max_rel"]), _num(m["max_ulp"]),
            _num(m["p99_ulp"]), cos_text, _num(m["snr_db"], 1), f"{m['nan_mismatch']}/{m['inf_mismatch']}"]


def observer_text(report: Report, variant: str) -> str:
    """What tapping changed in a variant's final outputs, e.g. 'probs (max ULP 526,344, max abs 3.92e-03)'."""
    detail = report.observer_detail.get(variant, {})
    return ", ".join(f"{name} (max ULP {_num(d.get('max_ulp'))}, max abs {_num(d.get('max_abs'))})"
                     for name, d in detail.items()) or "?"


VERDICTS = {0: "PASS: final outputs within tolerance", 1: "FAIL: final outputs beyond tolerance",
            3: "FAIL: a variant could not run"}
LISTED_DOUBTS = 10  # oracle disagreements listed on the terminal; the JSON and HTML reports list all


def oracle_lines(report: Report, limit: int | None = None) -> list[str]:
    """One line per tensor where the two float64 oracles disagree (or one line saying they agree)."""
    if not report.oracle:
        return []
    a, b = report.oracle["variants"]
    found = report.oracle["disagreements"]
    if not found:
        return [f"oracle: {a} and {b} agree on every tensor to float64 noise"]
    lines = [f"oracle disagreement at node {d['node'] or d['tensor']} ({d['op_type']}): {a} and {b} differ on "
             f"{d['tensor']} ("
             + (f"cannot compare: {d['error']}" if "error" in d else
                f"SNR {_num(d['snr_db'], 1)} dB, max abs {_num(d['max_abs'])}, max rel {_num(d['max_rel'])}")
             + ")" for d in found[:limit]]
    if limit is not None and len(found) > limit:
        lines.append(f"... {len(found) - limit} more oracle disagreements (all in the JSON and HTML reports)")
    return lines


def broken_lines(report: Report, variant: str | None = None) -> list[str]:
    """One line per variant (or for `variant`) whose final outputs pass while its middle is far beyond the
    tolerance."""
    return [f"{v}: final outputs within tolerance, but {b['count']} intermediate tensor(s) deviate by more than "
            f"1,000x the tolerance, the first {b['first']} ({b['op_type']}): max abs {_num(b['max_abs'])}, "
            f"max rel {_num(b['max_rel'])}" for v, b in report.broken_middle.items() if variant in (None, v)]


def verdict_text(report: Report) -> str:
    """The verdict; a PASS says when a variant's middle is broken, a PASS or a FAIL when the oracle it was judged
    against is in doubt."""
    text = VERDICTS.get(report.exit_code, f"exit code {report.exit_code}")
    if report.exit_code not in (0, 1):
        return text
    doubts = [f"{v}'s middle deviates by more than 1,000x the tolerance from {b['first']}"
              for v, b in report.broken_middle.items()]
    found = report.oracle.get("disagreements")
    if found:
        doubts.append(f"the float64 oracles disagree from {found[0]['tensor']} on")
    return text + (", but " + "; ".join(doubts) if doubts else "")


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
    for line in oracle_lines(report, LISTED_DOUBTS) + broken_lines(report):
        console.print(line, style="yellow" if "agree on every" not in line else None, markup=False, highlight=False)
    verdict = verdict_text(report)
    colour = "green" if report.exit_code == 0 and verdict == VERDICTS[0] else (
        "yellow" if report.exit_code == 0 else "red")
    tol = report.tolerance
    console.print(f"{verdict} (atol {tol['atol']:g}, rtol {tol['rtol']:g}"
                  + (f", max_ulp {tol['max_ulp']}" if tol.get("max_ulp") is not None else "") + ")",
                  style=colour, markup=False, highlight=False)
