"""--oracle: the two float64 executions that share no kernels check each other; and a PASS that hides a broken
middle says so."""
from __future__ import annotations

from html import escape

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

import comparator
from comparator.errors import UsageError
from comparator.measure import analysis
from comparator.measure.metrics import Tolerance
from comparator.report import html, junit, text
from comparator.report import json as json_report
from comparator.result import TensorReport
from conftest import const, make_model, vi

N = 4096


def ill_conditioned() -> tuple[object, dict[str, np.ndarray]]:
    """y = ReduceSum(x) over +1e17, -1e17 and small values interleaved: in float64 the large terms swallow the
    small ones, so the result depends on the summation order. NumPy (ref) and torch sum in different orders."""
    rng = np.random.default_rng(0)
    x = np.empty(N, np.float32)
    x[0::4], x[2::4], x[1::2] = 1e17, -1e17, rng.standard_normal(N // 2)
    model = make_model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                        helper.make_node("Neg", ["x"], ["neg"], name="neg"),
                        helper.make_node("ReduceSum", ["neg", "axes"], ["s"], keepdims=1, name="sum"),
                        helper.make_node("Add", ["s", "one"], ["y"], name="add")],
                       [vi("x", T.FLOAT, [1, N])], [vi("y", T.FLOAT, [1, 1]), vi("r", T.FLOAT, [1, N])],
                       [const("axes", np.array([1], np.int64)), const("one", np.float32(1))])
    return model, {"x": x[None]}


def test_the_oracles_flag_where_they_disagree(tmp_path):
    model, feeds = ill_conditioned()
    onnx.save(model, str(tmp_path / "m.onnx"))
    report = comparator.compare(tmp_path / "m.onnx", ["ort"], feeds, oracle=True)
    assert report.reference == "ref:dtype=float64"
    assert [v.name for v in report.variants] == ["ref:dtype=float64", "ort", "torch:dtype=float64"]
    assert report.oracle["variants"] == ["ref:dtype=float64", "torch:dtype=float64"]
    flagged = [d["tensor"] for d in report.oracle["disagreements"]]
    assert flagged == ["s", "y"]  # the sum and what follows; the Relu and Neg agree bit for bit
    first = report.oracle["disagreements"][0]
    assert first["node"] == "sum" and first["op_type"] == "ReduceSum" and first["snr_db"] < analysis.ORACLE_SNR_DB
    lines = text.oracle_lines(report)
    assert lines[0].startswith("oracle disagreement at node sum (ReduceSum): ref:dtype=float64 and "
                               "torch:dtype=float64 differ on s (SNR ")
    assert "oracle disagreement at node sum (ReduceSum)" in html.render(report)
    assert "oracle disagreement at node sum (ReduceSum)" in junit.render(report)
    # ort sums in float32: far off here, so a FAIL, and one judged against an oracle in doubt.
    assert text.verdict_text(report) == ("FAIL: final outputs beyond tolerance, but the float64 oracles "
                                            "disagree from s on")
    json_report.write(report, tmp_path / "r.json")
    assert json_report.read(tmp_path / "r.json").oracle == report.oracle


def test_the_oracles_agree_on_a_well_conditioned_model(models):
    report = comparator.compare(models.cnn, ["ort"], oracle=True)
    assert report.oracle == {"variants": ["ref:dtype=float64", "torch:dtype=float64"], "disagreements": []}
    assert text.oracle_lines(report) == ["oracle: ref:dtype=float64 and torch:dtype=float64 agree on every "
                                            "tensor to float64 noise"]


def test_oracle_and_another_reference_are_refused(models):
    with pytest.raises(UsageError, match="--oracle compares every variant with ref:dtype=float64"):
        comparator.compare(models.cnn, ["ort"], reference="ort", oracle=True)


def metrics(max_abs: float, max_rel: float, snr: float = 100.0, nan: int = 0) -> dict:
    return {"bit_identical": max_abs == 0, "identical_fraction": 0.0, "max_abs": max_abs, "mean_abs": max_abs,
            "max_rel": max_rel, "max_ulp": 1, "p99_ulp": 1, "cosine": 1.0, "snr_db": snr, "nan_mismatch": nan,
            "inf_mismatch": 0, "violations": 0, "count": 4}


def tensor(name: str, m: dict, output: bool = False) -> TensorReport:
    return TensorReport(name, "Conv", f"node_{name}", 0, [4], "float32", output, metrics={"v": m})


