"""The HTML report's graph view: the model's nodes laid out top to bottom in data-flow order, coloured by one
variant's error at each node (the local error of --isolate when the report has it, else the accumulated error; SNR,
max ULP, max abs or max rel), with the first divergence and the top origins marked, fused groups outlined,
subgraphs folded into the node that holds them (expandable), pan and zoom, and a node's tensor rows on click or
with `#node=<id>` in the URL.

The page lays the graph out itself with dagre (assets/dagre.min.js, @dagrejs/dagre from npm, MIT, inlined): the
report stays one file, and a ~1,000-node model lays out in well under a second in Chromium. The data travels as
one JSON block that the view's script (assets/graphview.js) reads; every name in it is drawn as text.
"""
from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any

from ..result import Report, base_name
from .markup import esc

# Metric keys of the colour picker, with their labels; SNR first: it does not depend on the tensor's scale.
METRICS = (("snr_db", "SNR dB"), ("max_ulp", "max ULP"), ("max_abs", "max abs"), ("max_rel", "max rel"))
# Visible nodes laid out as the page opens (dagre takes about 0.8 s per 1,000 nodes in Chromium); a larger graph
# waits for a click.
LAYOUT_LIMIT = 2500
# Nodes per dagre layout: dagre recurses as deep as the graph is long and overflows the browser's stack near 2,000
# chained nodes, so larger graphs are laid out in bands of this many consecutive nodes.
BAND = 1000
FIGURES = 4  # significant digits kept of each metric figure
# What JSON leaves as is and a <script> element cannot hold (or older JavaScript parsers reject), as escapes.
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                              "\u2029": "\\u2029"})

CSS = """
#graph-tools select{font-size:13px;margin-right:10px}#graph-tools button{margin-left:4px}
#graph-box{position:relative;display:flex;gap:10px;align-items:stretch}
#graph{flex:1 1 auto;height:72vh;min-height:360px;border:1px solid #e3e5e8;background:#fbfbfc;cursor:grab;
overflow:hidden;touch-action:none}#graph.drag{cursor:grabbing}
#graph svg{width:100%;height:100%;max-width:none;background:transparent;display:block}
#graph-panel{flex:0 0 430px;max-height:72vh;overflow:auto;border:1px solid #e3e5e8;padding:6px 8px;font-size:12.5px}
#graph-panel table{font-size:12px}#graph-panel td,#graph-panel th{padding:1px 5px}
#graph-panel .name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.gn rect{stroke:#6b7280;stroke-width:1}.gn text{font:11px system-ui,sans-serif;fill:#111;pointer-events:none}
.gn{cursor:pointer}.gn.sel rect{stroke:#1d4ed8;stroke-width:3}.gn.first rect{stroke:#7f1d1d;stroke-width:3.5}
.gn.fused rect{stroke-dasharray:4 3}.gn.sub rect{stroke-width:2;stroke:#374151}
.ge{fill:none;stroke:#9ca3af;stroke-width:1}.gc{fill:rgba(99,102,241,.05);stroke:#6366f1;stroke-dasharray:5 4}
.gf{fill:rgba(14,165,233,.08);stroke:#0284c7;stroke-width:2;stroke-dasharray:7 3}
text.gl{font:bold 11px system-ui,sans-serif;fill:#7f1d1d;paint-order:stroke;stroke:#fff;stroke-width:3px}
text.go{font:bold 10px system-ui,sans-serif;fill:#fff}circle.go{fill:#7c2d12;stroke:#fff}
#graph-legend{margin:4px 0}#graph-legend i{display:inline-block;width:14px;height:10px;border:1px solid #999;
margin:0 4px -1px 10px}#graph-legend .ramp{width:120px}
"""


@cache
def _asset(name: str) -> str:
    """An asset's text, without a source-map comment (the page fetches nothing)."""
    text = resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.startswith("//# sourceMappingURL="))


def section(report: Report, compared: list[str]) -> str:
    """The graph section: its controls, the graph's data and its script; a one-line note when the report has
    no graph (reports written before the graph was recorded)."""
    head = '<h2 id="graph-view">Graph</h2>'
    if not report.graph:
        return head + '<p class="muted" id="graph-none">This report carries no graph (an older report).</p>'
    data = graph_data(report, compared)
    return "".join([head, _controls(report, compared, bool(data["local"])),
                    f'<script type="application/json" id="graph-data">{embed(data)}</script>',
                    f"<style>{CSS}</style><script>/*! {_asset('dagre.LICENSE.txt')} */\n{_asset('dagre.min.js')}\n"
                    f"{_asset('graphview.js')}</script>"])


