"""HTML report: one self-contained file (inline CSS, inline SVG, a little vanilla JS) that opens offline.

Sections: summary and variants, deviation along the graph (one metric at a time, picked above the chart: max ULP,
max rel, max abs, SNR or identical fraction, with the tolerance drawn where it applies), the op types worst first,
a dendrogram of the variants from their pairwise final-output distances, findings (label flips, origins,
determinism) and a per-tensor table with where each tensor's largest error is and a filter box (`#filter=TEXT` in
the URL pre-fills it). Every string from the report is escaped.
"""
from __future__ import annotations

import html as _html
import json
import math
import re
from pathlib import Path
from typing import Any

from ..fileio import write_text
from ..result import Report
from .text import (broken_lines, COLUMNS, metric_cells, minimum_tolerance_text, ms_text, num, observer_text,
                   oracle_lines, ratio_text, sci_text, snr_text, ulp_text, verdict_text, where_text)
from .graphview import section as graph_section
from .html_assets import CSS, JS, PALETTE

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colour codes in a worker's stderr
_CTRL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not allowed in HTML text


ORIGIN_FIGURES = ("max_rel", "max_abs", "max_ulp")
# The deviation chart's metrics: key in the metrics, label, scale (log: log10 of the value, zeros on the floor;
# ulp: log10(value + 1); linear), and what a higher point means.
METRICS = (("max_ulp", "max ULP", "ulp"), ("max_rel", "max rel", "log"), ("max_abs", "max abs", "log"),
           ("snr_db", "SNR (dB)", "snr"), ("identical_fraction", "identical", "fraction"))
PAGE = 250  # tensors laid out at once: a browser takes seconds to lay out thousands; the rest come on request
TIPS = {"local ulp": "max ULP of the node replayed alone on the reference's inputs (error it adds itself)",
        "worst at": "where the largest absolute error is: the index within one sample (sample N first when there "
                    "are several)",
        "role": "origin: the node adds error itself; propagated: it only inherits it",
        "spread": "run-to-run max ULP of this tensor within the variant (--repeat)",
        "classes": "variants (reference included) whose values of this tensor are bit-identical"}


def esc(x: Any) -> str:
    return _html.escape(_CTRL.sub("\ufffd", _ANSI.sub("", str(x))), quote=True)


def _log(u: Any) -> float | None:
    """Plot coordinate of a max ULP figure: log10(max_ulp + 1), so 0 sits on the axis floor."""
    if isinstance(u, bool) or not isinstance(u, (int, float)) or math.isnan(u):
        return None
    return math.log10(u + 1) if math.isfinite(u) else math.inf


def _decade(k: int) -> str:
    return str(10 ** k) if k < 4 else f"1e{k}"


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
        _summary(report, colors), _plot(report, compared, colors), graph_section(report, compared), _op_types(report),
        _dendrogram(report, colors), _findings(report), _table(report, compared, colors),
        f"<script>{JS}</script></body></html>\n"])


def write(report: Report, path: str | Path) -> None:
    """Write the page atomically."""
    write_text(path, render(report))


def _sw(colors: dict[str, int], name: str) -> str:
    return f'<i class="sw c{colors.get(name, 0)}"></i>{esc(name)}'


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


