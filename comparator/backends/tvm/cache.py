"""On-disk cache of TVM-compiled models: compiling is the slow part of a TVM variant, running is fast.

An entry is a shared library written by `Executable.export_library` (`<key>.so`) and a JSON sidecar
(`<key>.json`) that holds the library's sha256 and what the compile reported. The key hashes everything that
changes the generated code: the model file's bytes (and its external data), the target, the compile options,
the bound input shapes, the TVM version and, for a graph whose shape computations were folded (`fold.py`), the
folding's version. Entries live in the `tvm` folder of infercmp's cache root (comparator/caches.py:
`$INFERCMP_CACHE_DIR`, else the platform's user cache directory, `$XDG_CACHE_HOME/infercmp` on Linux);
`INFERCMP_NO_CACHE=1` turns the cache off, `infercmp cache info|clear` shows or empties it.

The cache holds at most `INFERCMP_TVM_CACHE_MAX` bytes (`500M`, `2G`; default 2 GiB; `0`: no limit). Each store
evicts the least recently used entries until the others fit beside the new one: a hit touches its sidecar, so
an entry's age is the time since it was last stored or loaded.

Several workers may compile the same key at once: each writes into a temporary file in the cache folder and
renames it into place (`os.replace`), so a reader sees a whole old file or a whole new one, never a partial
one; a process that has the old library loaded keeps its mapping. A sidecar whose hash does not match its
library, or a library that fails to load, is deleted and the model recompiled: a bad entry is never fatal.
Eviction is safe beside them for the same reasons: it unlinks whole entries (never a temporary file younger
than a day), a process that has an evicted library loaded keeps its mapping, and a reader that loses an entry
between its check and its read treats it as a miss.
Nothing here imports TVM at import time.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping

from ... import caches
from ...graph import stored

CAP_ENV = "INFERCMP_TVM_CACHE_MAX"
DEFAULT_CAP = 2 << 30
STALE_S = 24 * 3600  # a temporary file or a library without a sidecar this old belongs to no live writer
FORMAT = 2  # bump when the entry layout, the key's ingredients or the preparation of the compiled graph change


def cache_root() -> Path | None:
    """The TVM cache folder, or None when the cache is turned off (INFERCMP_NO_CACHE=1)."""
    return None if caches.disabled() else caches.folder("tvm")


def size_cap() -> int:
    """The most bytes the cache may hold (INFERCMP_TVM_CACHE_MAX; 0: no limit). UsageError for a bad value."""
    text = os.environ.get(CAP_ENV, "").strip()
    return DEFAULT_CAP if not text else caches.parse_size(text, CAP_ENV)


def model_digest(model_path: str | os.PathLike[str], proto: Any = None, data: bytes | None = None) -> str:
    """sha256 of the model file (`data`: its bytes, already read) and, in order, of every external data file it
    references (found where graph/stored.py says: a copy infercmp wrote names the input model's folder)."""
    path = Path(model_path)
    digest = hashlib.sha256()
    if data is None:
        _hash_file(digest, path)
    else:
        digest.update(data)
    if proto is not None:
        seen: set[str] = set()
        for location in _external_locations(proto):
            if location not in seen:
                seen.add(location)
                digest.update(location.encode("utf-8"))
                _hash_file(digest, stored.external_dir(path) / location)
    return digest.hexdigest()


def _hash_file(digest: Any, path: Path) -> None:
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)


def _external_locations(proto: Any) -> list[str]:
    """Locations of external data, in graph order (initializers and tensor attributes, subgraphs too)."""
    import onnx

    out: list[str] = []

    def tensor(t: Any) -> None:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            out.extend(e.value for e in t.external_data if e.key == "location")

    def graph(g: Any) -> None:
        for t in g.initializer:
            tensor(t)
        for node in g.node:
            for a in node.attribute:
                if a.HasField("t"):
                    tensor(a.t)
                for t in a.tensors:
                    tensor(t)
                if a.HasField("g"):
                    graph(a.g)
                for sub in a.graphs:
                    graph(sub)

    graph(proto.graph)
    return out


def cache_key(model_sha256: str, target: Mapping[str, Any], compile_options: Mapping[str, Any],
              tvm_version: str) -> str:
    """Hex key of one compiled artifact. `compile_options` holds every option that changes the code."""
    blob = json.dumps({"format": FORMAT, "model": model_sha256, "target": target, "options": compile_options,
                       "tvm": tvm_version}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]


