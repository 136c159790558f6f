"""Where infercmp keeps what it can rebuild: one folder per cache, all under one root.

The root is `$INFERCMP_CACHE_DIR` when set, else the platform's user cache directory for infercmp, from
platformdirs: `$XDG_CACHE_HOME/infercmp` on Linux (`~/.cache/infercmp` when XDG_CACHE_HOME is unset),
`~/Library/Caches/infercmp` on macOS, `%LOCALAPPDATA%\\infercmp\\Cache` on Windows. Every cache is a folder
under it, named in `CACHES`; a cache with its own variable (`env`) lives there instead when that is set.
`infercmp cache info` and `infercmp cache clear` work on these. Nothing here imports a framework.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

ROOT_ENV = "INFERCMP_CACHE_DIR"


@dataclass(frozen=True)
class Cache:
    """One cache: its folder's name under the root, what it holds, and how its entries are counted."""

    name: str
    description: str
    env: str | None = None  # a variable that, when set, is this cache's folder instead
    entry_glob: str = "**/*"  # what counts as one entry (relative to the folder; files only)
    cap_env: str | None = None  # a variable that caps the cache's size, where it has a cap


CACHES: dict[str, Cache] = {c.name: c for c in (
    Cache("tvm", "TVM-compiled models (one shared library and its sidecar per compile)", entry_glob="*.json",
          cap_env="INFERCMP_TVM_CACHE_MAX"),
    Cache("real-models", "wheels, models and feeds of the real-model suite (models/real.py)",
          env="INFERCMP_REAL_MODELS_CACHE"),
    Cache("bench", "models the benchmarks build (benchmarks/bench_core.py, build_decoder.py)"),
    Cache("digests", "sha256 of model files, by path, size and change times (graph/digest.py)",
          env="INFERCMP_DIGESTS_CACHE"),
)}


def root() -> Path:
    """The folder every cache lives under (see the module docstring)."""
    base = os.environ.get(ROOT_ENV, "").strip()
    if base:
        return Path(base).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_path("infercmp", appauthor=False))


def folder(name: str) -> Path:
    """The folder of the cache `name` (one of `CACHES`); it may not exist yet."""
    cache = _known(name)
    override = os.environ.get(cache.env, "").strip() if cache.env else ""
    return Path(override).expanduser() if override else root() / cache.name


def disabled() -> bool:
    """Whether INFERCMP_NO_CACHE turns the caches that can be skipped (the TVM compile cache, the model digests)
    off."""
    return os.environ.get("INFERCMP_NO_CACHE", "").strip() not in ("", "0")


@dataclass(frozen=True)
class Usage:
    """What a cache holds now: its folder, whether it exists, its size in bytes and its entry count."""

    name: str
    path: Path
    exists: bool
    size: int
    entries: int


def usage(name: str) -> Usage:
    """Size and entry count of the cache `name` (a missing folder is an empty cache)."""
    cache, path = _known(name), folder(name)
    if not path.is_dir():
        return Usage(name, path, False, 0, 0)
    size = 0
    for f in path.rglob("*"):
        try:
            if f.is_file() and not f.is_symlink():
                size += f.stat().st_size
        except OSError:  # removed while we walk: another process evicted or cleared it
            pass
    entries = sum(1 for f in path.glob(cache.entry_glob) if not f.name.startswith(".") and f.is_file())
    return Usage(name, path, True, size, entries)


def clear(name: str) -> Usage:
    """Empty the cache `name` (its folder is kept); returns what it held before."""
    before = usage(name)
    path = before.path
    if not before.exists:
        return before
    resolved = path.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise UsageError(f"refusing to clear {path}: it is a filesystem root or the home folder",
                         f"point {CACHES[name].env or ROOT_ENV} at a folder of its own")
    for child in path.iterdir():
        try:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink()
        except FileNotFoundError:
            pass
    return before


def _known(name: str) -> Cache:
    cache = CACHES.get(name)
    if cache is None:
        raise UsageError(f"unknown cache {name!r}", f"caches: {', '.join(CACHES)}")
    return cache


def parse_size(text: str, what: str) -> int:
    """Bytes from `500M`, `2G`, `1.5T`, `4096` (binary units, an optional B or iB); UsageError naming `what`
    otherwise."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise UsageError(f"{what}={text!r} is not a size", "write it like 500M, 2G or 1.5T (0: no limit)")
    return int(value * scale)


def format_size(n: float) -> str:
    """`218.3 MiB`-style sizes for messages."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"

