"""The HTML report's charts, as inline SVG: the deviation along the graph (one metric at a time, the tolerance drawn
where it applies, first divergences marked) and the variants' clustering (a dendrogram over their pairwise
final-output distances, with the distance heat map)."""
from __future__ import annotations

import math
from typing import Any

from ..result import Report
from .html_assets import PALETTE
from .markup import esc, swatch
from .text import num, snr_text


# The deviation chart's metrics: key in the metrics, label, scale (log: log10 of the value, zeros on the floor;
# ulp: log10(value + 1); linear), and what a higher point means.
METRICS = (("max_ulp", "max ULP", "ulp"), ("max_rel", "max rel", "log"), ("max_abs", "max abs", "log"),
           ("snr_db", "SNR (dB)", "snr"), ("identical_fraction", "identical", "fraction"))


def _log(u: Any) -> float | None:
    """Plot coordinate of a max ULP figure: log10(max_ulp + 1), so 0 sits on the axis floor."""
    if isinstance(u, bool) or not isinstance(u, (int, float)) or math.isnan(u):
        return None
    return math.log10(u + 1) if math.isfinite(u) else math.inf


def _decade(k: int) -> str:
    return str(10 ** k) if k < 4 else f"1e{k}"


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


def plot(report: Report, compared: list[str], colors: dict[str, int]) -> str:
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
           '<div class="legend">' + "".join(f"<span>{swatch(colors, v)}</span>" for v in compared)
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


def dendrogram(report: Report, colors: dict[str, int]) -> str:
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
