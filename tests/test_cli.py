"""The `infercmp` command through typer's CliRunner and through real subprocesses: exit codes 0/1/2/3, the
table and the JSON report, `backends`, and errors as one line plus a hint (a traceback only when debugging)."""
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from comparator.cli import app
from comparator.errors import UsageError
from comparator.report import json as json_report
from conftest import ROOT, assert_clean_error

SCRIPT = Path(sys.executable).parent / "infercmp"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def run(*args, debug=False, script=False):
    """A real process: `python -m comparator.cli ARGS`, or the installed `infercmp` script."""
    env = dict(os.environ)
    env.pop("INFERCMP_DEBUG", None)
    if debug:
        env["INFERCMP_DEBUG"] = "1"
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "comparator.cli"]
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)


# ---- CliRunner

def test_compare_happy_path(models, tmp_path):
    result = invoke("compare", models.small, "--backends", "ort,ort:opt=disable", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "ort:opt=disable: bit-identical to the reference on every tensor" in result.output  # the summary
    assert "PASS: final outputs within tolerance" in result.output
    assert f"JSON report: {tmp_path / 'r.json'}" in result.output
    report = json_report.read(tmp_path / "r.json")
    assert [v.name for v in report.variants] == ["ort", "ort:opt=disable"] and report.passed


def test_tolerance_flags_set_the_exit_code(models):
    strict = invoke("compare", models.exp_chain, "-b", "ort", "-b", "ref", "--atol", "0", "--rtol", "0", "-q")
    assert strict.exit_code == 1, strict.output
    assert "FAIL: final outputs beyond tolerance (atol 0, rtol 0)" in strict.output
    assert "┃" not in strict.output  # --quiet: no table
    loose = invoke("compare", models.exp_chain, "-b", "ort,ref", "--atol", "0", "--rtol", "0", "--max-ulp", "1000")
    assert loose.exit_code == 0, loose.output
    assert "max_ulp 1000" in loose.output


def test_failed_variant_exit_3(models, ort_lacks_tan_float64):
    result = invoke("compare", models.unsupported, "--backends", "ref,ort", "--tap", "outputs")
    assert result.exit_code == 3, result.output
    assert "ort: unsupported" in result.output and "Tan" in result.output
    assert "FAIL: a variant could not run" in result.output


def test_backends_listing():
    result = invoke("backends")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert any(line.startswith("ort: ONNX Runtime") for line in lines)
    assert any(line.startswith("ref: onnx.reference") for line in lines)
    text = result.output
    assert "disable|basic|extended|layout|all" in text and "model|float64" in text
    assert "integer >= 0" in text and "on|off" in text


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "compare" in result.output and "backends" in result.output


def test_runner_surfaces_the_typed_error():
    # CliRunner bypasses main(): the exception itself comes back, main() is what turns it into exit 2
    result = invoke("compare", "missing.onnx", "--backends", "ort:opt=fast")
    assert isinstance(result.exception, UsageError)


# ---- real processes

def test_subprocess_happy_path(models, tmp_path):
    proc = run("compare", models.small, "--backends", "ort,ref", "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert "y (output)" in proc.stdout and "PASS" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert json_report.read(tmp_path / "r.json").reference == "ort"


def test_a_reader_that_leaves_early_loses_no_report(models, tmp_path):
    """`infercmp compare ... --json r.json | head -1`: the pipe closes before the summary is printed. The report is
    still written, the exit code is still the verdict's, and nothing is said about the closed pipe."""
    env = {k: v for k, v in os.environ.items() if k != "INFERCMP_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "comparator.cli", "compare", str(models.small), "--backends",
                             "ort,ref", "--json", str(tmp_path / "r.json")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)
    proc.stdout.close()  # the reader is gone before the command prints a line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "error" not in stderr
    assert json_report.read(tmp_path / "r.json").exit_code == 0


EXIT = """
import atexit, sys
atexit.register(lambda: print("atexit ran", flush=True))
sys.argv = ["infercmp", *{args!r}]
from comparator.cli import run
run()
"""


@pytest.mark.parametrize("args, code", [(["--version"], 0), (["compare", "gone.onnx"], 2), (["nosuch"], 2)])
def test_the_command_exits_with_main_s_code_after_the_atexit_handlers(args, code, tmp_path):
    """`infercmp` (cli.run) skips the interpreter's teardown, not what a normal exit does before it."""
    proc = subprocess.run([sys.executable, "-c", EXIT.format(args=args)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout.rstrip().endswith("atexit ran") and "Traceback" not in proc.stderr


def phases(stderr: str) -> list[str]:
    """The progress lines on stderr, every one plain, less the model's loading, which gets a line only when it
    takes a second or more (on a loaded machine)."""
    lines = stderr.splitlines()
    assert all(line.startswith("infercmp: ") for line in lines) and "\x1b" not in stderr, stderr
    return [line for line in lines if not line.startswith("infercmp: loading and checking the model: done in ")]


def test_progress_in_a_log_is_plain_lines_per_phase(models, tmp_path):
    proc = run("compare", models.small, "--backends", "ort,ref")
    assert proc.returncode == 0, proc.stderr
    lines = phases(proc.stderr)
    assert lines[0] == "infercmp: running the variants (2)..."
    assert "infercmp: ort: untapped open" in lines and "infercmp: ref: tapped run" in lines
    assert any(line.startswith("infercmp: running the variants: done in ") for line in lines)
    assert lines[-1].startswith("infercmp: comparing tensors: done in ")


def test_capture_and_check_show_their_phases_in_a_log(models, tmp_path):
    """A release gate in CI runs for as long as its model needs: capture and check say what they are doing, in
    plain lines, as compare does; with -q they say nothing."""
    bundle = tmp_path / "b.icmp"
    proc = run("capture", models.small, "-b", "ort,ref", "-o", bundle)
    assert proc.returncode == 0, proc.stderr
    lines = phases(proc.stderr)
    assert lines[0] == "infercmp: running the variants (2)..." and "infercmp: ref: run" in lines  # --tap outputs
    assert any(line.startswith("infercmp: running the variants: done in ") for line in lines)
    proc = run("check", models.small, "--baseline", bundle, "-q")
    assert proc.returncode == 0, proc.stderr
    lines = phases(proc.stderr)
    assert lines[0] == "infercmp: running the variants (2)..."
    assert lines[-1].startswith("infercmp: comparing tensors: done in ")
    proc = run("-q", "check", models.small, "--baseline", bundle)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_script_backends():
    proc = run("backends", script=True)
    assert proc.returncode == 0, proc.stderr
    assert "ort:" in proc.stdout and "ref:" in proc.stdout


@pytest.mark.parametrize("args, needles", [
    (["--backends", "ort:opt=fast"], ["opt='fast'", "not a valid value"]),
    (["--backends", "ort:nothing=1"], ["no option 'nothing'"]),
    (["--backends", "nosuch"], ["unknown backend 'nosuch'"]),
    (["--backends", "ort,ort"], ["given twice"]),
    (["--shape", "x"], ["is not NAME=DIMS"]),
    (["--tap", "zzz*"], ["matches no tensor"]),
    (["--inputs", "gone.npz"], ["does not exist"]),
    (["--max-disk", "10"], ["need at least", "over the budget of 10 B (--max-disk)"]),
    (["--max-disk", "lots"], ["--max-disk='lots' is not a size"]),
    (["--max-memory", "lots"], ["--max-memory='lots' is not a size"]),
])
def test_usage_errors_exit_2_with_a_hint(models, args, needles):
    proc = run("compare", models.small, *args)
    assert proc.returncode == 2
    assert_clean_error(proc.stderr, *needles)
    assert proc.stdout == ""


def test_hint_is_printed(models):
    proc = run("compare", models.small, "--backends", "ort:opt=fast", script=True)
    assert proc.returncode == 2
    assert "  hint: valid values: disable|basic|extended|layout|all" in proc.stderr


# Usage errors raised by click (vendored by typer 0.29 as typer._click) exit 2 without a traceback.
@pytest.mark.parametrize("args, needle", [(["compare"], "Missing argument"),
                                          (["compare", "m.onnx", "--jobs", "many"], "Invalid value"),
                                          (["compare", "m.onnx", "--bogus"], "No such option"),
                                          (["frobnicate"], "No such command")])
def test_click_usage_errors_exit_2(args, needle):
    proc = run(*args)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(models):
    proc = run("compare", models.small, "--backends", "ort:opt=fast", debug=True)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr and "UsageError" in proc.stderr


def test_model_error_through_the_script(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\x00not onnx")
    proc = run("compare", tmp_path / "m.onnx", script=True)
    assert proc.returncode == 2
    assert_clean_error(proc.stderr, "m.onnx")


@pytest.mark.parametrize("script", [False, True])
def test_exit_codes_survive_a_real_process(models, script, ort_lacks_tan_float64):
    # CliRunner runs click in standalone mode; the installed script does not, and must still return the code.
    strict = run("compare", models.exp_chain, "-b", "ort,ref", "--atol", "0", "--rtol", "0", "-q", script=script)
    assert strict.returncode == 1, strict.stderr
    failed = run("compare", models.unsupported, "-b", "ref,ort", "--tap", "outputs", "-q", script=script)
    assert failed.returncode == 3, failed.stderr


def test_version_short_help_and_global_flags(models, tmp_path):
    from importlib import metadata

    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"infercmp {metadata.version('infercmp')}"
    assert run("-h").stdout == run("--help").stdout and "--install-completion" in run("--help").stdout
    quiet = run("-q", "compare", models.small, "-b", "ort,ref")
    assert quiet.returncode == 0 and "infercmp: running" not in quiet.stderr
    verbose = run("-v", "compare", models.small, "-b", "nosuch")
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr
    assert "--backends" in run("conformance", "--help").stdout


@pytest.mark.parametrize("command", [[], ["compare"], ["check"], ["diff"], ["capture"], ["inspect"], ["cache"],
                                     ["conformance"], ["matrix"], ["fleet"], ["advise"], ["audit"],
                                     ["audit", "batch"], ["audit", "threads"], ["audit", "repeat"]])
def test_help_shows_no_value_type_on_flags(command):
    # A flag takes no value: its row names no type; an option that takes one keeps it.
    text = invoke(*command, "--help").output
    assert "--help" in text and "<bool>" not in text
    assert command in ([], ["cache"], ["audit"]) or "<int>" in text or "<path>" in text or "<str>" in text


def test_inspect_a_model(models):
    proc = run("inspect", models.cnn)
    assert proc.returncode == 0, proc.stderr
    assert "ONNX model" in proc.stdout and "Conv 4" in proc.stdout and "tensors   17 can be tapped" in proc.stdout
    import json

    data = json.loads(run("inspect", models.cnn, "--json").stdout)
    assert data["op_types"]["Conv"] == 4 and data["outputs"] == ["probs"] and data["weights_bytes"] > 0
    assert data["constants"] == sum(1 for n in onnx.load(str(models.cnn)).graph.node if n.op_type == "Constant")


def test_inspect_counts_weights_held_in_constant_nodes(tmp_path):
    """paddle2onnx keeps a model's weights in Constant nodes: inspect counts them beside the initializers."""
    import json

    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((8, 4, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Constant", [], ["w"], value=w), helper.make_node("Conv", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 3, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m.onnx"))
    proc = run("inspect", tmp_path / "m.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "weights   0 initializers, 0 B; 1 Constant nodes, 1.1 KB; file" in proc.stdout, proc.stdout
    data = json.loads(run("inspect", tmp_path / "m.onnx", "--json").stdout)
    assert (data["constants"], data["constant_bytes"], data["weights_bytes"]) == (1, 8 * 4 * 9 * 4, 0)
