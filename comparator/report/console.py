"""The terminal summary (the default of `infercmp compare`): the findings first, then the op types and the worst
tensors, fitted to the terminal's width whatever the model's size (`--table full` is report/table.py)."""
from __future__ import annotations

from typing import Any

from ..result import Report, severity
from .text import (EQUAL, VERDICTS, closer_text, doubt_lines, figures, fit, glue, latency_text, minimum_glued,
                   observer_text, sci_text, snr_text, stderr_lines, tolerance_text, ulp_text, verdict_text, where_text,
                   wrap)


TOP = 15  # rows of the table of the worst tensors
OPS = 6  # op types listed
SHORT = 8  # variant names up to this long head the table's columns themselves; longer ones become v1, v2...
NAME_MIN = 16  # the tensor column never gets narrower than this (or the longest name)
OP_MIN = 12  # op types are cut to this before tensor names are
NAME_WITH_ULP = 24  # tensor names are cut to this much to keep max ULP beside SNR


def labels(names: list[str]) -> dict[str, str]:
    """Column labels of the compared variants: their names when every one is short, else v1, v2..."""
    if all(len(n) <= SHORT for n in names):
        return {n: n for n in names}
    return {n: f"v{i + 1}" for i, n in enumerate(names)}


def _grid(heads: list[list[str]], rows: list[list[str]], right: list[bool], width: int, flex: int | None) -> list[str]:
    """A plain-text table: header rows then rows, columns two spaces apart; column `flex` (a name) takes what the
    others leave, names cut in the middle; None when it would get less than it needs (see `fit`)."""
    n = len(right)
    widths = [max([len(h[i]) for h in heads] + [len(r[i]) for r in rows]) for i in range(n)]
    if flex is not None:
        room = width - (sum(widths) - widths[flex]) - 2 * (n - 1)
        widths[flex] = min(widths[flex], room)
    lines = []
    for r in heads + rows:
        cells = [fit(c, widths[i]) for i, c in enumerate(r)]
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
        return f"{name} {glue('(' + report.tensor(name).op_type + ')')}"
    except KeyError:
        return name


def _variant_lines(report: Report, v: Any, label: str, width: int) -> list[tuple[str, str | None]]:
    """A variant's block: what it found (`_findings_lines`), then its latency when it was timed."""
    out = _findings_lines(report, v, label, width)
    timed = latency_text(report, v.name) if v.status == "ok" else None
    if timed:
        out.extend((line, None) for line in wrap("    " + timed, width, 6))
    return out


