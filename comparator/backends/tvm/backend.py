"""Apache TVM (Relax): the Relax ONNX frontend imports the model, TVM compiles it for an LLVM (or CUDA)
target, and the Relax virtual machine runs it.

Every knob is a compile-time one (target CPU, LLVM features, fast-math, pipeline), so compiled libraries are
cached on disk (`cache.py`; importing and compiling is `compiler.py`): a second compare of the same model and
variant skips compilation, and on such a hit the model is read and hashed but neither checked, prepared nor seen
by the frontend.
Nothing here imports TVM at import time.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import numpy as np

from ...errors import BackendError, UsageError
from ..contract import SHARED_CORES, BackendBase, idle_numpy_blas
from ..options import Option
from .cache import CompileCache, cache_root, model_digest, size_cap
from .compiler import Compiler, first_line
from .model import parameter_inputs
from .target import cuda_target, llvm_target

PIPELINES = {
    "default": "tvm.compile's default Relax pipeline: every op legalized to its own TIR kernel, no fusion",
    "fused": "relax.get_default_pipeline(target): adds FoldConstant, FuseOps and FuseTIR",
}
_MATTR = re.compile(r"[+-][A-Za-z0-9._]+(?:-[A-Za-z0-9._]+)*(?:[+-][A-Za-z0-9._]+(?:-[A-Za-z0-9._]+)*)*")


class TvmBackend(BackendBase):
    name = "tvm"
    description = "Apache TVM: Relax ONNX frontend, compiled for LLVM (or CUDA), run on the Relax VM"
    requires = ("tvm",)
    options = (
        Option("target", str, "llvm", "code generator (cuda needs a TVM built with CUDA and a GPU)",
               ("llvm", "cuda")),
        Option("mcpu", str, "host", "LLVM CPU: host (the CPU LLVM detects here), generic (LLVM's baseline, "
               "what TVM uses without -mcpu), or an LLVM CPU name (znver4, skylake-avx512, x86-64-v3...)"),
        Option("mattr", str, "", "LLVM features to add/remove, no commas: +avx2+fma-avx512f"),
        Option("fastmath", bool, False, "LLVM fast-math flags on every float instruction (target fast-math)"),
        Option("approx", bool, False, "replace exp, erf, tanh and softmax by TVM's fast approximations "
               "(relax.transform.FastMathTransform)"),
        Option("opt", str, "default", "Relax pipeline: " + "; ".join(f"{k} = {v}" for k, v in PIPELINES.items()),
               tuple(PIPELINES)),
        Option("threads", int, 0, "TVM_NUM_THREADS (0 = TVM's default); provenance says whether the compiled "
               "code uses threads at all", minimum=0),
    )

    def fusion(self, options: Mapping[str, Any]) -> tuple[str, str]:
        return "unavailable", "TVM fuses operators into functions when it builds the model and maps them back to " \
                              "no tensor of the model"

    def validate(self, options: Mapping[str, Any]) -> None:
        size_cap()  # a bad INFERCMP_TVM_CACHE_MAX is a usage error before any worker starts
        if options["mattr"] and not _MATTR.fullmatch(options["mattr"]):
            raise UsageError(f"tvm option mattr={options['mattr']!r} is not a list of +feature/-feature",
                             "write it without commas, e.g. mattr=+avx2+fma-avx512f")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", options["mcpu"]):
            raise UsageError(f"tvm option mcpu={options['mcpu']!r} is not a CPU name", "e.g. mcpu=znver4")
        if options["target"] == "cuda":
            for key, default in (("mcpu", "host"), ("mattr", ""), ("opt", "default")):
                if options[key] != default:
                    raise UsageError(f"tvm option {key} applies only to target=llvm",
                                     f"drop {key} (TVM compiles CUDA with its own GPU pipeline)")
            if options["fastmath"]:
                raise UsageError("tvm option fastmath applies only to target=llvm",
                                 "TVM compiles every CUDA kernel with --use_fast_math already")

    def environment(self, options: Mapping[str, Any]) -> dict[str, str]:
        env = idle_numpy_blas()
        if options["threads"]:
            env["TVM_NUM_THREADS"] = str(options["threads"])
        if options["target"] == "llvm" and "TVM_DEVICE_BACKEND_AUTOLOAD" not in os.environ:
            # `import tvm` loads the Python side of every GPU backend (CUDA, Metal, ROCm, Vulkan...) and any
            # out-of-tree backend package; compiling and running for LLVM needs none of them, and skipping them
            # takes about 0.3 s off every worker's open (import_tvm loads the one runtime library they would
            # have). target=cuda keeps TVM's default.
            env["TVM_DEVICE_BACKEND_AUTOLOAD"] = "0"
        return env

    def prepare(self, options: Mapping[str, Any]) -> None:
        import onnx  # noqa: F401 - imported ahead, for open

        import_tvm()

    def open(self, model_path: str, options: Mapping[str, Any]) -> TvmSession:
        import onnx
        from onnx import serialization

        _unpinned()
        tvm = import_tvm()

        try:
            # Read once: the bytes give the cache key and the graph. External data is read only to compile.
            data = Path(model_path).read_bytes()
            fmt = serialization.registry.get_format_from_file_extension(Path(model_path).suffix) or "protobuf"
            proto = onnx.load_model_from_string(data, format=fmt)
            digest = model_digest(model_path, proto, data)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"tvm backend could not read {model_path}: {first_line(exc)}") from None
        del data
        target, info = (cuda_target() if options["target"] == "cuda" else llvm_target(options))
        info.update(backend="tvm", tvm=tvm.__version__, pipeline=options["opt"], approx=options["approx"],
                    threads=_threads(options))
        root = cache_root()
        compiler = Compiler(model_path, proto, target, options, digest, CompileCache(root) if root else None,
                             info)
        # A cache hit needs nothing more of the model: its graph is prepared for the frontend (and checked) only
        # to compile.
        vm = compiler.cached(None, {})
        if vm is None:
            compiler.prepare()
        session = TvmSession(compiler.proto, compiler, info, options["target"])
        dynamic = {i.name for i in compiler.proto.graph.input if i.name in session.input_names and _is_dynamic(i)}
        if vm is not None:
            session.vm = vm
            info["shapes"] = "symbolic" if dynamic else "static"
            return session
        params = parameter_inputs(compiler.proto, session.input_names)
        try:
            session.vm = compiler.compile(None, {})
        except BackendError as exc:
            if not dynamic and not params:
                raise
            # Some converters need static shapes, or constants where ONNX now takes a tensor input (axes, k,
            # pads...): compile again for each run's shapes and values of those inputs.
            session.bind = sorted(params)
            session.as_declared_failure = exc.message
            info["bound_at_run"] = {"why": exc.message[:300], "shapes": sorted(dynamic), "values": sorted(params)}
        else:
            info["shapes"] = "symbolic" if dynamic else "static"
        return session


def import_tvm() -> Any:
    """Import tvm, keeping out of the import two modules this backend never uses; each costs every worker's
    open, which is timed with the import in it:
    - torch: tvm_ffi imports it whenever it is installed, only to offer DLPack interop with torch tensors (about
      2 s). Hidden only when this process has not imported torch: one that has keeps it, and TVM sees it.
    - tvm.runtime.disco (the distributed runtime): TVM 0.27 imports it before loading the library that holds its
      types, so the import fails and TVM sets it to None anyway; the failing type lookup is then the process's
      first TVM error, whose backtrace setup reads the debug info of every loaded library (0.2 s with a Python
      built with debug info).
    Both names are importable again afterwards.

    A worker for target=llvm also skips TVM's device backends (`TvmBackend.environment`); the one library of
    theirs this backend needs, libtvm_runtime_extra (the VM's sort and top-k kernels among others), is loaded
    here then."""
    if "tvm" in sys.modules:
        import tvm

        return tvm
    hidden = [m for m in ("torch", "tvm.runtime.disco") if m not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        import tvm
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
    if os.environ.get("TVM_DEVICE_BACKEND_AUTOLOAD") == "0":
        _load_runtime_extra()
    return tvm


def _load_runtime_extra() -> None:
    """What `import tvm` does with device backends on (tvm/backend/_autoload_backends.py): load
    libtvm_runtime_extra, whose functions register themselves with TVM's global registry."""
    from tvm.base import _LOADED_LIBS
    from tvm_ffi.libinfo import load_lib_ctypes

    if "tvm_runtime_extra" in _LOADED_LIBS:
        return
    try:
        _LOADED_LIBS["tvm_runtime_extra"] = load_lib_ctypes(
            "tvm", "tvm_runtime_extra", "RTLD_LOCAL",
            extra_lib_paths=[Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent])
    except (OSError, RuntimeError):  # a TVM built without it: as `import tvm` itself does, go on without it
        pass


def _is_dynamic(vi: Any) -> bool:
    """Whether a value's shape has a dimension that is not a number (exporters write -1 for unknown ones)."""
    t = vi.type.tensor_type
    return not t.HasField("shape") or any(not d.HasField("dim_value") or d.dim_value < 0 for d in t.shape.dim)


def _unpinned() -> None:
    """When other workers run at the same time, TVM's thread pool pins no thread to a core (TVM_BIND_THREADS=0,
    unless the user set it). Each worker's pool pins its threads, the calling one included, to the same cores
    whatever the others do: two TVM workers on two cores both ran on the first, each at half speed. Pinning changes
    where a thread runs, never what it computes. The pool reads the variable when it starts, at the first run."""
    if os.environ.get(SHARED_CORES) and "TVM_BIND_THREADS" not in os.environ:
        os.environ["TVM_BIND_THREADS"] = "0"


def _threads(options: Mapping[str, Any]) -> dict[str, Any]:
    import tvm

    return {"TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
            "runtime_threads": int(tvm.get_global_func("runtime.NumThreads")()),
            "TVM_BIND_THREADS": os.environ.get("TVM_BIND_THREADS")}


class TvmSession:
    """A compiled model on the Relax VM; `run` returns every graph output by its ONNX name."""

    def __init__(self, proto: Any, compiler: Compiler, info: dict[str, Any], target_kind: str):
        import onnx

        init = {t.name for t in proto.graph.initializer}
        inputs = [vi for vi in proto.graph.input if vi.name not in init]
        self.input_names = [vi.name for vi in inputs]
        self._in_types = [onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type) for vi in inputs]
        self._outputs = [o.name for o in proto.graph.output]
        self._out_types = [onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type)
                           if o.type.tensor_type.elem_type else None for o in proto.graph.output]
        self._compiler, self._info, self._cuda = compiler, info, target_kind == "cuda"
        self.vm: Any = None  # compiled as the model declares its inputs; None when that failed
        self.bind: list[str] = []  # inputs whose run-time values are compiled in when self.vm is None
        self.as_declared_failure = ""
        self._bound: dict[Any, Any] = {}  # (shapes, bound values) -> VM

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tvm

        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise BackendError(f"no value was given for model input {missing[0]!r}")
        # np.require, not np.ascontiguousarray: the latter turns 0-d arrays into 1-d ones.
        arrays = [np.require(np.asarray(feeds[n]).astype(t, copy=False), requirements="C")
                  for n, t in zip(self.input_names, self._in_types)]
        vm, args = self.vm, arrays
        if vm is None:
            vm = self._bound_vm(arrays)
            args = [a for n, a in zip(self.input_names, arrays) if n not in self.bind]
        dev = tvm.cuda(0) if self._cuda else tvm.cpu(0)
        result = vm["main"](*[tvm.runtime.tensor(a, device=dev) for a in args])
        # The frontend returns a bare value for a one-output graph and a tuple otherwise.
        values = [result] if len(self._outputs) == 1 else list(result)
        if len(values) != len(self._outputs):
            raise BackendError(f"TVM returned {len(values)} values for {len(self._outputs)} graph outputs")
        out = {}
        for name, want, value in zip(self._outputs, self._out_types, values):
            arr = _to_numpy(value)
            if want is not None and arr.dtype != want:
                cast = self._info.setdefault("outputs_cast_to_declared_type", {})
                cast.setdefault(name, f"{arr.dtype} -> {np.dtype(want)}")
                arr = arr.astype(want)
            out[name] = arr
        return out

    def _bound_vm(self, arrays: list[np.ndarray]) -> Any:
        """The VM compiled for these inputs' shapes and the values of the inputs in `self.bind`."""
        constants = {n: a for n, a in zip(self.input_names, arrays) if n in self.bind}
        signature = (tuple(a.shape for a in arrays), tuple((a.dtype.str, a.tobytes()) for a in constants.values()))
        if signature not in self._bound:
            shapes = {n: list(a.shape) for n, a in zip(self.input_names, arrays) if n not in constants}
            try:
                self._bound[signature] = self._compiler.build(shapes, constants)
            except BackendError as exc:
                raise type(exc)(f"{exc.message} (compiled for the feeds' shapes {shapes}"
                                f"{' and values of ' + ', '.join(constants) if constants else ''}; as the model "
                                f"declares its inputs: {self.as_declared_failure})",
                                "dynamic dimensions take the feeds' shapes: choose them with --shape") from None
            bound = self._info["bound_at_run"]
            bound.setdefault("compiled_for", []).append(
                {"shapes": shapes, "values": {n: a.tolist() for n, a in constants.items() if a.size <= 16}})
        return self._bound[signature]

    def provenance(self) -> dict[str, Any]:
        return dict(self._info)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "numpy"):
        return value.numpy()
    if isinstance(value, (bool, int, float)):
        return np.asarray(value)
    return np.asarray([int(v) for v in value], dtype=np.int64)  # a shape value (output of Shape)