def _grid(heads: list[str], rows: list[list[str]], attrs: str = "") -> str:
    """A plain table of HTML cells; a header starting with '<' marks a left-aligned column."""
    left = [h.startswith("<") for h in heads]
    return (f'<table class="grid"{attrs}><tr>' + "".join(f'<th{" class=l" if a else ""}>{h.lstrip("<")}</th>'
                                                         for a, h in zip(left, heads)) + "</tr>"
            + "".join("<tr>" + "".join(f'<td{" class=l" if a else ""}>{c}</td>' for a, c in zip(left, r)) + "</tr>"
                      for r in rows) + "</table>")


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
        beyond = sum(1 for t in mine if "error" in (m := t.metrics[v.name]) or m.get("violations", 0) > 0)
        least = minimum_tolerance_text(report, v.name) if mine else None
        rows.append([_sw(colors, v.name) + (" <small>(reference)</small>" if v.name == report.reference else ""),
                     esc(v.backend), badge,
                     f"{v.wall_s:.2f}", f"<code>{esc(div or 'none (bit-identical)')}</code>",
                     f"<code>{esc(report.first_beyond_tolerance.get(v.name) or '-')}</code>",
                     f"{beyond:,} of {len(mine):,}" if mine else "-", esc(num(worst)),
                     esc(least.removeprefix("minimum ")) if least else "-",
                     "yes" if report.observer_effect.get(v.name) else "no"]
                    + ([_latency_cell(report, v.name)] if timed else []))
    out.append(_grid(["<variant", "<backend", "<status", "wall s", "<first divergence", "<first beyond tolerance",
                      "tensors beyond tolerance", "outputs max ULP", "<minimum tolerance (outputs)",
                      "<observer effect"] + (["latency"] if timed else []), rows, ' id="variants"'))
    for v in report.variants:
        out.append(f'<details{" open" if v.status != "ok" else ""}><summary>{_sw(colors, v.name)} '
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
    doubts = oracle_lines(report) + broken_lines(report)
    for head, items in (("Doubts", doubts), ("Observer effects", effects), ("Notes", notes)):
        if items:
            out.append(f"<h3>{head}</h3><ul>" + "".join(f"<li>{esc(x)}</li>" for x in items) + "</ul>")
    return "".join(out)


def _axis(out: list[str], top_dec: int, pos: Any, vertical: bool, lo: float, hi: float) -> None:
    """Decade grid lines and labels of a log10(max ULP + 1) axis."""
    for k in range(top_dec + 1):
        p = pos(k)
        out.append(f'<line x1="{lo}" x2="{hi}" y1="{p:.1f}" y2="{p:.1f}" stroke="#e5e7eb"/><text x="{lo - 6}" '
                   f'y="{p + 4:.1f}" text-anchor="end">{_decade(k)}</text>' if vertical else
                   f'<line x1="{p:.1f}" x2="{p:.1f}" y1="{lo}" y2="{hi}" stroke="#e5e7eb"/><text x="{p:.1f}" '
                   f'y="{hi + 14}" text-anchor="middle">{_decade(k)}</text>')


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _tolerance_for(key: str, tol: dict[str, Any]) -> tuple[float, str] | None:
    """The tolerance drawn on a metric's chart, with its label; None where the tolerance says nothing of it."""
    atol = float(tol["atol"]) if _finite(tol.get("atol")) else 0.0
    rtol = float(tol["rtol"]) if _finite(tol.get("rtol")) else 0.0
    ulps = tol.get("max_ulp")
    if key == "max_abs" and atol > 0:
        return atol, f"atol {atol:g}"
    if key == "max_rel" and rtol > 0:
        return rtol, f"rtol {rtol:g}"
    if key == "max_ulp" and isinstance(ulps, int):
        return float(ulps), f"max_ulp {ulps:,}"
    if key == "snr_db" and rtol > 0:
        return -20 * math.log10(rtol), f"rtol {rtol:g} as SNR ({-20 * math.log10(rtol):.0f} dB)"
    return None


SNR_TOP = 350.0  # dB: float64 rounding noise is about 300 dB; the SNR scale stops here


def _scale(kind: str, values: list[Any], extra: float | None) -> tuple[Any, list[tuple[float, str]]]:
    """(unit, ticks) of one metric's axis: unit(value) is its height from the axis floor, 0 to 1 (None: no point);
    ticks are (height, label). `extra` (the tolerance) is kept inside the axis."""
    seen = [float(v) for v in values if _finite(v)] + ([extra] if extra is not None else [])
    if kind == "fraction":
        return (lambda v: min(1.0, max(0.0, v)) if _finite(v) else None), [(k / 4, f"{25 * k}%") for k in range(5)]
    if kind == "ulp":
        top = max(1, math.ceil(max((math.log10(v + 1) for v in seen), default=1)))
        return ((lambda v: None if not isinstance(v, (int, float)) or v != v else
                 1.0 if not math.isfinite(v) else min(math.log10(v + 1), top) / top),
                [(k / top, _decade(k)) for k in range(top + 1)])
    if kind == "log":  # zeros sit on the floor, a decade below the smallest figure
        logs = [math.log10(v) for v in seen if v > 0]
        lo, hi = (math.floor(min(logs)) - 1, math.ceil(max(logs))) if logs else (-1, 0)
        hi = max(hi, lo + 2)
        every = max(1, math.ceil((hi - lo) / 10))

        def unit(v: Any) -> float | None:
            if not isinstance(v, (int, float)) or v != v:
                return None
            return 0.0 if v <= 0 else 1.0 if not math.isfinite(v) else max(0.0, (math.log10(v) - lo) / (hi - lo))
        return unit, [(0.0, "0")] + [((k - lo) / (hi - lo), f"1e{k}") for k in range(lo + 1, hi + 1)
                                     if (k - lo) % every == 0 or k == hi]
    # snr: linear in dB up to SNR_TOP (beyond, float64 rounding noise: drawn at the top of the scale); a bit-identical
    # tensor (inf) on a row of its own above it, -inf on the floor
    seen = [min(v, SNR_TOP) for v in seen]
    low, high = (min(seen), max(seen)) if seen else (0.0, 100.0)
    step = next((s for s in (5.0, 10.0, 20.0, 50.0, 100.0, 200.0) if (high - low) / s <= 7), 500.0)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step + step
    span = high - low

    def unit_snr(v: Any) -> float | None:
        if not isinstance(v, (int, float)) or v != v:
            return None
        return 1.0 if v == math.inf else 0.0 if v == -math.inf else min(1.0, max(0.0, (v - low) / span))
    ticks = [((k - low) / span, f"{k:g}") for k in range(int(low), int(high), int(step))]
    return unit_snr, ticks + [(1.0, "∞")]


def _plot(report: Report, compared: list[str], colors: dict[str, int]) -> str:
    head, tensors = "<h2>Deviation along the graph</h2>", report.tensors
    if not tensors or not compared:
        return head + '<p class="muted">Nothing to plot: no variant was compared with the reference.</p>'
    w, h, left, right, top, bottom, n = 1100, 320, 64, 16, 12, 40, len(tensors)
    span = (w - left - right) / max(1, n - 1)

    def x(i: int) -> float:
        return left + i * span

    def y(unit: float) -> float:
        return top + (1 - unit) * (h - top - bottom)

    picker = "".join(f'<label><input type="radio" name="metric" value="{k}"{" checked" if k == METRICS[0][0] else ""}>'
                     f" {esc(label)}</label> " for k, label, _ in METRICS)
    out = [head, f'<div class="tools" id="metric">metric: {picker}<span class="muted">(higher is worse, but for '
           'SNR and identical; dashed: the tolerance)</span></div>'
           '<div class="legend">' + "".join(f"<span>{_sw(colors, v)}</span>" for v in compared)
           + '<span class="muted">&#9675; first divergence &#9670; first beyond tolerance</span></div>'
           f'<svg id="plot" data-m="{METRICS[0][0]}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
           'aria-label="deviation per tensor">']
    rough = max(1, (n - 1) // 8)
    mag = 10 ** (len(str(rough)) - 1)
    step = next(k * mag for k in (1, 2, 5, 10) if k * mag >= rough)  # 1-2-5 ticks: 0, 250, 500...
    out += [f'<text x="{x(i):.1f}" y="{h - bottom + 16}" text-anchor="middle">{i}</text>' for i in range(0, n, step)]
    out.append(f'<text x="{(left + w) / 2}" y="{h - 6}" text-anchor="middle">tensor (topological order)</text>')
    for i, t in enumerate(tensors):  # hover bands: one tooltip per tensor listing every variant, a link to its row
        tip = "\n".join([f"#{t.index} {t.name} ({t.op_type})"] + [
            f"{v}: " + (m["error"] if "error" in m else
                        f"max_ulp {num(m.get('max_ulp'))}, max_rel {num(m.get('max_rel'))}, max_abs "
                        f"{num(m.get('max_abs'))}, SNR {snr_text(m.get('snr_db'))} dB, identical "
                        f"{100 * m.get('identical_fraction', 0):.1f}%")
            for v in compared if (m := t.metrics.get(v)) is not None])
        out.append(f'<a href="#t{i}"><rect class="b" x="{max(left - 2, x(i) - span / 2):.1f}" y="{top}" '
                   f'width="{max(span, 1):.2f}" height="{h - top - bottom}"><title>{esc(tip)}</title></rect></a>')
    index = {t.name: i for i, t in enumerate(tensors)}
    for key, label, kind in METRICS:
        raw = {v: [None if "error" in (m := t.metrics.get(v, {"error": ""})) else m.get(key) for t in tensors]
               for v in compared}
        tol = _tolerance_for(key, report.tolerance)
        unit, ticks = _scale(kind, [u for vals in raw.values() for u in vals], tol[0] if tol else None)
        out.append(f'<g class="m" data-m="{key}">')
        for at, text in ticks:
            out.append(f'<line x1="{left}" x2="{w - right}" y1="{y(at):.1f}" y2="{y(at):.1f}" stroke="#e5e7eb"/>'
                       f'<text x="{left - 6}" y="{y(at) + 4:.1f}" text-anchor="end">{esc(text)}</text>')
        out.append(f'<text transform="translate(14,{(h - bottom) / 2}) rotate(-90)" text-anchor="middle">'
                   f'{esc(label)}</text>')
        if tol is not None and (at := unit(tol[0])) is not None:
            out.append(f'<line class="tol" x1="{left}" x2="{w - right}" y1="{y(at):.1f}" y2="{y(at):.1f}" '
                       f'stroke="#c62828" stroke-dasharray="6 4"><title>{esc(tol[1])}</title></line>'
                       f'<text class="tol" x="{w - right - 4}" y="{y(at) - 4:.1f}" text-anchor="end" fill="#c62828">'
                       f'{esc(tol[1])}</text>')
        for v in compared:
            c = PALETTE[colors[v]]
            ys = [unit(u) for u in raw[v]]
            points = [(x(i), y(u)) for i, u in enumerate(ys) if u is not None]
            pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline class="series" points="{pts}" fill="none" stroke="{c}" stroke-width="1.6" '
                       f'stroke-linejoin="round"><title>{esc(v)}</title></polyline>')
            if n <= 80:  # dots only while they stay apart
                out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.2" fill="{c}"/>' for px, py in points]
            for what, found in (("first divergence", report.first_divergence),
                                ("first beyond tolerance", report.first_beyond_tolerance)):
                if (pos := index.get(found.get(v) or "")) is None:
                    continue
                px, py = x(pos), y(ys[pos] or 0.0)
                tip = f"<title>{esc(f'{v}: {what} at #{tensors[pos].index} {tensors[pos].name}')}</title>"
                out.append(f'<circle class="marker" cx="{px:.1f}" cy="{py:.1f}" r="5.5" fill="#fff" '
                           f'fill-opacity=".4" stroke="{c}" stroke-width="2">{tip}</circle>'
                           if what == "first divergence" else
                           f'<path class="marker" d="M{px:.1f} {py - 6:.1f}l6 6l-6 6l-6-6z" fill="{c}" '
                           f'stroke="#fff">{tip}</path>')
        out.append("</g>")
    return "".join(out) + "</svg>"


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
    return head + f'<p class="muted">{esc(note)} Counts are tensors, over every compared variant.</p>' + _grid(
        heads, rows, ' id="optypes"')


def cluster(dist: list[list[float]]) -> Any:
    """Average-linkage agglomerative clustering: a leaf is an int, a merge is (left, right, height)."""
    groups: list[tuple[list[int], Any]] = [([i], i) for i in range(len(dist))]
    while len(groups) > 1:
        d, a, b = min((sum(dist[i][j] for i in ga for j in gb) / (len(ga) * len(gb)), a, b)
                      for a, (ga, _) in enumerate(groups) for b, (gb, _) in enumerate(groups) if a < b)
        merged = (groups[a][0] + groups[b][0], (groups[a][1], groups[b][1], d))
        groups = [g for k, g in enumerate(groups) if k not in (a, b)] + [merged]
    return groups[0][1] if groups else None


def _leaves(node: Any) -> list[int]:
    return [node] if isinstance(node, int) else _leaves(node[0]) + _leaves(node[1])


def _heights(node: Any) -> list[float]:
    return [] if isinstance(node, int) else _heights(node[0]) + _heights(node[1]) + [node[2]]


def _dendrogram(report: Report, colors: dict[str, int]) -> str:
    head, pw = "<h2>Variant clustering</h2>", report.pairwise
    names = list(pw.get("variants", []))
    if len(names) < 2 or not pw.get("max_ulp"):
        return head + '<p class="muted" id="dendrogram-empty">Clustering needs 2+ variants that ran.</p>'
    tree = cluster([[math.inf if u is None else float(u) for u in row] for row in pw["max_ulp"]])
    row, top, width = 26, 14, 760
    h, x0, x1 = top + row * len(names) + 34, min(320, 84 + 7 * max(len(n) for n in names)), width - 40
    top_dec = max(1, math.ceil(max((math.log10(x + 1) for x in _heights(tree) if math.isfinite(x)), default=1)))

    def hx(d: float) -> float:  # an incomparable pair (shape mismatch) merges past the axis end
        return x1 + 24 if not math.isfinite(d) else x0 + 10 + (x1 - x0 - 10) * math.log10(d + 1) / top_dec

    ys = {leaf: top + row * k + row / 2 for k, leaf in enumerate(_leaves(tree))}
    out = [head, '<p class="muted">Average-linkage clustering of the variants by the max ULP distance between '
           'their final outputs (bit-identical variants merge at 0).</p>'
           f'<svg id="dendrogram" viewBox="0 0 {width} {h}" width="{width}" height="{h}" role="img" '
           'aria-label="dendrogram of variants">']
    _axis(out, top_dec, lambda k: hx(10 ** k - 1), False, top, h - 30)
    out.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{h - 3}" text-anchor="middle">max ULP + 1 between final '
               'outputs (log)</text>')
    for leaf, y in ys.items():
        name = names[leaf] + (" (ref)" if names[leaf] == report.reference else "")
        out.append(f'<rect x="{x0 - 16}" y="{y - 5:.1f}" width="10" height="10" rx="2" fill="'
                   f'{PALETTE[colors.get(names[leaf], 0)]}"/><text class="leaf" x="{x0 - 22}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{esc(name)}</text>')

    def draw(node: Any) -> tuple[float, float]:
        if isinstance(node, int):
            return x0, ys[node]
        (lx, ly), (rx, ry) = draw(node[0]), draw(node[1])
        x, label = hx(node[2]), "∞" if not math.isfinite(node[2]) else f"{node[2]:.3g}"
        out.append(f'<path class="link" d="M{lx:.1f} {ly:.1f}H{x:.1f}V{ry:.1f}H{rx:.1f}" fill="none" stroke="#444" '
                   f'stroke-width="1.4"><title>average max ULP {label}</title></path>'
                   f'<text x="{x + 3:.1f}" y="{(ly + ry) / 2 - 3:.1f}">{label}</text>')
        return x, (ly + ry) / 2

    draw(tree)
    return "".join(out) + "</svg>" + _heatmap(report, [names[leaf] for leaf in _leaves(tree)], top_dec)


