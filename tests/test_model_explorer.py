"""The Model Explorer overlay (`--model-explorer DIR`, comparator/report/model_explorer.py): files that Model
Explorer's own data classes load, keyed by the node ids its ONNX adapter gives the same model, holding the
report's metrics.

Model Explorer's side (ai-edge-model-explorer's node_data_builder, model-explorer-onnx's converter) runs in a
subprocess: importing it loads Flask and, where installed, torch, which this process keeps out of."""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

import comparator
from comparator.errors import UsageError
from comparator.graph import structure
from comparator.result import base_name
from comparator.report import json as json_report
from comparator.report import model_explorer as me
from conftest import ROOT, const, vi

pytest.importorskip("onnxruntime")
pytest.importorskip("model_explorer")
pytest.importorskip("model_explorer_onnx")

CAP = sys.float_info.max
VARIANTS = ["ort", "ort:opt=disable", "ref:dtype=float64"]

# Loads each node-data file the way Model Explorer loads its data classes (dacite, as its ndp_runner does),
# strictly, and writes it back with ModelNodeData.to_json_string; converts the model with the ONNX adapter and
# lists, per graph id, every node id with the names of the tensors it gives out.
PROBE = r"""
import json, logging, sys
logging.disable(logging.WARNING)
import dacite
from model_explorer import node_data_builder as ndb
from model_explorer_onnx.main import ONNXAdapter

model, files = sys.argv[1], sys.argv[2:]
graphs = {}
for g in ONNXAdapter().convert(model, {})["graphs"]:
    nodes = {}
    for n in g.nodes:
        tags = [a.value for m in n.outputsMetadata for a in m.attrs if a.key == "__tensor_tag"]
        if n.label == "Output":
            tags += [a.value for a in n.attrs if a.key == "name"]
        nodes[n.id] = tags
    graphs[g.id] = nodes
loaded = {}
for f in files:
    with open(f, encoding="utf-8") as fh:
        data = json.load(fh, parse_constant=lambda c: sys.exit(f"{f}: {c} is not JSON"))
    parsed = dacite.from_dict(ndb.ModelNodeData, {"graphsData": data}, config=dacite.Config(strict=True))
    assert all(isinstance(g, ndb.GraphNodeData) for g in parsed.graphsData.values())
    assert all(isinstance(r, ndb.NodeDataResult) for g in parsed.graphsData.values() for r in g.results.values())
    loaded[f] = json.loads(parsed.to_json_string())
print(json.dumps({"graphs": graphs, "files": loaded}))
"""


