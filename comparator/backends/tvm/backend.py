"""Apache TVM (Relax): the Relax ONNX frontend imports the model, TVM compiles it for an LLVM (or CUDA)
target, and the Relax virtual machine runs it.

Every knob is a compile-time one (target CPU, LLVM features, fast-math, pipeline), so compiled libraries are
cached on disk (`cache.py`): a second compare of the same model and variant skips compilation, and on such a hit
the model is read and hashed but neither checked, prepared nor seen by the frontend.
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

from ...graph import stored
from ...errors import BackendError, UnsupportedError, UsageError
from ..contract import BackendBase
from ..options import Option
from . import fold
from .cache import CompileCache, cache_key, cache_root, fetch, fetch_or_compile, model_digest, size_cap
from .model import check_model, parameter_inputs, shapes_as_tensors, unknown_dims_symbolic
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
        env = {"TVM_NUM_THREADS": str(options["threads"])} if options["threads"] else {}
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

        tvm = import_tvm()

        try:
            # Read once: the bytes give the cache key and the graph. External data is read only to compile.
            data = Path(model_path).read_bytes()
            fmt = serialization.registry.get_format_from_file_extension(Path(model_path).suffix) or "protobuf"
            proto = onnx.load_model_from_string(data, format=fmt)
            digest = model_digest(model_path, proto, data)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"tvm backend could not read {model_path}: {_first(exc)}") from None
        del data
        target, info = (cuda_target() if options["target"] == "cuda" else llvm_target(options))
        info.update(backend="tvm", tvm=tvm.__version__, pipeline=options["opt"], approx=options["approx"],
                    threads=_threads(options))
        root = cache_root()
        compiler = _Compiler(model_path, proto, target, options, digest, CompileCache(root) if root else None,
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
    """Whether a value's shape has a dimension that is not a number (exporters write -1 for unknown ones)."""
    t = vi.type.tensor_type
    return not t.HasField("shape") or any(not d.HasField("dim_value") or d.dim_value < 0 for d in t.shape.dim)


def _threads(options: Mapping[str, Any]) -> dict[str, Any]:
    import tvm

    return {"TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
            "runtime_threads": int(tvm.get_global_func("runtime.NumThreads")())}