def test_broken_middle_by_hand():
    tol = {"atol": 1e-5, "rtol": 1e-5, "max_ulp": None}
    # 1,000x the tolerance: max_abs > 1e-2 and max_rel > 1e-2. a: abs only; b: rel only; c and d: both.
    tensors = [tensor("a", metrics(0.5, 1e-3)), tensor("b", metrics(1e-3, 0.5)), tensor("c", metrics(0.3, 0.02)),
               tensor("d", metrics(6.0, 2.0)), tensor("out", metrics(1e-6, 1e-6), output=True)]
    assert analysis.broken_middle(tensors, "v", tol) == {"count": 2, "first": "c", "op_type": "Conv",
                                                         "max_abs": 0.3, "max_rel": 0.02}
    assert analysis.broken_middle(tensors[:2], "v", tol) == {}
    assert analysis.broken_middle(tensors, "other", tol) == {}


def test_a_broken_middle_needs_one_element_far_beyond_its_own_tolerance(tmp_path):
    """max_abs and max_rel are maxima over different elements: a tensor whose largest error sits on a large value
    and whose largest relative error on a value near zero is ordinary rounding, each element well within 1,000x
    its own tolerance (atol + rtol * |ref|). Only an element beyond that is a broken middle."""
    from comparator.measure import facts, metrics
    from comparator.run.record import VariantRun
    from comparator.variant import Variant

    tol = {"atol": 1e-5, "rtol": 1e-5, "max_ulp": None}
    ref = np.array([[1000.0, 1e-4, 1.0, 2.0]], np.float32)
    values = {"ref": ref,
              # 0.011 on 1000 (its bound at 1,000x: 0.01 + 0.01 * 1000 = 10.01); 3e-4 on 1e-4 (bound 0.010001)
              "spread": ref + np.array([[0.011, 3e-4, 0.0, 0.0]], np.float32),
              "far": ref + np.array([[0.0, 0.0, 0.5, 0.0]], np.float32)}  # 0.5 on 1.0: bound 0.02
    runs = {}
    for name, value in values.items():
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "t.npy", value)
        runs[name] = VariantRun(Variant.parse("ort"), tmp_path / name, status="ok",
                                tensors={"tapped": {"t": {"file": "t.npy", "dtype": "float32", "shape": [1, 4]}}})
    for name, expected in (("spread", {}), ("far", {"count": 1, "first": "t", "op_type": "Conv", "max_abs": 0.5,
                                                       "max_rel": 0.5})):
        m = metrics.compare(ref, values[name], metrics.Tolerance(1e-5, 1e-5))
        assert m["max_abs"] > 1e-2 and m["max_rel"] > 1e-2  # both maxima beyond 1,000x: a candidate
        t = TensorReport("t", "Conv", "node_t", 0, [4], "float32", False, metrics={name: m})

        def element_far(tensor, atol, rtol, name=name):
            return facts.far_apart(runs["ref"], runs[name], tensor.name, "tapped", atol, rtol)

        found = analysis.broken_middle([t], name, tol, element_far)
        assert found == ({} if not expected else {**expected, "max_abs": m["max_abs"], "max_rel": m["max_rel"]})
        assert analysis.broken_middle([t], name, tol) != {}  # the maxima alone would have said so


def test_oracle_disagreements_by_hand():
    # SNR 250 dB is float64 noise; 150 dB is not; a NaN where the other has a number always is.
    tensors = [TensorReport(n, "Add", n, 0, [4], "float64", False, metrics={"torch:dtype=float64": m})
               for n, m in (("a", metrics(1e-15, 1e-15, 250.0)), ("b", metrics(1e-8, 1e-8, 150.0)),
                            ("c", metrics(0.0, 0.0, float("inf"), nan=1)))]
    assert [d["tensor"] for d in analysis.oracle_disagreements(tensors, "ref:dtype=float64")] == ["b", "c"]
    assert analysis.oracle_disagreements(tensors, "ort") == []  # the reference is not an oracle


def test_a_pass_with_a_broken_middle_says_so(models):
    report = comparator.compare(models.cnn, ["ort", "ort:opt=disable"])
    assert report.broken_middle == {}  # float32 rounding differences stay far below 1,000x the tolerance
    report.broken_middle = {"ort:opt=disable": {"count": 97, "first": "bn1", "op_type": "BatchNormalization",
                                                "max_abs": 6.0, "max_rel": 2.0}}
    verdict = text.verdict_text(report)
    assert verdict == ("PASS: final outputs within tolerance, but ort:opt=disable's middle deviates by more than "
                       "1,000x the tolerance from bn1")
    assert text.broken_lines(report) == [
        "ort:opt=disable: final outputs within tolerance, but 97 intermediate tensor(s) deviate by more than "
        "1,000x the tolerance, the first bn1 (BatchNormalization): max abs 6, max rel 2"]
    assert escape(verdict) in html.render(report)
    assert "97 intermediate tensor(s)" in junit.render(report)


