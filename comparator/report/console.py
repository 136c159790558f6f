"""Terminal rendering. `summary` (the default of `infercmp compare`): the findings first, then the op types and the
worst tensors, fitted to the terminal's width whatever the model's size. `render` (`--table full`): a row per
tensor and variant in topological order, then the findings."""
from __future__ import annotations

import math
import re
import textwrap
from typing import Any

from ..result import Report, TensorReport, severity

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

TOP = 15  # rows of the table of the worst tensors
OPS = 6  # op types listed
SHORT = 8  # variant names up to this long head the table's columns themselves; longer ones become v1, v2...
NAME_MIN = 16  # the tensor column never gets narrower than this (or the longest name)
OP_MIN = 12  # op types are cut to this before tensor names are
NAME_WITH_ULP = 24  # tensor names are cut to this much to keep max ULP beside SNR
STDERR_LINES = 6  # of a failed variant's stderr


def snr_text(x: Any) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.1f}"


def ulp_text(u: Any) -> str:
    """A max ULP in at most 7 characters: exact up to 99,999, then two digits (1.9e9)."""
    if not isinstance(u, int) or isinstance(u, bool):
        return "-"
    if u < 100_000:
        return f"{u:,}"
    mant, exp = f"{u:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def sci_text(x: Any) -> str:
    """A figure in at most 7 characters: 3 digits between 1e-3 and 1e4, else two (6.2e-40)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-"
    if math.isnan(x) or math.isinf(x) or x == 0:
        return _num(float(x))
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def labels(names: list[str]) -> dict[str, str]:
    """Column labels of the compared variants: their names when every one is short, else v1, v2..."""
    if all(len(n) <= SHORT for n in names):
        return {n: n for n in names}
    return {n: f"v{i + 1}" for i, n in enumerate(names)}


GLUE = "\x00"  # a space no line breaks at: "SNR 118.1 dB" stays on one line
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")  # colours and controls in a worker's stderr


def _g(text: str) -> str:
    """`text` with its spaces glued (never broken by `_wrap`)."""
    return text.replace(" ", GLUE)


def _wrap(text: str, width: int, indent: int = 4) -> list[str]:
    """`text` in lines of at most `width` characters, continuation lines indented; breaks fall between words (not
    at glued spaces, see `_g`), so a number is never cut (only a word longer than a whole line is)."""
    lines = textwrap.wrap(text, width, subsequent_indent=" " * indent, break_on_hyphens=False) or [""]
    return [line.replace(GLUE, " ") for line in lines]


def _fit(text: str, width: int) -> str:
    """`text` cut in the middle with an ellipsis to at most `width` characters."""
    if len(text) <= width:
        return text
    if width < 2:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def _grid(heads: list[list[str]], rows: list[list[str]], right: list[bool], width: int, flex: int | None) -> list[str]:
    """A plain-text table: header rows then rows, columns two spaces apart; column `flex` (a name) takes what the
    others leave, names cut in the middle; None when it would get less than it needs (see `_fits`)."""
    n = len(right)
    widths = [max([len(h[i]) for h in heads] + [len(r[i]) for r in rows]) for i in range(n)]
    if flex is not None:
        room = width - (sum(widths) - widths[flex]) - 2 * (n - 1)
        widths[flex] = min(widths[flex], room)
    lines = []
    for r in heads + rows:
        cells = [_fit(c, widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(c.rjust(widths[i]) if right[i] else c.ljust(widths[i])
                               for i, c in enumerate(cells)).rstrip())
    return lines


def _room(heads: list[list[str]], rows: list[list[str]], flex: int, width: int) -> int:
    """The width column `flex` would get."""
    n = len(heads[0])
    widths = [max([len(h[i]) for h in heads] + [len(r[i]) for r in rows]) for i in range(n)]
    return width - (sum(widths) - widths[flex]) - 2 * (n - 1)


def _at(report: Report, name: str | None) -> str:
    if name is None:
        return "none"
    try:
        return f"{name} {_g('(' + report.tensor(name).op_type + ')')}"
    except KeyError:
        return name


def where_text(report: Report, t: TensorReport, variant: str, local: bool = False) -> str | None:
    """Where the largest error is: '[0, 1877, 2, 4]' (the index within one sample), 'sample 3 [0, 5]' when there
    are several, 'element 12345' (flat) when the shape has a named dimension; None when nothing differs."""
    at = t.worst_element(variant, local)
    if at is not None:
        sample, index = at
        text = "[" + ", ".join(map(str, index)) + "]"
        return text if report.inputs.get("samples", 1) == 1 and sample == 0 else f"sample {sample} {text}"
    flat = (t.local if local else t.metrics).get(variant, {}).get("worst_index")
    return None if flat is None else f"element {flat:,}"


def _figures(m: dict[str, Any], where: str | None = None) -> str:
    """'SNR 118.1 dB, max ULP 1.0e7, max abs 3.2e-04 at [0, 1877, 2, 4]', figures glued."""
    if "error" in m:
        return f"not comparable: {m['error']}"
    text = (_g(f"SNR {snr_text(m.get('snr_db'))} dB") + ", " + _g(f"max ULP {ulp_text(m.get('max_ulp'))}") + ", "
            + _g(f"max abs {sci_text(m.get('max_abs'))}" + (f" at {where}" if where else "")))
    mism = [_g(f"{m[k]:,} {k.split('_')[0].replace('nan', 'NaN').replace('inf', 'Inf')} mismatches")
            for k in ("nan_mismatch", "inf_mismatch") if m.get(k)]
    return ", ".join([text] + mism)


def _tolerance_text(tol: dict[str, Any]) -> str:
    return (f"atol {tol['atol']:g}, rtol {tol['rtol']:g}"
            + (f", max_ulp {tol['max_ulp']}" if tol.get("max_ulp") is not None else ""))


def minimum_tolerance_text(report: Report, variant: str) -> str | None:
    """E.g. 'minimum atol 6.2e-40 (rtol 0) or rtol 1 (atol 0)': the least tolerance under which every final output
    passes, each alone (Report.minimum_tolerance); None when no final output was compared."""
    text = _minimum(report, variant)
    return None if text is None else text.replace(GLUE, " ")


_EQUAL = "equal to the reference's"


def _minimum(report: Report, variant: str) -> str | None:
    """`minimum_tolerance_text` with the spaces inside each figure glued (`_g`)."""
    need = report.minimum_tolerance(variant)
    if not need:
        return None
    if "none" in need:
        return f"no tolerance passes: {need['none']}"
    if need["atol"] == 0 and need["rtol"] == 0:
        return _EQUAL
    ways = [_g(f"atol {sci_text(need['atol'])} (rtol 0)")]
    if math.isfinite(need["rtol"]):
        ways.append(_g(f"rtol {sci_text(need['rtol'])} (atol 0)"))
    if report.tolerance.get("max_ulp") is not None and need.get("max_ulp") is not None:
        ways.append(_g(f"max_ulp {need['max_ulp']:,}"))
    return "minimum " + " or ".join(ways)


def ms_text(seconds: Any) -> str:
    """A duration in milliseconds: three digits below 100 ms (0.0512, 1.84, 12.3), whole ones above (1,234)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 99.95 else f"{ms:,.0f}"


