"""The HTML report's graph view (comparator/report/graphview.py): its data from real comparisons, and what headless
Chromium draws from it: the nodes (a screenshot), the first divergence and the origins marked, a node's tensor rows
from a `#node=` link, subgraphs folded and unfolded, fused groups outlined, hostile names kept as text, and a
DenseNet-121-size graph drawn whole. Its load time is measured in benchmarks/bench_graphview.py, not here."""
from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

import comparator
from comparator.report import graphview, html
from comparator.result import Report
from browser import chromium, needs_chromium
from conftest import make_model, vi
from test_real_models import load_real
from test_subgraph_taps import X, if_model, loop_model

HOSTILE = "</script><img src=x onerror=alert(1)>&\u2028'\""
DATA = re.compile(r'<script type="application/json" id="graph-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def real(models) -> Report:
    """cnn.onnx on two ORT variants and onnx.reference, with --isolate: local errors and origins."""
    return comparator.compare(models.cnn, ["ort", "ort:opt=disable", "ref"], isolate=True)


@pytest.fixture(scope="module")
def fused(models) -> Report:
    """cnn.onnx with --tap fused: ORT at `extended` runs each Conv, BatchNormalization, Relu block as one
    FusedConv, so the Conv and BatchNormalization outputs exist only in the model's own graph."""
    return comparator.compare(models.cnn, ["ort:opt=disable", "ort:opt=extended", "ref"], tap_spec="fused")


@pytest.fixture(scope="module")
def branching(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A model with an If (three nodes in its branches), tapped inside the branches by onnx.reference."""
    path = tmp_path_factory.mktemp("if") / "if.onnx"
    onnx.save(if_model(), path)
    return comparator.compare(path, ["ref", "ort"], inputs={"x": X})


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """Node and tensor names that are markup, a script end tag and a JavaScript line separator."""
    nodes = [helper.make_node("Relu", ["x"], [HOSTILE + "a"], name=HOSTILE + "relu"),
             helper.make_node("Exp", [HOSTILE + "a"], ["y"], name="<b>exp</b>")]
    path = tmp_path_factory.mktemp("hostile") / "h.onnx"
    onnx.save(make_model(nodes, [vi("x", T.FLOAT, [2, 8])], [vi("y", T.FLOAT, [2, 8])]), path)
    return comparator.compare(path, ["ort", "ref"], inputs={"x": np.linspace(-1, 1, 16, dtype=np.float32)
                                                            .reshape(2, 8)})


def node_page(report: Report, tmp_path: Path, node: str) -> str:
    """The DOM headless Chromium builds from `report`'s page opened at `#node=<node>`."""
    path = tmp_path / "r.html"
    html.write(report, path)
    return chromium(path.as_uri() + "#node=" + urllib.parse.quote(node, safe=""), tmp_path, "--dump-dom",
                    "--window-size=1400,1000")


def data_of(page: str) -> dict:
    found = DATA.search(page)
    assert found, "no graph data in the page"
    return json.loads(found.group(1))


def node_index(report: Report, node_id: str) -> int:
    return next(i for i, n in enumerate(report.graph) if n["id"] == node_id)


def drawn(dom: str) -> list[str]:
    """The data-id of every node the page drew, in drawing order."""
    return re.findall(r'<g class="gn[^"]*" data-i="\d+" data-id="([^"]*)"', dom)


def test_data_of_a_real_report(real: Report) -> None:
    data = graphview.graph_data(real, ["ort:opt=disable", "ref"])
    assert len(data["nodes"]) == len(real.graph) == 17 and data["local"] is True
    # every tensor row belongs to the node that writes it; the chain's nodes read from the one before
    assert sorted(ti for n in data["nodes"] for ti in n[4]) == list(range(len(real.tensors)))
    for i, n in enumerate(data["nodes"]):
        assert [data["tensors"][ti][0] for ti in n[4]] == real.graph[i]["outputs"]
        assert n[3] == ([i - 1] if i else [])
    first = node_index(real, "/block1/conv/Conv")
    assert data["first"] == {"ort:opt=disable": first, "ref": first}
    assert [data["nodes"][k][0] for k in data["origins"]["ref"]] == [o["node"] for o in real.origins["ref"]]
    conv = data["tensors"][data["nodes"][first][4][0]]
    snr, ulp, max_abs, _, beyond = conv[5][0]
    m = real.tensor("/block1/conv/Conv_output_0").metrics["ort:opt=disable"]
    assert ulp == m["max_ulp"] and snr == pytest.approx(m["snr_db"], rel=1e-3) and beyond == 0
    assert max_abs == pytest.approx(m["max_abs"], rel=1e-3) and conv[6] is not None  # local figures too


def test_page_embeds_the_graph_inline(real: Report) -> None:
    page = html.render(real)
    assert data_of(page) == json.loads(json.dumps(graphview.graph_data(real, ["ort:opt=disable", "ref"])))
    assert "var dagre=" in page and "sourceMappingURL" not in page
    assert "Copyright (c) 2012-2014 Chris Pettitt" in page  # dagre's licence travels with it
    assert page.index('id="plot"') < page.index('id="graph-view"') < page.index('id="optypes"')
    for option in ("SNR dB", "max ULP", "max abs", "local (--isolate)", "accumulated"):
        assert f">{option}</option>" in page


def test_old_report_without_graph_has_a_note(real: Report) -> None:
    old = dataclasses.replace(real, graph=[])
    page = html.render(old)
    assert 'id="graph-none"' in page and "graph-data" not in page and "var dagre=" not in page
    assert page.count("<script") == 1


def test_hostile_names_stay_data(hostile: Report) -> None:
    page = html.render(hostile)
    block = DATA.search(page)
    assert block and "<" not in block.group(1) and "&" not in block.group(1) and "\u2028" not in block.group(1)
    names = [n[0] for n in data_of(page)["nodes"]]
    assert names == [HOSTILE + "relu", "<b>exp</b>"]  # the JSON reads back to the very names
    assert page.count("<script") == 3 and "<img" not in page and "<b>exp" not in page


def test_fusion_groups_and_fused_tensors(fused: Report) -> None:
    data = graphview.graph_data(fused, ["ort:opt=extended", "ref"])
    ids = [n[0] for n in data["nodes"]]
    blocks = [[ids.index(f"/block{k}/{part}") for part in ("conv/Conv", "bn/BatchNormalization", "relu/Relu")]
              for k in range(1, 5)]
    assert data["fusion"] == {"ort:opt=extended": blocks}
    stale = dataclasses.replace(fused, fusion={"ort:opt=extended": {"mode": "optimized", "groups": [
        {"nodes": ["no such node"], "ops": ["Add"], "outputs": []}]}})
    assert graphview.graph_data(stale, ["ort:opt=extended"])["fusion"] == {}  # names no node: nothing drawn


@needs_chromium
def test_chromium_draws_and_marks(real: Report, tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    html.write(real, path)
    dom = chromium(path.as_uri(), tmp_path, "--dump-dom", "--window-size=1400,1000")
    assert re.search(r'<div id="graph" data-state="drawn" data-nodes="17"', dom)
    assert drawn(dom) == [n["id"] for n in real.graph]
    assert len(re.findall(r'<path class="ge"', dom)) == 16  # the chain's edges
    first = re.findall(r'<g class="gn ?([^"]*)" data-i="\d+" data-id="([^"]*)"', dom)
    assert [i for c, i in first if "first" in c] == ["/block1/conv/Conv"]
    assert ">first divergence</text>" in dom
    assert len(re.findall(r'<g class="go">', dom)) == len(real.origins["ort:opt=disable"]) == 5
    fills = re.findall(r'<rect width="[\d.]+" height="24" rx="4" fill="([^"]+)"', dom)
    assert len(fills) == 17 and len(set(fills)) > 3  # coloured by the error, not one colour


@needs_chromium
def test_screenshot_shows_coloured_nodes(real: Report, tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image", reason="the screenshot check needs Pillow (the test extra)")
    path, png = tmp_path / "r.html", tmp_path / "r.png"
    html.write(real, path)
    dom = chromium(path.as_uri(), tmp_path, "--dump-dom", "--window-size=1400,2400")
    fills = {tuple(int(c) for c in f.split(",")) for f in
             re.findall(r'<rect width="[\d.]+" height="24" rx="4" fill="rgb\((\d+,\d+,\d+)\)"', dom)}
    fills |= {(0xd9, 0xf0, 0xd3)}  # bit-identical
    chromium(path.as_uri(), tmp_path, f"--screenshot={png}", "--window-size=1400,2400")
    with image.open(png) as shot:
        rgb = shot.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
    assert colours is not None
    count = {c: n for n, c in colours}
    painted = {c: count.get(c, 0) for c in fills}
    # every node colour fills whole node boxes (a box is about 60 x 24 px)
    assert all(n > 500 for n in painted.values()), painted
    assert sum(n for c, n in count.items() if c != (255, 255, 255)) > 100_000  # not a blank page


@needs_chromium
def test_chromium_node_link_shows_its_rows(real: Report, tmp_path: Path) -> None:
    dom = node_page(real, tmp_path, "/block3/conv/Conv")
    panel = re.search(r'<div id="graph-panel"[^>]*>(.*?)</div></div>', dom, re.S)
    assert panel, "no panel"
    text = panel.group(1)
    index, t = next((i, t) for i, t in enumerate(real.tensors) if t.name == "/block3/conv/Conv_output_0")
    assert f'<a class="name" href="#t{index}">/block3/conv/Conv_output_0</a>' in text
    assert f"[{', '.join(map(str, t.shape))}] {t.dtype}" in text
    assert ">local SNR<" in text and ">ort:opt=disable<" in text and ">ref<" in text
    assert re.search(r'<g class="gn[^"]* sel[^"]*" data-i="\d+" data-id="/block3/conv/Conv"', dom)
    assert 'reads from: <a class="name" href="#node=%2Fpool%2FMaxPool">/pool/MaxPool</a>' in text


@needs_chromium
def test_chromium_folds_and_unfolds_subgraphs(branching: Report, tmp_path: Path) -> None:
    path = tmp_path / "if.html"
    html.write(branching, path)
    inner = [n["id"] for n in branching.graph if n["parent"]]
    assert sorted(inner) == ["If_0/else/else_neg", "If_0/then/then_exp", "If_0/then/then_mul"]
    dom = chromium(path.as_uri(), tmp_path, "--dump-dom", "--window-size=1400,1000")
    assert drawn(dom) == ["sum", "gt", "If_0", "relu"]  # folded into the If by default
    assert re.search(r'<g class="gn sub[^"]*" data-i="2" data-id="If_0"[^>]*>.*?>If \u25b83</text>', dom)
    holder = chromium(path.as_uri() + "#node=If_0", tmp_path, "--dump-dom", "--window-size=1400,1000")
    assert '<button id="graph-toggle">unfold its subgraph (3 nodes)</button>' in holder
    url = path.as_uri() + "#node=" + urllib.parse.quote("If_0/then/then_mul", safe="")
    unfolded = chromium(url, tmp_path, "--dump-dom", "--window-size=1400,1000")
    assert drawn(unfolded) == ["sum", "gt", "If_0", *inner, "relu"]
    assert '<rect class="gc"' in unfolded and ">subgraph of If_0</text>" in unfolded
    panel = re.search(r'<div id="graph-panel"[^>]*>(.*?)</div></div>', unfolded, re.S)
    assert panel and ">If_0/then/t</a>" in panel.group(1)
    assert 'id="graph-toggle"' not in panel.group(1)  # the inner node holds no subgraph
    assert ">not compared<" in panel.group(1)  # ort records no tensor inside subgraphs


@needs_chromium
def test_chromium_shows_every_loop_iteration_row(tmp_path: Path) -> None:
    path = tmp_path / "loop.onnx"
    onnx.save(loop_model(), path)
    report = comparator.compare(path, ["ref:dtype=float64", "ref"], inputs={"x": X})
    dom = node_page(report, tmp_path, "Loop_0/body/body_exp")
    panel = re.search(r'<div id="graph-panel"[^>]*>(.*?)</div></div>', dom, re.S)
    assert panel
    assert ">Loop_0/body/ex@iter=0</a>" in panel.group(1) and ">Loop_0/body/ex@iter=last</a>" in panel.group(1)


@needs_chromium
def test_chromium_outlines_fused_groups(fused: Report, tmp_path: Path) -> None:
    dom = node_page(fused, tmp_path, "/block1/bn/BatchNormalization")
    assert len(re.findall(r'<rect class="gf"', dom)) == 4  # one per FusedConv block
    assert "fused by ort:opt=extended: /block1/conv/Conv, /block1/bn/BatchNormalization, /block1/relu/Relu" in dom
    assert ">fused in ort:opt=extended</td>" in dom


@needs_chromium
def test_chromium_keeps_hostile_names_as_text(hostile: Report, tmp_path: Path) -> None:
    dom = node_page(hostile, tmp_path, HOSTILE + "relu")
    assert dom.count("<script") == 3 and "<img" not in dom and "<b>exp" not in dom  # nothing injected
    assert re.search(r'<div id="graph" data-state="drawn" data-nodes="2"', dom)
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&amp;" in dom  # drawn and listed as text
    panel = re.search(r'<div id="graph-panel"[^>]*>(.*?)</div></div>', dom, re.S)
    assert panel and "relu</span>" in panel.group(1)


def chain(tmp_path: Path, n: int) -> Report:
    """A chain of `n` unary ops on a [1, 4] tensor, compared on two ORT variants."""
    ops = ["Relu", "Neg", "Abs", "Neg"]
    nodes = [helper.make_node(ops[i % 4], [f"t{i - 1}" if i else "x"], [f"t{i}"], name=f"n{i}") for i in range(n)]
    path = tmp_path / f"chain{n}.onnx"
    onnx.save(make_model(nodes, [vi("x", T.FLOAT, [1, 4])], [vi(f"t{n - 1}", T.FLOAT, [1, 4])]), path)
    return comparator.compare(path, ["ort", "ort:opt=disable"])


def node_y(dom: str, node_id: str) -> float:
    found = re.search(rf'data-id="{re.escape(node_id)}" transform="translate\([-\d.]+,([-\d.]+)\)"', dom)
    assert found, node_id
    return float(found.group(1))


@needs_chromium
def test_chromium_lays_a_long_chain_out_in_bands(tmp_path: Path) -> None:
    """2,200 chained nodes: deeper than dagre's recursion gets in one layout, so laid out in bands of
    graphview.BAND nodes, one below the other, every edge drawn (between bands too)."""
    n = 2200
    path = tmp_path / "chain.html"
    html.write(chain(tmp_path, n), path)
    dom = chromium(path.as_uri(), tmp_path, "--dump-dom", "--window-size=1400,1000")
    assert re.search(rf'<div id="graph" data-state="drawn" data-nodes="{n}"', dom)
    assert len(drawn(dom)) == n and len(re.findall(r'<path class="ge"', dom)) == n - 1
    ys = [node_y(dom, f"n{i}") for i in (0, graphview.BAND - 1, graphview.BAND, n - 1)]
    assert ys == sorted(ys) and len(set(ys)) == 4  # top to bottom across the bands


@needs_chromium
def test_chromium_waits_for_a_click_beyond_the_limit(tmp_path: Path) -> None:
    n = graphview.LAYOUT_LIMIT + 1
    path = tmp_path / "chain.html"
    html.write(chain(tmp_path, n), path)
    dom = chromium(path.as_uri(), tmp_path, "--dump-dom", "--window-size=1400,1000")
    assert '<div id="graph" data-state="deferred">' in dom and f"lay out the graph ({n:,} nodes" in dom
    assert not drawn(dom)


@pytest.mark.real_models
@needs_chromium
def test_chromium_draws_a_densenet_whole(tmp_path: Path) -> None:
    """DenseNet-121 (910 nodes, models/real.py): every node and edge drawn on load, none deferred."""
    model = load_real().build_light("densenet121", tmp_path, seed=0)
    report = comparator.compare(model, ["ort", "ort:opt=disable"])
    path = tmp_path / "d.html"
    html.write(report, path)
    added = len(path.read_bytes()) - len(html.render(dataclasses.replace(report, graph=[])).encode())
    assert added < 256 * 2**10, added  # dagre, the view's script and the data of 910 nodes and tensors
    dom = chromium(path.as_uri(), tmp_path, "--dump-dom", "--window-size=1400,1000")
    assert len(report.graph) == 910
    assert re.search(r'<div id="graph" data-state="drawn" data-nodes="910"', dom)
    assert len(drawn(dom)) == 910
    edges = {(p, i) for i, n in enumerate(graphview.graph_data(report, [])["nodes"]) for p in n[3]}
    assert len(re.findall(r'<path class="ge"', dom)) == len(edges)
