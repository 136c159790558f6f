"""Gate verdicts (gate/verdict.py): a policy applied to hand-built reports and facts. No backend runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from comparator.gate import policy as policy_mod
from comparator.gate.verdict import EXIT_FAILED, EXIT_OK, EXIT_REGRESSION, GateResult, classifiers, evaluate
from comparator.graph.model import TensorInfo
from comparator.measure.facts import Facts, OutputFacts, RunFacts
from comparator.result import Report, TensorReport, VariantReport
from comparator.run.record import VariantRun
from comparator.variant import Variant

FLOAT = 1  # onnx TensorProto.FLOAT
H = TensorInfo("h", "Relu", "n0", 0, (4,), FLOAT)  # an intermediate tensor
Y = TensorInfo("y", "Add", "n1", 0, (4,), FLOAT, is_output=True)
P = TensorInfo("p", "Gemm", "n2", 0, (4, 3), FLOAT, is_output=True)  # a classifier: 4 rows, 3 classes
INFOS = {t.name: t for t in (H, Y, P)}
NAMES = ["ref", "ort", "ort:opt=disable"]


def m(violations: int = 0, count: int = 4, max_abs: float = 0.0, max_ulp: int = 0, cosine: float = 1.0) -> dict:
    return {"bit_identical": max_ulp == 0, "violations": violations, "count": count, "max_abs": max_abs,
            "max_rel": max_abs, "max_ulp": max_ulp, "cosine": cosine}


def report(metrics: dict[str, dict[str, dict]], flips: dict[str, int] | None = None,
           status: dict[str, str] | None = None) -> Report:
    """metrics: tensor -> variant -> metrics; flips: variant -> rows of p that change their top-1 class (of 4)."""
    status = status or {}
    tensors = [TensorReport(t.name, t.op_type, t.node, t.index, list(t.shape or ()), "float32", t.is_output,
                            metrics=metrics.get(t.name, {})) for t in (H, Y, P)]
    r = Report({}, "ref", {}, [VariantReport(n, n.split(":")[0], {}, status.get(n, "ok")) for n in NAMES], tensors)
    for name, n in (flips or {}).items():
        r.label_flips[name] = {"p": {"rows": 4, "agreement": (4 - n) / 4, "flip_count": n, "flips": []}}
    return r


def facts(top1: dict[str, list[int]] | None = None, status: dict[str, str] | None = None) -> Facts:
    """top1: variant -> top-1 class of p's 4 rows (one sample)."""
    runs = {}
    for name in NAMES:
        run = VariantRun(Variant.parse(name), Path("."), status=(status or {}).get(name, "ok"), error="boom")
        outputs = {}
        if top1 and name in top1:
            outputs["p"] = OutputFacts((1, 4, 3), np.dtype(np.float32), top1=np.array([top1[name]]))
        runs[name] = RunFacts(run, outputs)
    return Facts("ref", runs)


def verdict(rep: Report, fx: Facts, pol: policy_mod.Policy | None = None, labels: np.ndarray | None = None,
            ) -> tuple[dict[str, Any], GateResult]:
    found = evaluate(rep, fx, pol or policy_mod.Policy(), INFOS, labels, classifiers(list(INFOS.values())))
    result = GateResult("variants", {}, {}, {}, [rep], verdicts=found).finish()
    return found, result


def rules(v: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(f["rule"], f["tensor"]) for f in v["findings"]]


def test_the_classifier_outputs_are_the_float_n_by_c_outputs():
    assert classifiers([H, Y, P, TensorInfo("q", "Gemm", "n3", 0, (4, 1), FLOAT, True),
                        TensorInfo("i", "ArgMax", "n4", 0, (4, 3), 7, True)]) == ["p"]


def test_everything_within_tolerance_passes():
    found, result = verdict(report({"y": {"ort": m(max_ulp=1, max_abs=1e-7), "ort:opt=disable": m()}}), facts())
    assert {n: v["status"] for n, v in found.items()} == {"ort": "pass", "ort:opt=disable": "pass"}
    assert found["ort"]["worst"] == {"tensor": "y", "violations": 0, "count": 4, "max_abs": 1e-7, "max_ulp": 1,
                                     "cosine": 1.0, "gated": True}
    # nothing differs at all: no worst tensor
    assert found["ort:opt=disable"]["worst"] is None
    assert (result.passed, result.exit_code) == (True, EXIT_OK)


def test_a_final_output_beyond_tolerance_is_a_regression():
    found, result = verdict(report({"y": {"ort": m(violations=3, max_abs=0.1), "ort:opt=disable": m()}}), facts())
    assert rules(found["ort"]) == [("tolerance", "y")] and found["ort"]["status"] == "fail"
    assert "3 of 4 elements beyond atol 1e-05 rtol 1e-05" in found["ort"]["findings"][0]["message"]
    assert (result.passed, result.exit_code) == (False, EXIT_REGRESSION)


