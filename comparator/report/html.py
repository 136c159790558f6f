"""HTML report: one self-contained file (inline CSS, inline SVG, a little vanilla JS) that opens offline.

Sections: summary and variants, deviation along the graph (one metric at a time, picked above the chart: max ULP,
max rel, max abs, SNR or identical fraction, with the tolerance drawn where it applies; report/charts.py), the
model's graph (report/graphview.py), the op types worst first, a dendrogram of the variants from their pairwise
final-output distances (report/charts.py), findings (label flips, origins,
determinism) and a per-tensor table with where each tensor's largest error is and a filter box (`#filter=TEXT` in
the URL pre-fills it). Every string from the report is escaped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fileio import write_text
from ..result import Report
from .text import (COLUMNS, doubt_lines, metric_cells, minimum_tolerance_text, ms_text, num, observer_text,
                   ratio_text, sci_text, snr_text, ulp_text, verdict_text, where_text)
from .charts import dendrogram, plot
from .graphview import section as graph_section
from .html_assets import CSS, JS, PALETTE
from .markup import esc, grid, swatch


ORIGIN_FIGURES = ("max_rel", "max_abs", "max_ulp")
PAGE = 250  # tensors laid out at once: a browser takes seconds to lay out thousands; the rest come on request
TIPS = {"local ulp": "max ULP of the node replayed alone on the reference's inputs (error it adds itself)",
        "worst at": "where the largest absolute error is: the index within one sample (sample N first when there "
                    "are several)",
        "role": "origin: the node adds error itself; propagated: it only inherits it",
        "spread": "run-to-run max ULP of this tensor within the variant (--repeat)",
        "classes": "variants (reference included) whose values of this tensor are bit-identical"}


def render(report: Report) -> str:
    """The whole page as one string."""
    colors = {v.name: i % len(PALETTE) for i, v in enumerate(report.variants)}
    for name in report.pairwise.get("variants", []):
        colors.setdefault(name, len(colors) % len(PALETTE))
    compared = [v.name for v in report.variants if v.name != report.reference and v.status == "ok"]
    title = Path(str(report.model.get("path", "model"))).name
    return "".join([
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>infercmp: {esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width"><style>{CSS}</style></head><body>',
        _summary(report, colors), plot(report, compared, colors), graph_section(report, compared), _op_types(report),
        dendrogram(report, colors), _findings(report), _table(report, compared, colors),
        f"<script>{JS}</script></body></html>\n"])


def write(report: Report, path: str | Path) -> None:
    """Write the page atomically."""
    write_text(path, render(report))


def _tol_text(tol: dict[str, Any]) -> str:
    return (f"atol {tol.get('atol', 0):g}, rtol {tol.get('rtol', 0):g}"
            + (f", max_ulp {tol['max_ulp']}" if tol.get("max_ulp") is not None else ""))


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested provenance as `a.b.c: value` lines; lists of scalars on one line."""
    out: list[tuple[str, str]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flat(v, f"{prefix}{k}.")
        elif isinstance(v, (list, tuple)) and all(not isinstance(x, (dict, list)) for x in v):
            out.append((prefix + str(k), ", ".join(map(str, v)) or "-"))
        else:
            out.append((prefix + str(k), json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)))
    return out


def _latency_cell(report: Report, variant: str) -> str:
    """'1.84 ms (0.93x)': the median of the timed runs (their count, min and max in the tooltip) and the ratio to
    the reference's median; '-' when the variant was not timed."""
    lat = report.latency(variant)
    if lat is None:
        return "-"
    ratio = report.latency_ratio(variant) if variant != report.reference else None
    tip = (f"median of {lat.get('runs')} runs after {lat.get('warmup')} warm-up on sample {lat.get('sample')}; "
           f"min {ms_text(lat.get('min_s'))} ms, max {ms_text(lat.get('max_s'))} ms")
    return (f'<span title="{esc(tip)}">{esc(ms_text(lat["median_s"]))} ms</span>'
            + (f" <small>({esc(ratio_text(ratio))})</small>" if ratio is not None else ""))


