"""`--tap fused`: each variant taps what its own optimized graph computes, so tapping changes nothing it runs;
the report maps fused nodes back to the model's and compares variants at the tensors they share."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

import comparator
from comparator import backends
from comparator.errors import UsageError
from comparator.graph import fusion, structure
from comparator.result import Report, base_name

from conftest import MODELS, assert_clean_error, make_model, vi

CNN = MODELS / "cnn.onnx"
BLOCKS = [f"/block{k}" for k in range(1, 5)]


@pytest.fixture(scope="module")
def fused() -> Report:
    """The CNN on ONNX Runtime at every fusing level against the reference interpreter, fusion-aware taps."""
    return comparator.compare(CNN, ["ref", "ort", "ort:opt=extended", "ort:opt=disable", "torch"], tap_spec="fused",
                              samples=3)


@pytest.fixture(scope="module")
def every() -> Report:
    return comparator.compare(CNN, ["ref", "ort:opt=extended"], tap_spec="all", samples=3)


def test_tapping_everything_changes_what_ort_runs(every: Report) -> None:
    """The contrast the mode exists for: at `extended`, tapping between Conv and BatchNormalization stops ORT from
    fusing them, and the final outputs change."""
    assert every.observer_effect["ort:opt=extended"] is True


def test_fused_taps_leave_what_ort_runs_unchanged(fused: Report) -> None:
    """Zero observer effect by construction: the tapped run is the graph the untapped session runs."""
    for variant in ("ort", "ort:opt=extended", "ort:opt=disable"):
        assert fused.observer_effect[variant] is False, variant
        assert variant not in fused.observer_detail


def test_fused_groups_name_the_nodes_ort_joined(fused: Report) -> None:
    """At `extended` ORT runs each Conv, BatchNormalization, Relu block as one FusedConv, whose output keeps the
    Relu's name; the rest of the graph stands as it is."""
    found = fused.fusion["ort:opt=extended"]
    assert found["mode"] == "optimized"
    assert found["groups"] == [
        {"nodes": [f"{b}/conv/Conv", f"{b}/bn/BatchNormalization", f"{b}/relu/Relu"],
         "outputs": [f"{b}/relu/Relu_output_0"], "ops": ["com.microsoft.FusedConv"]} for b in BLOCKS]
    assert found["tapped"] == 9  # 4 FusedConv outputs, MaxPool, GlobalAveragePool, Flatten, Gemm, Softmax
    assert fused.fusion["ort:opt=disable"] == {"mode": "node-by-node"}  # no graph optimizer runs


def blocked(report: Report) -> bool:
    """Whether ORT at `all` ran the CNN in its blocked NCHWc layout."""
    return any(op.startswith("com.microsoft.nchwc.") for g in report.fusion["ort"]["groups"] for op in g["ops"])


def test_layout_transform_is_one_group_with_its_blocked_ops(fused: Report) -> None:
    """At `all` ORT moves the convolutions to its blocked layout (NCHWc) where MLAS has it (x86 with AVX2 or
    better): the tensors from the first Conv up to GlobalAveragePool exist only in that layout, so those 14 nodes
    are one group, implemented by nchwc ops. Without the blocked layout, `all` fuses as `extended` does."""
    groups = fused.fusion["ort"]["groups"]
    if not blocked(fused):
        assert groups == fused.fusion["ort:opt=extended"]["groups"]
        return
    assert len(groups) == 1
    assert groups[0]["nodes"][0] == "/block1/conv/Conv" and groups[0]["nodes"][-1] == "/gap/GlobalAveragePool"
    assert len(groups[0]["nodes"]) == 14
    assert groups[0]["outputs"] == ["/gap/GlobalAveragePool_output_0"]
    assert {op.rsplit(".", 1)[0] for op in groups[0]["ops"]} == {"com.microsoft.nchwc"}


def test_fused_tensors_are_reported_as_fused_not_missing(fused: Report) -> None:
    conv = fused.tensor("/block1/conv/Conv_output_0")
    assert sorted(conv.fused) == ["ort", "ort:opt=extended"]
    assert set(conv.metrics) == {"ort:opt=disable", "torch"}  # compared where both sides compute it
    relu = fused.tensor("/block1/relu/Relu_output_0")
    assert relu.fused == (["ort"] if blocked(fused) else []) and "ort:opt=extended" in relu.metrics
    assert not any("error" in m for t in fused.tensors for m in t.metrics.values())
    assert fused.first_divergence["ort"] not in [t.name for t in fused.tensors if "ort" in t.fused]
    assert fused.passed and fused.exit_code == 0