def model_explorer(model: Path, files: list[Path]) -> tuple[dict[str, dict[str, list[str]]], dict[str, Any]]:
    """(graph id -> node id -> tensor names, file -> its data as Model Explorer's classes write it back)."""
    proc = subprocess.run([sys.executable, "-c", PROBE, str(model), *map(str, files)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return found["graphs"], {Path(f).name: d for f, d in found["files"].items()}


def capped(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v)):
        return None
    return max(-CAP, min(CAP, v))


def worst(values: list[float], metric: str) -> float:
    return max(values) if me.METRICS[metric] else min(values)


def check_files(report: comparator.Report, model: Path, folder: Path, written: list[Path]) -> dict[str, Any]:
    """The files are the series of every compared variant and metric (and local ones with --isolate), Model
    Explorer's classes load each one unchanged, and every key is a node id the adapter gives the model."""
    local = any(t.local for t in report.tensors)
    stem = model.stem
    expected = {f"{stem}.{me._safe(v)}.{kind}{m}.json" for v in report.compared() for m in me.METRICS
                for kind in ([""] + (["local."] if local else []))}
    assert {p.name for p in written} == expected
    assert {p.name for p in folder.iterdir()} == expected | {me.MANIFEST}
    graphs, loaded = model_explorer(model, written)
    for name in loaded:
        mine = json.loads((folder / name).read_text(encoding="utf-8"))
        for graph, series in mine.items():
            assert loaded[name][graph] == {**loaded[name][graph], **series}  # only defaults added
            assert graph in graphs, (name, graph, list(graphs))
            unknown = set(series["results"]) - set(graphs[graph])
            assert not unknown, (name, graph, unknown)
    return graphs


@pytest.fixture(scope="module")
def cnn_report(models) -> comparator.Report:
    return comparator.compare(models.cnn, VARIANTS, isolate=True)


def test_cnn_series_load_in_model_explorer_keyed_by_the_adapters_node_ids(cnn_report, models, tmp_path):
    report = cnn_report
    written = me.write(report, tmp_path / "overlay")
    graphs = check_files(report, models.cnn, tmp_path / "overlay", written)
    assert list(graphs) == ["cnn"]
    files = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in written}
    seen = 0
    for variant in report.compared():
        for kind, source in (("", "metrics"), ("local.", "local")):
            for metric in me.METRICS:
                data = files[f"cnn.{me._safe(variant)}.{kind}{metric}.json"]
                assert list(data) == ["cnn"] and data["cnn"]["name"] == f"{variant} {kind.replace('.', ' ')}{metric}"
                results = data["cnn"]["results"]
                for t in report.tensors:
                    value = capped(getattr(t, source)[variant].get(metric))
                    assert t.node in graphs["cnn"]  # every node of this model is named: its id is its name
                    if value is None:
                        assert t.node not in results
                        continue
                    assert results[t.node] == {"value": value}, (variant, metric, t.name)
                    seen += 1
                    if t.is_output:
                        assert results[f"[value] {t.name}"] == {"value": value}
                assert len(results) == len(report.tensors) + 1 or metric == "max_ulp"
    assert seen > 100
    assert files["cnn.ref_dtype=float64.max_abs.json"]["cnn"]["results"]["/block1/conv/Conv"]["value"] > 0


def test_non_finite_numbers_are_capped_or_left_out(cnn_report, tmp_path):
    report = copy.deepcopy(cnn_report)
    variant = "ort:opt=disable"
    first, second, third, fourth = report.tensors[:4]
    first.metrics[variant].update(max_abs=math.inf, snr_db=-math.inf)
    second.metrics[variant].update(max_abs=math.nan, max_ulp=None)
    third.metrics[variant] = {"error": "shape mismatch"}
    fourth.metrics[variant].update(bit_identical=True, snr_db=math.inf, max_abs=np.float32(0.25))
    found = me.series(report)
    results = {m: found[f"cnn.ort_opt=disable.{m}.json"]["cnn"]["results"] for m in me.METRICS}
    assert results["max_abs"][first.node] == {"value": CAP} and results["snr_db"][first.node] == {"value": -CAP}
    assert second.node not in results["max_abs"] and second.node not in results["max_ulp"]
    assert all(third.node not in r for r in results.values())
    assert results["snr_db"][fourth.node] == {"value": CAP} and results["max_abs"][fourth.node] == {"value": 0.25}
    text = json.dumps(found, allow_nan=False)  # every number finite
    assert "Infinity" not in text and "NaN" not in text


