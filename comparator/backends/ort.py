"""ONNX Runtime, any execution provider, with its kernel-selection knobs as options."""
from __future__ import annotations

import os
import re
from typing import Any
from collections.abc import Mapping

import numpy as np

from ..errors import BackendError, UnsupportedError, UsageError
from ..graph import stored
from .contract import SHARED_CORES, BackendBase, idle_numpy_blas
from .options import Option

OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "layout": "ORT_ENABLE_LAYOUT", "all": "ORT_ENABLE_ALL"}
# Short names of onnxruntime's providers (onnxruntime.get_all_providers()); availability is checked at open.
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider", "rocm": "ROCMExecutionProvider",
             "migraphx": "MIGraphXExecutionProvider", "openvino": "OpenVINOExecutionProvider",
             "dnnl": "DnnlExecutionProvider", "dml": "DmlExecutionProvider", "coreml": "CoreMLExecutionProvider",
             "xnnpack": "XnnpackExecutionProvider", "qnn": "QNNExecutionProvider", "cann": "CANNExecutionProvider",
             "acl": "ACLExecutionProvider", "webgpu": "WebGpuExecutionProvider"}
CUDA_ONLY = ("conv_algo_search", "tf32")
# Providers whose optimized graph onnxruntime can save: the others compile subgraphs into nodes it cannot write.
SAVES_GRAPH = ("cpu", "cuda", "rocm", "dnnl", "xnnpack", "acl", "webgpu")


class OrtBackend(BackendBase):
    name = "ort"
    description = "ONNX Runtime (any installed execution provider)"
    requires = ("onnxruntime",)
    options = (
        Option("opt", str, "all", "graph optimisation level (fusions, layout transforms)",
               tuple(OPT_LEVELS)),
        Option("threads", int, 0, "intra-op threads (0 = onnxruntime's default: one per core)", minimum=0),
        Option("inter_threads", int, 0, "inter-op threads (0 = default)", minimum=0),
        Option("mode", str, "sequential", "execution mode", ("sequential", "parallel")),
        Option("deterministic", bool, False, "use_deterministic_compute"),
        Option("denormal_as_zero", bool, False, "session.set_denormal_as_zero (flush subnormals)"),
        Option("prepack", bool, True, "pack constant weights once when the session opens (off: "
               "session.disable_prepacking; GEMMs pack them per call, in other blocks, so sums round differently; "
               "the packed copies' memory is saved)"),
        Option("ep", str, "cpu", "execution provider", tuple(PROVIDERS)),
        Option("conv_algo_search", str, "exhaustive", "CUDA EP cuDNN convolution algorithm search",
               ("exhaustive", "heuristic", "default")),
        Option("tf32", bool, True, "CUDA EP: allow TF32 math on Ampere and newer"),
    )

    def validate(self, options: Mapping[str, Any]) -> None:
        if options["ep"] not in ("cuda", "tensorrt"):
            for key in CUDA_ONLY:
                if options[key] != self._default(key):
                    raise UsageError(f"ort option {key} applies only to ep=cuda", f"add :ep=cuda or drop {key}")

    def _default(self, key: str) -> Any:
        return next(o.default for o in self.options if o.name == key)

    def environment(self, options: Mapping[str, Any]) -> dict[str, str]:
        return idle_numpy_blas()

    def fusion(self, options: Mapping[str, Any]) -> tuple[str, str]:
        if options["ep"] == "cpu" and options["opt"] == "disable":
            return "node-by-node", ""  # no graph optimizer runs: every node of the graph is a kernel call
        if options["ep"] in SAVES_GRAPH:
            return "optimized", ""
        return "unavailable", f"ep={options['ep']} compiles subgraphs into nodes onnxruntime cannot save as a graph"

    def optimized_graph(self, model_path: str, options: Mapping[str, Any], folder: str) -> tuple[str, dict[str, Any]]:
        """The graph onnxruntime runs at these options (its `optimized_model_filepath`, weights beside it in
        `optimized.onnx.data`), and the options that run it as saved: the same, with no graph optimization."""
        path = os.path.join(folder, "optimized.onnx")
        self._open(model_path, options, save_to=path)
        return path, {**options, "opt": "disable"}

    def open(self, model_path: str, options: Mapping[str, Any]) -> OrtSession:
        return self._open(model_path, options)

    def _open(self, model_path: str, options: Mapping[str, Any], save_to: str | None = None) -> OrtSession:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[options["opt"]])
        so.intra_op_num_threads = options["threads"]
        so.inter_op_num_threads = options["inter_threads"]
        so.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if options["mode"] == "parallel"
                             else ort.ExecutionMode.ORT_SEQUENTIAL)
        so.use_deterministic_compute = options["deterministic"]
        so.add_session_config_entry("session.set_denormal_as_zero", "1" if options["denormal_as_zero"] else "0")
        so.add_session_config_entry("session.disable_prepacking", "0" if options["prepack"] else "1")
        so.log_severity_level = 3
        spinning = not os.environ.get(SHARED_CORES)
        if not spinning:
            # Other workers run at the same time: threads that spin while waiting for work would take their
            # cores. Spinning changes how fast a session runs, never what it computes.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if save_to is not None:
            so.optimized_model_filepath = save_to
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                        os.path.basename(save_to) + ".data")
        provider = PROVIDERS[options["ep"]]
        available = ort.get_available_providers()
        if provider not in available:
            raise BackendError(f"execution provider {provider} is not available in this onnxruntime "
                               f"{ort.__version__}", f"available: {', '.join(available)}; for CUDA install "
                               "infercmp[ort-gpu] (onnxruntime-gpu) instead of onnxruntime")
        provider_options: dict[str, str] = {}
        if options["ep"] == "cuda":
            provider_options = {"cudnn_conv_algo_search": options["conv_algo_search"].upper(),
                                "use_tf32": "1" if options["tf32"] else "0"}
        providers: list[Any] = [(provider, provider_options)]
        if provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        lowered: dict[str, int] = {}
        # weights are read in place: a copy infercmp wrote names the folder of the input model's files
        so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                    str(stored.external_dir(model_path)))
        try:
            try:
                session = ort.InferenceSession(model_path, sess_options=so, providers=providers)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
                limit = _ir_limit(str(exc))
                if limit is None:
                    raise
                data, old, new = _lowered(model_path, limit, ort.__version__)
                lowered = {"from": old, "to": new, "runtime_max": limit}
                session = ort.InferenceSession(data, sess_options=so, providers=providers)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001
            text = str(exc)
            if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
                raise UnsupportedError(f"onnxruntime cannot run this model: {_first(text)}") from None
            raise BackendError(f"onnxruntime could not load the model: {_first(text)}") from None
        return OrtSession(session, options, ort.__version__, lowered, spinning)