def test_node_by_node_backends_tap_everything(fused: Report) -> None:
    assert fused.fusion["ref"] == {"mode": "node-by-node"}
    assert fused.fusion["torch"] == {"mode": "node-by-node"}
    assert all("torch" in t.metrics for t in fused.tensors)


def test_backends_that_hide_their_graph_say_so() -> None:
    for variant, word in (("tvm", "TVM"), ("tf:mode=graph", "grappler"), ("tf:mode=xla", "XLA"),
                          ("torch:compile=inductor", "inductor"), ("ort:ep=tensorrt", "tensorrt")):
        backend, options = backends.resolve_variant(comparator.Variant.parse(variant))
        mode, why = backend.fusion(options)
        assert mode == "unavailable" and word in why, variant


def test_a_variant_without_its_graph_is_tapped_as_all_and_said_so() -> None:
    report = comparator.compare(CNN, ["ort:opt=disable", "tvm"], tap_spec="fused")
    assert report.fusion["tvm"]["mode"] == "unavailable"
    assert all("tvm" in t.metrics for t in report.tensors)  # every tensor, as --tap all
    note = report.fusion_note("tvm")
    assert note is not None and "not available" in note and "observer effect" in note


def test_the_summary_and_the_full_table_say_fused(cli, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code, text, _ = cli("compare", CNN, "-b", "ort:opt=disable,ort:opt=extended", "--tap", "fused", "--json", out,
                        "--table", "full")
    assert code == 0
    assert "fused" in text
    assert "ort:opt=extended: tapped the graph it optimized" in " ".join(text.split())
    data = json.loads(out.read_text())
    assert data["tensors"][0]["fused"] == ["ort:opt=extended"]
    again = Report.from_dict(data)
    assert again.fusion == data["fusion"] and again.tensor("/block1/conv/Conv_output_0").fused == ["ort:opt=extended"]


def test_fused_taps_refuse_isolate_and_capture(cli, tmp_path: Path) -> None:
    code, _, err = cli("compare", CNN, "-b", "ort,ref", "--tap", "fused", "--isolate")
    assert code == 2
    assert_clean_error(err, "--isolate")
    code, _, err = cli("capture", CNN, "-b", "ort", "--tap", "fused", "-o", tmp_path / "b.icmp")
    assert code == 2
    assert_clean_error(err, "--tap fused")
    assert not (tmp_path / "b.icmp").exists()


def test_groups_by_hand() -> None:
    """A chain a -> b -> c -> d where b and c were fused (their outputs gone) and a constant-folded side node."""
    nodes = [{"id": "A", "op_type": "Conv", "domain": "", "inputs": ["x"], "outputs": ["a"], "parent": ""},
             {"id": "B", "op_type": "Add", "domain": "", "inputs": ["a"], "outputs": ["b"], "parent": ""},
             {"id": "C", "op_type": "Relu", "domain": "", "inputs": ["b"], "outputs": ["c"], "parent": ""},
             {"id": "D", "op_type": "Neg", "domain": "", "inputs": ["c"], "outputs": ["d"], "parent": ""},
             {"id": "K", "op_type": "Shape", "domain": "", "inputs": ["x"], "outputs": ["k"], "parent": ""},
             {"id": "I", "op_type": "Add", "domain": "", "inputs": ["b"], "outputs": ["i"], "parent": "If_0"}]
    optimized = [["Conv", "", "A", ["x"], ["a"]], ["Fused", "my.dom", "F", ["a"], ["t1"]],
                 ["Relu", "", "F2", ["t1"], ["c"]], ["Neg", "", "D", ["c"], ["d"]]]
    survivors = {"a", "t1", "c", "d"}
    assert fusion.groups(nodes, survivors, optimized) == [
        {"nodes": ["B", "C"], "outputs": ["c"], "ops": ["my.dom.Fused", "Relu"]},
        {"nodes": ["K"], "outputs": [], "ops": []}]


def test_tapped_copy_keeps_what_the_graph_computes(tmp_path: Path) -> None:
    """`shape` was a node's output in the model; the optimized graph holds it as a constant (with IR 3 also listed
    among the graph inputs), so it is folded, not tapped: its stored value need not be the model's."""
    shape = onnx.numpy_helper.from_array(np.array([-1, 2], np.int64), "shape")
    model = make_model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Reshape", ["y", "shape"], ["r"]),
                        helper.make_node("Neg", ["r"], ["z"])],
                       [vi("x", T.FLOAT, [2, 2]), vi("shape", T.INT64, [2])], [vi("z", T.FLOAT, [2, 2])], [shape])
    onnx.save(model, tmp_path / "opt.onnx")
    tapped, folded, nodes = fusion.tapped_copy(tmp_path / "opt.onnx", ["z", "y", "shape", "r", "gone"],
                                               {"y": T.FLOAT, "r": T.FLOAT}, tmp_path / "t.onnx")
    assert tapped == ["z", "y", "r"] and folded == ["shape"]
    assert nodes == [["Relu", "", "", ["x"], ["y"]], ["Reshape", "", "", ["y", "shape"], ["r"]],
                     ["Neg", "", "", ["r"], ["z"]]]
    written = onnx.load(tmp_path / "t.onnx")
    assert [o.name for o in written.graph.output] == ["z", "y", "r"]
    assert written.graph.output[1].type.tensor_type.elem_type == T.FLOAT