def test_a_model_other_than_the_reports_or_a_report_without_graph_is_refused(cnn_report, models, tmp_path):
    with pytest.raises(comparator.InfercmpError, match="not the one the report was made from"):
        me.write(cnn_report, tmp_path / "o", model=models.small)
    with pytest.raises(comparator.InfercmpError, match="holds no graph"):
        me.write(dataclasses.replace(cnn_report, graph=[]), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def unnamed_model() -> Any:
    """Unnamed nodes, nodes named `node` and `node_1` (the adapter's own names for unnamed ones), a name used in
    the main graph and in a branch, an unnamed If with unnamed nodes in its branches (the adapter flattens them
    into the main graph) and an unnamed Loop whose body (a graph of its own there) holds another `node`; every
    tensor name used once (ONNX Runtime refuses two nodes of one graph named alike)."""
    then = helper.make_graph([helper.make_node("Exp", ["d2"], ["t1"]), helper.make_node("Mul", ["t1", "d2"], ["t"])],
                             "then", [], [vi("t", T.FLOAT, [2, 3])])
    other = helper.make_graph([helper.make_node("Neg", ["d2"], ["e"], name="dup")], "else", [],
                              [vi("e", T.FLOAT, [2, 3])])
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Exp", ["acc_in"], ["ex"]),
                              helper.make_node("Mul", ["ex", "third"], ["acc_out"], name="node")], "body",
                             [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("acc_in", T.FLOAT, [2, 3])],
                             [vi("cond_out", T.BOOL, []), vi("acc_out", T.FLOAT, [2, 3])])
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Neg", ["r"], ["n1"], name="node"),
             helper.make_node("Sin", ["n1"], ["d1"], name="dup"),
             helper.make_node("Cos", ["d1"], ["d2"], name="node_1"),
             helper.make_node("ReduceSum", ["d2"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["iy"], then_branch=then, else_branch=other),
             helper.make_node("Loop", ["n", "go", "iy"], ["ly"], body=body),
             helper.make_node("Add", ["ly", "iy"], ["y"])]
    model = helper.make_model(helper.make_graph(
        nodes, "unnamed", [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, [2, 3])],
        [const("zero", np.array(0, np.float32)), const("n", np.array(3, np.int64)), const("go", np.array(True)),
         const("third", np.array(1 / 3, np.float32))]), opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def leaf(tensor: str) -> str:
    """A tensor's own name: without the where-it-lives path (`If_6/then/t1`, `node_4/then_branch/t1`), the
    loop-iteration suffix, and the `_if_` the adapter appends to an If's own outputs (its Phi gives them out)."""
    name = base_name(tensor).rsplit("/", 1)[-1]
    return name[:-len("_if_")] if name.endswith("_if_") else name


def test_unnamed_nodes_and_subgraphs_follow_the_adapters_ids(tmp_path):
    path = tmp_path / "unnamed.onnx"
    onnx.save(unnamed_model(), path)
    x = np.linspace(-1.3, 0.9, 6, dtype=np.float32).reshape(2, 3)
    report = comparator.compare(path, ["ref:dtype=float64", "ort", "ref"], inputs={"x": x})
    assert [v.status for v in report.variants] == ["ok"] * 3
    assert any(t.name.startswith("If_6/") for t in report.tensors)
    assert any(t.name.startswith("Loop_7/body/") for t in report.tensors)
    written = me.write(report, tmp_path / "overlay")
    graphs = check_files(report, path, tmp_path / "overlay", written)
    # The adapter's names: Relu `node`, the Neg named `node` -> `node_1`, the Cos named `node_1` -> `node_1_1`,
    # the If `node_4` (its branches' nodes `node_4/then_branch/...`), the Loop `node_6`, its body's Mul named
    # `node` -> `node_8`.
    assert set(graphs) == {"unnamed", "node_6/body"}
    assert {"node", "node_1", "node_1_1", "node_4", "node_4/then_branch/node", "node_4_phi"} <= set(graphs["unnamed"])
    assert {"node", "node_7", "node_8"} <= set(graphs["node_6/body"])
    for variant in report.compared():
        for metric in me.METRICS:
            data = json.loads((tmp_path / "overlay" / f"unnamed.{variant}.{metric}.json").read_text("utf-8"))
            for graph, nodes in graphs.items():
                results = data.get(graph, {}).get("results", {})
                for node, tags in nodes.items():
                    values = [v for t in report.tensors if leaf(t.name) in {leaf(tag) for tag in tags}
                              and (v := capped((t.metrics.get(variant) or {}).get(metric))) is not None]
                    if node.endswith("_capture") or (node.startswith("[value] ") and graph != "unnamed"):
                        assert node not in results
                    elif values:
                        assert results[node] == {"value": worst(values, metric)}, (variant, metric, graph, node)
                    else:
                        assert node not in results, (variant, metric, graph, node)
    ort = json.loads((tmp_path / "overlay" / "unnamed.ort.max_abs.json").read_text("utf-8"))
    assert "node_6/body" not in ort  # ORT records no tensor inside subgraphs
    assert not any(n.startswith("node_4/") for n in ort["unnamed"]["results"])
    ref = json.loads((tmp_path / "overlay" / "unnamed.ref.max_abs.json").read_text("utf-8"))
    assert {"node", "node_7", "node_8"} <= set(ref["node_6/body"]["results"])
    assert ref["unnamed"]["results"]["node_4"] == ref["unnamed"]["results"]["node_4_phi"]