def ratio_text(ratio: float) -> str:
    """A latency ratio: '0.93x', '0.014x' (two digits below 0.1), '652x' (whole from 100)."""
    if not math.isfinite(ratio):
        return _num(float(ratio)) + "x"
    return (f"{ratio:.2g}" if ratio < 0.1 else f"{ratio:.2f}" if ratio < 99.995 else f"{ratio:,.0f}") + "x"


def latency_text(report: Report, variant: str) -> str | None:
    """E.g. 'latency 1.84 ms median of 20 (0.93x the reference)', figures glued (`_g`); the ratio only for a
    variant other than the reference, when both were timed; None when `variant` was not timed."""
    lat = report.latency(variant)
    if lat is None:
        return None
    ratio = report.latency_ratio(variant) if variant != report.reference else None
    return ("latency " + _g(f"{ms_text(lat['median_s'])} ms") + " " + _g(f"median of {lat.get('runs', '?')}")
            + (f" ({ratio_text(ratio)} the reference)" if ratio is not None else ""))


def _variant_lines(report: Report, v: Any, label: str, width: int) -> list[tuple[str, str | None]]:
    """A variant's block: what it found (`_findings_lines`), then its latency when it was timed."""
    out = _findings_lines(report, v, label, width)
    timed = latency_text(report, v.name) if v.status == "ok" else None
    if timed:
        out.extend((line, None) for line in _wrap("    " + timed, width, 6))
    return out