def _summary(report: Report, colors: dict[str, int]) -> str:
    m, inp = report.model, report.inputs
    source = f"random, seed {inp.get('seed')}" if inp.get("source") == "random" else inp.get("source", "-")
    facts = [("model", m.get("path")), ("sha256", m.get("sha256")), ("producer", m.get("producer")),
             ("IR / opsets", f"{m.get('ir_version')} / {m.get('opsets')}"), ("nodes", m.get("nodes")),
             ("inputs", f"{source}; {inp.get('samples', '-')} sample(s); shapes {inp.get('shapes', {})}"),
             ("reference", report.reference), ("tolerance", _tol_text(report.tolerance))]
    verdict = "PASS" if report.passed else "FAIL"
    out = [f'<h1>infercmp: {esc(Path(str(m.get("path", ""))).name)} <span class="badge {verdict.lower()}">'
           f'{verdict}</span></h1><p><b>{esc(verdict_text(report))}</b> '
           f'({esc(_tol_text(report.tolerance))})</p><table class="facts">']
    out += [f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in facts if v not in (None, "")]
    out.append("</table><h2>Variants</h2>")
    finals, rows = [t for t in report.tensors if t.is_output], []
    timed = any(report.latency(v.name) is not None for v in report.variants)  # --time: a latency column
    for v in report.variants:
        worst = max((u for t in finals if isinstance(u := t.metrics.get(v.name, {}).get("max_ulp"), (int, float))),
                    default=None)
        div = report.first_divergence.get(v.name, "-") if v.name in report.first_divergence else "-"
        badge = f'<span class="badge {"ok" if v.status == "ok" else "fail"}">{esc(v.status)}</span>'
        mine = [t for t in report.tensors if v.name in t.metrics]
        beyond = len(report.beyond_tolerance(v.name))
        least = minimum_tolerance_text(report, v.name) if mine else None
        rows.append([swatch(colors, v.name) + (" <small>(reference)</small>" if v.name == report.reference else ""),
                     esc(v.backend), badge,
                     f"{v.wall_s:.2f}", f"<code>{esc(div or 'none (bit-identical)')}</code>",
                     f"<code>{esc(report.first_beyond_tolerance.get(v.name) or '-')}</code>",
                     f"{beyond:,} of {len(mine):,}" if mine else "-", esc(num(worst)),
                     esc(least.removeprefix("minimum ")) if least else "-",
                     "yes" if report.observer_effect.get(v.name) else "no"]
                    + ([_latency_cell(report, v.name)] if timed else []))
    out.append(grid(["<variant", "<backend", "<status", "wall s", "<first divergence", "<first beyond tolerance",
                      "tensors beyond tolerance", "outputs max ULP", "<minimum tolerance (outputs)",
                      "<observer effect"] + (["latency"] if timed else []), rows, ' id="variants"'))
    for v in report.variants:
        out.append(f'<details{" open" if v.status != "ok" else ""}><summary>{swatch(colors, v.name)} '
                   f'<b>{esc(v.status)}</b>{(": " + esc(v.error)) if v.error else ""}</summary>'
                   + (f"<p>hint: {esc(v.hint)}</p>" if v.hint else "")
                   + (f"<h3>stderr (last lines)</h3><pre>{esc(v.stderr_tail)}</pre>" if v.stderr_tail else ""))
        info = _flat({"options": v.options, "timings": v.timings, "provenance": v.provenance})
        out.append('<table class="facts">' + "".join(f"<tr><td>{esc(k)}</td><td>{esc(x)}</td></tr>" for k, x in info)
                   + "</table></details>")
    if report.equivalence_classes:
        classes = "  ".join("{" + ", ".join(c) + "}" for c in report.equivalence_classes)
        out.append(f"<p>Bit-identical final outputs: <code>{esc(classes)}</code></p>")
    effects = [f"{n}: tapping changed its final outputs {observer_text(report, n)}; its intermediate "
               "tensors come from a differently fused graph" for n, e in report.observer_effect.items() if e]
    notes = list(report.model.get("notes", [])) + [f"not tapped: {n} ({why})" for n, why in report.skipped_taps]
    notes += [str(report.untapped_subgraph_note(v)) for v in report.untapped_subgraphs]
    notes += [note for v in report.fusion if (note := report.fusion_note(v))]
    lines = doubt_lines(report)
    doubts, findings = [line for line, doubt in lines if doubt], [line for line, doubt in lines if not doubt]
    for head, items in (("Doubts", doubts), ("Findings", findings), ("Observer effects", effects), ("Notes", notes)):
        if items:
            out.append(f"<h3>{head}</h3><ul>" + "".join(f"<li>{esc(x)}</li>" for x in items) + "</ul>")
    return "".join(out)


