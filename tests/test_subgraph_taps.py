"""Tensors inside If branches and Loop bodies are catalogued under stable names, recorded by ref, torch and tf
(eager), compared, and reported as not tapped for the variants that cannot record them."""
from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

from comparator.graph import model as graph_model
from comparator.graph import tap
from conftest import const, vi

X = np.linspace(0.1, 0.6, 6, dtype=np.float32).reshape(1, 2, 3)
needs_all = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("torch", "tensorflow", "onnxruntime")),
                               reason="torch, tensorflow and onnxruntime are needed")


def if_model():
    then = helper.make_graph([helper.make_node("Exp", ["x"], ["t1"], name="then_exp"),
                              helper.make_node("Mul", ["t1", "x"], ["t"], name="then_mul")], "then", [],
                             [vi("t", T.FLOAT, [2, 3])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="else_neg")], "else", [],
                              [vi("e", T.FLOAT, [2, 3])])
    return helper.make_model(helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
         helper.make_node("Greater", ["s", "zero"], ["c"], name="gt"),
         helper.make_node("If", ["c"], ["y"], name="If_0", then_branch=then, else_branch=other),
         helper.make_node("Relu", ["y"], ["z"], name="relu")],
        "g", [vi("x", T.FLOAT, [2, 3])], [vi("z", T.FLOAT, [2, 3])], [const("zero", np.array(0, np.float32))]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def loop_model():
    """Three iterations of acc = exp(acc) / 3 (times a float32 third: against float64, a second rounding that
    shows in some element); the Loop node is unnamed (named Loop_0 by position)."""
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Exp", ["acc_in"], ["ex"], name="body_exp"),
                              helper.make_node("Mul", ["ex", "half"], ["acc_out"], name="body_mul")], "body",
                             [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("acc_in", T.FLOAT, [2, 3])],
                             [vi("cond_out", T.BOOL, []), vi("acc_out", T.FLOAT, [2, 3])])
    return helper.make_model(helper.make_graph(
        [helper.make_node("Loop", ["n", "go", "x"], ["y"], body=body)],
        "g", [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, [2, 3])],
        [const("n", np.array(3, np.int64)), const("go", np.array(True)), const("half", np.array(1 / 3, np.float32))]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


IF_INSIDE = ["If_0/else/e", "If_0/then/t1", "If_0/then/t"]
LOOP_INSIDE = [f"Loop_0/body/{t}@iter={i}" for t in ("cond_out", "ex", "acc_out") for i in ("0", "last")]


def test_the_catalogue_names_subgraph_tensors_by_where_they_live(tmp_path):
    onnx.save(if_model(), tmp_path / "if.onnx")
    onnx.save(loop_model(), tmp_path / "loop.onnx")
    m = graph_model.load(tmp_path / "if.onnx")
    assert [t.name for t in m.tensors] == ["s", "c", *IF_INSIDE, "y", "z"]
    assert {t.scope for t in m.tensors if "/" in t.name} == {"If_0/then", "If_0/else"}
    loop = graph_model.load(tmp_path / "loop.onnx")
    assert [t.name for t in loop.tensors] == [*LOOP_INSIDE, "y"]
    plan = tap.plan(m, "all")
    assert plan.inside == IF_INSIDE and "If_0/then/t" not in plan.names
    _, tapped = tap.write_copies(m, plan, tmp_path)
    proto = onnx.load(tapped)
    assert [o.name for o in proto.graph.output] == ["z", "s", "c", "y"]
    assert [p.key for p in proto.metadata_props] == ["infercmp.subgraph_taps", "infercmp.external_data_dir"]
    assert tap.plan(m, "outputs").inside == []


@needs_all
def test_if_and_loop_tensors_are_compared_inside_subgraphs(tmp_path):
    import comparator
    from comparator.report import junit, table

    onnx.save(if_model(), tmp_path / "if.onnx")
    onnx.save(loop_model(), tmp_path / "loop.onnx")
    variants = ["ref:dtype=float64", "ort", "torch", "tf", "tf:mode=graph"]
    report = comparator.compare(tmp_path / "if.onnx", variants, inputs={"x": X})
    assert [v.status for v in report.variants] == ["ok"] * 5
    names = [t.name for t in report.tensors]
    assert names == ["s", "c", "If_0/then/t1", "If_0/then/t", "y", "z"]  # the else branch did not run
    for name in ("If_0/then/t1", "If_0/then/t"):
        assert set(report.tensor(name).metrics) == {"torch", "tf"}
    # They miss the two tensors of the branch that ran (the else branch's one ran nowhere).
    assert report.untapped_subgraphs == {"ort": 2, "tf:mode=graph": 2}
    # Against float64, the then branch's float32 Exp * x rounds twice: the divergence starts inside the If.
    assert report.first_divergence["torch"].startswith("If_0/then/")
    assert not (report.first_divergence["ort"] or "").startswith("If_0/")
    data = report.to_dict()
    assert data["untapped_subgraphs"] == {"ort": 2, "tf:mode=graph": 2}
    assert type(report).from_dict(data).untapped_subgraphs == report.untapped_subgraphs
    from rich.console import Console

    out = Console(record=True, width=200)
    table.render(report, out)
    assert "ort: not tapped inside subgraphs: 2 tensors" in out.export_text()
    assert "not tapped inside subgraphs: 2 tensors" in junit.render(report)

    loop = comparator.compare(tmp_path / "loop.onnx", ["ref:dtype=float64", "ort", "torch", "tf"], inputs={"x": X})
    assert [t.name for t in loop.tensors] == [*LOOP_INSIDE, "y"]
    assert set(loop.tensor("Loop_0/body/acc_out@iter=last").metrics) == {"torch", "tf"}
    assert loop.untapped_subgraphs == {"ort": 6}
    for variant in ("torch", "tf"):
        assert loop.first_divergence[variant].startswith("Loop_0/body/"), loop.first_divergence
