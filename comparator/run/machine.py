"""The machine fingerprint: what the numbers depend on besides the backend.

The CPU is read by archspec (the library Spack uses to name microarchitectures): on Linux from /proc/cpuinfo
(`flags` on x86, `Features` on ARM), on macOS from sysctl, on Windows from CPUID. The fingerprint keeps the ISA
features that change which kernels a framework picks and how they round: SIMD width and kind, FMA, half and
bfloat16 arithmetic, dot-product and matrix extensions, on x86 and ARM alike.
"""
from __future__ import annotations

import os
import platform
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

# Feature-name prefixes kept in `cpu_flags`, per ISA family (the names are the kernel's / archspec's).
X86_ISA = ("sse", "ssse3", "avx", "fma", "f16c", "amx")  # avx covers avx2, avx512*, avx_vnni
ARM_ISA = ("asimd", "neon", "sve", "sme", "fphp", "fp16", "bf16", "ebf16", "i8mm", "dotprod", "fhm", "fcma",
           "frint", "f32mm", "f64mm")  # asimd covers asimdhp, asimddp, asimdfhm, asimdrdm; sve covers sve2...
POWER_ISA = ("altivec", "vsx", "mma")


def isa_features(machine: str, features: Iterable[str]) -> list[str]:
    """The numerics-relevant ISA features among `features`, for a CPU whose `platform.machine()` is `machine`."""
    arch = machine.lower()
    if arch in ("x86_64", "amd64", "i386", "i686", "x86"):
        keep: tuple[str, ...] = X86_ISA
    elif arch in ("aarch64", "arm64") or arch.startswith("arm"):
        keep = ARM_ISA
    elif arch.startswith(("ppc", "power")):
        keep = POWER_ISA
    else:
        return sorted(set(features))
    return sorted({f for f in features if f.lower().startswith(keep)})


def cpu_description() -> dict[str, Any]:
    """{"cpu", "arch", "vendor", "microarchitecture", "cpu_flags"} of this machine, from archspec; a machine
    archspec cannot read gets what the platform module says and no flags."""
    machine = platform.machine()
    out: dict[str, Any] = {"cpu": machine, "arch": machine, "vendor": "", "microarchitecture": "", "cpu_flags": []}
    try:
        with warnings.catch_warnings():  # archspec warns when one of its probes fails; the fallback is enough
            warnings.simplefilter("ignore")
            from archspec.cpu import detect, host

            info = detect.detected_info()
            uarch = host()
            brand = detect.brand_string() if hasattr(detect, "brand_string") else None
    except Exception:  # noqa: BLE001 - a fingerprint must never fail a run
        return dict(out, cpu=platform.processor() or machine)  # on Linux that runs `uname -p`
    out.update(cpu=brand or out["cpu"], vendor=info.vendor if info.vendor != "generic" else uarch.vendor,
               microarchitecture=uarch.name, cpu_flags=isa_features(machine, info.features))
    return out


def os_description() -> str:
    """`platform.platform()`'s string (`Linux-6.1.0-x86_64-with-glibc2.36`) without its processor field, which on
    Linux is blank or the machine's name and costs a `uname -p` subprocess forked from the worker."""
    name = os.uname()
    libc = "".join(platform.libc_ver())
    return "-".join(part.replace(" ", "_") for part in (name.sysname, name.release, name.machine) if part) + (
        f"-with-{libc}" if libc else "")


def environment_fingerprint() -> dict[str, Any]:
    """What the numbers depend on besides the backend: CPU (model, architecture, vendor, microarchitecture, ISA
    features), cores, OS, Python, NumPy."""
    return {
        **cpu_description(),
        "cores": os.cpu_count(),
        "os": os_description(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