def _findings_lines(report: Report, v: Any, label: str, width: int) -> list[tuple[str, str | None]]:
    head = f"{label} {v.name}" if label != v.name else v.name
    out: list[tuple[str, str | None]] = []

    def add(text: str, style: str | None = None, first: bool = False) -> None:
        lead = "" if first else "    "
        out.extend((line, style) for line in _wrap(lead + text, width, 6 if not first else 4))

    if v.status != "ok":
        add(f"{head}: {v.status}: {v.error}", "red", first=True)
        if v.hint:
            add(f"hint: {v.hint}")
        tail = [clean for line in v.stderr_tail.splitlines() if (clean := _CONTROL.sub("", line)).strip()]
        tail = tail[-STDERR_LINES:]
        if tail:
            out.append(("    stderr (last lines):", None))
            out.extend((_fit("      " + line, width), "dim") for line in tail)
        return out
    mine = [t for t in report.tensors if v.name in t.metrics]
    if not mine:
        add(f"{head}: no tensor compared", first=True)
        return out
    finals = [t.metrics[v.name] for t in mine if t.is_output]
    beyond = sum(1 for t in mine if "error" in (m := t.metrics[v.name]) or m.get("violations", 0) > 0)
    out_beyond = any("error" in m or m.get("violations", 0) > 0 for m in finals)
    first = report.first_divergence.get(v.name)
    if v.name in report.first_divergence and first is None:
        add(f"{head}: bit-identical to the reference on every tensor", "green", first=True)
        return out
    fb = report.first_beyond_tolerance.get(v.name)
    add(f"{head}: diverges from {_at(report, first)}; " + _g(f"{beyond:,} of {len(mine):,}")
        + " tensors beyond tolerance" + (f", from {_at(report, fb)}" if fb else ""), first=True)
    worst = report.worst_tensors(v.name)
    if worst:
        t = worst[0]
        add(f"worst {t.name} {_g('(' + t.op_type + ')')}: {_figures(t.metrics[v.name], where_text(report, t, v.name))}")
    if finals:
        need = _minimum(report, v.name)
        found = report.label_flips.get(v.name, {})
        flips = [_g(f"{info['flip_count']:,} of {info['rows']:,}") + (f" ({o})" if len(found) > 1 else "")
                 for o, info in found.items()]
        add("final outputs " + ("fail" if out_beyond else "pass" if need != _EQUAL else "equal the reference's")
            + (f"; {need}" if need and need != _EQUAL else "") + (f"; top-1 flips {', '.join(flips)}" if flips else ""),
            "red" if out_beyond else None)
    if report.observer_effect.get(v.name):
        add(f"observer effect: tapping changed {observer_text(report, v.name)}", "yellow")
    nodes = report.origins.get(v.name)
    if nodes is not None:  # as many as fit on one line (at least one); every one in the JSON and HTML reports
        text = "origins: " + ("no node adds error itself (every deviation is fusion or propagation)" if not nodes
                              else "")
        for k, n in enumerate(nodes):
            item = (f"{n['tensor']} " + _g(f"({n['op_type']}) {snr_text(n.get('snr_db'))} dB, "
                                            f"{ulp_text(n.get('max_ulp'))} ULP"))
            if k and len("    " + text + "; " + item) > width:
                break
            text += ("; " if k else "") + item
        add(text)
    d = report.determinism.get(v.name)
    if d:
        tol = d.get("suggested_tolerance")
        add(f"{d['runs']} runs, {d['distinct_outputs']} distinct final output(s)"
            + (f"; not deterministic: atol {tol['atol']:.3g} or max_ulp {tol['max_ulp']:,} covers the spread"
               if tol else ""), "yellow" if tol else None)
    return out


