"""The library as a user meets it: the README's code runs as written, public names are discoverable and
documented, Report has a short repr, a summary and strict-JSON to_dict, wrong argument types say what to pass."""
import ast
import copy
import dataclasses
import importlib
import inspect
import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import comparator
from comparator import Tolerance
from comparator.result import Report
from conftest import MODELS, ROOT


def strict(obj):
    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(json.dumps(obj, allow_nan=False), parse_constant=refuse)


@pytest.fixture(scope="module")
def report():
    return comparator.compare(MODELS / "cnn.onnx", ["ort", "ref:dtype=float64"])


# The README ------------------------------------------------------------------------------------------------------

def python_blocks(path):
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_readme_python_blocks_run_as_written(tmp_path):
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "the README has no python block"
    (tmp_path / "models").symlink_to(MODELS)  # the snippet runs from the repository's root
    for i, code in enumerate(blocks):
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"README python block {i}:\n{code}\n{proc.stderr}"
    out = proc.stdout
    assert out.startswith("Report(model='digits_cnn.onnx', reference='ort'") and "PASS" in out
    saved = json.loads((tmp_path / "digits.json").read_text(), parse_constant=lambda c: 1 / 0)
    assert Report.from_dict(saved).passed


# Discoverable, typed, documented -----------------------------------------------------------------------------------

def test_public_names():
    assert set(comparator.__all__) == {"compare", "Variant", "Report", "Tolerance", "InfercmpError"}
    assert set(dir(comparator)) == {*comparator.__all__, "__version__"}
    assert (ROOT / "comparator" / "py.typed").exists()
    assert inspect.signature(comparator.compare).parameters["tolerance"].default is None
    assert comparator.compare.__doc__ == importlib.import_module("comparator.api").compare.__doc__


