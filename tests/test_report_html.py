"""The HTML report: sections present, strings escaped, self-contained, small on large models, and what headless
Chromium shows after the page's script ran (plot, dendrogram, table rows, the #filter= fragment, a screenshot)."""
from __future__ import annotations

import math
import random
import re
import struct
from pathlib import Path

import pytest

import comparator
from comparator.report import charts, html
from comparator.result import Report, TensorReport, VariantReport
from browser import chromium, needs_chromium
from conftest import missing_provider

MISSING, PROVIDER = missing_provider()

EVIL = "<script>alert('x')</script> & \"q\""


@pytest.fixture(scope="module")
def real(models) -> Report:
    """cnn.onnx on ort variants and onnx.reference, one variant that cannot run, --isolate and --repeat 2."""
    return comparator.compare(models.cnn, ["ort", "ort:opt=disable", "ref", MISSING], isolate=True, repeat=2)


def metrics(u: int, **over) -> dict:
    m = {"bit_identical": u == 0, "identical_fraction": 0.5, "max_abs": u * 1e-8, "mean_abs": u * 1e-9,
         "max_rel": u * 1e-6, "max_ulp": u, "p99_ulp": u // 2, "cosine": 1.0 - u * 1e-14, "snr_db": 130.0,
         "nan_mismatch": 0, "inf_mismatch": 0, "count": 100, "violations": 0, "ulp_dtype": "float32"}
    m.update(over)
    return m