def _op_lines(report: Report, width: int) -> list[str]:
    groups = report.op_types()
    differ = [g for g in groups if g["worst"] is not None or g.get("local_worst") is not None]
    if not differ:
        return []
    isolated = "local_worst" in groups[0]
    title = ("op types, worst first by the error each adds itself (--isolate)" if isolated else
             "op types, worst first (accumulated error; --isolate: what each adds itself)")
    heads = ["op", "tensors", "differ", "beyond", "worst SNR", "max ULP"] + (["origins", "local SNR"] if isolated
                                                                            else [])
    rows = []
    for g in differ[:OPS]:
        w = g["worst"] or {}
        row = [g["op_type"], f"{g['tensors']:,}", f"{g['differ']:,}", f"{g['beyond']:,}",
               snr_text(w.get("snr_db")) if "error" not in w or w["error"] is None else "err", ulp_text(g["max_ulp"])]
        if isolated:
            lw = g["local_worst"] or {}
            row += [f"{g['origins']:,}", snr_text(lw.get("snr_db")) if lw else "=="]
        rows.append(row + [w.get("tensor", "")])
    heads.append("worst tensor")
    right = [False] + [True] * (len(heads) - 2) + [False]
    flex = len(heads) - 1
    if _room([heads], rows, flex, width) < min(NAME_MIN, max(len(r[flex]) for r in rows)):
        heads, rows, right, flex = heads[:-1], [r[:-1] for r in rows], right[:-1], 0  # no room for the name
    lines = _wrap(title, width, 2) + _grid([heads], rows, right, width, flex)
    rest = differ[OPS:]
    same = [g["op_type"] for g in groups if g not in differ]
    tail = ([f"{len(rest)} more op type(s) differ: " + ", ".join(g["op_type"] for g in rest)] if rest else []) + (
        [f"bit-identical in every variant: {', '.join(same)}"] if same else [])
    for text in tail:
        lines += _wrap(text, width, 2)
    return lines


WORST_FIGURES = (("SNR", "snr_db"), ("ULP", "max_ulp"), ("rel", "max_rel"), ("abs", "max_abs"))


def _cell(m: dict[str, Any] | None, key: str, fused: bool = False) -> str:
    if m is None:
        return "fused" if fused else "-"
    if "error" in m:
        return "err"
    if m.get("bit_identical"):
        return "=="
    if key == "snr_db":
        return snr_text(m.get(key)) + ("*" if m.get("violations", 0) > 0 else " ")
    return ulp_text(m.get(key)) if key == "max_ulp" else sci_text(m.get(key))


def _worst_lines(report: Report, width: int, top: int) -> list[str]:
    variants = report.compared()
    worst = report.worst_tensors()[:top]
    if not worst or not variants:
        return []
    label = labels(variants)
    base = [["#", "tensor", "op"]]
    lead = [[str(t.index), t.name + (" (output)" if t.is_output else ""), t.op_type] for t in worst]
    longest = max(len(row[1]) for row in lead)
    # Per variant as many figures as fit (SNR, then max ULP, max rel, max abs), fewer figures rather than cut names
    # (op types are cut first); if not even SNR fits for every variant, one column group for the worst variant of
    # each tensor.
    def grouped(k: int, cut: bool) -> tuple[list[list[str]], list[list[str]]]:
        figures = WORST_FIGURES[:k]
        if k == 1:
            heads = [base[0] + [label[v] for v in variants]]
        else:
            heads = [["", "", ""] + [label[v] if i == 0 else "" for v in variants for i in range(k)],
                     base[0] + [name for _ in variants for name, _ in figures]]
        rows = [lead[j][:2] + [_fit(lead[j][2], OP_MIN) if cut else lead[j][2]]
                + [_cell(t.metrics.get(v), key, v in t.fused) if i == 0 or v not in t.fused else ""
                   for v in variants for i, (_, key) in enumerate(figures)]
                for j, t in enumerate(worst)]
        return heads, rows

    def single(k: int) -> tuple[list[list[str]], list[list[str]]]:
        rows = []
        for j, t in enumerate(worst):
            v = min((v for v in variants if v in t.metrics), key=lambda v: severity(t.metrics[v]))
            rows.append(lead[j][:2] + [_fit(lead[j][2], OP_MIN), label[v]]
                        + [_cell(t.metrics[v], key) for _, key in WORST_FIGURES[:k]])
        return [base[0] + ["variant"] + [name for name, _ in WORST_FIGURES[:k]]], rows

    # In order of preference, with the room each needs for the names: more figures while names stay whole, SNR
    # and max ULP with names cut to NAME_WITH_ULP, SNR alone, then the worst variant's figures alone.
    need_whole, need_ulp, need_min = longest, min(longest, NAME_WITH_ULP), min(longest, NAME_MIN)
    wanted = [(grouped, (k, cut), need_whole) for k in (4, 3, 2) for cut in (False, True)] + [
        (grouped, (2, True), need_ulp)] + [(grouped, (1, cut), need) for need in (need_whole, need_min)
                                           for cut in (False, True)] + [
        (single, (k,), need_min) for k in range(len(WORST_FIGURES), 0, -1)]
    heads, rows = single(1)
    for make, args, need in wanted:
        layout = make(*args)
        if _room(*layout, 1, width) >= need:
            heads, rows = layout
            break
    right = [True, False, False] + [True] * (len(heads[-1]) - 3)
    if heads[-1][3] == "variant":
        right[3] = False
    title = (f"worst {len(worst)} of {sum(1 for t in report.tensors if t.metrics)} tensors by SNR in dB "
             "(lower is worse; * beyond tolerance, == bit-identical)")
    return _wrap(title, width, 2) + _grid(heads, rows, right, width, 1)


