"""Release gates: policies, `check` against a baseline, model vs model, and the pytest helpers."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from comparator.gate import bundle, policy
from comparator.gate import check as gate
from comparator.errors import UsageError
from comparator.measure.metrics import Tolerance
from comparator.graph.model import TensorInfo
from comparator.testing import assert_agrees, assert_matches_baseline
from comparator.variant import Variant

from conftest import assert_clean_error, make_model, vi
from test_bundle import run_cli
from test_report_html import chromium, needs_chromium

# -- policy files ----------------------------------------------------------------------------------------------


def _info(name: str, op: str = "Conv", is_output: bool = False, shape=(1, 4), index: int = 0) -> TensorInfo:
    return TensorInfo(name, op, name, index, shape, T.FLOAT, is_output)


CATALOGUE = [_info("/conv1/Conv_output_0"), _info("/relu1/Relu_output_0", "Relu", index=1),
             _info("logits", "Gemm", True, ("batch", 10), 2)]


def _bind(pol: policy.Policy) -> policy.Policy:
    pol.bind(CATALOGUE, ["logits"], [Variant.parse("ort")], ["logits"])
    return pol


@pytest.mark.parametrize("text, needles", [
    ("[defaults]\natol = 1e-5\n\n[outputs.logits]\natoll = 3\n", ["policy.toml:5:", "'atoll'", "[outputs.logits]"]),
    ('[defaults]\nrtol = "1e-5"\n', ["policy.toml:2:", "rtol must be a number", "a string"]),
    ("[labels]\nmin_agreement = true\n", ["policy.toml:2:", "min_agreement must be a number", "a boolean"]),
    ("[labels]\nmin_agreement = 1.5\n", ["policy.toml:2:", "out of range"]),
    ("# limits\n[labels]\nmax_flips = 0.5\n", ["policy.toml:3:", "max_flips must be a non-negative integer"]),
    ('[tensors."/conv*"]\nmax_ulp = -1\n', ["policy.toml:2:", "max_ulp = -1 must be >= 0"]),
    ("[label]\nmin_agreement = 0.99\n", ["policy.toml:1:", "unknown key 'label'"]),
    ("[variants]\nrequire = \"ort\"\n", ["policy.toml:2:", "require must be a list"]),
    ("[variants]\nrequire = [\"ort:opt\"]\n", ["policy.toml:2:", "not KEY=VALUE"]),
    ("[outputs]\nlogits = 3\n", ["policy.toml:2:", "must be a table"]),
    ("[defaults\natol = 1\n", ["policy.toml: not valid TOML", "line 1"]),
])
def test_bad_policy_files_name_the_key_and_line(text, needles):
    with pytest.raises(UsageError) as info:
        policy.parse(text, "policy.toml")
    for needle in needles:
        assert needle in info.value.message, (needle, info.value.message)


def test_conflicting_globs_are_an_error_naming_both_lines():
    pol = policy.parse('[defaults]\natol = 1e-5\n\n[tensors."/conv*"]\natol = 1e-3\n\n[tensors."*Conv*"]\n'
                       'atol = 1e-2\n', "p.toml")
    with pytest.raises(UsageError) as info:
        _bind(pol)
    message = info.value.message
    assert "p.toml:4 and p.toml:7: conflicting tolerances" in message and "/conv1/Conv_output_0" in message
    assert "atol = 0.001" in message and "atol = 0.01" in message


def test_exact_names_override_globs_which_override_defaults():
    pol = _bind(policy.parse('[defaults]\natol = 1e-6\nrtol = 0.0\n[tensors."/*"]\natol = 1e-3\ncosine = 0.9\n'
                             '[tensors."/conv1/Conv_output_0"]\natol = 0.5\n[outputs.logits]\nmax_ulp = 8\n'))
    conv, relu, logits = (pol.rule_for(t) for t in CATALOGUE)
    assert conv.tolerance == Tolerance(0.5, 0.0, None) and conv.cosine == 0.9 and conv.explicit
    assert relu.tolerance == Tolerance(1e-3, 0.0, None) and relu.explicit
    assert logits.tolerance == Tolerance(1e-6, 0.0, 8) and logits.cosine is None


@pytest.mark.parametrize("text, needle", [
    ("[outputs.probs]\natol = 1\n", "the model has no output 'probs'"),
    ('[tensors."/attn*"]\natol = 1\n', "matches no tensor of the model"),
    ('[variants]\nrequire = ["ref"]\n', "required variant 'ref' is not among the variants run"),
    ('[labels]\nmin_agreement = 0.9\noutput = "x"\n', "'x' is not a classifier output"),
])
def test_policies_that_do_not_fit_the_model_are_refused(text, needle):
    with pytest.raises(UsageError, match=needle):
        _bind(policy.parse(text))


def test_label_rules_need_a_classifier():
    pol = policy.parse("[labels]\nmax_flips = 0\n")
    with pytest.raises(UsageError, match="need a classifier output"):
        pol.bind(CATALOGUE, ["logits"], [Variant.parse("ort")], [])


# -- tensor matching -------------------------------------------------------------------------------------------


def test_tensors_match_by_name_then_output_position_then_op_position():
    old = [_info("a", "Conv", index=0), _info("b", "Relu", index=1), _info("c", "Conv", index=2),
           _info("out", "Gemm", True, (1, 10), 3)]
    new = [_info("a", "Conv", index=0), _info("r0", "Relu", index=1), _info("k1", "Conv", index=2, shape=(1, 5)),
           _info("y", "Gemm", True, (1, 10), 3)]
    matches, old_left, new_left = gate.match_tensors(old, new, ["out"], ["y"])
    assert [(m.tensor.name, m.source.name, m.how) for m in matches] == [
        ("a", "a", "name"), ("r0", "b", "Relu #0"), ("y", "out", "output #0")]
    assert old_left == ["c"] and new_left == ["k1"]  # shapes differ: not paired by structure


# -- check against a baseline -----------------------------------------------------------------------------------


def _perturbed(path: Path, scale: float, out: Path) -> Path:
    """A 'retrained' digits_cnn: every weight matrix scaled by (1 + scale * noise)."""
    m = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.ndim >= 2:
            init.CopyFrom(numpy_helper.from_array((a * (1 + scale * rng.standard_normal(a.shape))).astype(a.dtype),
                                                  init.name))
    onnx.save(m, str(out))
    return out


@pytest.fixture(scope="module")
def release(models, tmp_path_factory):
    """A baseline of digits_cnn (ort, every tensor tapped, labelled inputs) and three later exports."""
    root = tmp_path_factory.mktemp("release")
    base = root / "base.icmp"
    code, _, err = run_cli("capture", models.digits, "-b", "ort", "--tap", "all", "--inputs", models.digits_npz,
                           "-o", base)
    assert code == 0, err
    loose = root / "loose.toml"
    loose.write_text('[outputs.logits]\natol = 0.5\ncosine = 0.999\n\n[labels]\nmin_agreement = 0.99\n')
    return {"base": base, "loose": loose, "v2": _perturbed(models.digits, 0.02, root / "v2.onnx"),
            "bad": _perturbed(models.digits, 0.5, root / "bad.onnx"), "root": root}


def test_check_of_the_baseline_model_passes(release, models, tmp_path):
    out_json = tmp_path / "gate.json"
    code, out, err = run_cli("check", models.digits, "--baseline", release["base"], "-q", "--json", out_json)
    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert data["passed"] and data["exit_code"] == 0 and not data["model_changed"]
    assert data["reference"]["sha256"] == data["candidate"]["sha256"]
    assert {m["how"] for m in data["matching"]} == {"name"} and len(data["matching"]) == 9
    verdict = data["verdicts"]["ort@candidate"]
    assert verdict["status"] == "pass" and verdict["labels"]["logits"]["flips"] == 0
    assert verdict["labels"]["logits"]["accuracy_candidate"] == verdict["labels"]["logits"]["accuracy_reference"]
    assert "GATE PASS" in out and "same model" in out


def test_a_changed_model_is_accepted_named_and_gated(release, tmp_path):
    out_json = tmp_path / "gate.json"
    code, out, err = run_cli("check", release["v2"], "--baseline", release["base"], "-q", "--json", out_json)
    assert code == 1, err
    data = json.loads(out_json.read_text())
    assert data["model_changed"] and data["reference"]["sha256"] != data["candidate"]["sha256"]
    assert data["candidate"]["sha256"][:12] in out and data["reference"]["sha256"][:12] in out
    findings = data["verdicts"]["ort@candidate"]["findings"]
    assert [f["rule"] for f in findings] == ["tolerance"] and findings[0]["tensor"] == "logits"
    assert "GATE FAIL (regression)" in out and "model changed" in out
    code, out, err = run_cli("check", release["v2"], "--baseline", release["base"], "-q", "--policy",
                             release["loose"])
    assert code == 0, err
    assert "accuracy 0.9375 vs reference 0.9375" in out


def test_check_writes_the_verdict_as_html_and_junit(release, tmp_path):
    import xml.etree.ElementTree as ET

    page, xml = tmp_path / "gate.html", tmp_path / "gate.xml"
    code, out, err = run_cli("check", release["v2"], "--baseline", release["base"], "-q", "--html", page,
                             "--junit", xml, "--json", "-")
    assert code == 1, err
    data = json.loads(out)  # --json - keeps stdout to the JSON; the verdict lines go to stderr
    assert not data["passed"] and "GATE FAIL (regression)" in err
    suite = ET.parse(xml).getroot()
    assert suite.get("name") == "infercmp-gate" and suite.get("tests") == "1" and suite.get("failures") == "1"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["model_changed"] == "True" and props["exit_code"] == "1"
    failure = next(suite.iter("failure"))
    assert "logits" in failure.get("message") and "beyond atol" in failure.text
    text = page.read_text()
    assert "GATE FAIL (regression)" in text and text.count('<iframe class="report"') == 1
    assert "srcdoc=" in text and "logits" in text
    # A variant the policy does not require is skipped in JUnit, with what it found.
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[variants]\nrequire = []\n')
    code, _, err = run_cli("check", release["v2"], "--baseline", release["base"], "-q", "--policy", lenient,
                           "--junit", xml)
    assert code == 0, err
    suite = ET.parse(xml).getroot()
    assert suite.get("skipped") == "1" and "not required" in next(suite.iter("skipped")).get("message")


@needs_chromium
def test_chromium_shows_the_gate_page_with_its_report(release, tmp_path):
    from comparator.gate import pages

    page = tmp_path / "gate.html"
    pages.write_html(gate.check(release["v2"], release["base"]), page)
    dom = chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert "GATE FAIL (regression)" in dom
    # The frame's report loaded and its height was read: the script sized the frame to the report.
    height = re.search(r'<iframe class="report"[^>]*style="height: (\d+)px', dom)
    assert height and int(height.group(1)) > 600, dom[:3000]


def test_label_accuracy_below_the_relative_floor_fails(release):
    result = gate.check(release["bad"], release["base"], release["loose"])
    verdict = result.verdicts["ort@candidate"]
    labels = verdict["labels"]["logits"]
    assert labels["accuracy_candidate"] < 0.99 * labels["accuracy_reference"]
    assert "accuracy" in [f["rule"] for f in verdict["findings"]]
    assert result.exit_code == 1 and not result.passed


def test_update_baseline_only_when_asked_and_keeps_the_previous(release, tmp_path):
    base = tmp_path / "base.icmp"
    original = release["base"].read_bytes()
    base.write_bytes(original)
    code, _, err = run_cli("check", release["v2"], "--baseline", base, "-q", "--policy", release["loose"])
    assert code == 0, err
    assert base.read_bytes() == original and not (tmp_path / "base.icmp.prev").exists()
    bad_policy = tmp_path / "bad.toml"
    bad_policy.write_text("[defaults]\natoll = 1\n")
    code, _, err = run_cli("check", release["v2"], "--baseline", base, "--policy", bad_policy, "--update-baseline")
    assert code == 2
    assert_clean_error(err, "bad.toml:2:", "atoll")
    assert base.read_bytes() == original and not (tmp_path / "base.icmp.prev").exists()
    code, out, err = run_cli("check", release["v2"], "--baseline", base, "-q", "--policy", release["loose"],
                             "--update-baseline")
    assert code == 0, err
    assert (tmp_path / "base.icmp.prev").read_bytes() == original
    updated = bundle.Bundle.open(base)
    assert updated.model_sha256 == gate.model_mod.load(release["v2"]).sha256
    assert updated.feeds_sha256 == bundle.Bundle.open(release["base"]).feeds_sha256
    assert updated.labels() is not None and len(updated.stored()) == 9
    assert "baseline updated" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "base.icmp", "base.icmp.prev"]


def test_a_variant_that_cannot_run_exits_3(models, tmp_path, ort_lacks_tan_float64):
    abs64 = make_model([helper.make_node("Abs", ["x"], ["a"], name="abs"),
                        helper.make_node("Neg", ["a"], ["y"], name="neg")],
                       [vi("x", T.DOUBLE, [2, 3])], [vi("y", T.DOUBLE, [2, 3])])
    onnx.save(abs64, str(tmp_path / "abs64.onnx"))
    code, _, err = run_cli("capture", tmp_path / "abs64.onnx", "-b", "ort", "-o", tmp_path / "b.icmp")
    assert code == 0, err
    before = (tmp_path / "b.icmp").read_bytes()
    code, out, err = run_cli("check", models.unsupported, "--baseline", tmp_path / "b.icmp", "-q",
                             "--update-baseline")
    assert code == 3, err
    assert "ort@candidate: ERROR" in out and "unsupported" in out and "GATE FAIL (could not run)" in out
    assert "baseline not updated: ort could not run" in out
    assert (tmp_path / "b.icmp").read_bytes() == before and not (tmp_path / "b.icmp.prev").exists()


@pytest.mark.parametrize("args, needle", [
    (["--baseline", "B", "--against", "A.onnx"], "exactly one of --baseline"),
    ([], "exactly one of --baseline"),
    (["--against", "OLD", "--update-baseline"], "--update-baseline applies to --baseline only"),
    (["--baseline", "BASE", "--inputs", "x.npz"], "apply to --against only"),
    (["--baseline", "BASE", "-b", "ref"], "variant ref is not in the baseline"),
])
def test_check_usage_errors(release, models, args, needle):
    args = [str(release["base"]) if a == "BASE" else str(models.digits) if a == "OLD" else a for a in args]
    code, _, err = run_cli("check", models.digits, *args)
    assert code == 2
    assert_clean_error(err, needle)


# -- model vs model ------------------------------------------------------------------------------------------------


def _renamed(path: Path, out: Path) -> Path:
    """digits_cnn re-exported with every intermediate tensor and node renamed."""
    m = onnx.load(str(path))
    names = {o: f"t{i}" for i, n in enumerate(m.graph.node) for o in n.output if o != "logits"}
    for i, n in enumerate(m.graph.node):
        n.name = f"node{i}"
        n.input[:] = [names.get(x, x) for x in n.input]
        n.output[:] = [names.get(x, x) for x in n.output]
    for v in m.graph.value_info:
        v.name = names.get(v.name, v.name)
    onnx.save(m, str(out))
    return out


def test_two_exports_match_by_structure_and_say_how(release, models, tmp_path):
    renamed = _renamed(models.digits, tmp_path / "renamed.onnx")
    out_json = tmp_path / "models.json"
    code, out, err = run_cli("check", renamed, "--against", models.digits, "-b", "ort", "--inputs",
                             models.digits_npz, "-q", "--json", out_json)
    assert code == 0, err
    data = json.loads(out_json.read_text())
    hows = {m["tensor"]: (m["source"], m["how"]) for m in data["matching"]}
    assert hows["t0"] == ("/conv1/Conv_output_0", "Conv #0") and hows["t2"] == ("/conv2/Conv_output_0", "Conv #1")
    assert hows["logits"] == ("logits", "name") and len(hows) == 9
    assert data["mode"] == "models" and data["model_changed"]
    report = data["reports"][0]
    assert all(m["bit_identical"] for t in report["tensors"] for m in t["metrics"].values())
    assert "t0 <- /conv1/Conv_output_0 (by Conv #0)" in out and "8 by structure" in out


def test_compare_models_lists_what_did_not_match(release, models, started_workers):
    result = gate.compare_models(models.digits, release["v2"], "ort", models.digits_npz)
    assert started_workers == ["ort"]  # one worker served both models
    assert result.unmatched == {"reference": [], "candidate": []}
    assert result.verdicts["ort@new"]["status"] == "fail" and result.exit_code == 1
    assert result.verdicts["ort@new"]["labels"]["logits"]["accuracy_reference"] == 0.9375


# -- pytest helpers --------------------------------------------------------------------------------------------


def test_assert_agrees_passes_and_fails_with_a_readable_message(models):
    result = assert_agrees(models.digits, ["ort", "ref"], inputs=models.digits_npz)
    assert result.passed and result.verdicts["ref"]["status"] == "pass"
    with pytest.raises(AssertionError) as info:
        assert_agrees(models.digits, ["ort", "ref"], inputs=models.digits_npz, tolerance=Tolerance(0.0, 0.0))
    message = str(info.value)
    for needle in ("ref: FAIL", "logits:", "beyond atol 0 rtol 0", "max_abs", "first divergence /conv",
                   "worst tensor", "GATE FAIL"):  # /conv1 or /conv2: which one differs first depends on ORT's kernels
        assert needle in message, (needle, message)


def test_assert_matches_baseline(release, models, tmp_path):
    assert assert_matches_baseline(models.digits, release["base"]).passed
    with pytest.raises(AssertionError, match=r"(?s)model changed.*logits: \d+ of 640 elements beyond"):
        assert_matches_baseline(release["v2"], release["base"])
    broken = tmp_path / "policy.toml"
    broken.write_text("[gate]\nstrict = true\n")
    with pytest.raises(UsageError, match="unknown key 'gate'"):  # a broken setup is not a regression
        assert_matches_baseline(release["v2"], release["base"], policy=broken)


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def test_a_baseline_that_stored_scalars_with_an_axis_of_one_still_passes(tmp_path):
    """Captures before the workers kept a 0-d value 0-d stored one value per sample as [samples, 1]: such a
    baseline is read as [samples] (a tensor of another shape with the same bytes is left as it is)."""
    import zipfile

    from test_bundle import _rewrite

    model = make_model([helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
                        helper.make_node("Neg", ["s"], ["y"]), helper.make_node("Unsqueeze", ["s", "axes"], ["u"])],
                       [vi("x", T.FLOAT, [3])], [vi("y", T.FLOAT, []), vi("u", T.FLOAT, [1])],
                       [numpy_helper.from_array(np.array([0], np.int64), "axes")], opset=13)
    path = tmp_path / "scalar.onnx"
    onnx.save(model, str(path))
    base = tmp_path / "base.icmp"
    code, _, err = run_cli("capture", path, "-b", "ort", "--tap", "all", "--samples", "2", "-o", base)
    assert code == 0, err
    with zipfile.ZipFile(base) as zf:
        meta = json.loads(zf.read("meta.json"))
        entries = meta["runs"][0]["tensors"]
        members = {e["file"]: np.load(zf.open(e["file"])) for kind in entries.values() for e in kind.values()}
    assert {n: e["shape"] for n, e in entries["tapped"].items()} == {"s": [2], "y": [2], "u": [2, 1]}
    old: dict[str, bytes | None] = {}
    for kind in entries.values():
        for e in kind.values():
            if e["shape"] == [2]:
                old[e["file"]] = _npy(members[e["file"]].reshape(2, 1))
                e["shape"] = [2, 1]
    old["meta.json"] = json.dumps(meta).encode()
    forged = _rewrite(base, tmp_path / "old.icmp", old)
    for baseline in (base, forged):
        out_json = tmp_path / f"{baseline.stem}.json"
        code, out, err = run_cli("check", path, "--baseline", baseline, "-q", "--json", out_json)
        assert code == 0, (baseline.name, out, err)
        data = json.loads(out_json.read_text())
        assert data["passed"] and data["verdicts"]["ort@candidate"]["status"] == "pass"