def _heatmap(report: Report, order: list[str], top_dec: int) -> str:
    """The pairwise max ULP and max abs between final outputs as a grid in the dendrogram's order, each cell
    shaded by log10(max ULP + 1) (white: bit-identical; '-': not comparable)."""
    pw = report.pairwise
    index = {n: i for i, n in enumerate(pw["variants"])}
    label = {n: f"v{k + 1}" for k, n in enumerate(order)}
    rows = []
    for a in order:
        cells = []
        for b in order:
            u = pw["max_ulp"][index[a]][index[b]]
            d = pw["max_abs"][index[a]][index[b]] if pw.get("max_abs") else None
            if u is None:
                cells.append('<td class="na" title="not comparable">-</td>')
                continue
            shade = min(1.0, math.log10(u + 1) / top_dec) if top_dec else 0.0
            tip = f"{a} vs {b}: max ULP {u:,}" + ("" if d is None else f", max abs {d:.3g}")
            cells.append(f'<td style="background:rgba(225,87,89,{shade:.2f})" title="{esc(tip)}">'
                         f'{esc(num(u))}</td>')
        rows.append(f'<tr><th title="{esc(a)}">{label[a]} {esc(a)}</th>' + "".join(cells) + "</tr>")
    head = "<tr><th></th>" + "".join(f'<th title="{esc(n)}">{label[n]}</th>' for n in order) + "</tr>"
    return ('<p class="muted">Max ULP between every two variants\' final outputs (darker: further apart; hover for '
            f'max abs).</p><table id="heatmap" class="grid">{head}{"".join(rows)}</table>')


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
                       + _grid(["sample", "row", "reference label", "variant label"], rows) + "</details>"
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
        out.append(f"<h3>{esc(name)}</h3>" + _grid(["#", "<tensor", "<op", "<node", "local SNR dB", "max_rel",
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
        out.append("<h2>Determinism (repeated runs)</h2>" + _grid(
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