def _op_types(report: Report) -> str:
    """The op types, worst first: how many tensors of each differ and exceed the tolerance, the worst one (SNR,
    max rel, max ULP) and, with --isolate, how many add error themselves and the worst local error."""
    head = "<h2>Op types</h2>"
    groups = report.op_types()
    if not groups:
        return head + '<p class="muted">No tensors were compared.</p>'
    isolated = "local_worst" in groups[0]
    index = {t.name: i for i, t in enumerate(report.tensors)}

    def worst(w: dict[str, Any] | None) -> list[str]:
        if not w:
            return ["bit-identical", "", "", "", ""]
        link = f'<a href="#t{index.get(w["tensor"], 0)}"><code>{esc(w["tensor"])}</code></a>'
        if w.get("error"):
            return [link, esc(w["variant"]), "not comparable", "", ""]
        return [link, esc(w["variant"]), esc(snr_text(w.get("snr_db"))), esc(sci_text(w.get("max_rel"))),
                esc(ulp_text(w.get("max_ulp")))]

    rows = []
    for g in groups:
        row = [f"<b>{esc(g['op_type'])}</b>", f"{g['tensors']:,}", f"{g['differ']:,}", f"{g['beyond']:,}",
               *worst(g["worst"])]
        if isolated:
            row += [f"{g['origins']:,}", *worst(g["local_worst"])]
        rows.append(row)
    heads = ["<op", "tensors", "not bit-identical", "beyond tolerance", "<worst tensor", "<variant", "SNR dB",
             "max rel", "max ULP"]
    if isolated:
        heads += ["add error themselves", "<worst local", "<variant", "local SNR dB", "local max rel",
                  "local max ULP"]
    note = ("Ordered by the error each op type adds on its own (--isolate: every node replayed on the reference's "
            "inputs), then by the accumulated error." if isolated else
            "Ordered by the accumulated error of the worst tensor (lowest SNR first); --isolate tells what each op "
            "type adds on its own.")
    return head + f'<p class="muted">{esc(note)} Counts are tensors, over every compared variant.</p>' + grid(
        heads, rows, ' id="optypes"')


def _findings(report: Report) -> str:
    out = []
    if report.label_flips:
        out.append("<h2>Label flips (top-1 vs the reference)</h2>")
    for name, outputs in report.label_flips.items():
        for o, info in outputs.items():
            flips = info.get("flips", [])
            text = (f"{name}: {o} top-1 agreement {100 * info['agreement']:.2f}% "
                    f"({info['flip_count']} of {info['rows']} rows flip)"
                    + (f", first {len(flips)} listed" if info["flip_count"] > len(flips) else ""))
            rows = [[str(f["sample"]), str(f["row"]), str(f["reference"]), str(f["variant"])] for f in flips]
            out.append(f'<details class="flips"><summary>{esc(text)}</summary>'
                       + grid(["sample", "row", "reference label", "variant label"], rows) + "</details>"
                       if flips else f"<p>{esc(text)}</p>")
    if report.origins:
        out.append("<h2>Origins: nodes that add error themselves (isolated replay)</h2>")
    if report.origins:
        out.append('<p class="muted">Ranked by the local error on the tensor\'s own scale: NaN/Inf mismatches, then '
                   "the lowest SNR, then the largest max rel; max ULP beside (near zero one ULP is tiny).</p>")
    for name, nodes in report.origins.items():
        rows = [[str(k + 1), f"<code>{esc(n.get('tensor'))}</code>", esc(n.get("op_type")),
                 f"<code>{esc(n.get('node'))}</code>", esc(snr_text(n.get("snr_db"))),
                 *(esc(num(n.get(x))) for x in ORIGIN_FIGURES)]
                for k, n in enumerate(nodes)]
        out.append(f"<h3>{esc(name)}</h3>" + grid(["#", "<tensor", "<op", "<node", "local SNR dB", "max_rel",
                                                     "max_abs", "max_ulp"], rows) if nodes else
                   f"<p>{esc(name)}: no node adds error on its own (every deviation is fusion or propagation)</p>")
    if report.determinism:
        rows = []
        for name, d in report.determinism.items():
            tol = d.get("suggested_tolerance")
            worst = max(((s.get("max_ulp") or 0, s.get("max_abs") or 0.0, t.name) for t in report.tensors
                         if (s := t.spread.get(name))), default=None)
            rows.append([esc(name), esc(d.get("runs")), esc(d.get("distinct_outputs")),
                         "deterministic" if d.get("distinct_outputs", 1) <= 1 else "<b>NOT deterministic</b>",
                         esc(f"atol {tol.get('atol', 0):.3g}, max_ulp {tol.get('max_ulp')}" if tol else "-"),
                         f"<code>{esc(f'{num(worst[0])} ulp, {num(worst[1])} at {worst[2]}')}</code>"
                         if worst and worst[0] else "none"])
        out.append("<h2>Determinism (repeated runs)</h2>" + grid(
            ["<variant", "runs", "distinct outputs", "<verdict", "<suggested tolerance", "<largest run-to-run spread"],
            rows, ' id="determinism"'))
    return "".join(out)