def test_intermediate_tensors_gate_only_where_a_rule_names_them():
    rep = report({"h": {"ort": m(violations=4, max_abs=1.0)}, "y": {"ort": m()}})
    found, result = verdict(rep, facts())
    # h is the worst tensor (4 of 4 beyond), but no rule names it: reported, not gated
    assert found["ort"]["status"] == "pass" and found["ort"]["worst"]["tensor"] == "h"
    assert found["ort"]["worst"]["gated"] is False and result.exit_code == EXIT_OK
    pol = policy_mod.parse('[tensors.h]\natol = 0.5\n')
    found, result = verdict(rep, facts(), pol)
    assert rules(found["ort"]) == [("tolerance", "h")] and found["ort"]["worst"]["gated"] is True
    assert result.exit_code == EXIT_REGRESSION


def test_cosine_floor_and_comparison_errors():
    pol = policy_mod.parse("[outputs.y]\ncosine = 0.9999\n")
    rep = report({"y": {"ort": m(cosine=0.999), "ort:opt=disable": {"error": "not produced by this variant"}}})
    found, _ = verdict(rep, facts(), pol)
    # 0.999 < 0.9999: below the floor though every element is within tolerance
    assert rules(found["ort"]) == [("cosine", "y")]
    assert rules(found["ort:opt=disable"]) == [("compare", "y")]
    assert found["ort:opt=disable"]["worst"] == {"tensor": "y", "error": "not produced by this variant",
                                                 "gated": True}


def test_a_variant_that_did_not_run_is_an_error():
    found, result = verdict(report({}, status={"ort": "crashed"}), facts(status={"ort": "crashed"}))
    assert found["ort"]["status"] == "error" and rules(found["ort"]) == [("run", None)]
    assert found["ort"]["findings"][0]["message"] == "ort crashed: boom"
    assert result.exit_code == EXIT_FAILED
    # a failed reference makes every variant an error
    found, _ = verdict(report({}, status={"ref": "timeout"}), facts(status={"ref": "timeout"}))
    assert all(v["status"] == "error" for v in found.values())
    assert found["ort"]["findings"][0]["message"] == "reference ref timeout: boom"


def test_only_required_variants_decide():
    rep = report({"y": {"ort": m(), "ort:opt=disable": m(violations=1)}})
    pol = policy_mod.parse('[variants]\nrequire = ["ort"]\n')
    found, result = verdict(rep, facts(), pol)
    assert found["ort:opt=disable"]["status"] == "fail" and found["ort:opt=disable"]["required"] is False
    assert (result.passed, result.exit_code) == (True, EXIT_OK)
    assert result.lines()[-1] == "GATE PASS: 1 of 1 required variant(s) pass (exit 0)"


def test_label_flip_budget():
    pol = policy_mod.parse("[labels]\nmax_flips = 1\n")
    found, result = verdict(report({}, flips={"ort": 2, "ort:opt=disable": 1}), facts(), pol)
    # 2 flips > budget 1; 1 flip is within it
    assert rules(found["ort"]) == [("flips", "p")] and found["ort:opt=disable"]["status"] == "pass"
    assert found["ort"]["labels"] == {"p": {"rows": 4, "flips": 2, "agreement": 0.5}}
    assert result.exit_code == EXIT_REGRESSION


def test_agreement_without_labels_accuracy_with_them():
    pol = policy_mod.parse("[labels]\nmin_agreement = 0.9\n")
    top1 = {"ref": [0, 1, 2, 1], "ort": [0, 1, 1, 1], "ort:opt=disable": [0, 1, 2, 2]}
    rep = report({}, flips={"ort": 1, "ort:opt=disable": 1})
    # Without labels: agreement 3/4 = 0.75 < 0.9 for both.
    found, _ = verdict(rep, facts(top1), pol)
    assert rules(found["ort"]) == rules(found["ort:opt=disable"]) == [("agreement", "p")]
    # With labels [0, 1, 2, 2]: the reference scores 3/4; ort 2/4 < 0.9 x 0.75 = 0.675 fails; ort:opt=disable
    # scores 4/4 and passes although it disagrees with the reference on one row.
    found, _ = verdict(rep, facts(top1), pol, labels=np.array([0, 1, 2, 2]))
    assert found["ort"]["labels"]["p"] == {"rows": 4, "flips": 1, "agreement": 0.75, "accuracy_reference": 0.75,
                                           "accuracy_candidate": 0.5}
    assert rules(found["ort"]) == [("accuracy", "p")] and found["ort:opt=disable"]["status"] == "pass"
    # Labels that do not fit the rows: not scored, agreement used, and the verdict says so.
    found, _ = verdict(rep, facts(top1), pol, labels=np.array([0, 1, 2]))
    assert rules(found["ort"]) == [("agreement", "p")]
    assert found["ort"]["labels"]["p"]["note"].startswith("3 labels for 4 rows of p")
