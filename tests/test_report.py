"""The JSON report (schema fields, strict JSON, round trip, refusals) and the terminal rendering."""
import copy
import io
import json
import math

import pytest
from rich.console import Console

import comparator
from comparator.errors import ReportError
from comparator.measure.metrics import FIELDS
from comparator.report import table, text
from comparator.report import json as json_report
from comparator.result import SCHEMA_VERSION, Report, TensorReport


@pytest.fixture(scope="module")
def report(models):
    return comparator.compare(models.conv_bn, ["ort:opt=disable", "ort", "ref"])


@pytest.fixture(scope="module")
def exp_report(models):
    return comparator.compare(models.exp_chain, ["ort", "ref"])


def strict_loads(text):
    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_spec_fields(report, tmp_path):
    json_report.write(report, tmp_path / "r.json")
    data = strict_loads((tmp_path / "r.json").read_text())
    for key in ("schema_version", "model", "reference", "variants", "tensors", "first_divergence",
                "equivalence_classes", "observer_effect", "passed", "exit_code", "tolerance", "inputs"):
        assert key in data, key
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert data["reference"] == "ort:opt=disable"
    assert {"path", "sha256", "ir_version", "opsets", "inputs", "outputs"} <= set(data["model"])
    for v in data["variants"]:
        assert {"name", "options", "status", "error", "provenance"} <= set(v)
    assert data["variants"][1]["options"] == {} and data["variants"][0]["options"] == {"opt": "disable"}
    assert data["variants"][0]["provenance"]["onnxruntime"] and data["variants"][2]["provenance"]["onnx"]
    assert [t["name"] for t in data["tensors"]] == ["conv", "bn", "y"]
    for t in data["tensors"]:
        assert {"name", "op_type", "node", "shape", "dtype", "metrics"} <= set(t)
        assert t["shape"] == [1, 8, 8, 8] and t["dtype"] == "float32"
        assert set(t["metrics"]) == {"ort", "ref"}
        for m in t["metrics"].values():
            assert set(FIELDS) <= set(m)
            assert {"bit_identical", "identical_fraction", "max_abs", "mean_abs", "max_rel", "max_ulp",
                    "p99_ulp", "cosine", "snr_db", "nan_mismatch"} <= set(m)
    assert set(data["first_divergence"]) == {"ort", "ref"}
    assert data["observer_effect"] == {"ort:opt=disable": False, "ort": True, "ref": False}
    assert isinstance(data["passed"], bool)


def test_round_trip(report, tmp_path):
    json_report.write(report, tmp_path / "r.json")
    back = json_report.read(tmp_path / "r.json")
    assert back == report
    assert back.variant("ort").provenance == report.variant("ort").provenance
    assert back.tensor("y").metrics == report.tensor("y").metrics
    assert json_report.render(back) == json_report.render(report)


def test_non_finite_floats_survive(report, tmp_path):
    r = copy.deepcopy(report)
    m = r.tensor("bn").metrics["ref"]
    m.update(snr_db=float("inf"), max_rel=float("-inf"), cosine=float("nan"))
    json_report.write(r, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    raw = strict_loads(text)["tensors"][1]["metrics"]["ref"]
    assert (raw["snr_db"], raw["max_rel"], raw["cosine"]) == ("inf", "-inf", "nan")
    back = json_report.read(tmp_path / "r.json").tensor("bn").metrics["ref"]
    assert back["snr_db"] == math.inf and back["max_rel"] == -math.inf and math.isnan(back["cosine"])
    assert back["max_abs"] == m["max_abs"]


def test_non_finite_outside_metrics_survive(report, tmp_path):
    r = copy.deepcopy(report)
    r.observer_detail["ort"] = {"y": {"max_ulp": 3, "max_abs": float("inf")}}
    r.pairwise["max_abs"][0][1] = r.pairwise["max_abs"][1][0] = float("inf")
    json_report.write(r, tmp_path / "r.json")
    back = json_report.read(tmp_path / "r.json")
    assert back.observer_detail == r.observer_detail and back.pairwise == r.pairwise
    assert back == r


def test_error_strings_in_metrics_are_not_decoded(report, tmp_path):
    r = copy.deepcopy(report)
    r.tensor("y").metrics["ref"] = {"error": "nan"}
    json_report.write(r, tmp_path / "r.json")
    assert json_report.read(tmp_path / "r.json").tensor("y").metrics["ref"] == {"error": "nan"}


def test_newer_schema_refused(report, tmp_path):
    data = strict_loads(json_report.render(report))
    data["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "new.json").write_text(json.dumps(data))
    with pytest.raises(ReportError) as info:
        json_report.read(tmp_path / "new.json")
    assert "newer" in info.value.message and info.value.hint == "upgrade infercmp"
    data["schema_version"] = "1"
    (tmp_path / "str.json").write_text(json.dumps(data))
    with pytest.raises(ReportError):
        json_report.read(tmp_path / "str.json")


def test_unknown_fields_from_the_same_version_are_ignored(report, tmp_path):
    data = strict_loads(json_report.render(report))
    data["added_later"] = {"x": 1}
    (tmp_path / "r.json").write_text(json.dumps(data))
    assert json_report.read(tmp_path / "r.json") == report


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.01])
def test_truncated_json_refused(report, tmp_path, cut):
    text = json_report.render(report)
    (tmp_path / "cut.json").write_text(text[:int(len(text) * cut)])
    with pytest.raises(ReportError) as info:
        json_report.read(tmp_path / "cut.json")
    assert "not valid JSON" in info.value.message and "truncated" in info.value.hint