def _findings_lines(report: Report, v: Any, label: str, width: int) -> list[tuple[str, str | None]]:
    head = f"{label} {v.name}" if label != v.name else v.name
    out: list[tuple[str, str | None]] = []

    def add(text: str, style: str | None = None, first: bool = False) -> None:
        lead = "" if first else "    "
        out.extend((line, style) for line in wrap(lead + text, width, 6 if not first else 4))

    if v.status != "ok":
        add(f"{head}: {v.status}: {v.error}", "red", first=True)
        if v.hint:
            add(f"hint: {v.hint}")
        tail = stderr_lines(v)
        if tail:
            out.append(("    stderr (last lines):", None))
            out.extend((fit("      " + line, width), "dim") for line in tail)
        return out
    mine = [t for t in report.tensors if v.name in t.metrics]
    if not mine:
        add(f"{head}: no tensor compared", first=True)
        return out
    finals = [t.metrics[v.name] for t in mine if t.is_output]
    beyond = len(report.beyond_tolerance(v.name))
    out_beyond = report.outputs_beyond(v.name)
    first = report.first_divergence.get(v.name)
    if v.name in report.first_divergence and first is None:
        add(f"{head}: bit-identical to the reference on every tensor", "green", first=True)
        return out
    fb = report.first_beyond_tolerance.get(v.name)
    add(f"{head}: diverges from {_at(report, first)}; " + glue(f"{beyond:,} of {len(mine):,}")
        + " tensors beyond tolerance" + (f", from {_at(report, fb)}" if fb else ""), first=True)
    worst = report.worst_tensors(v.name)
    if worst:
        t = worst[0]
        where = where_text(report, t, v.name)
        add(f"worst {t.name} {glue('(' + t.op_type + ')')}: {figures(t.metrics[v.name], where)}")
    if finals:
        need = minimum_glued(report, v.name)
        found = report.label_flips.get(v.name, {})
        flips = [glue(f"{info['flip_count']:,} of {info['rows']:,}") + (f" ({o})" if len(found) > 1 else "")
                 for o, info in found.items()]
        add("final outputs " + ("fail" if out_beyond else "pass" if need != EQUAL else "equal the reference's")
            + (f"; {need}" if need and need != EQUAL else "") + (f"; top-1 flips {', '.join(flips)}" if flips else "")
            + (f"; {closer}" if (closer := closer_text(report, v.name)) else ""), "red" if out_beyond else None)
    if report.observer_effect.get(v.name):
        add(f"observer effect: tapping changed {observer_text(report, v.name)}", "yellow")
    nodes = report.origins.get(v.name)
    if nodes is not None:  # as many as fit on one line (at least one); every one in the JSON and HTML reports
        text = "origins: " + ("no node adds error itself (every deviation is fusion or propagation)" if not nodes
                              else "")
        for k, n in enumerate(nodes):
            item = (f"{n['tensor']} " + glue(f"({n['op_type']}) {snr_text(n.get('snr_db'))} dB, "
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
    lines = wrap(title, width, 2) + _grid([heads], rows, right, width, flex)
    rest = differ[OPS:]
    same = [g["op_type"] for g in groups if g not in differ]
    tail = ([f"{len(rest)} more op type(s) differ: " + ", ".join(g["op_type"] for g in rest)] if rest else []) + (
        [f"bit-identical in every variant: {', '.join(same)}"] if same else [])
    for text in tail:
        lines += wrap(text, width, 2)
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
        rows = [lead[j][:2] + [fit(lead[j][2], OP_MIN) if cut else lead[j][2]]
                + [_cell(t.metrics.get(v), key, v in t.fused) if i == 0 or v not in t.fused else ""
                   for v in variants for i, (_, key) in enumerate(figures)]
                for j, t in enumerate(worst)]
        return heads, rows

    def single(k: int) -> tuple[list[list[str]], list[list[str]]]:
        rows = []
        for j, t in enumerate(worst):
            v = min((v for v in variants if v in t.metrics), key=lambda v: severity(t.metrics[v]))
            rows.append(lead[j][:2] + [fit(lead[j][2], OP_MIN), label[v]]
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
             "(* beyond tolerance, == bit-identical)")
    return wrap(title, width, 2) + _grid(heads, rows, right, width, 1)


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
    out += [(line, colour) for line in wrap(f"{verdict} ({tolerance_text(report.tolerance)})", width)]
    opsets = ", ".join(f"{k} {v}" for k, v in model.get("opsets", {}).items())
    path = str(model.get("path"))  # a path longer than the line is cut in its middle (the JSON report has it all)
    out += [(line, None) for line in wrap(f"{fit(path, width)}  sha256 {str(model.get('sha256', ''))[:12]}  "
                                           f"opsets {opsets}  reference {report.reference}", width)]
    for note in model.get("notes", []):
        out += [(line, None) for line in wrap(f"note: {note}", width)]
    compared = report.compared()
    label = labels(compared)
    for v in report.variants:
        if v.name == report.reference and v.status == "ok":
            # The reference's block says its latency, when timed, and what tapping changed in its final outputs: the
            # other variants' intermediate tensors are then compared with a graph fused otherwise than its run.
            timed = latency_text(report, v.name)
            if timed:
                out += [(line, None) for line in wrap(f"{v.name} (reference): {timed}", width)]
            if report.observer_effect.get(v.name):
                changed = ", ".join(f"{name} " + glue(f"(max ULP {ulp_text(d.get('max_ulp'))})")
                                    for name, d in report.observer_detail.get(v.name, {}).items())
                out += [(line, "yellow") for line in wrap(
                    f"{v.name} (reference): observer effect: tapping changed {changed or 'its final outputs'}", width)]
            continue
        out += _variant_lines(report, v, label.get(v.name, v.name), width)
    notes: list[tuple[str, str | None]] = []
    for line, doubt in doubt_lines(report, 3):
        notes += [(x, "yellow" if doubt else None) for x in wrap(line, width)]
    if any(len(c) > 1 for c in report.equivalence_classes):
        classes = "  ".join("{" + ", ".join(c) + "}" for c in report.equivalence_classes)
        notes += [(x, None) for x in wrap(f"bit-identical final outputs: {classes}", width)]
    if report.skipped_taps:
        names = ", ".join(f"{n} ({why})" for n, why in report.skipped_taps[:3])
        more = len(report.skipped_taps) - 3
        notes += [(x, "dim") for x in wrap(f"not tapped: {len(report.skipped_taps)} tensor(s): {names}"
                                            + (f" and {more} more (in the JSON report)" if more > 0 else ""), width)]
    for variant in report.untapped_subgraphs:
        notes += [(x, "dim") for x in wrap(str(report.untapped_subgraph_note(variant)), width)]
    for variant in report.fusion:
        fused = report.fusion_note(variant)
        if fused:
            notes += [(x, "dim") for x in wrap(fused, width)]
    if notes:
        out += [("", None)] + notes
    if tables:
        for block in (_op_lines(report, width), _worst_lines(report, width, top)):
            if block:
                out += [("", None)] + [(line, None) for line in block]
    if report.tensors and compared:
        out += [(x, "dim") for x in wrap("every tensor: --table full, or the --json and --html reports", width)]
    return out


def summary(report: Report, console: Any = None, top: int = TOP, tables: bool = True) -> None:
    """Print the summary (`summary_lines`) fitted to the console's width, as plain text (no markup read)."""
    from rich.console import Console

    console = console or Console()
    for line, style in summary_lines(report, console.width, top, tables):
        console.print(line, style=style, markup=False, highlight=False, overflow="ignore", crop=False)