def distances(names, ulp_from_oracle, abs_from_oracle, oracle="ref:dtype=float64"):
    """A pairwise entry whose only figures that matter are each variant's distance from `oracle` (analysis.pairwise's
    shape: a symmetric matrix over the variants)."""
    everyone = [*names, oracle]
    n = len(everyone)
    ulp = [[0] * n for _ in range(n)]
    absd = [[0.0] * n for _ in range(n)]
    for i, name in enumerate(names):
        ulp[i][n - 1] = ulp[n - 1][i] = ulp_from_oracle[name]
        absd[i][n - 1] = absd[n - 1][i] = abs_from_oracle[name]
    return {"variants": everyone, "max_ulp": ulp, "max_abs": absd}


def test_oracle_distance_by_hand():
    # ort is 1,000x further than tvm in ULPs and 10x (exactly: the bound is inclusive) in abs; torch:dtype=float64
    # is float64 itself, so it is no yardstick for a float32 reference.
    pw = distances(["ort", "tvm", "torch:dtype=float64"], {"ort": 8000, "tvm": 8, "torch:dtype=float64": 0},
                   {"ort": 1e-6, "tvm": 1e-7, "torch:dtype=float64": 1e-17})
    found = analysis.oracle_distance(pw, "ort", ["torch:dtype=float64"])
    assert found == {"oracle": "ref:dtype=float64", "max_ulp": {"ort": 8000, "tvm": 8, "torch:dtype=float64": 0},
                     "max_abs": {"ort": 1e-6, "tvm": 1e-7, "torch:dtype=float64": 1e-17},
                     "alone": ["max_ulp", "max_abs"], "factor": 10}
    # A float32 variant 9x closer than the reference in abs keeps it from standing alone there; one that could not
    # be compared with the oracle (None, inf) keeps it from standing alone in either measure.
    pw = distances(["ort", "tvm"], {"ort": 8000, "tvm": 8}, {"ort": 9e-7, "tvm": 1e-7})
    assert analysis.oracle_distance(pw, "ort", [])["alone"] == ["max_ulp"]
    # Furthest in ULPs by 1e8 (0 where exact math gives 1.6e-9) but the closest in abs: not alone in either.
    pw = distances(["ort", "torch", "tf"], {"ort": 820_000_000, "torch": 854, "tf": 2_300_000},
                   {"ort": 1.7e-7, "torch": 1.4e-6, "tf": 1.7e-6})
    assert analysis.oracle_distance(pw, "ort", [])["alone"] == []
    pw = distances(["ort", "tvm", "tf"], {"ort": 8000, "tvm": 8, "tf": None}, {"ort": 1e-6, "tvm": 0.0, "tf": np.inf})
    assert analysis.oracle_distance(pw, "ort", [])["alone"] == []
    # Bit-identical to the oracle, or no float32 variant beside it: nothing to say; the distances still are.
    pw = distances(["ort", "tvm"], {"ort": 0, "tvm": 0}, {"ort": 0.0, "tvm": 0.0})
    assert analysis.oracle_distance(pw, "ort", [])["alone"] == []
    pw = distances(["ort", "torch:dtype=float64"], {"ort": 9, "torch:dtype=float64": 0},
                   {"ort": 1e-7, "torch:dtype=float64": 0.0})
    assert analysis.oracle_distance(pw, "ort", ["torch:dtype=float64"])["alone"] == []
    # The second oracle serves when the first did not run; a float64 reference, or no oracle, gives nothing.
    pw = distances(["ort", "tvm"], {"ort": 80, "tvm": 8}, {"ort": 1e-6, "tvm": 1e-7}, oracle="torch:dtype=float64")
    assert analysis.oracle_distance(pw, "ort", ["torch:dtype=float64"])["oracle"] == "torch:dtype=float64"
    assert analysis.oracle_distance(pw, "torch:dtype=float64", ["torch:dtype=float64"]) == {}
    assert analysis.oracle_distance({"variants": ["ort", "tvm"], "max_ulp": [[0, 1], [1, 0]],
                                     "max_abs": [[0.0, 1.0], [1.0, 0.0]]}, "ort", []) == {}


