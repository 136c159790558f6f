"""Import and compile a model for TVM: the Relax ONNX frontend converts the graph, TVM compiles it for the variant's
target, and the compile cache (`cache.py`) keeps the result. When the frontend or the compiler refuses a model whose
input shapes are all known, its shape computations are folded (`fold.py`) and the folded graph compiled instead.
Errors say whether TVM declares a limitation (UnsupportedError) or failed (BackendError). Nothing here imports TVM
at import time.
"""
from __future__ import annotations

import contextlib
import io
import re
import time
import warnings
from typing import Any
from collections.abc import Mapping

import numpy as np

from ...errors import BackendError, UnsupportedError
from ...graph import stored
from . import fold
from .cache import CompileCache, cache_key, fetch, fetch_or_compile
from .model import check_model, shapes_as_tensors, unknown_dims_symbolic

# Frontend messages that declare a limitation (rather than report a bug).
_DECLARED = re.compile(r"not (yet )?supported|not implemented|unsupported|cannot handle|should be one of|"
                       r"statically known|Dynamic .* not|only constant|must be a constant|currently supported|"
                       r"requires the input new shape to be Shape", re.I)
_CONVERT_ERRORS = ("OpNotImplemented", "OpAttributeUnImplemented", "OpAttributeInvalid", "OpAttributeRequired")


def first_line(exc: BaseException) -> str:
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


class Compiler:
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
            raise BackendError(f"tvm backend could not read {self.model_path}: {first_line(exc)}") from None
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
                                       f"{first_line(exc)}", "compare with the ort or ref backends") from None
            if _DECLARED.search(first_line(exc)):
                raise UnsupportedError(f"TVM cannot compile the model: {first_line(exc)}",
                                       "compare with the ort or ref backends") from None
            raise BackendError(f"TVM could not compile the model for {self.info['target']}: {first_line(exc)}",
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
        text = first_line(exc)
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