class CompileCache:
    """Store and fetch compiled TVM libraries under `root` (see the module docstring)."""

    def __init__(self, root: Path, cap: int | None = None):
        self.root = root
        self.cap = size_cap() if cap is None else cap  # bytes; 0: no limit
        self.discarded = ""  # why the last bad entry was thrown away
        self.evicted: list[str] = []  # keys the last store evicted

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.so", self.root / f"{key}.json"

    def contains(self, key: str) -> bool:
        """Whether an entry for `key` is on disk (not checked: `load` does that)."""
        return all(p.exists() for p in self._paths(key))

    def load(self, key: str) -> tuple[Any, dict[str, Any]] | None:
        """(loaded tvm module, sidecar) for a valid entry; None on a miss. A bad entry is deleted."""
        lib_path, meta_path = self._paths(key)
        self.discarded = ""
        if not lib_path.exists() or not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            digest = hashlib.sha256(lib_path.read_bytes()).hexdigest()
            if not isinstance(meta, dict) or meta.get("sha256") != digest or meta.get("format") != FORMAT:
                raise ValueError("library hash or format does not match its sidecar")
            import tvm

            module = tvm.runtime.load_module(str(lib_path))
        except Exception as exc:  # noqa: BLE001 - any defect means: throw the entry away and recompile
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.discard(key, f"{type(exc).__name__}: {first}"[:300])
            return None
        try:
            os.utime(meta_path)  # used now: the least recently used entries are evicted first
        except OSError:
            pass  # a read-only cache still serves hits
        return module, meta

    def store(self, key: str, executable: Any, meta: Mapping[str, Any]) -> str | None:
        """Export `executable` under `key`; return None on success or why it was not stored."""
        lib_path, meta_path = self._paths(key)
        tmp_lib = tmp_meta = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # The exporter picks the output format from the suffix: the temporary name must end in .so.
            fd, tmp_lib = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp.so", dir=self.root)
            os.close(fd)
            executable.export_library(tmp_lib)
            data = Path(tmp_lib).read_bytes()
            record = dict(meta, format=FORMAT, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
            fd, tmp_meta = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp.json", dir=self.root)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=1, sort_keys=True, default=str)
            # Library first, sidecar last: a reader that sees the new sidecar before the new library finds a
            # hash mismatch, treats it as a miss and recompiles; it never loads a half-written file.
            os.replace(tmp_lib, lib_path)
            tmp_lib = None
            os.replace(tmp_meta, meta_path)
            tmp_meta = None
        except Exception as exc:  # noqa: BLE001 - an unwritable cache must not fail the variant
            return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]
        finally:
            for leftover in (tmp_lib, tmp_meta):
                if leftover is not None:
                    try:
                        os.unlink(leftover)
                    except OSError:
                        pass
        try:
            self.evicted = self.evict(keep=key)
        except OSError:  # the folder went away (infercmp cache clear): the entry is stored or gone, either is fine
            self.evicted = []
        return None

    def entries(self) -> list[tuple[float, int, str]]:
        """(last use, bytes, key) of every whole entry, least recently used first. Last use: the newer of the
        library's and the sidecar's modification times (a hit touches the sidecar)."""
        found = []
        for meta in self.root.glob("*.json"):
            if meta.name.startswith("."):
                continue
            key = meta.stem
            used, size = 0.0, 0
            try:
                for path in self._paths(key):
                    st = path.stat()
                    used, size = max(used, st.st_mtime), size + st.st_size
            except OSError:  # half an entry: being written, discarded or evicted by another process
                continue
            found.append((used, size, key))
        return sorted(found)

    def evict(self, keep: str | None = None) -> list[str]:
        """Delete the least recently used entries until the cache fits its cap (the entry `keep` stays even if
        it alone is over it), and leftovers of writers that died (temporary files and libraries without a
        sidecar, a day old). Returns the evicted keys."""
        now = time.time()
        for path in self.root.glob("*.so"):
            meta = path.with_suffix(".json")
            stale = path.name.startswith(".") or not meta.exists()
            if stale and now - _mtime(path, now) > STALE_S:
                _unlink(path)
        for path in self.root.glob(".*.tmp.json"):
            if now - _mtime(path, now) > STALE_S:
                _unlink(path)
        if not self.cap:
            return []
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        evicted = []
        for _, size, key in entries:
            if total <= self.cap:
                break
            if key == keep:
                continue
            self.discard(key)
            self.discarded = ""
            evicted.append(key)
            total -= size
        return evicted

    def discard(self, key: str, why: str = "") -> None:
        """Delete the entry `key` (the sidecar last: a reader of a half-deleted entry sees a miss)."""
        for path in self._paths(key):
            try:
                path.unlink()
            except OSError:
                pass
        self.discarded = why


def _mtime(path: Path, default: float) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def fetch(cache: CompileCache, key: str) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
    """(runnable module, the compile's sidecar, what the cache did) for a valid entry under `key`; None when there
    is none (a bad one is deleted: `cache.discarded` says why)."""
    found = cache.load(key)
    if found is None:
        return None
    return found[0], found[1], {"enabled": True, "hit": True, "key": key, "dir": str(cache.root)}


def fetch_or_compile(cache: CompileCache | None, key: str, compile_now: Callable[[], tuple[Any, dict[str, Any]]]
                     ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(runnable module, the compile's sidecar, what the cache did) for `key`; `compile_now()` returns
    (executable, sidecar) and runs only on a miss."""
    if cache is None:
        return (*compile_now(), {"enabled": False, "hit": False, "key": key})
    found = fetch(cache, key)
    if found is not None:
        return found
    info: dict[str, Any] = {"enabled": True, "hit": False, "key": key, "dir": str(cache.root)}
    if cache.discarded:
        info["discarded_bad_entry"] = cache.discarded
    executable, meta = compile_now()
    why = cache.store(key, executable, meta)
    info["stored"] = why is None
    if cache.evicted:
        info["evicted"] = len(cache.evicted)
    if why:
        info["not_stored_because"] = why
        return executable, meta, info
    # Run what the cache holds, so that a later hit runs the very machine code this miss ran.
    reloaded = cache.load(key)
    return (reloaded[0], meta, info) if reloaded is not None else (executable, meta, info)
