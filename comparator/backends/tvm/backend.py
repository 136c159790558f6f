"""Apache TVM (Relax): the Relax ONNX frontend imports the model, TVM compiles it for an LLVM (or CUDA)
target, and the Relax virtual machine runs it.

Every knob is a compile-time one (target CPU, LLVM features, fast-math, pipeline), so compiled libraries are
cached on disk (`tvm_cache.py`): a second compare of the same model and variant skips compilation.
Nothing here imports TVM at import time.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import numpy as np

from ...errors import BackendError, UnsupportedError, UsageError
from ..contract import BackendBase
from ..options import Option
from .cache import CompileCache, cache_key, cache_root, fetch_or_compile, model_digest
from .model import check_model, parameter_inputs, shapes_as_tensors
from .target import cuda_target, llvm_target

PIPELINES = {
    "default": "tvm.compile's default Relax pipeline: every op legalized to its own TIR kernel, no fusion",
    "fused": "relax.get_default_pipeline(target): adds FoldConstant, FuseOps and FuseTIR",
}
_MATTR = re.compile(r"[+-][A-Za-z0-9._]+(?:-[A-Za-z0-9._]+)*(?:[+-][A-Za-z0-9._]+(?:-[A-Za-z0-9._]+)*)*")
# Frontend messages that declare a limitation (rather than report a bug).
_DECLARED = re.compile(r"not (yet )?supported|not implemented|unsupported|cannot handle|should be one of|"
                       r"statically known|Dynamic .* not|only constant|must be a constant|currently supported|"
                       r"requires the input new shape to be Shape", re.I)
_CONVERT_ERRORS = ("OpNotImplemented", "OpAttributeUnImplemented", "OpAttributeInvalid", "OpAttributeRequired")


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

    def validate(self, options: Mapping[str, Any]) -> None:
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
        return {"TVM_NUM_THREADS": str(options["threads"])} if options["threads"] else {}

    def open(self, model_path: str, options: Mapping[str, Any]) -> TvmSession:
        import onnx

        tvm = import_tvm()

        try:
            proto = onnx.load(model_path, load_external_data=False)
            digest = model_digest(model_path, proto)
            onnx.external_data_helper.load_external_data_for_model(proto, str(Path(model_path).parent))
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"tvm backend could not read {model_path}: {_first(exc)}") from None
        if proto.functions:
            from onnx import inliner

            proto = inliner.inline_local_functions(proto)
        check_model(proto)
        shapes_as_tensors(proto.graph)
        target, info = (cuda_target() if options["target"] == "cuda" else llvm_target(options))
        info.update(backend="tvm", tvm=tvm.__version__, pipeline=options["opt"], approx=options["approx"],
                    threads=_threads(options))
        root = cache_root()
        compiler = _Compiler(proto, target, options, digest, CompileCache(root) if root else None, info)
        session = TvmSession(proto, compiler, info, options["target"])
        dynamic = {i.name for i in proto.graph.input if i.name in session.input_names and _is_dynamic(i)}
        params = parameter_inputs(proto, session.input_names)
        try:
            session.vm = compiler.build(None, {})
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
    """Import tvm. Its FFI layer imports torch, when installed, only to offer DLPack interop, which this
    backend never uses; hiding torch during the import saves seconds per worker process."""
    if "tvm" in sys.modules or "torch" in sys.modules:
        import tvm

        return tvm
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` raise ImportError
    try:
        import tvm
    finally:
        del sys.modules["torch"]
    return tvm


def _first(exc: BaseException) -> str:
    """The message of a TVM or Python exception in one line (TVM's own messages may continue on a second)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip() and not ln.startswith("# ")]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    if len(lines) > 1 and (text.endswith(":") or lines[1].startswith(("R.", "T."))):
        text += " " + lines[1]
    elif len(lines) > 2 and lines[1].rstrip(":").lower() in ("offending call", "call"):
        text += " " + lines[2]
    return text[:400]


def _is_dynamic(vi: Any) -> bool:
    t = vi.type.tensor_type
    return not t.HasField("shape") or any(not d.HasField("dim_value") for d in t.shape.dim)


def _threads(options: Mapping[str, Any]) -> dict[str, Any]:
    import tvm

    return {"TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
            "runtime_threads": int(tvm.get_global_func("runtime.NumThreads")())}


class _Compiler:
    """Import + compile (or fetch from the cache) for given input shapes (None: as the model declares)."""

    def __init__(self, proto: Any, target: Any, options: Mapping[str, Any], digest: str,
                 cache: CompileCache | None, info: dict[str, Any]):
        self.proto, self.target, self.options, self.digest, self.cache, self.info = \
            proto, target, options, digest, cache, info

    def build(self, shapes: dict[str, list[int]] | None, constants: Mapping[str, np.ndarray]) -> Any:
        """A Relax VM for the model with input `shapes` bound (None: as the model declares them) and the
        inputs in `constants` turned into constants of those values."""
        import hashlib

        import tvm
        from tvm import relax

        values = {n: [str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]
                  for n, a in constants.items()}
        compile_opts = {"opt": self.options["opt"], "approx": self.options["approx"], "shapes": shapes,
                        "constants": values or None}
        key = cache_key(self.digest, self.info["target_spec"], compile_opts, tvm.__version__)

        def compile_now() -> tuple[Any, dict[str, Any]]:
            t0 = time.perf_counter()
            executable = self._compile(shapes, constants)
            return executable, {"compile_s": round(time.perf_counter() - t0, 3), "target": self.info["target"],
                                "parallel_kernels": _parallel_kernels(executable), "tvm": tvm.__version__}

        module, meta, cache_info = fetch_or_compile(self.cache, key, compile_now)
        self._note(cache_info, meta)
        return relax.VirtualMachine(module, tvm.cuda(0) if self.options["target"] == "cuda" else tvm.cpu(0))

    def _note(self, cache_info: dict[str, Any], meta: Mapping[str, Any]) -> None:
        self.info["cache"] = cache_info
        self.info["compile_s"] = meta.get("compile_s")
        n = meta.get("parallel_kernels")
        self.info["threads"]["parallel_kernels"] = n
        if n == 0:
            self.info["threads"]["effect"] = ("none: the compiled kernels contain no parallel loops, so every "
                                              "thread count runs the same single-threaded code")

    def _compile(self, shapes: dict[str, list[int]] | None, constants: Mapping[str, np.ndarray]) -> Any:
        import tvm
        from tvm import relax

        proto = self.proto
        if constants:
            import onnx
            from onnx import numpy_helper

            proto = onnx.ModelProto()
            proto.CopyFrom(self.proto)
            kept = [vi for vi in proto.graph.input if vi.name not in constants]
            del proto.graph.input[:]
            proto.graph.input.extend(kept)
            proto.graph.initializer.extend(numpy_helper.from_array(a, n) for n, a in constants.items())
        mod = _import(proto, shapes)
        try:
            if self.options["approx"]:
                mod = relax.transform.FastMathTransform()(mod)
            pipeline = relax.get_default_pipeline(self.target) if self.options["opt"] == "fused" else "default"
            return tvm.compile(mod, target=self.target, relax_pipeline=pipeline)
        except Exception as exc:  # noqa: BLE001 - TVM raises many types; all mean: this compile failed
            if "cannot emit this Relax operator" in str(exc):
                raise UnsupportedError(f"TVM cannot compile an op whose output shape depends on input values: "
                                       f"{_first(exc)}", "compare with the ort or ref backends") from None
            if _DECLARED.search(_first(exc)):
                raise UnsupportedError(f"TVM cannot compile the model: {_first(exc)}",
                                       "compare with the ort or ref backends") from None
            raise BackendError(f"TVM could not compile the model for {self.info['target']}: {_first(exc)}",
                               "compare with opt=default/fused, or report the model to TVM") from None


def _import(proto: Any, shapes: dict[str, list[int]] | None) -> Any:
    from tvm.relax.frontend.onnx import from_onnx

    printed = io.StringIO()
    try:
        # The frontend prints the failing op to stdout and warns about renamed inputs; keep both out of logs.
        with contextlib.redirect_stdout(printed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return from_onnx(proto, shape_dict=shapes, keep_params_in_input=False)
    except Exception as exc:  # noqa: BLE001
        found = re.search(r"Error converting operator (\S+?),", printed.getvalue())
        where = f" at op {found.group(1)}" if found else ""
        text = _first(exc)
        if isinstance(exc, NotImplementedError) or type(exc).__name__ in _CONVERT_ERRORS or _DECLARED.search(text):
            raise UnsupportedError(f"TVM's ONNX frontend cannot convert the model{where}: {text}",
                                   "compare with the ort or ref backends") from None
        if re.search(r"'Var' object has no attribute", text):
            # A converter read the value of an input that, in this model, is a graph input, not a constant.
            raise UnsupportedError(f"TVM's ONNX frontend cannot convert the model{where}: it needs a constant "
                                   "where the model has a run-time input",
                                   "compare with the ort or ref backends") from None
        raise BackendError(f"TVM's ONNX frontend failed{where}: {type(exc).__name__}: {text}") from None


def _parallel_kernels(executable: Any) -> int | None:
    """How many places in the generated code launch work on TVM's thread pool (None: could not be read).
    Each parallel loop loads the launcher's address (`@__TVMBackendParallelLaunch`) once."""
    try:
        return sum(1 for m in executable.mod.imports if getattr(m, "kind", "") == "llvm"
                   for line in m.inspect_source("ll").splitlines()
                   if "TVMBackendParallelLaunch" in line and not line.startswith(("@", "declare")))
    except Exception:  # noqa: BLE001 - only a provenance detail
        return None


class TvmSession:
    """A compiled model on the Relax VM; `run` returns every graph output by its ONNX name."""

    def __init__(self, proto: Any, compiler: _Compiler, info: dict[str, Any], target_kind: str):
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
