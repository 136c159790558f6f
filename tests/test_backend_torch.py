"""The torch backend: options and their validation, provenance of the environment knobs, float64 compute, the
error paths, and compare() end to end. Its ops are tested with the TF executor's in test_ops.py."""
import importlib.util
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx.reference import ReferenceEvaluator

import comparator
from comparator.backends import get as get_backend
from comparator.errors import BackendError, UnsupportedError, UsageError
from conftest import ROOT, const, vi
from onnx_cases import make_model, one_node, run
from onnx_cases import options as case_options

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

BACKEND = get_backend("torch")


def options(**raw):
    return case_options("torch", **raw)


# --- unsupported and failing paths ---------------------------------------------------------------------

def test_string_tensors_are_unsupported_at_open():
    model = one_node("Identity", [("x", T.STRING, [2])], [("y", T.STRING, [2])], 17)
    with pytest.raises(UnsupportedError, match="tensor type STRING is not supported by the torch backend"):
        run("torch", model, {"x": np.array(["a", "b"], dtype=object)})


def test_run_time_failure_names_the_node():
    model = make_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="bad_reshape")],
                       [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, None)], [const("shape", np.array([5], np.int64))])
    with pytest.raises(BackendError) as err:
        run("torch", model, {"x": np.ones((2, 3), np.float32)})
    assert not isinstance(err.value, UnsupportedError)
    assert "node 'bad_reshape' (op Reshape, opset 17; inputs: x float32[2, 3], shape int64[1])" in str(err.value)
    assert "is invalid" in str(err.value)


def test_missing_feed_is_an_input_error():
    from comparator.errors import InputError

    model = one_node("Relu", [("x", T.FLOAT, [2])], [("y", T.FLOAT, [2])], 17)
    with pytest.raises(InputError, match="no feed for graph input 'x'"):
        run("torch", model, {})


def test_missing_torch_kernel_for_a_dtype_is_unsupported():
    model = one_node("Det", [("x", T.FLOAT16, [3, 3])], [("y", T.FLOAT16, None)], 17)
    with pytest.raises(UnsupportedError, match="op Det, opset 17.* torch has no kernel for it .*Half"):
        run("torch", model, {"x": np.eye(3, dtype=np.float16)})


def test_cuda_options_need_device_cuda():
    with pytest.raises(UsageError, match="tf32 applies only to device=cuda"):
        BACKEND.validate(options(tf32="on"))
    BACKEND.validate(options(device="cuda", tf32="on", cudnn_benchmark="on"))  # accepted with the device


def test_option_values_are_checked():
    with pytest.raises(UsageError, match="valid values: host\\|default\\|avx2\\|avx512"):
        options(isa="sse2")
    with pytest.raises(UsageError, match="valid options"):
        options(precision="high")


def test_environment_knobs():
    assert BACKEND.environment(options()) == {}
    env = BACKEND.environment(options(isa="avx2", onednn_isa="avx512_core", deterministic="on", device="cuda"))
    assert env == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
                   "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def test_device_cuda_without_cuda_is_a_backend_error(models):
    import torch

    if torch.cuda.is_available():
        out = BACKEND.open(str(models.small), options(device="cuda")).run({"x": np.ones((1, 4), np.float32)})
        assert out["y"].dtype == np.float32
        return
    with pytest.raises(BackendError, match="device=cuda: this torch .* sees no CUDA device") as err:
        BACKEND.open(str(models.small), options(device="cuda"))
    assert "GPU" in err.value.hint


def test_provenance_reports_effective_knobs_and_what_did_not_apply(models):
    import torch

    have = torch.backends.cpu.get_cpu_capability()
    other = "default" if have != "DEFAULT" else "avx2"
    prov = BACKEND.open(str(models.small), options(isa=other, threads=1)).provenance()
    assert prov["cpu_capability"] == have and prov["threads"] == 1
    assert any(f"isa={other} requested, torch dispatches to {have}" in n for n in prov["notes"])
    assert prov["mkldnn_enabled"] is True and prov["deterministic"] is False


def test_import_does_not_import_torch():
    code = "import sys, comparator.backends.torch as t; t.TorchBackend().options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


# --- float64, end to end, compile ----------------------------------------------------------------------

def test_float64_outputs_are_float64_and_closer_to_exact_math():
    model = onnx.load(str(ROOT / "models" / "cnn.onnx"))
    x = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
    from comparator.graph.promote import promote_float64

    exact = ReferenceEvaluator(promote_float64(model)).run(None, {"image": x.astype(np.float64)})[0]
    f64 = run("torch", model, {"image": x}, dtype="float64")["probs"]
    f32 = run("torch", model, {"image": x})["probs"]
    assert f64.dtype == np.float64 and f32.dtype == np.float32
    err64, err32 = np.abs(f64 - exact).max(), np.abs(f32 - exact).max()
    assert err64 < 1e-15 < 1e-10 < err32 < 1e-6


@pytest.fixture(scope="module")
def cnn_report(models):
    return comparator.compare(models.cnn, ["ort", "torch", "torch:isa=default"])


def test_compare_cnn_with_ort_aligns_every_tensor(cnn_report):
    assert [v.status for v in cnn_report.variants] == ["ok", "ok", "ok"]
    assert len(cnn_report.tensors) == 17
    for t in cnn_report.tensors:
        m = t.metrics["torch"]
        assert m["max_abs"] < 1e-4, (t.name, m)
    assert cnn_report.passed


def test_isa_environment_knob_reaches_torch(cnn_report):
    import torch

    prov = cnn_report.variant("torch:isa=default").provenance
    assert prov["cpu_capability"] == "DEFAULT" and prov["aten_cpu_capability_env"] == "default"
    assert "notes" not in prov
    assert cnn_report.variant("torch").provenance["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # oneDNN's convolutions ignore ATen's capability: the first Conv is bit-identical across the two torch
    # variants, the BatchNormalization after it (an ATen kernel) is not
    first, second = cnn_report.tensors[:2]
    assert (first.op_type, second.op_type) == ("Conv", "BatchNormalization")
    together = [c for c in first.classes if "torch" in c][0]
    assert "torch:isa=default" in together
    assert not any({"torch", "torch:isa=default"} <= set(c) for c in second.classes)


def test_inductor_compile_matches_eager():
    # The one torch.compile test: the first compile costs tens of seconds.
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    half = helper.make_tensor("half", T.FLOAT, [1], [0.5])
    model = make_model([helper.make_node("Softmax", ["x"], ["s"], axis=-1),
                        helper.make_node("Constant", [], ["c"], value=half),  # a tensor attribute, traced
                        helper.make_node("Mul", ["s", "x"], ["m"]),
                        helper.make_node("Add", ["m", "c"], ["y"])],
                       [vi("x", T.FLOAT, [2, 3, 4])], [vi("y", T.FLOAT, [2, 3, 4])])
    from comparator.backends.torch import open_model

    session = open_model(model, options(compile="inductor"))
    got = session.run({"x": x})["y"]
    np.testing.assert_allclose(got, run("torch", model, {"x": x})["y"], rtol=1e-6, atol=1e-7)
    assert session.provenance()["compile"] == "inductor"