def test_the_suite_runs_on_the_lowest_supported_python():
    """requires-python names the lowest version, and CI (CI=true, .ci/run) runs the suite on exactly that one."""
    floor = re.search(r'^requires-python = ">=(\d+)\.(\d+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert floor, "requires-python is not a plain lower bound"
    lowest = (int(floor[1]), int(floor[2]))
    assert sys.version_info[:2] >= lowest
    if os.environ.get("CI") == "true":
        assert sys.version_info[:2] == lowest, f"CI runs {sys.version_info[:2]}, requires-python says {lowest}"


def test_version_matches_the_package_metadata():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{comparator.__version__}"' in text


LIBRARY = ["comparator", "comparator.api", "comparator.arguments", "comparator.result", "comparator.variant",
           "comparator.errors", "comparator.testing", "comparator.caches", "comparator.backends",
           "comparator.backends.contract", "comparator.backends.options", "comparator.measure.metrics",
           "comparator.measure.kernel", "comparator.gate.policy", "comparator.gate.bundle", "comparator.gate.verdict",
           "comparator.gate.check", "comparator.report.json", "comparator.fileio", "comparator.graph.stored",
           "comparator.events"]


def undocumented(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    missing = []
    for name in names:
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) != module_name:
            continue  # imported here, checked where it is defined (when that module is in LIBRARY)
        doc = obj.__doc__ or ""
        if not doc.strip() or (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")):  # dataclass default
            missing.append(name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else \
                    value.fget if isinstance(value, property) else value
                if not attr.startswith("_") and inspect.isfunction(func) and not (func.__doc__ or "").strip():
                    missing.append(f"{name}.{attr}")
    return missing


@pytest.mark.parametrize("module", LIBRARY)
def test_every_public_function_and_class_has_a_docstring(module):
    assert undocumented(module) == []


# Report: repr, summary, strict JSON --------------------------------------------------------------------------------

def test_repr_is_one_short_line(report):
    text = repr(report)
    assert text == ("Report(model='cnn.onnx', reference='ort', variants=['ref:dtype=float64'], "
                    f"tensors={len(report.tensors)}, passed={report.passed}, exit_code={report.exit_code})")
    many = dataclasses.replace(report, variants=report.variants + [
        dataclasses.replace(report.variants[1], name=f"ort:threads={i}") for i in range(6)])
    assert "'ort:threads=2', +3 more]" in repr(many) and len(repr(many)) < 200


def test_summary(report):
    lines = report.summary().splitlines()
    assert lines[0].startswith("cnn.onnx: PASS: every final output within tolerance (atol 1e-05, rtol 1e-05; "
                               "reference ort)")
    first = report.first_divergence["ref:dtype=float64"]
    assert lines[1] == (f"  ref:dtype=float64: first divergence {first} ({report.tensor(first).op_type}); "
                        f"first beyond tolerance none; 0 of {len(report.tensors)} tensors beyond tolerance")
    assert len(lines) == 2


def test_summary_of_a_failing_report(report):
    r = copy.deepcopy(report)
    y = r.tensors[-1]
    y.metrics["ref:dtype=float64"]["violations"] = 3
    r.first_beyond_tolerance["ref:dtype=float64"] = y.name
    r.passed, r.exit_code = False, 1
    r.variants.append(type(r.variants[0])("tvm", "tvm", {}, "failed", error="backend unavailable: no tvm"))
    text = r.summary()
    assert "FAIL" in text.splitlines()[0]
    assert f"first beyond tolerance {y.name} ({y.op_type}); 1 of {len(r.tensors)} tensors beyond" in text
    assert "  tvm: failed: backend unavailable: no tvm" in text
    assert r.beyond_tolerance("ref:dtype=float64") == [y.name]


def test_to_dict_is_strict_json_everywhere(report):
    r = copy.deepcopy(report)
    m = r.tensors[0].metrics["ref:dtype=float64"]
    m.update(snr_db=math.inf, max_rel=-math.inf, cosine=math.nan, max_abs=np.float32(0.5), count=np.int64(7))
    r.origins = {"ref:dtype=float64": [{"tensor": "nan", "node": "n", "op_type": "Conv", "max_ulp": 3,
                                        "max_rel": math.inf, "max_abs": np.float64(math.nan)}]}
    r.tolerance = {"atol": math.inf, "rtol": 0.0, "max_ulp": None}
    r.variants[0].provenance["odd"] = {"x": [math.nan, np.float32(2.5)]}
    data = strict(r.to_dict())
    got = data["tensors"][0]["metrics"]["ref:dtype=float64"]
    assert (got["snr_db"], got["max_rel"], got["cosine"], got["max_abs"], got["count"]) == ("inf", "-inf", "nan",
                                                                                          0.5, 7)
    assert data["origins"]["ref:dtype=float64"][0]["max_rel"] == "inf" and data["tolerance"]["atol"] == "inf"
    assert data["variants"][0]["provenance"]["odd"] == {"x": ["nan", 2.5]}
    back = Report.from_dict(data)
    bm = back.tensors[0].metrics["ref:dtype=float64"]
    assert bm["snr_db"] == math.inf and bm["max_rel"] == -math.inf and math.isnan(bm["cosine"])
    origin = back.origins["ref:dtype=float64"][0]
    assert origin["tensor"] == "nan" and origin["max_rel"] == math.inf and math.isnan(origin["max_abs"])
    assert back.tolerance["atol"] == math.inf
    # What the JSON report writes and what to_dict gives are the same data.
    from comparator.report import json as json_report

    assert json.loads(json_report.render(r)) == data


def test_to_dict_round_trip(report):
    assert Report.from_dict(strict(report.to_dict())) == report


# Wrong argument types ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, says", [
    ({"tolerance": 1e-3}, "compare(tolerance=0.001): pass a comparator.Tolerance, e.g. Tolerance(atol=1e-3"),
    ({"variants": "ort", "model": 3}, "compare(model=3): pass the path of an .onnx file"),
    ({"variants": 5}, "compare(variants=5): pass variant strings"),
    ({"inputs": [1, 2]}, "compare(inputs=[1, 2]): pass None (seeded random feeds), the path of an .npz/.npy"),
    ({"shapes": {"batch": 4}}, "pass a dict of input or dim name -> tuple of ints"),
    ({"seed": "1"}, "compare(seed='1'): pass an int, not str"),
    ({"isolate": "yes"}, "compare(isolate='yes'): pass True or False"),
    ({"max_disk": "20G"}, "parse_size"),
    ({"max_memory": 1.5e9}, "compare(max_memory=1500000000.0): pass bytes as an int"),
    ({"reference": 1}, "compare(reference=1): pass one variant string"),
    ({"tap_spec": 3}, "compare(tap_spec=3): pass \"all\", \"fused\", \"outputs\""),
])
def test_wrong_types_say_what_to_pass(kwargs, says):
    args = {"model": str(MODELS / "cnn.onnx"), "variants": ["ort"], **kwargs}
    start = time.perf_counter()
    with pytest.raises(TypeError) as info:
        comparator.compare(**args)
    assert says in str(info.value)
    assert time.perf_counter() - start < 2  # before anything loads or runs


def test_empty_variants_and_unknown_keywords():
    from comparator.errors import UsageError

    with pytest.raises(UsageError, match="no variants"):
        comparator.compare(str(MODELS / "cnn.onnx"), [])
    with pytest.raises(TypeError, match="unexpected keyword argument 'tolerence'"):
        comparator.compare(str(MODELS / "cnn.onnx"), ["ort"], tolerence=Tolerance())


# Version notes -----------------------------------------------------------------------------------------------------

def test_messages_name_no_hard_coded_library_version():
    """Version notes print the installed library's version (`onnxruntime {ort.__version__}`), never a literal."""
    pattern = re.compile(r"\b(onnxruntime|onnx|torch|tensorflow|TensorFlow|tvm|TVM|numpy|NumPy) \d+\.\d+")
    found = []
    for path in (ROOT / "comparator").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and pattern.search(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:80]!r}")
    assert found == []
