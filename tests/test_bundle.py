"""The .icmp bundle: capture, inspect, diff, and every way a bundle can be bad (nothing is overwritten on error)."""
from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import pytest

from comparator.gate import bundle, bundle_writer, npyzip
from comparator.errors import ReportError
from comparator.report import json as json_report

from conftest import after_progress, assert_clean_error, small_model


def run_cli(*args: object) -> tuple[int, str, str]:
    """`infercmp ARGS` in process (usable from module-scoped fixtures); (exit code, stdout, stderr)."""
    from comparator import cli as cli_mod

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "argv", ["infercmp", *map(str, args)]), redirect_stdout(out), redirect_stderr(err):
        try:
            cli_mod.main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def captured(models, tmp_path_factory):
    """Bundles of digits_cnn: ort tapping all (a), ref tapping all (b), ort final outputs only (a2, another day)."""
    root = tmp_path_factory.mktemp("bundles")
    paths = {"a": root / "a.icmp", "b": root / "b.icmp", "a2": root / "a2.icmp"}
    for key, variant, tap in (("a", "ort", "all"), ("b", "ref", "all"), ("a2", "ort", "outputs")):
        code, out, err = run_cli("capture", models.digits, "-b", variant, "--tap", tap, "--inputs",
                                 models.digits_npz, "-o", paths[key])
        assert code == 0, err
        assert f"-> {paths[key]}" in out
    return paths


def test_capture_writes_a_complete_pickle_free_bundle(captured, models):
    with zipfile.ZipFile(captured["a"]) as zf:
        meta = json.loads(zf.read("meta.json"))
        for name in zf.namelist():
            if name.endswith(".npy"):
                np.load(io.BytesIO(zf.read(name)), allow_pickle=False)  # raises on any pickle
    assert meta["format"] == "infercmp-bundle" and meta["schema_version"] == bundle.SCHEMA_VERSION
    assert meta["model"]["sha256"] == hashlib.sha256(models.digits.read_bytes()).hexdigest()
    first = meta["catalogue"][0]
    assert set(first) == {"name", "op_type", "node", "index", "shape", "elem_type", "is_output"}
    assert first["op_type"] == "Conv" and meta["catalogue"][-1]["is_output"] is True
    env = meta["environment"]
    for key in ("cpu", "cpu_flags", "cores", "os", "python", "numpy", "host", "gpus", "packages"):
        assert key in env, key
    assert env["packages"]["onnxruntime"] and env["packages"]["numpy"] == np.__version__
    run = meta["runs"][0]
    assert run["variant"] == "ort" and run["provenance"]["onnxruntime"] == env["packages"]["onnxruntime"]
    assert len(run["tensors"]["tapped"]) == 9 and list(run["tensors"]["untapped"]) == ["logits"]
    b = bundle.Bundle.open(captured["a"])
    with np.load(models.digits_npz, allow_pickle=False) as npz:
        np.testing.assert_array_equal(b.feeds()["image"][0], npz["image"])
        np.testing.assert_array_equal(b.labels(), npz["label"])
    assert meta["labels"]["key"] == "label"


