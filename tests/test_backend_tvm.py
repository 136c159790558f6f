"""The tvm backend: Relax import, LLVM targets, the compile cache, and its error paths.

Compiling is what costs here, so the models are tiny, every test shares one module-wide cache folder, and
most tests call the backend in this process (one TVM import) rather than through worker processes.
"""
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

from conftest import ROOT, const, make_model, vi
from onnx_cases import make_model as unchecked_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tvm") is None, reason="apache-tvm is not installed")


def net_model():
    """Conv -> BN -> Relu -> Flatten -> MatMul (a 144-long reduction) -> Erf -> Softmax, plus the Shape of the
    input as a second output (TVM returns shapes as a Shape object, not a tensor)."""
    rng = np.random.default_rng(7)
    inits = [const("W", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
             const("scale", (rng.random(4) + 0.5).astype(np.float32)),
             const("bias", rng.standard_normal(4).astype(np.float32)),
             const("mean", rng.standard_normal(4).astype(np.float32)),
             const("var", (rng.random(4) + 0.5).astype(np.float32)),
             const("fc", (rng.standard_normal((144, 10)) / 12).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["x", "W"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["conv", "scale", "bias", "mean", "var"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["relu"], name="relu"),
             helper.make_node("Flatten", ["relu"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "fc"], ["logits"], name="fc"),
             helper.make_node("Erf", ["logits"], ["erf"], name="erf"),
             helper.make_node("Softmax", ["erf"], ["probs"], axis=1, name="softmax"),
             helper.make_node("Shape", ["x"], ["xshape"], name="shape")]
    return make_model(nodes, [vi("x", T.FLOAT, [1, 3, 6, 6])],
                      [vi("probs", T.FLOAT, [1, 10]), vi("xshape", T.INT64, [4])], inits)


def unsupported_model():
    """Celu has no converter in TVM's Relax frontend; Foo is an op of a custom domain."""
    model = unchecked_model([helper.make_node("Celu", ["x"], ["c"], name="celu"),
                             helper.make_node("Foo", ["c"], ["y"], domain="com.example", name="foo")],
                            [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, [2, 3])])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One cache folder for the module, in this process and in the workers it starts."""
    root = tmp_path_factory.mktemp("tvm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFERCMP_CACHE_DIR", str(root / "cache"))
        mp.delenv("INFERCMP_NO_CACHE", raising=False)
        paths = {}
        for name, proto in {"net": net_model(), "unsupported": unsupported_model()}.items():
            paths[name] = root / f"{name}.onnx"
            onnx.save(proto, str(paths[name]))
        yield type("Env", (), {"root": root, "cache": root / "cache" / "tvm", **paths})


def backend_and(raw=None):
    from comparator.backends import get
    from comparator.backends.options import resolve

    backend = get("tvm")
    options = resolve("tvm", backend.options, raw or {})
    backend.validate(options)
    return backend, options


def open_session(path, raw=None):
    backend, options = backend_and(raw)
    t0 = time.perf_counter()
    session = backend.open(str(path), options)
    return session, time.perf_counter() - t0


FEED = {"x": np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)}


def test_import_does_not_import_tvm():
    modules = ", ".join(f"comparator.backends.{m}" for m in ("tvm", "tvm.cache", "tvm.model", "tvm.target"))
    code = (f"import sys, {modules}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tvm', 'tvm_ffi', 'torch')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_compare_with_ort_aligns_every_tensor(env):
    from comparator import compare

    report = compare(env.net, ["ort", "tvm"], seed=1)
    tvm_run = report.variant("tvm")
    assert tvm_run.status == "ok", (tvm_run.error, tvm_run.stderr_tail)
    names = {t.name for t in report.tensors}
    assert {"conv", "bn", "relu", "flat", "logits", "erf", "probs", "xshape"} <= names
    for t in report.tensors:
        assert "tvm" in t.metrics, t.name
        assert t.metrics["tvm"]["max_abs"] < 1e-4, (t.name, t.metrics["tvm"])
    assert report.tensor("xshape").metrics["tvm"]["max_abs"] == 0
    prov = tvm_run.provenance
    assert prov["tvm"].startswith("0.") and prov["host_cpu"] and json.loads(prov["target"])["kind"] == "llvm"
    assert prov["cache"]["enabled"] is True


def test_workers_that_share_the_cores_leave_tvm_threads_unpinned(env, monkeypatch):
    """TVM's pool pins its threads, the calling one included, to the same cores in every worker: workers that run
    at the same time leave them unpinned (it changes where threads run, not what they compute), a worker alone keeps
    TVM's default, and the user's setting stands."""
    from comparator import compare

    monkeypatch.delenv("TVM_BIND_THREADS", raising=False)
    both = ["tvm", "tvm:threads=1"]
    together = compare(env.net, both, jobs=2, tap_spec="outputs", seed=1)
    alone = compare(env.net, both, jobs=1, tap_spec="outputs", seed=1)  # one worker at a time
    for name in both:
        assert together.variant(name).provenance["threads"]["TVM_BIND_THREADS"] == "0", name
        assert alone.variant(name).provenance["threads"]["TVM_BIND_THREADS"] is None, name
    assert together.tensor("probs").metrics == alone.tensor("probs").metrics
    monkeypatch.setenv("TVM_BIND_THREADS", "1")
    kept = compare(env.net, both, jobs=2, tap_spec="outputs", seed=1)
    assert {kept.variant(name).provenance["threads"]["TVM_BIND_THREADS"] for name in both} == {"1"}


def test_second_compare_skips_compilation(env):
    from comparator import compare

    variant = "tvm:approx=on:opt=fused"  # options no other test compiles
    first = compare(env.net, [variant], seed=1).variant(variant)
    second = compare(env.net, [variant], seed=1).variant(variant)
    assert first.provenance["cache"]["hit"] is False and second.provenance["cache"]["hit"] is True
    # The worker's provenance is the tapped run's; the untapped open is timed separately.
    assert second.timings["untapped"]["open_s"] < first.timings["untapped"]["open_s"]


def test_outputs_by_name_and_declared_dtype(env):
    session, _ = open_session(env.net)
    out = session.run(FEED)
    assert set(out) == {"probs", "xshape"}
    assert out["xshape"].dtype == np.int64 and out["xshape"].tolist() == [1, 3, 6, 6]
    assert out["probs"].shape == (1, 10) and abs(float(out["probs"].sum()) - 1) < 1e-5


def test_single_output_graph(env, models):
    # A one-output graph comes back from the VM as a bare tensor, not a tuple.
    session, _ = open_session(models.small)
    out = session.run({"x": np.ones((1, 4), np.float32)})
    assert list(out) == ["y"]
    w = np.arange(16, dtype=np.float32).reshape(4, 4) / 7
    np.testing.assert_allclose(out["y"], np.maximum(np.ones((1, 4), np.float32) @ w, 0), rtol=1e-6)


def test_dynamic_batch_compiles_symbolically(env, models):
    session, _ = open_session(models.dynamic)
    out = session.run({"x": -np.ones((3, 4), np.float32), "z": np.ones((2, 5), np.float32)})
    assert out["rx"].shape == (3, 4) and (out["rx"] == 0).all() and (out["nz"] == -1).all()
    assert session.provenance()["shapes"] == "symbolic"


def test_dims_the_frontend_needs_are_bound_at_the_first_run(env, tmp_path):
    # TVM's GroupNormalization converter needs the input's rank; this input declares no shape at all.
    graph = helper.make_graph([helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2)], "g",
                              [vi("x", T.FLOAT, None)], [vi("y", T.FLOAT, None)],
                              [const("s", np.ones(4, np.float32)), const("b", np.zeros(4, np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "gn.onnx"))
    session, _ = open_session(tmp_path / "gn.onnx")
    assert "statically known input rank" in session.provenance()["bound_at_run"]["why"]
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    y = session.run({"x": x})["y"]
    groups = x.reshape(2, 2, 6)
    want = ((groups - groups.mean(-1, keepdims=True)) / np.sqrt(groups.var(-1, keepdims=True) + 1e-5)).reshape(2, 4, 3)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert session.provenance()["bound_at_run"]["compiled_for"] == [{"shapes": {"x": [2, 4, 3]}, "values": {}}]


def test_inputs_the_frontend_needs_constant_are_bound_per_value(env, tmp_path):
    # ReduceSum's axes is a tensor input since opset 13; TVM converts it only when it is a constant.
    model = make_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0, name="sum")],
                       [vi("x", T.FLOAT, [2, 3]), vi("axes", T.INT64, [1])], [vi("y", T.FLOAT, ["n"])], opset=17)
    onnx.save(model, str(tmp_path / "sum.onnx"))
    session, _ = open_session(tmp_path / "sum.onnx")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(session.run({"x": x, "axes": np.array([1])})["y"], [3, 12])
    np.testing.assert_array_equal(session.run({"x": x, "axes": np.array([0])})["y"], [3, 5, 7])
    bound = session.provenance()["bound_at_run"]
    assert bound["values"] == ["axes"] and [c["values"] for c in bound["compiled_for"]] == [{"axes": [1]},
                                                                                            {"axes": [0]}]


def test_shape_values_reach_ops_that_take_tensors(env, tmp_path):
    # TVM's Mul converter rejects the Relax shape value that Shape produces; the backend casts it to a tensor.
    model = make_model([helper.make_node("Shape", ["x"], ["s"], name="shape"),
                        helper.make_node("Mul", ["s", "two"], ["y"], name="mul")],
                       [vi("x", T.FLOAT, [2, 3])], [vi("s", T.INT64, [2]), vi("y", T.INT64, [2])],
                       [const("two", np.array(2, np.int64))])
    onnx.save(model, str(tmp_path / "shape.onnx"))
    out = open_session(tmp_path / "shape.onnx")[0].run({"x": np.zeros((2, 3), np.float32)})
    assert out["s"].tolist() == [2, 3] and out["y"].tolist() == [4, 6]


def test_mattr_is_split_into_llvm_features():
    from comparator.backends.tvm.target import split_mattr

    known = {"avx2", "fma", "avx512f", "amx-tile", "amx", "sse4.1"}
    assert split_mattr("+avx2+fma-avx512f", known, "cpu", known) == ["+avx2", "+fma", "-avx512f"]
    # '-' inside a feature name: the longest known name wins.
    assert split_mattr("-amx-tile-avx512f+sse4.1", known, "cpu", known) == ["-amx-tile", "-avx512f", "+sse4.1"]


def test_mattr_reaches_the_target(env):
    session, _ = open_session(env.net, {"mattr": "-avx512f"})
    prov = session.provenance()
    assert prov["target_spec"]["mattr"] == ["-avx512f"]
    assert "avx512f" not in prov["simd_features"]
    assert json.loads(prov["target"])["mattr"] == ["-avx512f"]


def test_fastmath_changes_the_numbers(env):
    # LLVM's fast-math flags let it reassociate the MatMul and Softmax sums: different last bits.
    plain = open_session(env.net)[0].run(FEED)["probs"]
    fast_session = open_session(env.net, {"fastmath": "on"})[0]
    fast = fast_session.run(FEED)["probs"]
    assert json.loads(fast_session.provenance()["target"])["fast-math"] is True
    assert not np.array_equal(plain, fast)
    np.testing.assert_allclose(plain, fast, rtol=1e-5, atol=1e-7)


def test_cache_hit_is_much_faster(env):
    first, t_first = open_session(env.net, {"opt": "fused"})
    second, t_second = open_session(env.net, {"opt": "fused"})
    assert first.provenance()["cache"]["hit"] is False and first.provenance()["cache"]["stored"] is True
    assert second.provenance()["cache"]["hit"] is True
    assert t_second < t_first / 3, (t_first, t_second)
    np.testing.assert_array_equal(first.run(FEED)["probs"], second.run(FEED)["probs"])


def test_worker_environment_skips_device_backends_for_llvm_only(monkeypatch):
    backend, options = backend_and()
    monkeypatch.delenv("TVM_DEVICE_BACKEND_AUTOLOAD", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")  # NumPy's BLAS threads: the user's choice stands (test_backend_ort)
    assert backend.environment(options) == {"TVM_DEVICE_BACKEND_AUTOLOAD": "0"}
    assert backend.environment(backend_and({"threads": "2"})[1]) == {"TVM_NUM_THREADS": "2",
                                                                      "TVM_DEVICE_BACKEND_AUTOLOAD": "0"}
    assert backend.environment(backend_and({"target": "cuda"})[1]) == {}
    monkeypatch.setenv("TVM_DEVICE_BACKEND_AUTOLOAD", "1")  # the user's own choice stands
    assert backend.environment(options) == {}


def test_cache_hit_in_a_worker_process_reads_no_more_than_it_needs(env):
    """As a worker opens a cached model: torch and the Relax frontend are never imported, torch stays
    importable, and the runtime functions the device backends' library holds are there."""
    backend, options = backend_and()
    assert open_session(env.net)[0].provenance()["cache"]["key"]  # compiled and stored (or already there)
    code = ("import importlib.util, sys; from comparator import backends; from comparator.variant import Variant; "
            "backend, options = backends.resolve_variant(Variant.parse('tvm')); "
            f"s = backend.open({str(env.net)!r}, options); import tvm; "
            "print(s.provenance()['cache']['hit'], 'torch' in sys.modules, 'tvm.relax.frontend.onnx' in sys.modules,"
            " tvm.get_global_func('tvm.contrib.sort.topk', allow_missing=True) is not None,"
            " importlib.util.find_spec('torch') is None or __import__('torch') is not None)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, **backend.environment(options)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False", "False", "True", "True"]


@pytest.mark.parametrize("damage", ["library", "sidecar"])
def test_corrupt_entry_is_recompiled(env, damage):
    raw = {"approx": "on"}
    key = open_session(env.net, raw)[0].provenance()["cache"]["key"]
    victim = env.cache / (f"{key}.so" if damage == "library" else f"{key}.json")
    # Replaced, not overwritten in place: this process still has the library mapped.
    (env.root / "garbage").write_bytes(b"\x7fELF garbage")
    os.replace(env.root / "garbage", victim)
    session, _ = open_session(env.net, raw)
    cache = session.provenance()["cache"]
    assert cache["hit"] is False and cache["discarded_bad_entry"] and cache["stored"] is True
    assert np.isfinite(session.run(FEED)["probs"]).all()
    assert open_session(env.net, raw)[0].provenance()["cache"]["hit"] is True


def test_no_cache_env_writes_nothing(env, monkeypatch, tmp_path):
    monkeypatch.setenv("INFERCMP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("INFERCMP_NO_CACHE", "1")
    cache = open_session(env.net)[0].provenance()["cache"]
    assert cache["enabled"] is False and cache["hit"] is False and "stored" not in cache
    assert not any(tmp_path.iterdir())


def test_unknown_mattr_lists_what_the_host_offers(env):
    from comparator.errors import BackendError

    with pytest.raises(BackendError) as info:
        open_session(env.net, {"mattr": "+avx2+nonesuchfeature"})
    assert "nonesuchfeature" in info.value.message
    assert info.value.hint.startswith("the host CPU (") and len(info.value.hint.split()) > 5


def test_mattr_syntax_and_cuda_only_options_are_usage_errors():
    from comparator.errors import UsageError

    for raw in ({"mattr": "avx2"}, {"mattr": "+avx2,+fma"}, {"target": "cuda", "mattr": "+avx2"},
                {"target": "cuda", "fastmath": "on"}):
        with pytest.raises(UsageError):
            backend_and(raw)


def test_unsupported_ops_are_named_before_compiling(env):
    from comparator.errors import UnsupportedError

    before = set(env.cache.glob("*")) if env.cache.exists() else set()
    with pytest.raises(UnsupportedError) as info:
        open_session(env.unsupported)
    assert "op Celu (opset 17)" in info.value.message and "op com.example.Foo (opset 1)" in info.value.message
    assert (set(env.cache.glob("*")) if env.cache.exists() else set()) == before


def test_cuda_without_a_gpu_says_so(env):
    from comparator.backends.tvm import import_tvm

    if import_tvm().cuda(0).exist:
        pytest.skip("this machine has a CUDA device")
    from comparator.errors import BackendError

    with pytest.raises(BackendError, match="cuda"):
        open_session(env.net, {"target": "cuda"})
