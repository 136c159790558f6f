"""On-disk cache of TVM-compiled models: compiling is the slow part of a TVM variant, running is fast.

An entry is a shared library written by `Executable.export_library` (`<key>.so`) and a JSON sidecar
(`<key>.json`) that holds the library's sha256 and what the compile reported. The key hashes everything that
changes the generated code: the model file's bytes (and its external data), the target, the compile options,
the bound input shapes, the TVM version and, for a graph whose shape computations were folded (`fold.py`), the
folding's version. Entries live in `$INFERCMP_CACHE_DIR/tvm/` (default
`~/.cache/infercmp/tvm/`); `INFERCMP_NO_CACHE=1` turns the cache off.

Several workers may compile the same key at once: each writes into a temporary file in the cache folder and
renames it into place (`os.replace`), so a reader sees a whole old file or a whole new one, never a partial
one; a process that has the old library loaded keeps its mapping. A sidecar whose hash does not match its
library, or a library that fails to load, is deleted and the model recompiled: a bad entry is never fatal.
Nothing here imports TVM at import time.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping

from ...graph import stored

FORMAT = 2  # bump when the entry layout, the key's ingredients or the preparation of the compiled graph change


def cache_root() -> Path | None:
    """The TVM cache folder, or None when the cache is turned off (INFERCMP_NO_CACHE=1)."""
    if os.environ.get("INFERCMP_NO_CACHE", "").strip() not in ("", "0"):
        return None
    base = os.environ.get("INFERCMP_CACHE_DIR", "").strip()
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "infercmp"
    return root / "tvm"


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

    def __init__(self, root: Path):
        self.root = root
        self.discarded = ""  # why the last bad entry was thrown away

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
        return None

    def discard(self, key: str, why: str = "") -> None:
        for path in self._paths(key):
            try:
                path.unlink()
            except OSError:
                pass
        self.discarded = why


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
    if why:
        info["not_stored_because"] = why
        return executable, meta, info
    # Run what the cache holds, so that a later hit runs the very machine code this miss ran.
    reloaded = cache.load(key)
    return (reloaded[0], meta, info) if reloaded is not None else (executable, meta, info)
