"""The JUnit XML report: one testsuite, one testcase per variant, errors for variants that could not run,
failures listing the final outputs beyond tolerance, counts that add up, and XML that parses back."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import comparator
from comparator.measure.metrics import Tolerance
from comparator.report import junit
from comparator.result import Report, TensorReport, VariantReport
from conftest import missing_provider

MISSING, PROVIDER = missing_provider()


@pytest.fixture(scope="module")
def real(models) -> Report:
    """Zero tolerance, so the float64 oracle's rounding differences fail; one variant's provider is missing."""
    return comparator.compare(models.cnn, ["ort", "ort:opt=disable", "ref:dtype=float64", MISSING],
                              tolerance=Tolerance(atol=0.0, rtol=0.0))


def parse(report: Report) -> tuple[ET.Element, dict[str, ET.Element]]:
    root = ET.fromstring(junit.render(report).encode("utf-8"))
    return root, {case.get("name"): case for case in root.iter("testcase")}


def beyond(report: Report, variant: str) -> list[str]:
    return [t.name for t in report.tensors if t.is_output and variant in t.metrics
            and ("error" in t.metrics[variant] or t.metrics[variant]["violations"] > 0)]


def test_one_suite_one_case_per_variant(real: Report) -> None:
    root, cases = parse(real)
    assert root.tag == "testsuite" and root.get("name") == "infercmp"
    assert list(cases) == [v.name for v in real.variants]
    assert {c.get("classname") for c in cases.values()} == {"cnn.onnx"}
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["reference"] == "ort" and props["tolerance"] == "atol 0, rtol 0" and props["exit_code"] == "3"


def test_counts_match_the_cases(real: Report) -> None:
    root, cases = parse(real)
    failed = [n for n, c in cases.items() if c.find("failure") is not None]
    errored = [n for n, c in cases.items() if c.find("error") is not None]
    assert int(root.get("tests")) == len(cases) == 4
    assert int(root.get("failures")) == len(failed) and int(root.get("errors")) == len(errored)
    assert int(root.get("skipped")) == 0
    # The verdicts come from the report: failures are exactly the variants with final outputs beyond tolerance.
    assert failed == [v.name for v in real.variants if v.status == "ok" and beyond(real, v.name)]
    assert errored == [v.name for v in real.variants if v.status != "ok"]
    assert math.isclose(float(root.get("time")), sum(v.wall_s for v in real.variants), abs_tol=0.01)


def test_reference_passes(real: Report) -> None:
    _, cases = parse(real)
    ref = cases["ort"]
    assert ref.find("failure") is None and ref.find("error") is None and ref.find("skipped") is None
    assert "reference variant" in ref.findtext("system-out")


def test_beyond_tolerance_is_a_failure_listing_outputs(real: Report) -> None:
    assert beyond(real, "ref:dtype=float64") == ["probs"]  # float64 vs float32 with atol = rtol = 0
    _, cases = parse(real)
    failure = cases["ref:dtype=float64"].find("failure")
    assert failure is not None and "1 final output(s) beyond tolerance" in failure.get("message")
    m = real.tensor("probs").metrics["ref:dtype=float64"]
    line = failure.text.splitlines()[0]
    assert line.startswith("probs: ") and f"{m['violations']:,} of {m['count']:,}" in line
    assert "max_abs" in line and f"max_ulp {m['max_ulp']:,}" in line
    assert "first divergence:" in cases["ref:dtype=float64"].findtext("system-out")


def test_variant_that_cannot_run_is_an_error(real: Report) -> None:
    v = real.variant(MISSING)
    _, cases = parse(real)
    error = cases[MISSING].find("error")
    assert error is not None and error.get("type") == v.status and error.get("message") == v.error
    assert PROVIDER in error.text and f"hint: {v.hint}" in error.text
    assert cases[MISSING].find("failure") is None


def test_write_round_trips(real: Report, tmp_path: Path) -> None:
    path = tmp_path / "out" / "junit.xml"
    junit.write(real, path)
    assert ET.parse(path).getroot().get("tests") == "4"
    assert [p.name for p in path.parent.iterdir()] == ["junit.xml"]


def hand_built(ref_status: str = "ok") -> Report:
    ok = {"bit_identical": True, "identical_fraction": 1.0, "max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0,
          "max_ulp": 0, "p99_ulp": 0, "cosine": 1.0, "snr_db": math.inf, "nan_mismatch": 0, "inf_mismatch": 0,
          "count": 4, "violations": 0, "ulp_dtype": "float32"}
    bad = dict(ok, bit_identical=False, max_abs=math.nan, max_ulp=12, violations=3, nan_mismatch=1)
    out = TensorReport("y<&>\"", "Add", "add", 0, [4], "float32", True,
                       metrics={"pass\"": ok, "fail<&>": bad, "shape": {"error": "shape (4,) != (5,)"}})
    variants = [VariantReport("ref", "ref", {}, ref_status, error=None if ref_status == "ok" else "boom"),
                VariantReport("pass\"", "ort", {}, "ok"), VariantReport("fail<&>", "ort", {}, "ok"),
                VariantReport("shape", "ort", {}, "ok"),
                VariantReport("crash", "ort", {}, "crashed", error="worker died (signal 11)", hint="see stderr",
                              stderr_tail="\x1b[31mSegmentation fault\x1b[0m\x00 <core & dump>")]
    return Report(model={"path": "/m/a&b.onnx"}, reference="ref", tolerance={"atol": 1e-5, "rtol": 0.0,
                  "max_ulp": 4}, variants=variants, tensors=[out] if ref_status == "ok" else [], exit_code=3)


def test_hand_built_edge_cases() -> None:
    root, cases = parse(hand_built())
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("5", "2", "1", "0")
    assert {c.get("classname") for c in cases.values()} == {"a&b.onnx"}
    assert cases["pass\""].find("failure") is None and cases["ref"].find("failure") is None
    fail = cases["fail<&>"].find("failure")
    assert fail.text == 'y<&>": 3 of 4 elements beyond tolerance, max_abs nan, max_ulp 12, max_rel 0'
    assert "max_ulp 4" in fail.get("message")
    assert "cannot compare: shape (4,) != (5,)" in cases["shape"].find("failure").text
    crash = cases["crash"].find("error")
    assert "Segmentation fault" in crash.text and "<core & dump>" in crash.text and "\x1b" not in crash.text
    assert "hint: see stderr" in crash.text


def test_failed_reference_skips_the_others() -> None:
    root, cases = parse(hand_built(ref_status="failed"))
    assert (root.get("failures"), root.get("errors"), root.get("skipped")) == ("0", "2", "3")
    assert cases["ref"].find("error").get("message") == "boom"
    assert all(cases[n].find("skipped") is not None for n in ("pass\"", "fail<&>", "shape"))
