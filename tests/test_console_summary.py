"""The terminal summary (the default of `infercmp compare`): findings first, one screen whatever the model, at 80,
100 and 200 columns no line longer than the terminal and no number folded; the minimum tolerance it prints really
is the least that passes; `--table full` keeps the table of every tensor; piped output honours COLUMNS.

Fast tests run the shipped models (models/*.onnx) and hand-built ones; the ResNet-50 test (marker real_models)
builds the seeded architecture with models/real.py, as the real-model suite does."""
from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import comparator
from comparator import Tolerance
from comparator.report import console as console_report, text
from comparator.result import Report, TensorReport, VariantReport, severity
from conftest import ROOT

WIDTHS = (80, 100, 200)
ANSI = re.compile(r"\x1b\[")
# A figure as the summary prints it: 12,828 / 118.1* / 6.2e-40 / 0.00205 / 1.9e9 / 25% / -inf
NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?(e[-+]?\d+)?[*%]?$|^-?inf\*?$|^nan\*?$")


@pytest.fixture(scope="module")
def transformer() -> Report:
    """The shipped transformer: long tensor names (/attn/out/MatMul_output_0), LayerNormalization, Erf."""
    return comparator.compare(ROOT / "models" / "transformer.onnx", ["ort", "ref", "ort:opt=disable"])


@pytest.fixture(scope="module")
def cnn(models) -> Report:
    """The shipped CNN against the float64 oracle pair, with --isolate: four compared variants, two long names."""
    return comparator.compare(models.cnn, ["ort", "ort:opt=disable"], oracle=True, isolate=True)


def printed(report: Report, width: int, **kw) -> list[str]:
    """What a terminal of `width` columns shows (rich wraps any line longer than it)."""
    buffer = io.StringIO()
    console_report.summary(report, Console(file=buffer, width=width, color_system=None), **kw)
    return buffer.getvalue().splitlines()


def check_layout(report: Report, width: int, top: int = console_report.TOP) -> list[str]:
    lines = printed(report, width, top=top)
    # rich printed every line as the summary made it: nothing wrapped or cut on the way
    assert lines == [line for line, _ in console_report.summary_lines(report, width, top)]
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    # the prose is the same words at any width: a line break never falls inside a word or a number
    # (but the origins line, which lists as many nodes as fit on one line)
    prose = [line for line, _ in console_report.summary_lines(report, width, top, tables=False)
             if "origins: " not in line]
    wide = [line for line, _ in console_report.summary_lines(report, 10_000, top, tables=False)
            if "origins: " not in line]
    model = str(report.model["path"])  # cut in its middle when longer than a line
    assert [w for w in " ".join(prose).split() if "…" not in w and w != model] == [
        w for w in " ".join(wide).split() if w != model]
    # the table of the worst tensors: at most `top` rows, every figure whole
    title = next(i for i, line in enumerate(lines) if line.startswith("worst "))
    header = next(i for i in range(title, len(lines)) if lines[i].lstrip().startswith("#"))
    rows = []
    for line in lines[header + 1:]:
        if not re.match(r"^\s*\d+\s", line):
            break
        rows.append(line)
    assert 1 <= len(rows) <= top
    heads = lines[header].split()
    columns = len(heads) - heads.index("op") - 1 - ("variant" in heads)  # figure columns
    for row in rows:
        cells = row.split()
        assert NUMBER.match(cells[0]), row
        figures = 0
        while figures < len(cells) and (NUMBER.match(cells[-1 - figures]) or cells[-1 - figures] in ("==", "-", "err")):
            figures += 1
        assert figures >= columns, row
    return lines


@pytest.mark.parametrize("width", WIDTHS)
def test_transformer_fits(transformer: Report, width: int) -> None:
    lines = check_layout(transformer, width)
    text = " ".join(line.strip() for line in lines)
    assert lines[0].startswith("PASS: final outputs within tolerance")  # the verdict comes first
    for needle in ("diverges from", "tensors beyond tolerance", "worst ", "minimum atol", "op types",
                   "LayerNormalization"):
        assert needle in text, needle
    assert len(lines) <= 45, len(lines)
    # long variant strings get short labels, the variant blocks are the legend
    assert "v2 ort:opt=disable:" in text and "v1 ref:" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_four_variants_and_isolate_fit(cnn: Report, width: int) -> None:
    lines = check_layout(cnn, width, top=5)
    text = " ".join(line.strip() for line in lines)
    assert "origins: " in text and "by the error each adds itself (--isolate)" in text
    assert "oracle: ref:dtype=float64 and torch:dtype=float64 agree" in text
    if width >= 100:  # two figures per variant (SNR and max ULP) at 100 columns, four at 200
        assert re.search(r"#\s+tensor\s+op\s+SNR\s+ULP", text)
    if width == 200:
        assert re.search(r"SNR\s+ULP\s+rel\s+abs", text)