def test_a_reference_far_from_the_oracle_is_named(tmp_path):
    # ONNX Runtime's Sigmoid (MLAS's logistic) keeps an absolute error near 1e-7 in the far negative tail, where the
    # true values are far smaller: millions of ULPs. torch rounds there correctly, as the float64 oracle shows.
    x = np.linspace(-30, 4, 256, dtype=np.float32)[None]
    onnx.save(make_model([helper.make_node("Sigmoid", ["x"], ["y"], name="sigmoid")],
                         [vi("x", T.FLOAT, [1, 256])], [vi("y", T.FLOAT, [1, 256])]), str(tmp_path / "m.onnx"))
    report = comparator.compare(tmp_path / "m.onnx", ["ort", "torch", "ref:dtype=float64"], {"x": x})
    d = report.oracle_distance
    assert d["oracle"] == "ref:dtype=float64" and "max_ulp" in d["alone"]
    assert d["max_ulp"]["ort"] >= 10 * d["max_ulp"]["torch"] > 0
    # What the claim says: torch's difference from the reference is ort's own error, to within 10%.
    theirs = report.tensors[-1].metrics["torch"]["max_ulp"]
    assert 0.9 * d["max_ulp"]["ort"] <= theirs <= 1.1 * d["max_ulp"]["ort"]
    assert text.verdict_text(report) == ("PASS: final outputs within tolerance, but the reference ort is the "
                                         "variant furthest from the float64 oracle")
    first, second = text.distance_lines(report)
    assert first.startswith("final outputs from the float64 oracle ref:dtype=float64: ort (reference) max ULP ")
    assert "; torch max ULP " in first
    assert second.startswith("the reference ort is at least 10x further from the float64 oracle than every other "
                             "float32 variant at the final outputs (max ULP ")
    assert second.endswith("--reference ref:dtype=float64 measures every variant against exact math")
    assert [doubt for line, doubt in text.doubt_lines(report)] == [False, True]
    assert escape(second) in html.render(report) and second in junit.render(report)
    json_report.write(report, tmp_path / "r.json")
    assert json_report.read(tmp_path / "r.json").oracle_distance == d
    # Judged against the oracle itself, there is nothing to say about the reference.
    assert comparator.compare(tmp_path / "m.onnx", ["ort", "torch"], {"x": x}, oracle=True).oracle_distance == {}


def test_variants_that_fail_closer_to_the_oracle_than_the_reference_say_so(tmp_path):
    x = np.linspace(-30, 4, 256, dtype=np.float32)[None]
    onnx.save(make_model([helper.make_node("Sigmoid", ["x"], ["y"], name="sigmoid")],
                         [vi("x", T.FLOAT, [1, 256])], [vi("y", T.FLOAT, [1, 256])]), str(tmp_path / "m.onnx"))
    tight = Tolerance(atol=1e-9, rtol=0.0)  # every variant fails against every other
    report = comparator.compare(tmp_path / "m.onnx", ["ort", "torch", "ref:dtype=float64"], {"x": x},
                                tolerance=tight)
    far = report.oracle_distance["max_abs"]
    assert report.outputs_beyond("torch") and far["torch"] < far["ort"]
    assert text.closer_text(report, "torch") == (f"closer to the float64 oracle than the reference (max abs "
                                                 f"{text.sci_text(far['torch'])} against {text.sci_text(far['ort'])})")
    assert text.closer_text(report, "ref:dtype=float64") == "the reference's own error (this is the float64 oracle)"
    assert text.verdict_text(report) == ("FAIL: final outputs beyond tolerance, but the reference ort is the variant "
                                         "furthest from the float64 oracle; each variant that fails is closer to the "
                                         "float64 oracle than the reference ort")
    assert text.closer_text(report, "torch") in junit.render(report)
    # Where the oracle alone fails, the reference is beyond tolerance from exact math by itself.
    report = comparator.compare(tmp_path / "m.onnx", ["ort", "ort:threads=1", "ref:dtype=float64"], {"x": x},
                                tolerance=tight)
    assert not report.outputs_beyond("ort:threads=1") and report.outputs_beyond("ref:dtype=float64")
    assert text.verdict_text(report) == ("FAIL: final outputs beyond tolerance, but the reference ort is itself "
                                         "beyond tolerance from the float64 oracle")
    # With torch as the reference, ort fails further from the oracle than torch: no doubt about the reference.
    report = comparator.compare(tmp_path / "m.onnx", ["torch", "ort", "ref:dtype=float64"], {"x": x},
                                tolerance=tight)
    assert report.outputs_beyond("ort") and text.closer_text(report, "ort") is None
    assert text.verdict_text(report) == "FAIL: final outputs beyond tolerance"


def test_a_reference_as_close_to_the_oracle_as_the_others_is_not_named(models):
    report = comparator.compare(models.cnn, ["ort", "ort:opt=disable", "ref:dtype=float64"])
    d = report.oracle_distance
    assert set(d["max_ulp"]) == {"ort", "ort:opt=disable"} and d["alone"] == []
    assert text.verdict_text(report) == "PASS: final outputs within tolerance"
    assert len(text.distance_lines(report)) == 1