def nested_branch(tag: str, depth: int) -> Any:
    """An If branch (a `dup` node in each), with an If nested in it down to depth 2."""
    nodes = [helper.make_node("Sin", ["x"], [tag + "1"]),
             helper.make_node("Cos", [tag + "1"], [tag + "2"], name="dup")]
    if depth < 2:
        nodes += [helper.make_node("If", ["c"], [tag + "3"], then_branch=nested_branch(tag + "t", depth + 1),
                                   else_branch=nested_branch(tag + "e", depth + 1)),
                  helper.make_node("Add", [tag + "2", tag + "3"], [tag])]
    else:
        nodes.append(helper.make_node("Identity", [tag + "2"], [tag]))
    return helper.make_graph(nodes, tag, [], [vi(tag, T.FLOAT, [2, 3])])


def nested_body(tag: str, inner: bool) -> Any:
    """A loop body with an If in it and, when `inner`, a Loop whose body is another of these."""
    nodes = [helper.make_node("Identity", [tag + "ci"], [tag + "co"]),
             helper.make_node("Exp", [tag + "ai"], [tag + "ex"]),
             helper.make_node("If", ["c"], [tag + "br"], then_branch=nested_branch(tag + "bt", 1),
                              else_branch=nested_branch(tag + "be", 1))]
    last = tag + "br"
    if inner:
        nodes.append(helper.make_node("Loop", ["n", "go", last], [tag + "lo"], body=nested_body(tag + "i", False)))
        last = tag + "lo"
    nodes.append(helper.make_node("Mul", [last, tag + "ex"], [tag + "ao"], name="dup"))
    return helper.make_graph(nodes, tag, [vi(tag + "i", T.INT64, []), vi(tag + "ci", T.BOOL, []),
                                          vi(tag + "ai", T.FLOAT, [2, 3])],
                             [vi(tag + "co", T.BOOL, []), vi(tag + "ao", T.FLOAT, [2, 3])])


