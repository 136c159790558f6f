"""LLVM (and CUDA) targets for the tvm backend: CPU names, feature lists, and the host's own features.

TVM 0.27 refuses target strings with flags; targets are dicts (`{"kind": "llvm", "mcpu": ..., "mattr": [...]}`).
A target that would emit instructions the host lacks is refused before compiling: the code would die with
SIGILL. Nothing here imports TVM at import time.
"""
from __future__ import annotations

import os
import re
from typing import Any
from collections.abc import Mapping

from ...errors import BackendError

# LLVM features that are instruction-set extensions whose absence on the host makes the code die with SIGILL
# (the rest of LLVM's features are tuning hints, harmless to enable anywhere).
_VECTOR_ISA = re.compile(r"^(avx|amx|fma|f16c|sse|ssse|xop|3dnow)")
_TUNING = re.compile(r"^(fast-|slow-|tuning-|false-deps|prefer-|no-bypass|idiv|macrofusion|branchfusion|"
                     r"sbb-dep|lea-|allow-light|vzeroupper|64bit-mode|pad-short|insert-vzeroupper)")


def llvm_target(options: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    import tvm

    cg = tvm.target.codegen
    host_cpu, triple = str(cg.llvm_get_system_cpu()), str(cg.llvm_get_system_triple())
    host = host_features(host_cpu)
    spec: dict[str, Any] = {"kind": "llvm"}
    cpu = host_cpu if options["mcpu"] == "host" else options["mcpu"]
    if cpu != "generic":
        if not cg.llvm_is_valid_cpu(cpu, triple):
            names = sorted(str(c) for c in cg.llvm_get_cpu_archlist(tvm.target.Target(spec)))
            raise BackendError(f"tvm option mcpu={cpu!r}: LLVM {cg.llvm_version_major()} knows no such CPU for "
                               f"{triple}", f"this host is {host_cpu}; use host, generic or one of: "
                               + ", ".join(names))
        spec["mcpu"] = cpu
    if options["mattr"]:
        spec["mattr"] = split_mattr(options["mattr"], host, host_cpu)
    if options["fastmath"]:
        spec["fast-math"] = True
    target = tvm.target.Target(spec)
    enabled = {str(f) for f in cg.llvm_get_cpu_features(target)}
    lacking = sorted(f for f in enabled - host if _VECTOR_ISA.match(f))
    if lacking:
        raise BackendError(f"tvm target {options['mcpu']}{options['mattr']} enables {', '.join(lacking)}, which "
                           f"this host CPU ({host_cpu}) lacks: the code would die with an illegal instruction",
                           f"pick an older mcpu or remove them: mattr=-{'-'.join(lacking)}")
    info = {"target": str(target), "target_spec": spec, "host_cpu": host_cpu, "host_triple": triple,
            "llvm": int(cg.llvm_version_major()), "fast_math": bool(options["fastmath"]),
            "simd_features": sorted(f for f in enabled if _VECTOR_ISA.match(f))}
    return target, info


def host_features(host_cpu: str) -> set[str]:
    """LLVM features of the host CPU, less vector extensions the kernel hides (/proc/cpuinfo says absent)."""
    import tvm

    feats = {str(f) for f in tvm.target.codegen.llvm_get_cpu_features(
        tvm.target.Target({"kind": "llvm", "mcpu": host_cpu}))}
    flags = _cpuinfo_flags()
    if flags:
        norm = {f.replace("_", "").replace("-", "").replace(".", "") for f in flags}
        feats = {f for f in feats if not (_VECTOR_ISA.match(f) and f.startswith(("avx", "amx", "fma", "f16c")))
                 or f.replace("-", "").replace(".", "") in norm}
    return feats


def _cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return set()


def known_features() -> set[str]:
    """Every feature name some CPU that LLVM knows enables (LLVM has no plain list of feature names)."""
    import tvm

    cg = tvm.target.codegen
    names: set[str] = set()
    for cpu in cg.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm"})):
        names |= {str(f) for f in cg.llvm_get_cpu_features(tvm.target.Target({"kind": "llvm", "mcpu": str(cpu)}))}
    return names


def split_mattr(text: str, host: set[str], host_cpu: str, known: set[str] | None = None) -> list[str]:
    """`+avx2+fma-avx512f` -> ["+avx2", "+fma", "-avx512f"]. Feature names contain '-' (amx-tile), so a '-'
    splits only where the text before it is a whole feature name LLVM knows: the longest known name wins."""
    known = (known_features() | host) if known is None else known
    out, i = [], 0
    while i < len(text):
        sign, start = text[i], i + 1
        stop = text.find("+", start)
        stop = len(text) if stop < 0 else stop
        ends = [k for k in range(start + 1, stop) if text[k] == "-"] + [stop]
        name = next((text[start:k] for k in reversed(ends) if text[start:k] in known), None)
        if name is None:
            bad = text[start:ends[0]]
            offered = sorted(f for f in host if not _TUNING.match(f))
            raise BackendError(f"tvm option mattr: LLVM knows no CPU feature {bad!r}",
                               f"the host CPU ({host_cpu}) offers: {' '.join(offered)}")
        if sign == "+" and name not in host and _VECTOR_ISA.match(name):
            raise BackendError(f"tvm option mattr=+{name}: the host CPU ({host_cpu}) lacks {name}, so the code "
                               "would die with an illegal instruction",
                               f"the host CPU offers: {' '.join(sorted(f for f in host if _VECTOR_ISA.match(f)))}")
        out.append(sign + name)
        i = start + len(name)
    return out


def cuda_target() -> tuple[Any, dict[str, Any]]:
    import importlib.util
    import shutil

    import tvm

    if str(tvm.support.libinfo().get("USE_CUDA", "OFF")).upper() in ("OFF", "", "NOT-FOUND"):
        raise BackendError(f"target=cuda: this TVM {tvm.__version__} was built without CUDA",
                           "install a TVM build with CUDA, or use target=llvm")
    dev = tvm.cuda(0)
    if not dev.exist:
        raise BackendError("target=cuda: TVM sees no CUDA device on this machine", "use target=llvm")
    mode = os.environ.get("TVM_CUDA_COMPILE_MODE", "nvrtc").lower()
    if (mode == "nvrtc" and importlib.util.find_spec("cuda.bindings") is None) or \
            (mode == "nvcc" and shutil.which("nvcc") is None):
        raise BackendError(f"target=cuda: TVM compiles CUDA kernels with {mode}, which is not installed",
                           "pip install cuda-bindings (NVRTC), or put nvcc on PATH and set TVM_CUDA_COMPILE_MODE=nvcc")
    cg = tvm.target.codegen
    host_cpu = str(cg.llvm_get_system_cpu())
    spec: dict[str, Any] = {"kind": "cuda", "arch": "sm_" + str(dev.compute_version).replace(".", ""),
            "host": {"kind": "llvm", "mcpu": host_cpu}}
    target = tvm.target.Target(spec)
    return target, {"target": str(target), "target_spec": spec, "device": str(dev.device_name),
                    "host_cpu": host_cpu, "cuda_compiler": mode,
                    "fast_math": "on: TVM compiles every CUDA kernel with --use_fast_math"}
