"""The machine fingerprint: what the numbers depend on besides the backend."""
from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np


def environment_fingerprint() -> dict[str, Any]:
    """What the numbers depend on besides the backend: CPU, ISA flags, cores, OS, Python, NumPy."""
    cpu, flags = platform.processor() or "", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not cpu.strip():
                    cpu = value.strip()
                elif key.strip() == "flags":
                    flags = sorted(f for f in value.split() if f.startswith(("sse", "avx", "fma", "amx", "f16c")))
                    break
    except OSError:
        pass
    return {
        "cpu": cpu or platform.machine(),
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
