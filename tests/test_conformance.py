"""The conformance runner: the ONNX node suite through real backends, and its comparison rule."""
from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest

from comparator.run import conformance
from comparator.variant import Variant


def suite_cases(ops: set[str]) -> list[str]:
    """Names of the installed onnx's node-suite cases whose model is one node of one of `ops`, read straight
    from onnx (1 Relu and 7 Softmax cases in onnx 1.23; other releases differ)."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return sorted(c.name for c in cases if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in ops)


def test_ort_and_ref_pass_relu_and_softmax_cases():
    wanted = suite_cases({"Relu", "Softmax"})
    if not wanted:
        pytest.skip("this onnx's node suite has no Relu or Softmax case")
    result = conformance.run(Variant.parse("ort"), ops=["Relu", "Softmax"])
    assert [c["name"] for c in result.cases] == wanted
    assert result.counts()["passed"] == len(wanted), result.cases
    assert set(result.per_op()) <= {"Relu", "Softmax"}
    assert result.to_dict()["total"] == len(wanted)
    # Shards: every n-th case from the k-th; the n of them run each case once.
    shards = [conformance.run(Variant.parse("ref"), ops=["Relu", "Softmax"], shard=(k, 2)) for k in range(2)]
    names = [c["name"] for r in shards for c in r.cases]
    assert sorted(names) == wanted and len(set(names)) == len(names)
    assert all(c["status"] == "passed" for r in shards for c in r.cases), [r.cases for r in shards]
    with pytest.raises(ValueError, match="shard"):
        conformance.run(Variant.parse("ref"), ops=["Relu"], shard=(2, 2))


def test_an_op_the_backend_lacks_is_counted_not_fatal():
    # ORT's CPU provider does not implement ImageDecoder: those cases are reported with a reason, never a crash.
    result = conformance.run(Variant.parse("ort"), ops=["ImageDecoder"])
    assert result.cases and all(c["status"] in ("unsupported", "error") for c in result.cases)
    assert all(c["detail"] for c in result.cases)


def test_check_rule():
    f = np.array([1.0, 2.0], np.float32)
    assert conformance._check(f, f.copy(), 1e-3, 1e-7) is None
    assert "dtype" in conformance._check(f, f.astype(np.float64), 1e-3, 1e-7)
    assert "shape" in conformance._check(f, f[:1], 1e-3, 1e-7)
    assert "values differ" in conformance._check(f, f + 1, 1e-3, 1e-7)
    # bfloat16: two ULPs (2**-6 relative) allowed, as onnx's own runner does; 1.0 -> 1.015625 is 2 ULPs.
    one = np.array([1.0], ml_dtypes.bfloat16)
    assert conformance._check(one, np.array([1.015625], ml_dtypes.bfloat16), 1e-3, 0) is None
    assert conformance._check(one, np.array([1.0625], ml_dtypes.bfloat16), 1e-3, 0) is not None
    assert conformance._check([f, f], [f, f.copy()], 1e-3, 1e-7) is None
    assert "sequence" in conformance._check([f, f], [f], 1e-3, 1e-7)


LIST = """# a comment
[Foo: not implemented]
test_foo_a  unsupported
test_foo_b  unsupported

[random output: passes only by chance]
test_rand   failed|passed
"""


def case(name: str, status: str, detail: str = "", op: str = "Foo") -> dict[str, str]:
    return {"name": name, "op": op, "status": status, "detail": detail}


def test_expected_list_is_read_checked_and_rewritten(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text(LIST)
    listed = conformance.read_expected(path)
    assert listed["test_foo_a"] == conformance.Expectation(("unsupported",), "Foo: not implemented")
    assert listed["test_rand"].statuses == ("failed", "passed")
    run = [case("test_foo_a", "unsupported"), case("test_foo_b", "passed"), case("test_rand", "passed"),
           case("test_bar", "failed", "y: values differ", op="Bar"), case("test_ok", "passed")]
    problems = conformance.check_expected(run, listed)
    assert len(problems) == 2, problems
    assert any(p.startswith("test_foo_b: now passes") and "remove it" in p for p in problems)
    assert any(p.startswith("test_bar: failed, expected to pass (y: values differ)") for p in problems)
    changed = conformance.check_expected([case("test_foo_a", "error", "boom")], listed)
    assert changed == ["test_foo_a: error, listed as unsupported (boom)"]

    text = conformance.format_expected(run, listed, "# header")
    path.write_text(text)
    again = conformance.read_expected(path)
    assert set(again) == {"test_foo_a", "test_rand", "test_bar"}  # test_foo_b passes now: dropped
    assert again["test_foo_a"] == listed["test_foo_a"] and again["test_rand"] == listed["test_rand"]
    todo = again["test_bar"].reason
    assert todo.startswith(conformance.TODO_REASON) and "y: values differ" in todo
    assert conformance.check_expected([case("test_bar", "failed")], again) == [
        f"test_bar: listed without a reason; replace [{again['test_bar'].reason}]"]


@pytest.mark.parametrize("text, needle", [
    ("test_a  failed\n", "no [reason]"),
    ("[r]\ntest_a  broken\n", "statuses are"),
    ("[r]\ntest_a  passed\n", "not passed alone"),
    ("[r]\ntest_a\n", "CASE  STATUS"),
    ("[r]\ntest_a  failed\ntest_a  error\n", "listed twice"),
    ("[]\n", "reason line"),
])
def test_a_malformed_expected_list_names_its_line(tmp_path, text, needle):
    path = tmp_path / "list.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(needle)):
        conformance.read_expected(path)


def test_cli_checks_a_run_against_a_list(cli, tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("[wrongly listed]\ntest_relu  failed\n")
    code, out, err = cli("conformance", "-b", "ort", "--op", "Relu", "--expected", path)
    assert code == 1, (out, err)
    assert "test_relu: now passes, listed as failed; remove it from the list" in out
    code, out, err = cli("conformance", "-b", "ort", "--op", "Relu", "--write-expected", path)
    assert code == 2 and "--write-expected lists the whole suite" in err


def test_float64_results_are_judged_rounded_to_the_case_types():
    # A float64 oracle's output is rounded to the expected type before the case's tolerances apply.
    want = np.array([1.0, 2.0], np.float32)
    got = np.array([1.0 + 2**-30, 2.0], np.float64)
    assert conformance._rounded(got, want).dtype == np.float32
    assert conformance._check(want, conformance._rounded(got, want), 0, 0) is None
    ints = np.array([1, 2], np.int64)
    assert conformance._rounded(ints, want) is ints  # only float64 results are rounded
    assert conformance._rounded(got, got.copy()) is got  # a float64 case keeps float64
    seq = conformance._rounded([got, got], [want, want])
    assert [s.dtype for s in seq] == [np.float32, np.float32]