def test_a_diff_of_bundles_measures_every_run_from_an_oracle_run_in_one_of_them(tmp_path):
    # Two captures, as on two machines: one holds ort and the float64 oracle, the other torch.
    from comparator.gate import check
    from test_bundle import run_cli

    x = np.linspace(-30, 4, 256, dtype=np.float32)[None]
    onnx.save(make_model([helper.make_node("Sigmoid", ["x"], ["y"], name="sigmoid")],
                         [vi("x", T.FLOAT, [1, 256])], [vi("y", T.FLOAT, [1, 256])]), str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "x.npz", x=x)
    for name, variants in (("a", "ort,ref:dtype=float64"), ("b", "torch")):
        code, _, err = run_cli("capture", tmp_path / "m.onnx", "-b", variants, "--inputs", tmp_path / "x.npz",
                               "-o", tmp_path / f"{name}.icmp")
        assert code == 0, err
    report = check.diff([tmp_path / "a.icmp", tmp_path / "b.icmp"])
    d = report.oracle_distance
    assert report.reference == "ort@a" and d["oracle"] == "ref:dtype=float64@a"
    assert set(d["max_ulp"]) == {"ort@a", "torch@b"} and "max_ulp" in d["alone"]
    assert text.verdict_text(report).endswith("but the reference ort@a is the variant furthest from the float64 oracle")


def test_dead_ends_by_hand():
    from comparator.graph import structure

    # the If's branches read outer tensors by name: `b` is read only there
    then = helper.make_graph([helper.make_node("Add", ["a", "b"], ["t"])], "then", [], [vi("t", T.FLOAT, [1])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e", T.FLOAT, [1])])
    nodes = [helper.make_node("Dropout", ["x"], ["a", "mask"]),  # mask: read by Relu alone
             helper.make_node("Relu", ["mask"], ["r"]),  # r: read by no node, so r and mask are dead ends
             helper.make_node("Abs", ["x"], ["b"]),
             helper.make_node("Sigmoid", ["a"], ["c"]),
             helper.make_node("Greater", ["c", "x"], ["g"]),
             helper.make_node("If", ["g"], ["y"], then_branch=then, else_branch=other)]
    model = make_model(nodes, [vi("x", T.FLOAT, [1])], [vi("y", T.FLOAT, [1])], opset=9)
    found = structure.nodes(model)
    assert structure.dead_ends(found, ["y"]) == {"mask", "r"}
    assert structure.dead_ends(found, ["y", "r"]) == set()  # r an output too: mask feeds it
    assert structure.dead_ends([], ["y"]) == set()  # a report without its graph: nothing is known dead


def dropout_mask(path):
    """y = Relu(Dropout(x)), the Dropout's mask (opset 9, float) read by no node: onnxruntime's kernel of that version
    fills it with zeros, onnx's reference and tract with ones (as Dropout-12 specifies for inference)."""
    model = make_model([helper.make_node("Dropout", ["x"], ["d", "mask"]), helper.make_node("Relu", ["d"], ["y"])],
                       [vi("x", T.FLOAT, [1, 8])], [vi("y", T.FLOAT, [1, 8])], opset=9)
    onnx.save(model, str(path))
    return path


def test_a_dead_end_far_beyond_the_tolerance_is_said_and_casts_no_doubt(tmp_path):
    report = comparator.compare(dropout_mask(tmp_path / "m.onnx"), ["ref", "ort"])
    assert report.passed and report.broken_middle == {}
    assert report.dead_ends == {"ort": {"count": 1, "first": "mask", "op_type": "Dropout", "max_abs": 1.0,
                                        "max_rel": 1.0}}
    assert text.verdict_text(report) == "PASS: final outputs within tolerance"  # no "but"
    line = ("ort: 1 tensor(s) that no final output is computed from deviate by more than 1,000x the tolerance, the "
            "first mask (Dropout): max abs 1, max rel 1; they cannot change the outputs")
    assert text.dead_end_lines(report) == [line] and (line, False) in text.doubt_lines(report)
    assert "1 tensor(s) that no final output is computed from" in junit.render(report)
    page = html.render(report)  # among the findings, not the doubts
    assert "<h3>Doubts</h3>" not in page and f"<h3>Findings</h3><ul><li>{escape(line)}</li></ul>" in page
    json_report.write(report, tmp_path / "r.json")
    assert json_report.read(tmp_path / "r.json").dead_ends == report.dead_ends
