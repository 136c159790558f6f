"""Model Explorer node data: the per-tensor metrics as overlays on the graph that Google's Model Explorer draws of
an ONNX model with its ONNX adapter (`pip install ai-edge-model-explorer model-explorer-onnx`).

Files. Model Explorer reads a node-data file as one `ModelNodeData` (graph id -> `GraphNodeData`, whose `results`
map node ids to `{"value": number}`) or one `GraphNodeData`, and shows each file as one run named after the file:
a file holds one series. So `write` fills a folder with one file per compared variant and metric,
`<model>.<variant>.<metric>.json`, and with --isolate also `<model>.<variant>.local.<metric>.json` (the error the
node adds itself); the reference has none. Each is laid out as `ModelNodeData.to_json_string` writes it: graph id
-> {"results", "name", "thresholds"} (the colour steps of the metric).

Keys. The ONNX adapter (model_explorer_onnx.main) names a node by its ONNX name after onnx_ir's NameFixPass: an
unnamed node becomes `node`, `node_1`, ... and a repeated name gets `_1`, `_2`, ... (one counter per name over the
whole model, names unique within each graph). It flattens the branches of an `If` into the graph around it, their
nodes renamed `<if>/then_branch/<name>` and `<if>/else_branch/<name>`, and adds a `<if>_phi` node that gives out
the If's outputs. The body of a node of the main graph that keeps a subgraph (Loop, Scan) becomes a graph of its
own, `<node>/body`; a subgraph nested in such a body gets no graph, and its tensors are left out. The main graph's
id is the ONNX graph's name (`<main>` when it has none). An output-tensor name would attach only through a
`tensor_name` output attribute, which this adapter does not set, so every key is a node id. A node's value is the
worst over its tapped outputs (and over a loop body's first and last iteration): the largest `max_abs`,
`max_rel`, `max_ulp`, `violations`, the smallest `snr_db`. An If's `_phi` node carries the If's value, and the
Output node of a final output, `[value] <name>`, that output's, as the adapter's own node-data writer does.

Numbers. Model Explorer's JSON holds finite numbers only. A metric that is undefined for a tensor (`max_ulp` of
ints or strings, a NaN, a tensor that could not be compared) is left out: that node has no value in that series.
An infinite one (an Inf mismatch, a string that differs, the `snr_db` of a bit-identical tensor) is capped at the
largest finite double, +-1.7976931348623157e+308, so that it still sorts and colours as the extreme it is.

This module imports no Model Explorer package: it reads the model with onnx (the CLI hands it over without its
large weights) and writes plain JSON.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

from ..errors import ReportError
from ..fileio import WriteError, atomic_path, write_error
from ..result import Report, TensorReport, base_name

# Metric -> True when a larger value is worse.
METRICS: dict[str, bool] = {"max_abs": True, "max_rel": True, "max_ulp": True, "snr_db": False, "violations": True}
CAP = sys.float_info.max
MANIFEST = ".infercmp-model-explorer.json"  # the files the last write put in the folder

# Colours by value (Model Explorer: a value <= `value` gets that colour, the first that fits): green for small
# errors, red for large ones; the last step catches the capped infinities.
_GREEN, _LIGHT, _PALE, _AMBER, _ORANGE, _RED, _DARK = ("#1b5e20", "#388e3c", "#8bc34a", "#c8e6c9", "#ffa000",
                                                       "#ff5722", "#b71c1c")
_THRESHOLDS: dict[str, list[tuple[float, str]]] = {
    "max_abs": [(0, _GREEN), (1e-6, _LIGHT), (1e-5, _PALE), (1e-4, _AMBER), (1e-3, _ORANGE), (1e-1, _RED),
                (CAP, _DARK)],
    "max_rel": [(0, _GREEN), (1e-6, _LIGHT), (1e-5, _PALE), (1e-4, _AMBER), (1e-3, _ORANGE), (1e-1, _RED),
                (CAP, _DARK)],
    "max_ulp": [(0, _GREEN), (1, _LIGHT), (4, _PALE), (16, _AMBER), (256, _ORANGE), (65536, _RED), (CAP, _DARK)],
    "snr_db": [(20, _DARK), (40, _RED), (60, _ORANGE), (80, _AMBER), (100, _PALE), (140, _LIGHT), (CAP, _GREEN)],
    "violations": [(0, _GREEN), (CAP, _RED)],
}


@dataclass
class _Node:
    position: int  # in graph/structure.py's order (Report.graph): depth first, each node before its subgraphs
    key: str  # its id in Report.graph
    name: str  # the ONNX name, "" when unnamed; the adapter's name once fixed
    op_type: str
    domain: str
    # (attribute, nodes, drawn) per subgraph in attribute order; a GRAPHS attribute's are never drawn.
    subgraphs: list[tuple[str, list[_Node], bool]] = field(default_factory=list)


_BRANCHES = {"then_branch": "then", "else_branch": "else", "body": "body"}


def _tree(graph: Any, count: list[int], path: str = "") -> list[_Node]:
    """The nodes of an ONNX graph with their ids in Report.graph (graph/structure.py): the name, or
    `<op_type>_<index>` when unnamed, inside a subgraph after `<node>/<then|else|body>/`."""
    found = []
    for index, proto in enumerate(graph.node):
        key = path + (proto.name or f"{proto.op_type}_{index}")
        node = _Node(count[0], key, proto.name, proto.op_type, proto.domain)
        count[0] += 1
        for a in proto.attribute:
            inner = f"{key}/{_BRANCHES.get(a.name, a.name)}/"
            if a.HasField("g"):
                node.subgraphs.append((a.name, _tree(a.g, count, inner), True))
            for g in a.graphs:
                node.subgraphs.append((a.name, _tree(g, count, inner), False))
        found.append(node)
    return found


def _walk(nodes: list[_Node]) -> list[_Node]:
    found = []
    for node in nodes:
        found.append(node)
        for _, sub, _ in node.subgraphs:
            found.extend(_walk(sub))
    return found


def _unique(preferred: str, used: set[str], counter: Counter[str]) -> str:
    name = preferred
    while name in used:
        counter[preferred] += 1
        name = f"{preferred}_{counter[preferred]}"
    used.add(name)
    return name


def _fix_names(nodes: list[_Node], counter: Counter[str]) -> None:
    """onnx_ir's NameFixPass on node names: depth first, each node before its subgraphs; an unnamed node becomes
    `node` (made unique), a name already used in its graph is made unique; one counter for the whole model."""
    used: set[str] = set()
    for node in nodes:
        node.name = _unique(node.name or "node", used, counter)
        for _, sub, _ in node.subgraphs:
            _fix_names(sub, counter)


def _is_if(node: _Node) -> bool:
    return node.op_type == "If" and node.domain in ("", "ai.onnx")


def _embed(nodes: list[_Node], graph: str, placed: list[list[tuple[str, str]]], prefix: str = "") -> list[_Node]:
    """Place in `graph` the nodes the adapter draws there: these, and those of every If branch flattened into it,
    renamed `<if>/<attribute>/<name>`; an If's outputs come out of its `<if>_phi` node there. Returns the nodes
    that stay in the graph with their subgraphs."""
    kept = []
    for node in nodes:
        node.name = prefix + node.name
        placed[node.position].append((graph, node.name))
        kept.append(node)
        if _is_if(node):
            drawn = [(attribute, sub) for attribute, sub, draw in node.subgraphs if draw]
            for attribute, sub in drawn:
                kept.extend(_embed(sub, graph, placed, f"{node.name}/{attribute}/"))
            if drawn:
                placed[node.position].append((graph, f"{node.name}_phi"))
            node.subgraphs = []
    return kept


def adapter_ids(proto: Any) -> list[list[tuple[str, str]]]:
    """Per node of `proto` (an onnx.ModelProto), in graph/structure.py's order (that of `Report.graph`): the
    (graph id, node id) pairs under which Model Explorer's ONNX adapter draws it and its outputs: one, two for an
    If (the If and its Phi), none where the adapter draws it in no graph (see the module docstring)."""
    return _place(_tree(proto.graph, [0]), _main(proto))


def _place(tree: list[_Node], main: str) -> list[list[tuple[str, str]]]:
    placed: list[list[tuple[str, str]]] = [[] for _ in _walk(tree)]
    _fix_names(tree, Counter())
    for node in _embed(tree, main, placed):
        for attribute, sub, drawn in node.subgraphs:
            if drawn:
                _embed(sub, f"{node.name}/{attribute}", placed)
    return placed


def _main(proto: Any) -> str:
    return proto.graph.name or "<main>"


# -- the series ----------------------------------------------------------------------------------------------------

def _value(m: Mapping[str, Any] | None, metric: str) -> float | None:
    """The finite number one metrics entry gives for `metric`; None when it has none (see the module docstring)."""
    if m is None or "error" in m:
        return None
    v: Any = m.get(metric)
    if type(v).__module__ == "numpy" and hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, int):
        return v
    if math.isnan(v):
        return None
    return max(-CAP, min(CAP, v))


def _worst(a: float | None, b: float | None, larger_is_worse: bool) -> float | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b) if larger_is_worse else min(a, b)


def _safe(text: str) -> str:
    """`text` as part of a file name: no path separators, and no commas (model-explorer --node_data_paths splits
    on them)."""
    return re.sub(r"[^A-Za-z0-9._=+@-]", "_", text).strip(".") or "_"


def _load(report: Report, model: str | os.PathLike[str] | Any | None) -> Any:
    """The ModelProto (without its weights) of `model` (a path or a ModelProto), by default the report's model;
    ReportError when it cannot be read or is not the model the report was made from."""
    import onnx

    if model is None or isinstance(model, (str, os.PathLike)):
        path = Path(model if model is not None else str(report.model.get("path", "")))
        try:
            proto = onnx.load(path, load_external_data=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ReportError(f"cannot read the model {str(path)!r} for the Model Explorer overlay ({exc})",
                              "give the model the report was made from") from None
    else:
        proto = model
    return proto


def series(report: Report, model: str | os.PathLike[str] | Any | None = None,
           metrics: Sequence[str] = tuple(METRICS)) -> dict[str, dict[str, Any]]:
    """file name -> node data (as Model Explorer's `ModelNodeData.to_json_string` lays it out: graph id ->
    {"results": {node id: {"value": number}}, "name", "thresholds"}), one per compared variant and metric, and
    per variant and metric of the local error when the report has it (--isolate). `model`: the report's model
    (a path or a ModelProto; default: the path the report names)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"no Model Explorer series for {', '.join(unknown)}: choose from {', '.join(METRICS)}")
    if not report.graph:
        raise ReportError("the report holds no graph (it was written before infercmp recorded one)",
                          "run the comparison again with this infercmp")
    proto = _load(report, model)
    tree = _tree(proto.graph, [0])
    if [(n.key, n.op_type) for n in _walk(tree)] != [(n["id"], n["op_type"]) for n in report.graph]:
        raise ReportError("the model's graph is not the one the report was made from",
                          "give the model the report was made from")
    main = _main(proto)
    placed = _place(tree, main)
    owners: dict[str, list[tuple[str, str]]] = {}  # tensor (without a loop-iteration suffix) -> its node's places
    for node, places in zip(report.graph, placed):
        for out in node["outputs"]:
            owners.setdefault(out, places)
    finals = {t.name for t in report.tensors if t.is_output}
    stem = _safe(Path(str(report.model.get("path", "model"))).stem)
    taken: set[str] = set()
    found: dict[str, dict[str, Any]] = {}
    for variant in report.compared():
        tag = _unique(_safe(variant), taken, Counter())
        for local in (False, True):
            entries = [(t, (t.local if local else t.metrics).get(variant)) for t in report.tensors]
            if local and all(m is None for _, m in entries):
                continue
            for metric in metrics:
                results: dict[str, dict[str, float]] = {main: {}}  # the main graph even when empty
                results |= _results(entries, metric, owners, main, finals)
                name = f"{stem}.{tag}.{'local.' if local else ''}{metric}.json"
                label = f"{variant} {'local ' if local else ''}{metric}"
                found[name] = {graph: {"results": {k: {"value": v} for k, v in values.items()}, "name": label,
                                       "thresholds": [{"value": v, "bgColor": c} for v, c in _THRESHOLDS[metric]]}
                               for graph, values in results.items()}
    return found