def test_captured_outputs_are_what_onnxruntime_computes(captured, models):
    import onnxruntime as ort

    b = bundle.Bundle.open(captured["a"])
    logits = b.read(b.meta["runs"][0]["tensors"]["untapped"]["logits"]["file"])
    session = ort.InferenceSession(str(models.digits), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": b.feeds()["image"][0]})[0]
    assert logits.shape == (1, 64, 10)
    np.testing.assert_allclose(logits[0], expected, rtol=1e-5, atol=1e-5)


def test_default_captures_final_outputs_only_and_inspect_says_so(captured):
    b = bundle.Bundle.open(captured["a2"])
    assert list(b.meta["runs"][0]["tensors"]) == ["untapped"]
    code, out, err = run_cli("inspect", captured["a2"], "--tensors")
    assert code == 0, err
    assert b.model_sha256 in out and "variant   ort" in out and "(tap: outputs)" in out
    assert b.meta["environment"]["host"] in out and "onnxruntime" in out and "logits" in out
    assert "1 in 1 run(s)" in out


def test_identical_members_are_stored_once(captured):
    b = bundle.Bundle.open(captured["a"])
    entries = b.meta["runs"][0]["tensors"]
    # the tapped run's final output is bit-identical to the untapped one here: one member serves both
    assert entries["tapped"]["logits"]["file"] == entries["untapped"]["logits"]["file"]
    assert len(b.sizes) == 1 + 1 + 1 + 9  # meta, feeds, labels, 9 distinct tensors


def test_compression_modes_hold_the_same_arrays(captured, models, tmp_path):
    from comparator import api
    from comparator.variant import Variant

    rs = api.run_variants(models.digits, [Variant.parse("ort")], tmp_path / "run", models.digits_npz,
                          tap_spec="outputs", kinds=("untapped",))
    feeds = bundle.Bundle.open(captured["a2"]).feeds()
    arrays = {}
    for mode in ("auto", "stored", "deflate"):
        path = tmp_path / f"{mode}.icmp"
        bundle_writer.write(path, rs.model, {"spec": "outputs", "tapped": [], "skipped": []}, rs.runs, feeds,
                            rs.feed_info, compression=mode)
        with zipfile.ZipFile(path) as zf:
            methods = {i.filename: i.compress_type for i in zf.infolist() if i.filename.endswith(".npy")}
        arrays[mode] = bundle.Bundle.open(path).arrays()
        if mode == "stored":
            assert set(methods.values()) == {zipfile.ZIP_STORED}
        if mode == "auto":  # the digit images are mostly zero bytes: deflated; the dense logits are not
            assert methods["feeds/00000.npy"] == zipfile.ZIP_DEFLATED
            assert methods["runs/0/untapped/00000.npy"] == zipfile.ZIP_STORED
    for mode in ("stored", "deflate"):
        for member, arr in arrays["auto"].items():
            np.testing.assert_array_equal(arrays[mode][member], arr)


def test_capture_refuses_to_overwrite_without_force(captured, models, tmp_path):
    target = tmp_path / "x.icmp"
    target.write_bytes(captured["a2"].read_bytes())
    before = target.read_bytes()
    code, out, err = run_cli("capture", models.digits, "-b", "ort", "--inputs", models.digits_npz, "-o", target)
    assert code == 2
    assert_clean_error(err, "already exists", "x.icmp")
    assert target.read_bytes() == before
    code, _, err = run_cli("capture", models.small, "-b", "ort", "-o", target, "--force")
    assert code == 0, err
    assert bundle.Bundle.open(target).meta["model"]["file"] == "small.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.icmp"]  # no temporary files left


def test_capture_of_a_variant_that_cannot_run_writes_nothing(models, tmp_path, ort_lacks_tan_float64):
    target = tmp_path / "tan.icmp"
    code, _, err = run_cli("capture", models.unsupported, "-b", "ort", "-o", target)
    assert code == 3
    assert_clean_error(after_progress(err), "ort could not run", "unsupported")  # after the run's progress
    assert list(tmp_path.iterdir()) == []


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes | None]) -> Path:
    """Copy a bundle, replacing (bytes) or dropping (None) members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in replace:
                if replace[info.filename] is not None:
                    zout.writestr(info.filename, replace[info.filename])
            else:
                zout.writestr(info, zin.read(info.filename))
    return dst


def _meta(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("meta.json"))


def _object_npy() -> bytes:
    """An .npy header declaring Python objects, written by hand: no pickle is ever produced here."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1, 10)})
    return buf.getvalue() + b"\x80\x04junk-that-would-be-a-pickle."