_IR_REFUSAL = re.compile(r"Unsupported model IR version: \d+, max supported IR version: (\d+)")


def _ir_limit(text: str) -> int | None:
    """The highest IR version this onnxruntime reads, from its refusal of a newer one (None: another error)."""
    match = _IR_REFUSAL.search(text)
    return int(match.group(1)) if match else None


def _lowered(model_path: str, limit: int, version: str) -> tuple[bytes, int, int]:
    from ..graph.irversion import lowered

    try:
        return lowered(model_path, limit)
    except ValueError as exc:
        raise BackendError(f"onnxruntime {version} cannot read this model: {exc}",
                           "upgrade onnxruntime, or export the model with a lower opset") from None


def _first(text: str) -> str:
    text = text.strip()
    return (text.splitlines()[0] if text else "")[:500]


class OrtSession:
    def __init__(self, session: Any, options: Mapping[str, Any], version: str, lowered: Mapping[str, int],
                 spinning: bool = True):
        self._session = session
        self._names = [o.name for o in session.get_outputs()]
        # bfloat16 and float8 have no NumPy type in onnxruntime's Python API: such models go through OrtValues
        types = [t.type for t in list(session.get_inputs()) + list(session.get_outputs())]
        self._raw = any(t.startswith(("tensor(bfloat16", "tensor(float8", "tensor(float4")) for t in types)
        config = session.get_session_options().get_session_config_entry
        self._info = {"backend": "onnxruntime", "onnxruntime": version,
                      "threads_spin": spinning, "prepacking": config("session.disable_prepacking") != "1",
                      "providers_used": session.get_providers(),
                      "provider_options": {k: dict(v) for k, v in session.get_provider_options().items()}}
        if lowered:  # this onnxruntime refused the model's IR version: it ran a copy with the lowest one needed
            self._info["ir_version_lowered"] = dict(lowered)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._raw:
            return self._run_raw(feeds)
        values = self._session.run(self._names, dict(feeds))
        return dict(zip(self._names, values))

    def _run_raw(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with OrtValues: ml_dtypes inputs go in as their bytes with the ONNX type, and every output comes
        back as bytes in the ml_dtypes (or NumPy) type it names."""
        import ctypes

        import onnx
        import onnxruntime as ort

        values = {}
        for name, arr in feeds.items():
            arr = np.require(arr, requirements="C")  # a 0-d feed stays 0-d
            if arr.dtype.type is not np.void and arr.dtype.kind == "V":  # an ml_dtypes type
                elem = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
                values[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                    arr.view(f"u{arr.dtype.itemsize}"), onnx_element_type=elem)
            else:
                values[name] = ort.OrtValue.ortvalue_from_numpy(arr)
        out = {}
        for name, value in zip(self._names, self._session.run_with_ort_values(self._names, values)):
            kind = value.data_type()[len("tensor("):-1]
            try:
                out[name] = value.numpy()
            except (RuntimeError, TypeError, ValueError):  # no NumPy type: copy the bytes into the ml_dtypes one
                import ml_dtypes

                dtype = np.dtype(getattr(ml_dtypes, kind))
                size = value.tensor_size_in_bytes()
                raw = (ctypes.c_uint8 * size).from_address(value.data_ptr()) if size else b""
                out[name] = np.frombuffer(bytes(raw), dtype).reshape(value.shape())
        return out

    def provenance(self) -> dict[str, Any]:
        return dict(self._info)