def _controls(report: Report, compared: list[str], local: bool) -> str:
    """The pickers (variant, error, metric), the zoom buttons, the legend, the drawing area and the node panel."""
    variants = "".join(f"<option>{esc(v)}</option>" for v in compared) or "<option>(none compared)</option>"
    sources = ('<option value="local">local (--isolate)</option>' if local else "") + \
        '<option value="acc">accumulated</option>'
    metrics = "".join(f'<option value="{k}">{label}</option>' for k, label in METRICS)
    return (f'<p class="muted">Nodes in data-flow order, coloured by the error at each node against the reference '
            f'{esc(report.reference)} (its worst output tensor; light green: bit-identical). Outlined: the first '
            'divergence (red) and fused groups (blue); numbered: the top origins. Drag to pan, Ctrl+wheel or the '
            'buttons to zoom; click a node for its tensors (a thick border: it holds a subgraph, which the panel '
            'unfolds).</p>'
            f'<div class="tools" id="graph-tools">variant <select id="graph-variant">{variants}</select>'
            f'error <select id="graph-source">{sources}</select>metric <select id="graph-metric">{metrics}</select>'
            '<button id="graph-in" title="zoom in">+</button><button id="graph-out" title="zoom out">&minus;</button>'
            '<button id="graph-fit">fit</button><button id="graph-first">first divergence</button></div>'
            '<div id="graph-legend" class="muted"></div><div id="graph-box"><div id="graph" data-state="loading">'
            '</div><div id="graph-panel" class="muted">Click a node to see its tensors.</div></div>')


def embed(data: Any) -> str:
    """`data` as JSON that can sit inside a <script> element: no '<', '>' or '&' (a name like '</script>' stays a
    string), no line separators that older JavaScript parsers reject."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).translate(_SCRIPT_SAFE)


def graph_data(report: Report, compared: list[str]) -> dict[str, Any]:
    """What the view's script draws, compactly: "nodes" [id, op_type, parent index (-1: main graph), indices of
    the nodes it reads from, indices into "tensors", domain]; "tensors" [name, shape, dtype, row in the per-tensor
    table, variants that fused it away, accumulated figures per compared variant, local figures per compared
    variant or null] (figures: see `figures`); "first" and "origins" per variant as node indices; "fusion" per
    variant as lists of node indices."""
    nodes = report.graph
    index = {n["id"]: i for i, n in enumerate(nodes)}
    producer = {o: i for i, n in enumerate(nodes) for o in n["outputs"]}
    local = any(t.local for t in report.tensors)
    rows: dict[int, list[int]] = {}
    tensors: list[list[Any]] = []
    for i, t in enumerate(report.tensors):
        node = producer.get(base_name(t.name))
        if node is None:
            continue
        rows.setdefault(node, []).append(len(tensors))
        tensors.append([t.name, t.shape, t.dtype, i, list(t.fused), [figures(t.metrics.get(v)) for v in compared],
                        [figures(t.local.get(v)) for v in compared] if local else None])
    encoded = [[n["id"], n["op_type"], index.get(n.get("parent") or "", -1), _sources(n, producer, i),
                rows.get(i, []), n.get("domain") or ""] for i, n in enumerate(nodes)]
    return {"reference": report.reference, "variants": compared, "local": local, "limit": LAYOUT_LIMIT, "band": BAND,
            "metrics": [list(m) for m in METRICS], "nodes": encoded, "tensors": tensors,
            "first": {v: producer.get(base_name(name)) for v, name in report.first_divergence.items() if name},
            "origins": {v: [n for o in found if (n := _origin_node(o, producer, index)) is not None]
                        for v, found in report.origins.items()},
            "fusion": {v: groups for v, f in report.fusion.items() if (groups := _fused_groups(f, index))}}


def _sources(node: dict[str, Any], producer: dict[str, int], me: int) -> list[int]:
    """The nodes whose outputs `node` reads, each once, in input order."""
    found: list[int] = []
    for tensor in node["inputs"]:
        p = producer.get(tensor)
        if p is not None and p != me and p not in found:
            found.append(p)
    return found


def _origin_node(origin: dict[str, Any], producer: dict[str, int], index: dict[str, int]) -> int | None:
    """The node of one --isolate origin: the writer of its tensor, else the node it names."""
    found = producer.get(base_name(str(origin.get("tensor"))))
    return found if found is not None else index.get(str(origin.get("node")))


def _fused_groups(fusion: Any, index: dict[str, int]) -> list[list[int]]:
    """A variant's fused groups as node indices (groups of fewer than two known nodes left out)."""
    groups = fusion.get("groups") if isinstance(fusion, dict) else None
    out = []
    for group in groups or []:
        members = [index[n] for n in (group.get("nodes") or []) if n in index]
        if len(members) > 1:
            out.append(members)
    return out


def figure(x: Any) -> Any:
    """One metric figure for the page: FIGURES significant digits; "inf", "-inf", "nan" for non-finite numbers."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x if isinstance(x, int) else float(f"{x:.{FIGURES}g}")


def figures(m: dict[str, Any] | None) -> Any:
    """One tensor's figures for one variant: null (not compared), 0 (bit-identical), the error text (not
    comparable) or [snr_db, max_ulp, max_abs, max_rel, 1 if beyond tolerance else 0]."""
    if m is None:
        return None
    if "error" in m:
        return str(m["error"]) or "not comparable"
    if m.get("bit_identical"):
        return 0
    return [figure(m.get(k)) for k, _ in METRICS] + [1 if m.get("violations") else 0]