def synthetic(n: int, k: int, seed: int = 0) -> Report:
    """n tensors x k compared variants with every optional field (local, spread, classes, origins...)."""
    rng = random.Random(seed)
    names = ["ort"] + [f"ort:opt=v{j}" for j in range(k)]
    ops = ["MatMul", "Add", "Relu", "Softmax", "LayerNormalization"]
    tensors = []
    for i in range(n):
        op = ops[i % len(ops)]
        t = TensorReport(f"/layers.{i // 5}/{op.lower()}/{op}_output_0", op, f"/layers.{i // 5}/{op}", i,
                         [1, 64, 768], "float32", i == n - 1)
        for v in names[1:]:
            u = rng.randrange(0, 5000)
            t.metrics[v], t.local[v] = metrics(u), metrics(u // 3)
        t.spread = {v: {"max_abs": 0.0, "max_ulp": 0} for v in names}
        t.classes = [names[:2]] + [[x] for x in names[2:]]
        tensors.append(t)
    return Report(model={"path": "big.onnx", "sha256": "0" * 64, "opsets": {"ai.onnx": 17}, "notes": []},
                  reference="ort", tolerance={"atol": 1e-5, "rtol": 1e-5, "max_ulp": None},
                  variants=[VariantReport(v, "ort", {}, "ok") for v in names], tensors=tensors,
                  first_divergence={v: tensors[0].name for v in names[1:]},
                  origins={v: [] for v in names[1:]},
                  determinism={v: {"runs": 3, "distinct_outputs": 1, "suggested_tolerance": None} for v in names},
                  pairwise={"variants": names, "max_ulp": [[abs(a - b) * 3 for b in range(len(names))]
                                                           for a in range(len(names))]}, passed=True)


def edge_report() -> Report:
    """Hostile names, non-finite numbers, an uncomparable tensor, flips, an incomparable pair."""
    t0 = TensorReport(EVIL, "Op<&>", "node\"1", 0, [2], "float32", False,
                      metrics={"v&1": metrics(7, max_abs=math.nan, cosine=math.nan, snr_db=-math.inf,
                                              max_rel=math.inf, violations=2)},
                      classes=[["ref\"<", "v&1"]])
    t1 = TensorReport("out", "Identity", "id", 1, [2], "float32", True, metrics={"v&1": {"error": "shape <3> != <4>"}})
    return Report(model={"path": "m<1>.onnx", "sha256": "ab", "opsets": {}, "notes": ["note <b>"]},
                  reference="ref\"<", tolerance={"atol": 0.0, "rtol": 0.0, "max_ulp": None},
                  variants=[VariantReport("ref\"<", "ref", {}, "ok"),
                            VariantReport("v&1", "ort", {"k": "<v>"}, "ok", provenance={"x": {"y": [1, "<z>"]}}),
                            VariantReport("bad", "ort", {}, "crashed", error="died <here>", hint="try & retry",
                                          stderr_tail="\x1b[31mSegfault\x1b[0m <core>\x00")],
                  tensors=[t0, t1], first_divergence={"v&1": EVIL}, first_beyond_tolerance={"v&1": EVIL},
                  label_flips={"v&1": {"out": {"rows": 4, "agreement": 0.5, "flip_count": 2, "flips": [
                      {"sample": 0, "row": 1, "reference": 3, "variant": 5},
                      {"sample": 2, "row": 0, "reference": 1, "variant": 0}]}}},
                  skipped_taps=[["seq<1>", "no inferred type"]],
                  pairwise={"variants": ["ref\"<", "v&1"], "max_ulp": [[0, None], [None, 0]]}, exit_code=3)


def visible_rows(dom: str) -> list[str]:
    return re.findall(r'<tbody id="t\d+" data-k="([^"]*)"(?![^>]*hidden)[^>]*>', dom)


def test_real_report_has_every_section(real: Report) -> None:
    page = html.render(real)
    compared = [v.name for v in real.variants if v.name != "ort" and v.status == "ok"]
    assert compared == ["ort:opt=disable", "ref"] and real.variant(MISSING).status == "failed"
    assert page.count('<polyline class="series"') == len(compared) * len(charts.METRICS)
    assert page.count('<tbody id="t') == len(real.tensors) == 17
    for needle in ('id="plot"', 'id="dendrogram"', 'id="determinism"', "Origins", "local ulp", ">role<",
                   'id="optypes"', ">worst at<", "local SNR dB", 'id="metric"',
                   ">spread<", ">classes<", "Label flips", "Bit-identical final outputs", PROVIDER,
                   "hint: ", "provenance.onnxruntime", "FAIL: a variant could not run"):
        assert needle in page, needle
    assert "<details open><summary>" in page  # the failed variant's block starts unfolded
    assert page.count('class="marker"') >= len(compared) * len(charts.METRICS)  # first divergence of each variant
    assert page.count('<text class="leaf"') == len(real.pairwise["variants"]) == 3


def test_self_contained(real: Report) -> None:
    page = html.render(real)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    # inline scripts only: the page's own, the graph view's (dagre and its drawing code) and the graph's data
    assert page.count("<script>") == 2 and page.count('<script type="application/json" id="graph-data">') == 1
    assert page.count("<script") == 3 and page.startswith("<!DOCTYPE html>")


def test_write_is_atomic_and_identical(real: Report, tmp_path: Path) -> None:
    target = tmp_path / "sub" / "r.html"
    html.write(real, target)
    assert target.read_text(encoding="utf-8") == html.render(real)
    assert [p.name for p in target.parent.iterdir()] == ["r.html"]  # no temporary file left behind


def test_escaping_and_nonfinite() -> None:
    page = html.render(edge_report())
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;" in page
    assert page.count("<script") == 1
    for raw in ("died <here>", "<core>", "m<1>", "note <b>", "seq<1>", "Op<&>", "shape <3>", "<z>", "<v>"):
        assert raw not in page, raw
    assert "\x1b" not in page and "\x00" not in page
    assert ">nan<" in page and ">inf<" in page and ">-inf<" in page
    assert "shape &lt;3&gt; != &lt;4&gt;" in page  # an uncomparable tensor shows its reason
    assert ">∞<" in page  # the incomparable pair merges at infinity in the dendrogram
    assert "<td>2</td><td>0</td><td>1</td><td>0</td>" in page  # a flipped sample is listed


def test_empty_report_renders() -> None:
    r = edge_report()
    r.tensors, r.pairwise, r.label_flips = [], {}, {}
    page = html.render(r)
    assert "Nothing to plot" in page and "No tensors were compared" in page
    assert 'id="dendrogram-empty"' in page and "needs 2+ variants" in page
    assert "<polyline" not in page


def test_cluster_uses_average_linkage() -> None:
    # a-b at 1; then d joins {a,b} at mean(5,5)=5 (single linkage would join c at 2); c last at mean(2,10,7).
    dist = [[0, 1, 2, 5], [1, 0, 10, 5], [2, 10, 0, 7], [5, 5, 7, 0]]
    tree = charts.cluster(dist)
    assert tree[0] == 2 or tree[1] == 2
    inner = tree[0] if tree[1] == 2 else tree[1]
    assert inner[2] == 5 and (0, 1, 1) in (inner[0], inner[1]) and math.isclose(tree[2], 19 / 3)
    assert charts.cluster([[0]]) == 0


def test_large_report_is_small() -> None:  # its render time is measured in benchmarks/bench_analysis.py
    page = html.render(synthetic(2000, 5))
    assert len(page.encode()) < 5 * 2**20, len(page.encode())
    assert page.count('<tbody id="t') == 2000 and page.count("<polyline") == 5 * len(charts.METRICS)
    assert len(re.findall(r'<tbody id="t\d+" [^>]* hidden>', page)) == 2000 - html.PAGE  # even before scripts run


@needs_chromium
def test_chromium_runs_the_page(real: Report, tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    html.write(real, path)
    dom = chromium(path.as_uri(), tmp_path, "--dump-dom")
    assert "17 of 17 tensors shown" in dom  # written by the page's script
    assert len(re.findall(r'<polyline class="series"', dom)) == 2 * len(charts.METRICS)
    assert '<svg id="plot" data-m="max_ulp"' in dom
    assert 'id="dendrogram"' in dom and len(re.findall(r'<path class="link"', dom)) == 2
    assert len(visible_rows(dom)) == 17
    filtered = chromium(path.as_uri() + "#filter=Relu", tmp_path, "--dump-dom")
    keys = visible_rows(filtered)
    assert len(keys) == 4 and all("relu" in k for k in keys)
    assert "4 of 17 tensors shown" in filtered


@needs_chromium
def test_chromium_picks_the_metric_from_the_link(real: Report, tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    html.write(real, path)
    dom = chromium(path.as_uri() + "#metric=snr_db", tmp_path, "--dump-dom")
    assert '<svg id="plot" data-m="snr_db"' in dom
    assert re.search(r'<input type="radio" name="metric" value="snr_db"[^>]*>', dom)


def test_metric_picker_and_tolerance_lines() -> None:
    """One axis group per metric, the first shown; the tolerance drawn where it applies (atol on max abs, rtol on
    max rel and as an SNR, max_ulp on max ULP when set); the stylesheet shows the group the picker names."""
    from comparator.report.html_assets import CSS, PLOT_METRICS

    assert tuple(k for k, _, _ in charts.METRICS) == PLOT_METRICS
    r = synthetic(30, 2)
    page = html.render(r)
    groups = re.findall(r'<g class="m" data-m="(\w+)">(.*?)</g>', page)
    assert [k for k, _ in groups] == list(PLOT_METRICS)
    tol = {k: re.findall(r'<text class="tol"[^>]*>([^<]*)</text>', body) for k, body in groups}
    assert tol == {"max_ulp": [], "max_rel": ["rtol 1e-05"], "max_abs": ["atol 1e-05"],
                   "snr_db": ["rtol 1e-05 as SNR (100 dB)"], "identical_fraction": []}
    r.tolerance["max_ulp"] = 64
    assert "max_ulp 64" in html.render(r)
    for key in PLOT_METRICS:
        assert f'#plot[data-m="{key}"] g.m[data-m="{key}"]{{display:inline}}' in CSS


def test_op_types_and_worst_element() -> None:
    r = synthetic(30, 2)
    for t in r.tensors:
        for m in t.metrics.values():
            m["worst_index"] = 768 * 10 + 5
            m["count"] = 64 * 768
    page = html.render(r)
    table = re.search(r'<table class="grid" id="optypes">.*?</table>', page, re.S)
    assert table and all(op in table.group(0) for op in ("MatMul", "Softmax", "LayerNormalization"))
    assert "<td>[0, 10, 5]" in page  # per-sample shape [1, 64, 768]


@needs_chromium
def test_chromium_keeps_hostile_names_as_text(tmp_path: Path) -> None:
    path = tmp_path / "e.html"
    html.write(edge_report(), path)
    dom = chromium(path.as_uri() + "#filter=op%3C%26", tmp_path, "--dump-dom")
    assert dom.count("<script") == 1  # no element was injected by a name
    assert len(visible_rows(dom)) == 1 and "1 of 2 tensors shown" in dom


@needs_chromium
def test_chromium_filters_a_large_table(tmp_path: Path) -> None:
    path = tmp_path / "big.html"
    html.write(synthetic(2000, 5), path)
    dom = chromium(path.as_uri() + "#filter=relu", tmp_path, "--dump-dom")
    # a page of matches is laid out, the rest on request: browsers take seconds over thousands of rows
    assert "400 of 2000 tensors match, the first 250 shown" in dom
    keys = visible_rows(dom)
    assert len(keys) == html.PAGE == 250 and all("relu" in k for k in keys)
    assert '<button id="more">show 150 more</button>' in dom and '<button id="all">show all</button>' in dom
    linked = chromium(path.as_uri() + "#t1999", tmp_path, "--dump-dom")  # a link to a row past the page
    assert re.search(r'<tbody id="t1999" data-k="[^"]*">', linked)
    assert '<button id="more" hidden="">' in linked


@needs_chromium
def test_screenshot(real: Report, tmp_path: Path) -> None:
    path, png = tmp_path / "r.html", tmp_path / "r.png"
    html.write(real, path)
    chromium(path.as_uri(), tmp_path, f"--screenshot={png}", "--window-size=1400,2000")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 2000)
    assert len(data) > 60_000, len(data)  # a blank page of that size is about 10 kB