@pytest.mark.parametrize("content, fragment", [
    ("[1, 2]", "no schema_version"), ('{"a": 1}', "no schema_version"), ('{"schema_version": 1}', "malformed"),
    ('{"schema_version": 1, "variants": [1], "tensors": []}', "malformed"),
    ('{"schema_version": 1, "variants": [], "tensors": ["ab"]}', "malformed"),
    ('{"schema_version": 1, "variants": [], "tensors": [{"metrics": [1]}]}', "malformed"),
    ('{"schema_version": 1, "variants": [], "tensors": [], "observer_detail": {"v": [2]}}', "malformed"),
])
def test_not_a_report(tmp_path, content, fragment):
    (tmp_path / "x.json").write_text(content)
    with pytest.raises(ReportError, match=fragment):
        json_report.read(tmp_path / "x.json")


def test_missing_report(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        json_report.read(tmp_path / "gone.json")


def test_write_is_atomic(report, tmp_path):
    path = tmp_path / "r.json"
    path.write_text("previous")
    with pytest.raises(TypeError):
        json_report.write(Report(**{**report.__dict__, "inputs": {"bad": object()}}), path)
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


# ---- terminal

def render(report, quiet=False, width=220):
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None)
    (table.render_findings if quiet else table.render)(report, console)
    return buffer.getvalue()


def test_table_and_findings(report):
    shown = render(report)
    for needle in ("conv", "bn", "y (output)", "BatchNormalization", "ort:opt=disable", "max_ulp", "snr_dB"):
        assert needle in shown, needle
    assert "ort: observer effect" in shown and "ort:opt=disable: observer effect" not in shown
    detail = report.observer_detail["ort"]["y"]
    assert (f"tapping changed its final outputs y (max ULP {detail['max_ulp']:,}, "
            f"max abs {text.num(detail['max_abs'])});") in shown
    assert f"ort: first divergence {report.first_divergence['ort']}" in shown
    assert "bit-identical final outputs:" in shown
    verdict = shown.strip().splitlines()[-1]
    assert verdict.startswith("PASS" if report.exit_code == 0 else "FAIL") and "atol 1e-05" in verdict


def test_narrow_terminal_leaves_columns_out_and_never_folds_a_number(report):
    """At 80 columns the full table keeps every figure whole: columns are left out, in LEAVE_OUT's order, and a
    note names them; at 220 none is left out."""
    wide, narrow = render(report), render(report, width=80)
    assert "left out" not in wide
    assert all(len(line) <= 80 for line in narrow.splitlines())
    note = next(line for line in narrow.splitlines() if line.startswith("left out at 80 columns: "))
    left_out = [name.strip() for name in note.split(": ", 1)[1].split(" (")[0].split(",")]
    assert left_out and set(left_out) <= set(table.LEAVE_OUT)
    header = next(line for line in narrow.splitlines() if "variant" in line and "max_ulp" in line)
    assert not any(f" {name} " in header for name in left_out)
    for m in report.tensors[0].metrics.values():
        cells = text.metric_cells(m)
        assert cells[text.COLUMNS.index("max_ulp")] in narrow and cells[text.COLUMNS.index("max_abs")] in narrow


def test_identical_runs_collapse(exp_report):
    text = render(exp_report)
    assert "mul .. relu" in text and "3 tensors bit-identical in every variant" in text
    assert "ref: first divergence " + exp_report.first_divergence["ref"] in text


def test_quiet_prints_findings_only(report):
    text = render(report, quiet=True)
    assert "BatchNormalization" not in text and "first divergence" in text


def test_failed_variant_rendered_with_hint_and_stderr(report):
    r = copy.deepcopy(report)
    v = r.variant("ref")
    v.status, v.error, v.hint = "crashed", "the worker died from SIGSEGV", "try fewer taps"
    v.stderr_tail = "Fatal Python error: Segmentation fault\n[bold]not markup[/bold]"
    r.exit_code = 3
    text = render(r)
    assert "ref: crashed: the worker died from SIGSEGV" in text
    assert "hint: try fewer taps" in text
    assert "Fatal Python error: Segmentation fault" in text and "[bold]not markup[/bold]" in text
    assert "FAIL: a variant could not run" in text


def test_observer_text_names_each_changed_output():
    r = Report(model={}, reference="a", tolerance={}, variants=[], tensors=[])
    r.observer_detail = {"v": {"y": {"max_ulp": 526344, "max_abs": 0.0039215684},
                               "z": {"max_ulp": 1, "max_abs": math.inf}}}
    assert text.observer_text(r, "v") == "y (max ULP 526,344, max abs 0.003922), z (max ULP 1, max abs inf)"


def test_the_fusion_note_agrees_in_number():
    """One tensor 'is' fused and one group 'runs' fused; two 'are' and two 'run'."""
    def note(away: int, groups: int) -> str:
        tensors = [TensorReport(f"t{i}", "Add", f"n{i}", i, [1], "float32", False, fused=["a"]) for i in range(away)]
        r = Report(model={}, reference="b", tolerance={}, variants=[], tensors=tensors)
        r.fusion = {"a": {"mode": "optimized", "tapped": 3, "folded": 0,
                          "groups": [{"nodes": ["x", "y"], "ops": ["Gemm"]}] * groups}}
        return r.fusion_note("a") or ""

    assert "; 1 it does not compute is \"fused\"" in note(1, 1) and "; 1 group of nodes runs fused," in note(1, 1)
    assert "; 2 it does not compute are \"fused\"" in note(2, 2) and "; 2 groups of nodes run fused," in note(2, 2)