def test_top_limits_the_rows(transformer: Report) -> None:
    for top in (1, 3, 15, 100):
        check_layout(transformer, 100, top=top)


def test_narrow_terminal_many_variants_falls_back_to_the_worst_variant() -> None:
    """Twelve variants cannot each have a column at 80: one column group names the worst variant of each row."""
    r = synthetic(40, 12)
    lines = check_layout(r, 80)
    assert any(re.search(r"#\s+tensor\s+op\s+variant\s+SNR", line) for line in lines)


def test_summary_without_tables(transformer: Report) -> None:
    lines = [line for line, _ in console_report.summary_lines(transformer, 100, tables=False)]
    assert not any(line.startswith(("op types", "worst ")) for line in lines)
    assert any("diverges from" in line for line in lines)


def test_minimum_tolerance_is_the_least_that_passes(models) -> None:
    """The atol (at rtol 0) and rtol (at atol 0) the summary prints pass every final output; a little less fails."""
    report = comparator.compare(models.exp_chain, ["ort", "ref"], tap_spec="outputs")
    need = report.minimum_tolerance("ref")
    assert need["atol"] > 0 and need["rtol"] > 0
    assert f"minimum atol {text.sci_text(need['atol'])} (rtol 0)" in " ".join(printed(report, 100))
    for atol, rtol in ((need["atol"], 0.0), (0.0, need["rtol"])):
        assert comparator.compare(models.exp_chain, ["ort", "ref"], tap_spec="outputs",
                                  tolerance=Tolerance(atol, rtol)).passed
        assert not comparator.compare(models.exp_chain, ["ort", "ref"], tap_spec="outputs",
                                      tolerance=Tolerance(atol * 0.999, rtol * 0.999)).passed


def test_severity_is_scale_free() -> None:
    """A tensor far from zero with a high SNR is less wrong than a small one with a low SNR, whatever max ULP says."""
    big_ulp = metrics(max_ulp=524_288, max_abs=5e-6, max_rel=2.0, snr_db=130.0)
    lossy = metrics(max_ulp=40, max_abs=1e-3, max_rel=1e-3, snr_db=60.0)
    assert severity(lossy) < severity(big_ulp) < severity(metrics(bit_identical=True))
    assert severity({"error": "shape mismatch"}) < severity(metrics(nan_mismatch=1)) < severity(lossy)


def test_worst_element_index() -> None:
    t = TensorReport("t", "Conv", "n", 0, [2, 3, 4], "float32", False,
                     metrics={"v": metrics(worst_index=2 * 24 + 17, count=3 * 24)})
    assert t.worst_element("v") == (2, [1, 1, 1])  # 17 = 1 * 12 + 1 * 4 + 1
    assert t.worst_element("none") is None
    t.shape = ["batch", 3, 4]
    assert t.worst_element("v") is None
    r = Report(model={}, reference="r", tolerance={}, variants=[], tensors=[t], inputs={"samples": 3})
    assert text.where_text(r, t, "v") == "element 65"
    t.shape = [2, 3, 4]
    assert text.where_text(r, t, "v") == "sample 2 [1, 1, 1]"


def test_failed_variant_and_plain_text(models, ort_lacks_tan_float64) -> None:
    report = comparator.compare(models.unsupported, ["ref", "ort"], tap_spec="outputs")
    lines = printed(report, 80)
    text = " ".join(line.strip() for line in lines)
    assert "FAIL: a variant could not run" in lines[0]
    assert "ort: unsupported: " in text and "Tan" in text
    assert all(len(line) <= 80 for line in lines)


# ---- the command: the summary by default, --table full, COLUMNS when piped