def _table(report: Report, compared: list[str], colors: dict[str, int]) -> str:
    head = "<h2>Per-tensor comparison</h2>"
    if not report.tensors or not compared:
        return head + '<p class="muted">No tensors were compared.</p>'

    local = any(t.local for t in report.tensors)
    spread = any(t.spread for t in report.tensors)
    classes = any(t.classes for t in report.tensors)
    cols = ["#", "tensor / op", "variant", *COLUMNS, "worst at"] + (["local ulp", "local abs", "role"] if local
                                                                    else []) \
        + (["spread"] if spread else []) + (["classes"] if classes else [])
    left = {"tensor / op", "variant", "role", "classes"}
    out = [head, '<div class="tools"><input id="q" type="search" placeholder="filter by tensor, op or node name" '
           'aria-label="filter"> <label><input id="same" type="checkbox"> hide tensors bit-identical in every '
           'variant</label> <span id="count" class="muted"></span></div><div class="pane">'
           f'<table id="tensors" class="grid" data-page="{PAGE}"><thead><tr>'
           + "".join(f'<th{" class=l" if c in left else ""} title="{esc(TIPS.get(c, ""))}">{esc(c)}</th>' for c in cols)
           + "</tr></thead>"]
    for i, t in enumerate(report.tensors):
        rows = [(v, t.metrics[v]) for v in compared if v in t.metrics]
        same = bool(rows) and all("error" not in m and m.get("bit_identical") for _, m in rows)
        key = f"{t.name} {t.op_type} {t.node}".lower()
        out.append(f'<tbody id="t{i}" data-k="{esc(key)}"{" class=same" if same else ""}'
                   f'{" hidden" if i >= PAGE else ""}>')
        span = max(1, len(rows))
        lead = (f'<td rowspan={span}>{t.index}<td rowspan={span} class="l t">{esc(t.name).replace("/", "/<wbr>")}'
                f'<br><span class=op>{esc(t.op_type)}</span>' + (" <small>output</small>" if t.is_output else "")
                + (f'<br><small class=fz>fused in {esc(", ".join(t.fused))}</small>' if t.fused else ""))
        groups = [c for c in t.classes if len(c) > 1]  # singletons are implied
        tail = (f'<td rowspan={span} class="l m cls">' + ("<br>".join(esc(" = ".join(c)) for c in groups)
                or ("<small>all distinct</small>" if t.classes else "-")) if classes else "")
        if not rows:
            why = " (fused away by the reference's optimized graph)" if report.reference in t.fused else ""
            out.append(f"<tr>{lead}<td class=l colspan={len(cols) - 2}>not compared{why}{tail}")
        for k, (v, m) in enumerate(rows):
            cls = "bad" if ("error" in m or m.get("violations", 0)) else ("eq" if m.get("bit_identical") else "")
            cells = [f"<tr{' class=' + cls if cls else ''}>{lead if k == 0 else ''}<td class=l>"
                     f"<i class='sw c{colors.get(v, 0)}'></i>{esc(v)}"]
            cells += ([f"<td class='l err' colspan={len(COLUMNS) + 1}>{esc(m['error'])}"] if "error" in m
                      else [f"<td>{esc(c)}" for c in metric_cells(m)] + [f"<td>{esc(where_text(report, t, v) or '-')}"])
            if local:
                lm = t.local.get(v)
                if lm is None or "error" in lm:
                    cells.append(f"<td>{esc(lm['error']) if lm else '-'}<td><td class=l>")
                else:
                    cells.append(f"<td>{'==' if lm.get('bit_identical') else esc(num(lm.get('max_ulp')))}"
                                 f"<td>{esc(num(lm.get('max_abs')))}<td class=l>{esc(t.role(v))}")
            if spread:
                sm = t.spread.get(v)
                cells.append(f"<td>{esc(num(sm.get('max_ulp'))) if sm else '-'}")
            out.append("".join(cells) + (tail if k == 0 else ""))
    return "".join(out) + ('</table></div><div class="tools"><button id="more" hidden></button> '
                            '<button id="all" hidden>show all</button></div>')
