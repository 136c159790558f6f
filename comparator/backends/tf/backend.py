"""TensorFlow: an ONNX graph walker calling TF's own kernels, run eagerly, as a tf.function or compiled by XLA.

Every ONNX node becomes a few TF ops (op table in this package); every tensor keeps its ONNX name and ONNX
(channels-first) layout, so taps line up with every other backend. The oneDNN, ISA and XLA knobs are
environment variables that TensorFlow reads when it is imported, so they reach it through `environment()`.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import logging
import numpy as np

from ...errors import BackendError, UnsupportedError, UsageError
from ...graph import stored
from ..contract import BackendBase, idle_numpy_blas
from ..options import Option

# Values of ONEDNN_MAX_CPU_ISA known to the oneDNN (3.7) TensorFlow bundles, spelled as the torch backend does;
# host = leave the variable unset.
ONEDNN_ISAS = ("host", "all", "sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni",
               "avx512_core_bf16", "avx512_core_fp16", "avx512_core_amx", "avx512_core_amx_fp16")
# Names XLA:CPU accepts in --xla_cpu_max_isa (its flag's help text; each checked with a compile: XLA only warns
# "Unknown CPU ISA" and ignores any other name). host = no cap.
XLA_ISAS = ("host", "SSE4_2", "AVX", "AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX", "AMX_FP16")
MODES = ("eager", "graph", "xla")
# Element types TensorFlow has no kernels for; a model using them is refused before anything runs.
_NO_TF_TYPE = {"FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "UINT4", "INT4",
               "FLOAT4E2M1", "UINT2", "INT2", "COMPLEX64", "COMPLEX128"}


class TfBackend(BackendBase):
    name = "tf"
    description = "TensorFlow kernels (eager, tf.function graph with grappler, or XLA) on an ONNX walker"
    requires = ("tensorflow",)
    options = (
        Option("mode", str, "eager", "eager ops, one tf.function (grappler fusions), or tf.function "
               "compiled by XLA (jit_compile=True)", MODES),
        Option("onednn", bool, True, "TF_ENABLE_ONEDNN_OPTS: TensorFlow's oneDNN kernels (on by default on x86)"),
        Option("onednn_isa", str, "host", "ONEDNN_MAX_CPU_ISA: newest instruction set oneDNN may use (its "
               "convolutions, and the sgemm TF's Eigen matmul/conv call even with onednn=off)", ONEDNN_ISAS),
        Option("xla_isa", str, "host", "XLA_FLAGS=--xla_cpu_max_isa: newest instruction set XLA:CPU may "
               "emit (mode=xla)", XLA_ISAS),
        Option("threads", int, 0, "intra-op threads (0 = TensorFlow's default: one per core)", minimum=0),
        Option("inter_threads", int, 0, "inter-op threads (0 = default)", minimum=0),
        Option("deterministic", bool, False, "tf.config.experimental.enable_op_determinism"),
        Option("dtype", str, "float32", "float32 computes in the model's own types; float64 promotes every "
               "float tensor", ("float32", "float64")),
        Option("device", str, "cpu", "where the kernels run", ("cpu", "gpu")),
        Option("tf32", str, "default", "GPU only: TensorFloat-32 matmul/conv (TensorFlow's default: on "
               "for Ampere and newer)", ("default", "on", "off")),
    )

    def taps_subgraphs(self, options: Mapping[str, Any]) -> bool:
        return options["mode"] == "eager"  # graph and xla trace one function: nothing inside leaves it

    def fusion(self, options: Mapping[str, Any]) -> tuple[str, str]:
        if options["mode"] == "eager":
            return "node-by-node", ""
        rewriters = "grappler and XLA" if options["mode"] == "xla" else "grappler"
        return "unavailable", f"mode={options['mode']}: {rewriters} rewrite the traced function into a graph " \
                              "mapped back to no tensor of the model"

    def validate(self, options: Mapping[str, Any]) -> None:
        if options["device"] != "gpu" and options["tf32"] != "default":
            raise UsageError("tf option tf32 applies only to device=gpu", "add :device=gpu or drop tf32")
        if options["xla_isa"] != "host" and options["mode"] != "xla":
            raise UsageError("tf option xla_isa applies only to mode=xla", "add :mode=xla or drop xla_isa")

    def environment(self, options: Mapping[str, Any]) -> dict[str, str]:
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1" if options["onednn"] else "0",
               **idle_numpy_blas()}
        if options["onednn_isa"] != "host":
            env["ONEDNN_MAX_CPU_ISA"] = options["onednn_isa"].upper()
            if options["onednn"]:
                # oneDNN prints the ISA it dispatches to once, in verbose mode only: open() reads it back.
                env["ONEDNN_VERBOSE"] = "profile_create"
        if options["xla_isa"] != "host":
            # Keep flags the user already set; a later --xla_cpu_max_isa wins over an earlier one.
            flags = os.environ.get("XLA_FLAGS", "").strip()
            env["XLA_FLAGS"] = f"{flags} --xla_cpu_max_isa={options['xla_isa']}".strip()
        return env

    def open(self, model_path: str, options: Mapping[str, Any]) -> TfSession:
        try:  # each weight is read into its tensor from its file (graph/stored.py)
            model = stored.load(model_path, weights=False)
        except Exception as exc:  # noqa: BLE001 - any load failure is this variant's failure
            raise BackendError(f"tf backend could not read {model_path}: {exc}") from None
        return open_model(model, options, str(stored.external_dir(model_path)))


def open_model(model: Any, options: Mapping[str, Any], base_dir: str = "") -> TfSession:
    """Open an in-memory ModelProto (what `TfBackend.open` does after loading the file); `base_dir`: where the
    weights it still stores as external data are (graph/stored.load)."""
    _check_types(model, options["mode"])
    if options["dtype"] == "float64":
        from ...graph.promote import promote_float64

        model = promote_float64(model)
    tf = _import_tf()
    _configure(tf, options)
    from ..common.executor import GraphExecutor
    from .ops import load

    device = _device(tf, options)
    with tf.device(device):
        executor = GraphExecutor(model, load(), tf.constant, options, base_dir=base_dir,
                                 float64=options["dtype"] == "float64")
        executor.tensor_attributes()
    return TfSession(tf, executor, model, options, device)


def _check_types(model: Any, mode: str) -> None:
    import onnx

    def names(graph: Any) -> set[int]:
        found = {t.data_type for t in graph.initializer}
        for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
            if vi.type.WhichOneof("value") == "tensor_type":
                found.add(vi.type.tensor_type.elem_type)
        for node in graph.node:
            for a in node.attribute:
                if a.name in ("to", "dtype", "output_dtype") and a.type == onnx.AttributeProto.INT:
                    found.add(a.i)
                if a.type == onnx.AttributeProto.TENSOR:
                    found.add(a.t.data_type)
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    found |= names(g)
        return found

    types = {onnx.TensorProto.DataType.Name(t) for t in names(model.graph) if t}
    bad = sorted(types & _NO_TF_TYPE)
    if bad:
        raise UnsupportedError(f"element type {bad[0]} is not supported by the tf backend",
                               "TensorFlow has no kernels for it; compare with the ort or ref backends")
    if mode == "xla" and "STRING" in types:
        # XLA compiles no string tensors; refusing here also avoids an abort seen inside TF on such graphs.
        raise UnsupportedError("string tensors are not supported by the tf backend with mode=xla",
                               "run it with mode=graph or mode=eager")


def _import_tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return tf


def _configure(tf: Any, options: Mapping[str, Any]) -> None:
    """Apply the runtime knobs. Thread counts are fixed once TensorFlow's runtime has started: asking for
    a different count afterwards is an error rather than a silently ignored wish."""
    setters = ((tf.config.threading.get_intra_op_parallelism_threads,
                tf.config.threading.set_intra_op_parallelism_threads, "threads"),
               (tf.config.threading.get_inter_op_parallelism_threads,
                tf.config.threading.set_inter_op_parallelism_threads, "inter_threads"))
    for get, put, key in setters:
        if get() == options[key]:
            continue
        try:
            put(options[key])
        except RuntimeError:
            raise BackendError(f"tf option {key}={options[key]} cannot be applied: TensorFlow's runtime is "
                               f"already running with {key}={get()} in this process",
                               "set thread counts before the first TensorFlow session of a process "
                               "(infercmp's workers do)") from None
    from tensorflow.python.framework import config as tf_config

    # Op determinism is process-wide: a session without it must not inherit it from an earlier one.
    if options["deterministic"] != tf_config.is_op_determinism_enabled():
        if options["deterministic"]:
            tf.config.experimental.enable_op_determinism()
        else:
            tf_config.disable_op_determinism()


def _device(tf: Any, options: Mapping[str, Any]) -> str:
    if options["device"] == "cpu":
        return "/CPU:0"
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        build = "a CPU-only build" if not tf.test.is_built_with_cuda() else "a CUDA build"
        raise BackendError(f"device=gpu: TensorFlow {tf.__version__} ({build}) sees no GPU on this machine",
                           "use device=cpu, or run on a machine with an NVIDIA GPU and the tensorflow[and-cuda] "
                           "package")
    if options["tf32"] != "default":
        tf.config.experimental.enable_tensor_float_32_execution(options["tf32"] == "on")
    return "/GPU:0"


class TfSession:
    """One opened model. In graph and xla modes the whole walk (every output, i.e. every tap) is traced into
    one tf.function on the first run and that function is reused for later runs of the same shapes."""

    def __init__(self, tf: Any, executor: Any, model: Any, options: Mapping[str, Any], device: str):
        import onnx

        self._tf = tf
        self._executor = executor
        self._device = device
        self._mode = options["mode"]
        self._inputs = {}
        for vi in model.graph.input:
            if vi.name in executor.inputs and vi.type.WhichOneof("value") == "tensor_type":
                self._inputs[vi.name] = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        self._dtypes = {o.name: onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type)
                        for o in model.graph.output if o.type.tensor_type.elem_type}
        self._traces = 0
        self._function: Any = None
        if self._mode != "eager":
            executor.wanted = None  # a traced walk records no subgraph tensors (taps_subgraphs says so)
            self._function = tf.function(self._walk, jit_compile=self._mode == "xla", autograph=False,
                                         reduce_retracing=False)
        self._info = _provenance(tf, options, device)

    def _walk(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        self._traces += 1  # Python side effects run only while tracing: this counts traces
        return self._executor.run(feeds)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = self._tf
        with tf.device(self._device):
            tensors = {}
            for name in self._executor.inputs:
                if name not in feeds:
                    raise BackendError(f"no value was given for model input {name!r}")
                tensors[name] = self._tensor(feeds[name], self._inputs.get(name))
            if self._function is None:
                values = self._executor.run(tensors)
            else:
                values = self._call(tensors)
        return {name: self._numpy(name, v) for name, v in values.items()}

    def _call(self, tensors: dict[str, Any]) -> dict[str, Any]:
        tf = self._tf
        try:
            return self._function(tensors)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError) as exc:
            if self._mode != "xla":
                raise
            raise UnsupportedError(f"XLA cannot compile this model: {_xla_reason(exc.message)}",
                                   "run it with mode=graph or mode=eager") from None

    def _tensor(self, value: Any, want: Any) -> Any:
        """A feed as a TF tensor in the declared type; a sequence stays a list, an empty optional None."""
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return [self._tensor(v, None) for v in value]
        value = np.asarray(value)
        return self._tf.constant(value if want is None or value.dtype == want else value.astype(want))

    def _numpy(self, name: str, value: Any) -> Any:
        if value is None or isinstance(value, (list, tuple)):  # an optional or a sequence
            return value if value is None else [self._numpy("", v) for v in value]
        arr = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if arr.dtype.kind in "OS":  # TF strings come back as bytes
            arr = np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else b, otypes=[object])(arr)
        want = self._dtypes.get(name)
        if want is not None and arr.dtype != want:
            raise BackendError(f"the tf backend produced {arr.dtype} for {name!r}, the model declares "
                               f"{np.dtype(want)}", "this is a bug in the tf op table")
        return arr

    def provenance(self) -> dict[str, Any]:
        info = dict(self._info)
        if self._mode != "eager":
            info["traces"] = self._traces
        return info


def _xla_reason(text: str) -> str:
    """The useful part of an XLA compilation error: which TF op (its scope is the ONNX node's name)."""
    import re

    found = re.search(r"No registered '(\w+)' OpKernel for (\S+) devices compatible with node \{\{node ([^}]+)\}\}",
                      text)
    if found:
        return f"XLA has no kernel for the TF op {found.group(1)} (node {found.group(3)})"
    return _first_line(text)


_ISA_SEEN: list[str] = []  # oneDNN prints its ISA once per process: remember it


def _onednn_isa(tf: Any) -> str:
    """The ISA oneDNN dispatches to. TensorFlow has no getter and hides oneDNN's symbols, but oneDNN in
    verbose mode (set by environment() when onednn_isa is given) prints it at its first primitive."""
    if _ISA_SEEN:
        return _ISA_SEEN[0]
    if not os.environ.get("ONEDNN_VERBOSE"):
        if os.environ.get("ONEDNN_MAX_CPU_ISA") and os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
            return ("not readable with onednn=off: TF's Eigen matmul/conv still call oneDNN's sgemm, which "
                    "honours the cap without printing it")
        return "not probed (set onednn_isa to verify a cap)"
    from ..common.onednn import isa_from_verbose

    def probe() -> None:
        with tf.device("/CPU:0"):
            tf.nn.conv2d(tf.ones([1, 8, 8, 8]), tf.ones([3, 3, 8, 8]), 1, "SAME").numpy()

    isa = isa_from_verbose(probe, "unknown (oneDNN printed no ISA line: a oneDNN primitive ran before the probe)")
    _ISA_SEEN.append(isa)
    return isa


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return (lines[0] if lines else "")[:500]


def _provenance(tf: Any, options: Mapping[str, Any], device: str) -> dict[str, Any]:
    """Versions and effective knob values, read back from TensorFlow where it offers a getter."""
    from tensorflow.python.framework import config as tf_config
    from tensorflow.python.util import _pywrap_util_port

    cores = os.cpu_count()
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    info: dict[str, Any] = {
        "backend": "tensorflow",
        "tensorflow": tf.__version__,
        "mode": options["mode"],
        "device": device,
        # TensorFlow's own view: TF_ENABLE_ONEDNN_OPTS as this process's runtime understood it.
        "onednn_enabled": bool(_pywrap_util_port.IsMklEnabled()),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset)"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "(unset: oneDNN picks the newest)"),
        "onednn_isa_dispatched": _onednn_isa(tf),
        "intra_op_threads": intra if intra else f"0 (default: {cores} cores)",
        "inter_op_threads": inter if inter else "0 (default)",
        "op_determinism": bool(tf_config.is_op_determinism_enabled()),
        "dtype": options["dtype"],
        # TensorFlow's capture rule: eager tensors of <= 128 elements become graph constants, larger ones
        # function inputs (as a SavedModel's variables would be).
        "weights": "eager tensors captured by the tf.function (<= 128 elements as constants, larger as "
        "inputs)" if options["mode"] != "eager" else "eager tensors",
    }
    if options["mode"] == "xla":
        info["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "(unset)")
    if device.startswith("/GPU"):
        info["tf32"] = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    else:
        info["tf32"] = "not applicable on the cpu"
    return info