class _Compiler:
    """Import + compile (or fetch from the cache) for given input shapes (None: as the model declares).

    `cached` needs only the model file's digest; the graph is prepared for TVM's frontend (`prepare`) when
    something must compile."""

    def __init__(self, model_path: str, proto: Any, target: Any, options: Mapping[str, Any], digest: str,
                 cache: CompileCache | None, info: dict[str, Any]):
        self.model_path, self.proto, self.target, self.options, self.digest, self.cache, self.info = \
            model_path, proto, target, options, digest, cache, info
        self._prepared = False
        self._discarded = ""  # why `cached` threw a bad entry away, for the compile that follows

    def prepare(self) -> None:
        """Read the external data, inline local functions, refuse before compiling what TVM's frontend cannot
        convert (`check_model`), and name the dimensions declared -1."""
        if self._prepared:
            return
        import onnx

        proto = self.proto
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(stored.external_dir(self.model_path)))
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"tvm backend could not read {self.model_path}: {_first(exc)}") from None
        if proto.functions:
            from onnx import inliner

            proto = inliner.inline_local_functions(proto)
        check_model(proto)
        unknown_dims_symbolic(proto.graph)
        self.proto, self._prepared = proto, True

    def _keys(self, shapes: dict[str, list[int]] | None, constants: Mapping[str, np.ndarray]
              ) -> tuple[str, str]:
        """Cache keys of the compile for `shapes` and `constants`: as converted, and with its shape computations
        folded (a function of the model, the bound shapes, in the options when not declared, and the folding's
        version)."""
        import hashlib

        import tvm

        values = {n: [str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]
                  for n, a in constants.items()}
        compile_opts = {"opt": self.options["opt"], "approx": self.options["approx"], "shapes": shapes,
                        "constants": values or None}
        spec = self.info["target_spec"]
        return (cache_key(self.digest, spec, compile_opts, tvm.__version__),
                cache_key(self.digest, spec, dict(compile_opts, fold=fold.VERSION), tvm.__version__))

    def build(self, shapes: dict[str, list[int]] | None, constants: Mapping[str, np.ndarray]) -> Any:
        """A Relax VM for the model with input `shapes` bound (None: as the model declares them) and the
        inputs in `constants` turned into constants of those values: from the cache, else compiled."""
        vm = self.cached(shapes, constants)
        return vm if vm is not None else self.compile(shapes, constants)

    def cached(self, shapes: dict[str, list[int]] | None, constants: Mapping[str, np.ndarray]) -> Any:
        """The VM from the cache (compiled as converted, else folded), or None when neither entry is there."""
        self._discarded = ""
        if self.cache is None:
            return None
        for key in self._keys(shapes, constants):
            found = fetch(self.cache, key)
            if found is not None:
                self._note(found[2], found[1])
                return self._vm(found[0])
            self._discarded = self._discarded or self.cache.discarded
        return None

    def compile(self, shapes: dict[str, list[int]] | None, constants: Mapping[str, np.ndarray]) -> Any:
        """`build` after `cached` found nothing. When the frontend or the compiler refuses the model and every
        input shape is then known, its shape computations are folded (`fold.py`) and the folded graph compiled
        instead."""
        import tvm

        self.prepare()
        key, fold_key = self._keys(shapes, constants)
        proto = self._with_constants(constants)
        bound = fold.bound_shapes(proto, shapes)

        def compile_now(graph: Any, folded: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
            t0 = time.perf_counter()
            executable = self._compile(graph, shapes)
            meta = {"compile_s": round(time.perf_counter() - t0, 3), "target": self.info["target"],
                    "parallel_kernels": _parallel_kernels(executable), "tvm": tvm.__version__}
            if folded is not None:
                meta["graph_folded"] = folded
            return executable, meta

        try:
            module, meta, cache_info = fetch_or_compile(self.cache, key, lambda: compile_now(proto, None))
        except BackendError as exc:  # UnsupportedError too
            if bound is None:
                raise
            graph, folded = self._fold(proto, bound, exc.message)
            if folded["nodes_after"] == folded["nodes_before"]:
                raise
            why = exc.message
            try:
                module, meta, cache_info = fetch_or_compile(self.cache, fold_key, lambda: compile_now(graph, folded))
            except BackendError as again:
                raise type(again)(f"{again.message} (with its shape computations folded for the input "
                                  f"shapes {bound}; unfolded: {why[:300]})", again.hint) from None
        if self._discarded and not cache_info.get("discarded_bad_entry"):
            cache_info["discarded_bad_entry"] = self._discarded
        self._note(cache_info, meta)
        return self._vm(module)

    def _vm(self, module: Any) -> Any:
        import tvm
        from tvm import relax

        return relax.VirtualMachine(module, tvm.cuda(0) if self.options["target"] == "cuda" else tvm.cpu(0))

    def _note(self, cache_info: dict[str, Any], meta: Mapping[str, Any]) -> None:
        self.info["cache"] = cache_info
        self.info["compile_s"] = meta.get("compile_s")
        if meta.get("graph_folded"):
            self.info["graph_folded"] = meta["graph_folded"]
        else:
            self.info.pop("graph_folded", None)
        n = meta.get("parallel_kernels")
        self.info["threads"]["parallel_kernels"] = n
        if n == 0:
            self.info["threads"]["effect"] = ("none: the compiled kernels contain no parallel loops, so every "
                                              "thread count runs the same single-threaded code")

    @staticmethod
    def _fold(proto: Any, bound: dict[str, list[int]] | None, why: str) -> tuple[Any, dict[str, Any]]:
        assert bound is not None
        t0 = time.perf_counter()
        graph, folded = fold.fold_shapes(proto, bound)
        folded.update(fold_s=round(time.perf_counter() - t0, 3), why=why[:300])
        return graph, folded

    def _with_constants(self, constants: Mapping[str, np.ndarray]) -> Any:
        """The model with the graph inputs in `constants` turned into initializers of those values."""
        if not constants:
            return self.proto
        import onnx
        from onnx import numpy_helper

        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        kept = [vi for vi in proto.graph.input if vi.name not in constants]
        del proto.graph.input[:]
        proto.graph.input.extend(kept)
        proto.graph.initializer.extend(numpy_helper.from_array(a, n) for n, a in constants.items())
        return proto

    def _compile(self, proto: Any, shapes: dict[str, list[int]] | None) -> Any:
        import tvm
        from tvm import relax

        if any(n.op_type == "Shape" for n in proto.graph.node):
            import onnx

            copy = onnx.ModelProto()
            copy.CopyFrom(proto)
            shapes_as_tensors(copy.graph)
            proto = copy
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
        node = _failing_node(exc)
        found = re.search(r"Error converting operator (\S+?),", printed.getvalue())
        where = (f" at op {node.op_type}" + (f" (node {node.name})" if node.name else "") if node is not None
                 else f" at op {found.group(1)}" if found else "")
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


def _failing_node(exc: BaseException) -> Any:
    """The ONNX node the frontend was converting when it raised: the `node` of its innermost node loop (a
    subgraph's loop is inside its parent's), or None when the traceback has none."""
    import traceback

    node = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_name == "_construct_nodes" and hasattr(frame.f_locals.get("node"), "op_type"):
            node = frame.f_locals["node"]
    return node


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