def _bad_bundles(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    meta = _meta(good)
    member = meta["runs"][0]["tensors"]["untapped"]["logits"]["file"]
    cases: dict[str, tuple[Path, str]] = {}
    (folder / "half.icmp").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (folder / "half.icmp", "the zip cannot be read")
    (folder / "tail.icmp").write_bytes(data[:-10])
    cases["truncated tail"] = (folder / "tail.icmp", "the zip cannot be read")
    (folder / "text.icmp").write_text("not a zip at all")
    cases["not a zip"] = (folder / "text.icmp", "the zip cannot be read")
    newer = dict(meta, schema_version=bundle.SCHEMA_VERSION + 1)
    cases["newer schema"] = (_rewrite(good, folder / "newer.icmp", {"meta.json": json.dumps(newer).encode()}),
                             "newer than this infercmp reads")
    cases["object dtype"] = (_rewrite(good, folder / "obj.icmp", {member: _object_npy()}), "Python objects")
    cases["missing member"] = (_rewrite(good, folder / "gone.icmp", {member: None}), f"member {member} is missing")
    escape = json.loads(json.dumps(meta))
    escape["runs"][0]["tensors"]["untapped"]["logits"]["file"] = "../../etc/evil.npy"
    cases["path escape"] = (_rewrite(good, folder / "escape.icmp", {"meta.json": json.dumps(escape).encode()}),
                            "bad member name")
    cases["meta not json"] = (_rewrite(good, folder / "nojson.icmp", {"meta.json": b"{oops"}), "not valid JSON")
    cases["no meta"] = (_rewrite(good, folder / "nometa.icmp", {"meta.json": None}), "no meta.json")
    other = np.zeros((2, 3), np.float32)
    buf = io.BytesIO()
    np.save(buf, other, allow_pickle=False)
    cases["shape lie"] = (_rewrite(good, folder / "shape.icmp", {member: buf.getvalue()}), "meta.json says")
    return cases


@pytest.fixture(scope="module")
def bad(captured, tmp_path_factory):
    return _bad_bundles(captured["a2"], tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", ["truncated", "truncated tail", "not a zip", "newer schema", "object dtype",
                                  "missing member", "path escape", "meta not json", "no meta", "shape lie"])
def test_bad_bundles_are_refused_with_a_clear_message(bad, case):
    path, needle = bad[case]
    with pytest.raises(ReportError) as info:
        bundle.Bundle.open(path)
    assert needle in str(info.value) and str(path) in str(info.value)
    code, _, err = run_cli("inspect", path)
    assert code == 2
    assert_clean_error(err, needle)


def test_a_flipped_byte_in_stored_data_fails_the_crc(captured, tmp_path):
    good = captured["a2"]
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo(_meta(good)["runs"][0]["tensors"]["untapped"]["logits"]["file"])
    assert info.compress_type == zipfile.ZIP_STORED
    data = bytearray(good.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size - 4] ^= 0x40
    broken = tmp_path / "flip.icmp"
    broken.write_bytes(bytes(data))
    b = bundle.Bundle.open(broken)  # headers are intact; the data is checked when read
    with pytest.raises(ReportError, match="CRC"):
        b.arrays()
    code, _, err = run_cli("diff", good, broken)
    assert code == 2
    assert_clean_error(err, "CRC")


def test_npy_header_parser_matches_numpy():
    for arr in (np.zeros((2, 3), np.float32), np.arange(5, dtype=">i8"), np.ones((0, 4), np.float16),
                np.asfortranarray(np.ones((3, 2))), np.array(["ab", "c"]), np.zeros((), np.uint8)):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        h = npyzip.parse_header(buf.getvalue())
        assert (h.shape, h.dtype, h.length + h.nbytes) == (arr.shape, arr.dtype, len(buf.getvalue()))
    with pytest.raises(ValueError, match="bad magic"):
        npyzip.parse_header(b"PK\x03\x04 not npy")


def test_diff_labels_every_run_by_its_file(captured, tmp_path):
    out_json = tmp_path / "diff.json"
    code, out, err = run_cli("diff", captured["a"], captured["b"], captured["a2"], "--json", out_json)
    assert code == 0, err
    report = json_report.read(out_json)
    assert [v.name for v in report.variants] == ["ort@a", "ref@b", "ort@a2"]
    assert report.reference == "ort@a"
    assert ["ort@a", "ort@a2"] in report.equivalence_classes  # same variant, another capture: bit-identical
    assert report.first_divergence["ort@a2"] is None
    assert report.first_divergence["ref@b"] is not None
    assert [t.name for t in report.tensors] == ["logits"]  # a2 holds final outputs only
    env = report.variant("ref@b").provenance["environment"]
    assert env["host"] and env["cpu"] and "onnx" in env["packages"]
    assert "ort@a2: captured" in out and "bit-identical final outputs" in out


def test_diff_writes_html_and_junit_and_json_to_stdout(captured, tmp_path):
    import xml.etree.ElementTree as ET

    page, xml = tmp_path / "diff.html", tmp_path / "diff.xml"
    code, out, err = run_cli("diff", captured["a"], captured["b"], "--html", page, "--junit", xml, "--json", "-")
    assert code == 0, err
    assert json.loads(out)["reference"] == "ort@a"  # stdout holds the JSON alone; the lines went to stderr
    assert f"HTML report: {page}" in err and f"JUnit report: {xml}" in err
    suite = ET.parse(xml).getroot()
    assert [c.get("name") for c in suite.iter("testcase")] == ["ort@a", "ref@b"]
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "ref@b" in text and "/conv2/Conv_output_0" in text