def run_cli(*args: str, columns: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "comparator.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


@pytest.mark.parametrize("columns", ["80", "100", "200", None])
def test_piped_output_honours_columns(columns: str | None) -> None:
    done = run_cli("compare", "models/transformer.onnx", "-b", "ort,ref", columns=columns)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    width = int(columns) if columns else 100
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    assert not ANSI.search(done.stdout)  # plain text
    assert lines[0].startswith("PASS") and any(line.startswith("worst ") for line in lines)


def test_table_full_and_none(models, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the full table's rows need them
    code, out, _ = cli("compare", str(models.conv_bn), "-b", "ort,ref", "--table", "full")
    assert code == 0 and "snr_dB" in out and "bn" in out and "worst 3 of" not in out
    code, out, _ = cli("compare", str(models.conv_bn), "-b", "ort,ref", "--table", "none")
    assert code == 0 and "op types" not in out and "diverges from" in out
    code, out, err = cli("compare", str(models.conv_bn), "-b", "ort,ref", "--table", "wide")
    assert code == 2 and "--table wide" in err and "worst, full, none" in err
    code, out, err = cli("compare", str(models.conv_bn), "-b", "ort,ref", "--top", "0")
    assert code == 2 and "--top 0" in err


@pytest.mark.real_models
def test_resnet50_fits_one_screen(tmp_path: Path) -> None:
    """ResNet-50 with seeded weights (models/real.py), three variants and the float64 oracle pair: 176 tensors, a
    summary of about 50 lines at 100 columns (a few more at 80, where lines wrap), as `infercmp compare` prints it
    through a pipe."""
    from real_models_table import load_real

    path = load_real().build_light("resnet50", tmp_path, seed=0)
    report = comparator.compare(path, ["ort", "ort:opt=disable", "torch"], oracle=True)
    assert len(report.tensors) == 176
    for width in WIDTHS:
        lines = check_layout(report, width)
        assert len(lines) <= (65 if width == 80 else 52), (width, len(lines))  # 80 columns wrap more
        assert any(re.match(r"v\d torch:dtype=float64: ", line) for line in lines)
    done = run_cli("compare", str(path), "-b", "ort,ort:opt=disable,torch", "--oracle", columns="100")
    assert done.returncode == 0, done.stderr
    assert all(len(line) <= 100 for line in done.stdout.splitlines())
    assert len(done.stdout.splitlines()) <= 52


# ---- hand-built reports

def metrics(**over) -> dict:
    m = {"bit_identical": False, "identical_fraction": 0.5, "max_abs": 1e-6, "mean_abs": 1e-7, "max_rel": 1e-4,
         "max_ulp": 12, "p99_ulp": 3, "cosine": 1.0, "snr_db": 130.0, "nan_mismatch": 0, "inf_mismatch": 0,
         "count": 100, "violations": 0, "ulp_dtype": "float32", "worst_index": 7}
    m.update(over)
    return m


def synthetic(n: int, k: int) -> Report:
    names = ["ref"] + [f"ort:opt=v{j}:threads={j}" for j in range(k)]
    tensors = []
    for i in range(n):
        t = TensorReport(f"/layers.{i}/mlp/MatMul_output_0", "MatMul", f"n{i}", i, [1, 64], "float32", i == n - 1)
        for j, v in enumerate(names[1:]):
            t.metrics[v] = metrics(snr_db=150.0 - i - j / 10, max_ulp=10 ** (i % 9), violations=i % 2,
                                   max_rel=math.inf if i == 3 else 1e-4)
        tensors.append(t)
    return Report(model={"path": "m.onnx", "sha256": "0" * 64, "opsets": {"ai.onnx": 17}},
                  reference="ref", tolerance={"atol": 1e-5, "rtol": 1e-5, "max_ulp": None},
                  variants=[VariantReport(v, v.split(":")[0], {}, "ok") for v in names], tensors=tensors,
                  first_divergence={v: tensors[0].name for v in names[1:]},
                  first_beyond_tolerance={v: tensors[1].name for v in names[1:]}, exit_code=1)


def test_a_failed_variants_stderr_is_plain_and_fits() -> None:
    """Colour codes and control characters in a worker's stderr are dropped; long lines are cut to the width."""
    r = synthetic(3, 1)
    r.variants.append(VariantReport("tvm", "tvm", {}, "crashed", error="the worker died from SIGSEGV",
                                    hint="try fewer taps", stderr_tail="\x1b[31mSegfault\x1b[0m\x07 in " + "x" * 300))
    lines = printed(r, 80)
    assert "      Segfault in xxx" in "\n".join(lines) and not ANSI.search("\n".join(lines))
    assert all(len(line) <= 80 for line in lines)


def test_a_caught_failure_shows_its_message_and_not_its_traceback(monkeypatch) -> None:
    """A failure the worker caught says what went wrong in its error line; the traceback behind it is for
    debugging: shown with -v (INFERCMP_DEBUG), not otherwise. A worker that died said nothing: its stderr shows."""
    monkeypatch.delenv("INFERCMP_DEBUG", raising=False)
    trace = 'Traceback (most recent call last):\n  File "worker.py", line 9, in run\nValueError: bad shape'
    r = synthetic(3, 1)
    r.variants.append(VariantReport("tvm", "tvm", {}, "failed", error="ValueError: bad shape", stderr_tail=trace))
    r.variants.append(VariantReport("tf", "tf", {}, "crashed", error="the worker died from SIGSEGV",
                                    stderr_tail="Fatal Python error: Segmentation fault"))
    text = "\n".join(printed(r, 100))
    assert "tvm: failed: ValueError: bad shape" in text and "Traceback" not in text
    assert "stderr (last lines):" in text and "Fatal Python error: Segmentation fault" in text
    monkeypatch.setenv("INFERCMP_DEBUG", "1")
    assert "Traceback (most recent call last):" in "\n".join(printed(r, 100))


def test_string_outputs_need_no_tolerance_figures(tmp_path: Path) -> None:
    """A string output that differs (ORT writes 9 where onnx.reference writes 9.0) passes no finite tolerance, and
    has no ULPs: the summary says so instead of printing atol inf."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["m"]),
                               helper.make_node("Cast", ["m"], ["s"], to=TensorProto.STRING)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("s", TensorProto.STRING, [4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(tmp_path / "str.onnx"))
    report = comparator.compare(tmp_path / "str.onnx", ["ort", "ref"],
                                inputs={"x": np.array([1.5, 0.1, 3.0, 1e-8], np.float32)})
    text = " ".join(line.strip() for line in check_layout(report, 80))
    assert "no tolerance passes: s differs by more than any finite tolerance" in text
    assert report.op_types()[0]["max_ulp"] is None


def test_latency_fits() -> None:
    """--time: a latency line in each timed variant's block, the reference's too (its only line), within the width;
    a bit-identical variant and one with a long name get theirs, a variant not timed none."""
    r = synthetic(6, 3)
    r.variants.append(VariantReport("ort:opt=disable", "ort", {}, "ok"))
    r.first_divergence["ort:opt=disable"] = None
    medians = [1.84e-3, 1.71e-3, 2.5e-5]  # ref, v1, v2; v3 is not timed
    for v, median in zip(r.variants, medians):
        v.timings["latency"] = {"runs": 20, "warmup": 1, "median_s": median, "min_s": median * 0.9,
                                "max_s": median * 1.5, "sample": 0}
    r.variants[-1].timings["latency"] = dict(r.variants[0].timings["latency"], median_s=1.2)
    for width in WIDTHS:
        lines = check_layout(r, width)
        text = " ".join(line.strip() for line in lines)
        assert "ref (reference): latency 1.84 ms median of 20" in text
        assert "latency 1.71 ms median of 20 (0.93x the reference)" in text
        assert "latency 0.025 ms median of 20 (0.014x the reference)" in text
        assert "latency 1,200 ms median of 20 (652x the reference)" in text  # the bit-identical variant
        assert text.count("latency ") == 4  # the fourth variant (ort:opt=v2:threads=2) was not timed
        if width == 80:
            assert any(line.startswith("    latency ") for line in lines)
    r.variants[0].timings.clear()  # the reference not timed: no line for it, no ratios
    text = " ".join(line.strip() for line in check_layout(r, 80))
    assert "(reference)" not in text and "the reference)" not in text and "latency 1.71 ms median of 20" in text


def test_the_references_observer_effect_is_shown() -> None:
    """The reference's block says what tapping changed in its final outputs: the other variants' intermediate
    tensors are then compared with a graph fused otherwise than the reference's run (its final outputs)."""
    r = synthetic(6, 2)
    out = r.tensors[-1].name
    r.observer_effect = {"ref": True, "ort:opt=v0:threads=0": False}
    r.observer_detail = {"ref": {out: {"max_ulp": 17_301_504, "max_abs": 3.457e-6}}}
    for width in WIDTHS:
        text = " ".join(line.strip() for line in check_layout(r, width))
        assert f"ref (reference): observer effect: tapping changed {out} (max ULP 1.7e7)" in text
    r.observer_effect["ref"] = False
    assert "observer effect" not in " ".join(printed(r, 100))
