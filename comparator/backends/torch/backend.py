"""PyTorch: an ONNX graph executor calling torch's own kernels, with torch's kernel-selection knobs as options.

The model is walked node by node (`executor.GraphExecutor`) with the op functions of `torch_ops*.py`, so every
ONNX tensor keeps its name and every knob below reaches the kernels: the ATen CPU capability and the oneDNN
ISA cap (environment, read at import), threads, oneDNN on/off, deterministic algorithms, float64 compute,
torch.compile (inductor), and the CUDA/cuDNN switches. torch is imported only inside `open()`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ...errors import BackendError, InputError, UnsupportedError, UsageError
from ...graph import stored
from ..contract import BackendBase
from ..options import Option

ISAS = ("host", "default", "avx2", "avx512")
ONEDNN_ISAS = ("host", "all", "sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni",
               "avx512_core_bf16", "avx512_core_fp16", "avx512_core_amx", "avx512_core_amx_fp16")
CUDA_ONLY = ("cudnn_benchmark", "cudnn_deterministic", "tf32")
_ONEDNN_PROBE: list[str] = []  # oneDNN prints its ISA once per process: remember it


class TorchBackend(BackendBase):
    name = "torch"
    description = "PyTorch kernels driven by an ONNX graph executor (eager or torch.compile)"
    requires = ("torch", "onnx")
    options = (
        Option("threads", int, 0, "torch.set_num_threads (0 = torch's default: one per physical core)", minimum=0),
        Option("interop_threads", int, 0, "torch.set_num_interop_threads (0 = default)", minimum=0),
        Option("isa", str, "host", "ATEN_CPU_CAPABILITY: ATen's vectorised kernels (softmax, reductions, "
               "elementwise); default = no SIMD; host = what torch picks", ISAS),
        Option("onednn_isa", str, "host", "ONEDNN_MAX_CPU_ISA: cap on oneDNN's conv/matmul JIT kernels", ONEDNN_ISAS),
        Option("mkldnn", bool, True, "torch.backends.mkldnn.enabled (oneDNN convolutions)"),
        Option("deterministic", bool, False, "torch.use_deterministic_algorithms"),
        Option("dtype", str, "float32", "float32 = the model's own types; float64 = every float promoted "
               "(a second exact oracle)", ("float32", "float64")),
        Option("compile", str, "eager", "eager, or torch.compile of the executor (the first run compiles: tens "
               "of seconds)", ("eager", "inductor")),
        Option("device", str, "cpu", "torch device", ("cpu", "cuda")),
        Option("cudnn_benchmark", bool, False, "CUDA: torch.backends.cudnn.benchmark (autotuned conv algorithms)"),
        Option("cudnn_deterministic", bool, False, "CUDA: torch.backends.cudnn.deterministic"),
        Option("tf32", bool, False, "CUDA: allow TF32 in cuDNN convolutions and cuBLAS matmuls"),
    )

    def taps_subgraphs(self, options: Mapping[str, Any]) -> bool:
        return options["compile"] == "eager"

    def fusion(self, options: Mapping[str, Any]) -> tuple[str, str]:
        if options["compile"] == "eager":
            return "node-by-node", ""
        return "unavailable", "torch.compile (inductor) fuses the executor's ops into kernels it does not map back " \
                              "to the model's tensors"

    def validate(self, options: Mapping[str, Any]) -> None:
        if options["device"] != "cuda":
            for key in CUDA_ONLY:
                if options[key]:
                    raise UsageError(f"torch option {key} applies only to device=cuda",
                                     f"add :device=cuda or drop {key}")

    def environment(self, options: Mapping[str, Any]) -> dict[str, str]:
        env = {}
        if options["isa"] != "host":
            env["ATEN_CPU_CAPABILITY"] = options["isa"]
        if options["onednn_isa"] != "host":
            env["ONEDNN_MAX_CPU_ISA"] = options["onednn_isa"].upper()
        if options["deterministic"] and options["device"] == "cuda":
            env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # cuBLAS refuses deterministic mode without it
        return env

    def open(self, model_path: str, options: Mapping[str, Any]) -> TorchSession:
        try:  # each weight is read into its tensor from its file (graph/stored.py)
            model = stored.load(model_path, weights=False)
        except Exception as exc:  # noqa: BLE001 - protobuf raises its own types
            raise BackendError(f"could not read {model_path}: {exc}", "check that the file is an ONNX model") from None
        return open_model(model, options, str(stored.external_dir(model_path)))


def open_model(model: Any, options: Mapping[str, Any], base_dir: str = "") -> TorchSession:
    """Open an in-memory ModelProto (the backend's open() after loading the file); `base_dir`: where the weights it
    still stores as external data are (graph/stored.load)."""
    from ..common.executor import GraphExecutor
    from . import table as torch_ops

    if options["dtype"] == "float64":
        from ...graph.promote import promote_float64

        model = promote_float64(model)
    device = _device(options["device"])
    notes = _apply_knobs(options)
    check_types(model)
    from .ops import load

    table = load()
    executor = GraphExecutor(model, table, lambda a: torch_ops.from_numpy(a, device), {"device": device},
                             base_dir=base_dir, float64=options["dtype"] == "float64")
    executor.tensor_attributes()
    return TorchSession(executor, model, options, device, notes)


def _device(name: str) -> Any:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device=cuda: this torch {torch.__version__} sees no CUDA device "
                           f"(torch.cuda.is_available() is False; built with CUDA {torch.version.cuda})",
                           "run on a machine with an NVIDIA GPU and a CUDA build of torch, or drop device=cuda")
    return torch.device(name)


def _apply_knobs(options: Mapping[str, Any]) -> list[str]:
    """Set torch's process-wide switches; return notes on the ones that could not take effect."""
    import torch

    notes = []
    if options["threads"]:
        torch.set_num_threads(options["threads"])
    want = options["interop_threads"]
    if want and torch.get_num_interop_threads() != want:
        try:
            torch.set_num_interop_threads(want)
        except RuntimeError:
            notes.append(f"interop_threads={want} not applied: torch allows it only before the first parallel work")
    torch.backends.mkldnn.enabled = options["mkldnn"]
    if torch.are_deterministic_algorithms_enabled() != options["deterministic"]:
        torch.use_deterministic_algorithms(options["deterministic"])  # imports inductor: only when it changes
    if options["device"] == "cuda":
        torch.backends.cudnn.benchmark = options["cudnn_benchmark"]
        torch.backends.cudnn.deterministic = options["cudnn_deterministic"]
        torch.backends.cudnn.allow_tf32 = options["tf32"]
        torch.backends.cuda.matmul.allow_tf32 = options["tf32"]
    isa = options["isa"]
    have = torch.backends.cpu.get_cpu_capability()
    if isa != "host" and have.lower() != isa:
        notes.append(f"isa={isa} requested, torch dispatches to {have} (ATEN_CPU_CAPABILITY is read when torch is "
                     "imported, and a capability the CPU lacks is ignored)")
    return notes


def check_types(model: Any) -> None:
    """UnsupportedError, before anything runs, for a tensor type torch has no kernels for."""
    from .table import element_type

    def visit(graph: Any) -> None:
        for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
            t = vi.type
            while t.WhichOneof("value") in ("sequence_type", "optional_type"):
                t = t.sequence_type.elem_type if t.HasField("sequence_type") else t.optional_type.elem_type
            if t.HasField("tensor_type") and t.tensor_type.elem_type:
                element_type(t.tensor_type.elem_type, f"tensor {vi.name!r}")
        for init in graph.initializer:
            element_type(init.data_type, f"initializer {init.name!r}")
        for node in graph.node:
            for a in node.attribute:
                if a.name in ("to", "dtype", "output_dtype") and a.type == a.INT and a.i:
                    element_type(a.i, f"{node.op_type} node {node.name!r}")
                if a.type == a.TENSOR:
                    element_type(a.t.data_type, f"{node.op_type} node {node.name!r}")
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    visit(g)

    visit(model.graph)


def _probe_onednn_isa() -> str:
    """The ISA oneDNN really dispatches to: torch has no getter, but oneDNN's verbose mode prints it once."""
    import torch

    if _ONEDNN_PROBE:
        return _ONEDNN_PROBE[0]
    if not torch.backends.mkldnn.is_available():
        return "oneDNN not built into this torch"
    from ..common.onednn import isa_from_verbose

    def probe() -> None:
        enabled = torch.backends.mkldnn.enabled
        try:
            torch.backends.mkldnn.enabled = True  # type: ignore[assignment]  # stubs type it as a ContextProp
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                # Large enough that torch routes it to oneDNN rather than its own small-conv kernel.
                torch.nn.functional.conv2d(torch.ones(1, 32, 32, 32), torch.ones(32, 32, 3, 3))
        finally:
            torch.backends.mkldnn.enabled = enabled

    isa = isa_from_verbose(probe, "unknown (oneDNN printed no ISA line)")
    _ONEDNN_PROBE.append(isa)
    return isa


def _failing_node(exc: BaseException) -> str:
    """'node N (op X, opset K)' of the node the executor was running when `exc` was raised."""
    tb, step = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "run_graph" and "step" in tb.tb_frame.f_locals:
            step = tb.tb_frame.f_locals["step"]  # the innermost graph wins (a Loop body's node, not the Loop)
        tb = tb.tb_next
    if step is None:
        return "the model"
    from ..common.executor import describe_node

    return describe_node(step.node, step.opset)


class TorchSession:
    """One opened model: feeds -> every graph output, computed under torch.inference_mode()."""

    def __init__(self, executor: Any, model: Any, options: Mapping[str, Any], device: Any, notes: list[str]):
        import onnx
        import torch

        from .table import DTYPES, np_dtype_of

        self._executor = executor
        self._device = device
        self._inputs = {}
        for vi in model.graph.input:
            elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
            if elem in DTYPES:
                self._inputs[vi.name] = np_dtype_of(DTYPES[elem])
        self._outputs = {}
        for vi in model.graph.output:
            elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
            self._outputs[vi.name] = np_dtype_of(DTYPES[elem]) if elem in DTYPES else None
        self._run: Callable[[dict[str, Any]], dict[str, Any]] = executor.run
        if options["compile"] == "inductor":
            executor.wanted = None  # a compiled walk records no subgraph tensors (taps_subgraphs says so)
            self._run = torch.compile(executor.run, backend="inductor")
        info: dict[str, Any] = {
            "backend": "torch", "torch": torch.__version__, "onnx": onnx.__version__,
            "device": str(device), "dtype": options["dtype"], "compile": options["compile"],
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa": options["isa"], "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY"),
            "onednn_isa": options["onednn_isa"], "onednn_max_cpu_isa_env": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "onednn_isa_dispatched": _probe_onednn_isa() if device.type == "cpu" else "n/a (cuda)",
            "mkldnn_enabled": torch.backends.mkldnn.enabled,
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
        }
        if device.type == "cuda":
            info.update({"cuda_device": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                         "cudnn": torch.backends.cudnn.version(),
                         "cudnn_benchmark": torch.backends.cudnn.benchmark,
                         "cudnn_deterministic": torch.backends.cudnn.deterministic,
                         "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                         "tf32_matmul": torch.backends.cuda.matmul.allow_tf32})
        if notes:
            info["notes"] = notes
        self._info = info

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from ..common.executor import OpFailure
        from .table import to_numpy

        missing = [name for name in self._executor.inputs if name not in feeds]
        if missing:
            raise InputError(f"no feed for graph input {missing[0]!r} ({len(missing)} of "
                             f"{len(self._executor.inputs)} inputs missing)", "feed every input of the model")
        tensors = {name: self._tensor(value, self._inputs.get(name)) for name, value in feeds.items()}
        try:
            with torch.inference_mode():
                values = self._run(tensors)
        except OpFailure as exc:  # the walker names the node and its inputs
            first = (str(exc.cause).strip().splitlines() or [""])[0][:500]
            if "not implemented for" in first:  # torch has no kernel for this dtype
                raise UnsupportedError(f"{exc.where}: torch has no kernel for it ({first})",
                                       "compare with the ort or ref backends") from exc.cause
            raise
        except UnsupportedError:
            raise
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:  # raised outside the walker (compile)
            first = (str(exc).strip().splitlines() or [""])[0][:500]
            where = _failing_node(exc)
            if "not implemented for" in first:  # torch has no kernel for this dtype
                raise UnsupportedError(f"{where}: torch has no kernel for it ({first})",
                                       "compare with the ort or ref backends") from exc
            raise BackendError(f"torch failed in {where}: {type(exc).__name__}: {first}",
                               "compare with the ort or ref backends to see whether the model or the torch "
                               "backend is at fault") from exc
        out = {}
        for name, want in self._outputs.items():
            arr = to_numpy(values[name])
            if want is not None and isinstance(arr, np.ndarray) and arr.dtype != want:
                arr = arr.astype(want)
            out[name] = arr
        for name, value in values.items():  # recorded subgraph tensors
            if name not in out:
                out[name] = to_numpy(value)
        return out

    def _tensor(self, value: Any, want: Any) -> Any:
        """A feed as a tensor (a list of arrays as a sequence, None as an empty optional)."""
        from .table import from_numpy

        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return [self._tensor(v, None) for v in value]
        arr = np.asarray(value)
        return from_numpy(arr.astype(want) if want is not None and arr.dtype != want else arr, self._device)

    def provenance(self) -> dict[str, Any]:
        return dict(self._info)