def summary_lines(report: Report, width: int = 100, top: int = TOP, tables: bool = True
                  ) -> list[tuple[str, str | None]]:
    """The summary as (line, style) pairs, no line longer than `width`: model and verdict; per variant its first
    divergence, first tensor beyond tolerance, how many tensors are beyond it, its worst tensor (SNR, with max rel
    and max ULP beside it, and where its largest error is), the tolerance its final outputs would pass at, label
    flips, observer effect, origins, determinism, latency (`--time`, the reference's too); the doubts (oracle
    disagreements, broken middles) and notes; with `tables`, the op types that add error and the `top` worst
    tensors (one column group per variant)."""
    width = max(40, width)
    model = report.model
    out: list[tuple[str, str | None]] = []
    verdict = verdict_text(report)
    colour = "green" if report.exit_code == 0 and verdict == VERDICTS[0] else (
        "yellow" if report.exit_code == 0 else "red")
    out += [(line, colour) for line in _wrap(f"{verdict} ({_tolerance_text(report.tolerance)})", width)]
    opsets = ", ".join(f"{k} {v}" for k, v in model.get("opsets", {}).items())
    path = str(model.get("path"))  # a path longer than the line is cut in its middle (the JSON report has it all)
    out += [(line, None) for line in _wrap(f"{_fit(path, width)}  sha256 {str(model.get('sha256', ''))[:12]}  "
                                           f"opsets {opsets}  reference {report.reference}", width)]
    for note in model.get("notes", []):
        out += [(line, None) for line in _wrap(f"note: {note}", width)]
    compared = report.compared()
    label = labels(compared)
    for v in report.variants:
        if v.name == report.reference and v.status == "ok":
            timed = latency_text(report, v.name)  # the reference's block only says its latency, when timed
            if timed:
                out += [(line, None) for line in _wrap(f"{v.name} (reference): {timed}", width)]
            continue
        out += _variant_lines(report, v, label.get(v.name, v.name), width)
    notes: list[tuple[str, str | None]] = []
    for line in oracle_lines(report, 3) + broken_lines(report):
        notes += [(x, "yellow" if "agree on every" not in line else None) for x in _wrap(line, width)]
    if any(len(c) > 1 for c in report.equivalence_classes):
        classes = "  ".join("{" + ", ".join(c) + "}" for c in report.equivalence_classes)
        notes += [(x, None) for x in _wrap(f"bit-identical final outputs: {classes}", width)]
    if report.skipped_taps:
        names = ", ".join(f"{n} ({why})" for n, why in report.skipped_taps[:3])
        more = len(report.skipped_taps) - 3
        notes += [(x, "dim") for x in _wrap(f"not tapped: {len(report.skipped_taps)} tensor(s): {names}"
                                            + (f" and {more} more (in the JSON report)" if more > 0 else ""), width)]
    for variant in report.untapped_subgraphs:
        notes += [(x, "dim") for x in _wrap(str(report.untapped_subgraph_note(variant)), width)]
    for variant in report.fusion:
        fused = report.fusion_note(variant)
        if fused:
            notes += [(x, "dim") for x in _wrap(fused, width)]
    if notes:
        out += [("", None)] + notes
    if tables:
        for block in (_op_lines(report, width), _worst_lines(report, width, top)):
            if block:
                out += [("", None)] + [(line, None) for line in block]
    if report.tensors and compared:
        out += [(x, "dim") for x in _wrap("every tensor: --table full, or the --json and --html reports", width)]
    return out


def summary(report: Report, console: Any = None, top: int = TOP, tables: bool = True) -> None:
    """Print the summary (`summary_lines`) fitted to the console's width, as plain text (no markup read)."""
    from rich.console import Console

    console = console or Console()
    for line, style in summary_lines(report, console.width, top, tables):
        console.print(line, style=style, markup=False, highlight=False, overflow="ignore", crop=False)