def _results(entries: Iterable[tuple[TensorReport, Mapping[str, Any] | None]], metric: str,
             owners: dict[str, list[tuple[str, str]]], main: str, finals: set[str]) -> dict[str, dict[str, float]]:
    """graph id -> node id -> the worst value of `metric` over the node's tensors."""
    larger_is_worse = METRICS[metric]
    found: dict[str, dict[str, float]] = {}
    for t, m in entries:
        value = _value(m, metric)
        if value is None:
            continue
        keys = list(owners.get(base_name(t.name), []))
        if t.name in finals:
            keys.append((main, f"[value] {t.name}"))
        for graph, node in keys:
            results = found.setdefault(graph, {})
            worst = _worst(results.get(node), value, larger_is_worse)
            assert worst is not None
            results[node] = worst
    return found


def write(report: Report, folder: str | os.PathLike[str], model: str | os.PathLike[str] | Any | None = None,
          metrics: Sequence[str] = tuple(METRICS)) -> list[Path]:
    """Write the Model Explorer node-data files of `series` into `folder` (created when missing), each atomically.
    The files an earlier write put there (the folder's `.infercmp-model-explorer.json` lists them) that this one
    does not write again are removed, so that every series there is this report's; other files stay. Returns the
    files written, in order."""
    return write_series(folder, series(report, model, metrics))


def write_series(folder: str | os.PathLike[str], found: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """Write what `series` returned into `folder` (see `write`)."""
    base = Path(folder)
    if base.exists() and not base.is_dir():
        raise WriteError(f"cannot write the Model Explorer overlay to {base}: it is a file, not a folder",
                         "give a folder (it is created when missing)")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(base, exc) from None
    manifest = base / MANIFEST
    try:
        before = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        before = []
    written = []
    for name, data in found.items():
        path = base / name
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, allow_nan=False, separators=(",", ":")) + "\n", encoding="utf-8")
        written.append(path)
    for name in before:
        if isinstance(name, str) and name not in found and _safe(name) == name and (base / name).is_file():
            try:
                (base / name).unlink()
            except OSError:
                pass
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps({"files": list(found)}, indent=1) + "\n", encoding="utf-8")
    return written