def test_diff_prints_the_summary_fitted_to_columns_and_the_full_table_on_demand(captured, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli("diff", captured["a"], captured["b"])
    assert code == 0, err
    summary = out[out.index("PASS"):]  # the machine lines above it are one line per run, as long as they are
    from comparator.gate import check as gate

    differ = sum(not t.metrics["ref@b"]["bit_identical"] for t in gate.diff([captured["a"], captured["b"]]).tensors)
    assert f"worst {differ} of 9 tensors" in summary, summary  # the others are bit-identical
    assert max(len(line) for line in summary.splitlines()) <= 80, summary
    monkeypatch.setenv("COLUMNS", "200")  # every column of the full table unwrapped
    code, out, err = run_cli("diff", captured["a"], captured["b"], "--table", "full")
    assert code == 0 and "┃" in out and "/conv2/Conv_output_0" in out
    code, _, err = run_cli("diff", captured["a"], captured["b"], "--table", "wide")
    assert code == 2 and "--table wide: no such table" in err


def test_diff_of_two_tapped_bundles_compares_every_tensor(captured):
    from comparator.gate import check as gate

    report = gate.diff([captured["a"], captured["b"]])
    assert len(report.tensors) == 9
    # The first tensor that is not bit-identical (which Conv that is depends on the machine's ORT kernels)
    first = next(t for t in report.tensors if not t.metrics["ref@b"]["bit_identical"])
    assert report.first_divergence["ref@b"] == first.name and first.op_type == "Conv"
    assert report.label_flips["ref@b"]["logits"]["agreement"] == 1.0


def test_diff_of_one_file_twice_keeps_both_runs(captured):
    from comparator.gate import check as gate

    report = gate.diff([captured["a2"], captured["a2"]])
    assert [v.name for v in report.variants] == ["ort@a2", "ort@a2-2"]
    assert report.exit_code == 0


def test_diff_refuses_other_models_and_other_inputs(captured, models, tmp_path):
    code, out, err = run_cli("capture", models.small, "-b", "ort", "-o", tmp_path / "small.icmp")
    assert code == 0, err
    code, _, err = run_cli("diff", captured["a2"], tmp_path / "small.icmp")
    assert code == 2
    assert_clean_error(err, "small.icmp was captured on other inputs than a2.icmp")
    code, _, err = run_cli("diff", captured["a2"], tmp_path / "small.icmp", "--allow-model-change")
    assert code == 2
    assert_clean_error(err, "other inputs")


@pytest.fixture(scope="module")
def two_small_models(tmp_path_factory):
    """small.onnx and a retrained copy (weights doubled): same inputs, another sha256."""
    root = tmp_path_factory.mktemp("two")
    old, new = small_model(), small_model()
    w = onnx.numpy_helper.to_array(new.graph.initializer[0]) * 2
    new.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(w, "w"))
    onnx.save(old, str(root / "old.onnx"))
    onnx.save(new, str(root / "new.onnx"))
    for name in ("old", "new"):
        code, _, err = run_cli("capture", root / f"{name}.onnx", "-b", "ort", "--tap", "all", "-o",
                               root / f"{name}.icmp")
        assert code == 0, err
    return root


def test_diff_of_two_models_needs_allow_model_change(two_small_models):
    old, new = two_small_models / "old.icmp", two_small_models / "new.icmp"
    code, _, err = run_cli("diff", old, new)
    assert code == 2
    assert_clean_error(err, "new.icmp was captured from another model than old.icmp")
    code, out, err = run_cli("diff", old, new, "--allow-model-change")
    assert code == 1, err  # doubled weights: beyond tolerance
    assert "ort@new" in out and "other model" in out and "FAIL" in out


def test_labeled_variant_keeps_identity_and_options():
    v = bundle.LabeledVariant("ort", (("opt", "disable"),), "machine-b")
    assert str(v) == "ort:opt=disable@machine-b" and str(v.plain) == "ort:opt=disable"
    assert v.option_dict == {"opt": "disable"} and v != bundle.LabeledVariant("ort", (("opt", "disable"),), "a")