def nested_model() -> Any:
    """If inside If, If and Loop inside a Loop body, a Loop inside an If branch, names repeated across graphs."""
    with_loop = helper.make_graph([helper.make_node("Loop", ["n", "go", "x"], ["wl"], body=nested_body("w", False))],
                                  "wl", [], [vi("wl", T.FLOAT, [2, 3])])
    neg = helper.make_graph([helper.make_node("Neg", ["x"], ["ne"], name="node_1")], "ne", [],
                            [vi("ne", T.FLOAT, [2, 3])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="node"),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["iy"], then_branch=nested_branch("t", 0),
                              else_branch=nested_branch("e", 0)),
             helper.make_node("Loop", ["n", "go", "iy"], ["ly"], body=nested_body("b", True)),
             helper.make_node("If", ["c"], ["iz"], name="withloop", then_branch=with_loop, else_branch=neg),
             helper.make_node("Add", ["ly", "iz"], ["y"], name="dup")]
    model = helper.make_model(helper.make_graph(
        nodes, "deep", [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, [2, 3])],
        [const("zero", np.array(0, np.float32)), const("n", np.array(2, np.int64)), const("go", np.array(True))]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def test_deeply_nested_subgraphs_match_the_adapter(tmp_path):
    """Every place computed here is a node the adapter draws, and every node it draws for an ONNX node is placed;
    a Loop nested in a loop body gets no graph of its own, so its body's nodes have no place."""
    model = nested_model()
    path = tmp_path / "deep.onnx"
    onnx.save(model, path)
    graphs, _ = model_explorer(path, [])
    placed = me.adapter_ids(model)
    ids = [n["id"] for n in structure.nodes(model)]
    assert [n.key for n in me._walk(me._tree(model.graph, [0]))] == ids  # Report.graph's ids, in its order
    assert len(placed) == len(ids)
    flat = [p for places in placed for p in places]
    assert len(flat) == len(set(flat))
    assert [p for p in flat if p[0] not in graphs or p[1] not in graphs[p[0]]] == []
    drawn = {(g, n) for g, nodes in graphs.items() for n in nodes
             if not n.startswith("[value] ") and not n.endswith("_capture")}
    assert drawn == set(flat)
    assert set(graphs) == {"deep", "node_23/body", "withloop/then_branch/node/body"}
    inner = "Loop_3/body/Loop_3/body/"
    assert [i for i, places in zip(ids, placed) if not places] == [i for i in ids if i.startswith(inner)]
    assert len([i for i in ids if i.startswith(inner)]) == 24


# -- the CLI ----------------------------------------------------------------------------------------------------


def infercmp(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "comparator.cli", "compare", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env={**os.environ, "INFERCMP_QUIET": "1"})


def test_the_cli_flag_writes_the_overlay_and_replaces_only_its_own_files(models, tmp_path):
    folder = tmp_path / "overlay"
    proc = infercmp(models.cnn, "-b", "ort,ort:opt=disable,ref:dtype=float64", "-q", "--model-explorer", folder,
                    "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert f"Model Explorer node data: {folder} (10 files, one per variant and metric)" in proc.stdout
    report = json_report.read(tmp_path / "r.json")
    written = sorted(p for p in folder.iterdir() if p.name != me.MANIFEST)
    check_files(report, models.cnn, folder, written)
    (folder / "notes.json").write_text("{}", encoding="utf-8")  # not the overlay's: kept
    proc = infercmp(models.cnn, "-b", "ort,ort:opt=disable", "-q", "--model-explorer", folder)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [me.MANIFEST, "notes.json"] + [f"cnn.ort_opt=disable.{m}.json" for m in me.METRICS])


def test_the_cli_refuses_a_file_or_stdout_before_running(models, tmp_path):
    before = models.cnn.read_bytes()
    for target, needle in ((models.cnn, "is a file, not a folder"), ("-", "not a stream")):
        proc = infercmp(models.cnn, "-b", "ort", "--model-explorer", target)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert "running the variants" not in proc.stderr
    assert models.cnn.read_bytes() == before
    proc = infercmp(models.cnn, "-b", "ort", "--json", tmp_path / "x", "--model-explorer", tmp_path / "x")
    assert proc.returncode == 2 and "another output" in proc.stderr


def test_a_series_file_that_is_an_input_stops_every_write(cnn_report, models, tmp_path):
    """The file names are known only once the report is: each is checked against the inputs then, and a clash
    writes nothing at all (not the other reports either)."""
    from rich.console import Console

    from comparator.cli import outputs

    folder = tmp_path / "overlay"
    folder.mkdir()
    feeds = folder / "cnn.ort_opt=disable.max_abs.json"
    feeds.write_text("mine", encoding="utf-8")
    with pytest.raises(UsageError, match="is --inputs"):
        outputs.write_reports(Console(file=io.StringIO()), cnn_report,
                              {"--json": tmp_path / "r.json", "--model-explorer": folder}, {"--inputs": feeds},
                              {"the model": models.cnn})
    assert feeds.read_text(encoding="utf-8") == "mine" and not (tmp_path / "r.json").exists()
    assert sorted(folder.iterdir()) == [feeds]