def test_a_constant_ort_rewrote_is_folded_not_compared(tmp_path: Path) -> None:
    """ORT folds a Reshape's computed shape into a constant of the same name and may write it otherwise ([0, -1]
    for [0, 6]); that constant is reported as folded, never compared as if it were the model's tensor."""
    shape = helper.make_node("Shape", ["x"], ["s"])
    take = helper.make_node("Gather", ["s", "idx"], ["n"], axis=0)
    joined = helper.make_node("Concat", ["zero", "n"], ["target"], axis=0)
    model = make_model([shape, take, joined, helper.make_node("Reshape", ["x", "target"], ["y"]),
                        helper.make_node("Relu", ["y"], ["z"])],
                       [vi("x", T.FLOAT, [1, 6])], [vi("z", T.FLOAT, [1, 6])],
                       [onnx.numpy_helper.from_array(np.array([1], np.int64), "idx"),
                        onnx.numpy_helper.from_array(np.array([0], np.int64), "zero")])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    report = comparator.compare(path, ["ref", "ort"], tap_spec="fused")
    assert report.fusion["ort"]["folded"] >= 1 and "ort" in report.tensor("target").fused
    assert not any("error" in m or not m["bit_identical"] for t in report.tensors for m in t.metrics.values())
    assert report.broken_middle == {} and report.passed


def test_structure_names_subgraph_nodes_by_their_path() -> None:
    then = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"], name="add")], "then", [],
                             [vi("t", T.FLOAT, [2])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e", T.FLOAT, [2])])
    model = make_model([helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other)],
                       [vi("c", T.BOOL, []), vi("x", T.FLOAT, [2])], [vi("y", T.FLOAT, [2])])
    assert structure.nodes(model) == [
        {"id": "if", "op_type": "If", "domain": "", "inputs": ["c"], "outputs": ["y"], "parent": ""},
        {"id": "if/else/Neg_0", "op_type": "Neg", "domain": "", "inputs": ["x"], "outputs": ["if/else/e"],
         "parent": "if"},
        {"id": "if/then/add", "op_type": "Add", "domain": "", "inputs": ["x", "x"], "outputs": ["if/then/t"],
         "parent": "if"}]  # in the order of the node's attributes
    assert base_name("Loop_2/body/x@iter=0,last") == "Loop_2/body/x"


def test_the_disk_budget_counts_the_optimized_graphs(tmp_path: Path) -> None:
    """Each ORT variant saves its optimized graph, weights included: the budget check counts them before running."""
    from comparator.run.variants import check_disk, weights as weights_of
    from comparator.graph import model as model_mod, tap

    loaded = model_mod.load(CNN)
    plan = tap.plan(loaded, "fused")
    weights = weights_of(loaded)
    assert weights == CNN.stat().st_size  # the CNN keeps its weights inline
    with pytest.raises(UsageError, match="of optimized graphs"):
        check_disk(plan, loaded, 1, 1, 1, ("untapped", "tapped"), tmp_path, 2 * weights, graphs=2 * weights)


def test_the_html_report_says_fused(fused: Report) -> None:
    from comparator.report import html

    page = html.render(fused)
    assert "fused in ort, ort:opt=extended</small>" in page  # /block1/conv/Conv_output_0's row
    assert "ort:opt=extended: tapped the graph it optimized" in page
    assert "fused away by the reference" not in page  # the reference, ref, computes every tensor
