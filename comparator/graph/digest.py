"""sha256 over a model's files (its .onnx, then its external data files), on a thread of its own, remembered.

Hashing takes seconds of a core for a multi-GB model, on every run. So the digest of a list of files is kept in the
`digests` cache (caches.py) under the files' identity: path, device, inode, size, modification and change times in
nanoseconds. A file written, truncated, replaced or renamed over changes one of these (the change time is the
kernel's and cannot be set back by a program), so the digest is read back only for the very files it was computed
from. Racy cases are not recorded: a file modified or changed less than `SETTLE_S` before hashing began (a later
write could keep a coarse timestamp), or whose identity changed while it was read.
INFERCMP_NO_CACHE=1 neither reads nor writes the cache; a cache that cannot be read or written is skipped. Each
new entry removes those of files that no longer exist, so the cache holds about one entry per model on disk.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ModelError

SETTLE_S = 2.0  # a file modified this recently is hashed but not remembered
BLOCK = 1 << 22


def identity(files: list[Path]) -> list[list[Any]] | None:
    """What the digest of `files` is remembered under; None when one cannot be stat'ed."""
    try:
        stats = [f.stat() for f in files]
    except OSError:
        return None
    return [[str(f), s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns] for f, s in zip(files, stats)]


def _entry(files: list[Path]) -> Path | None:
    from .. import caches

    if caches.disabled():
        return None
    key = hashlib.sha256("\0".join(str(f) for f in files).encode("utf-8", "surrogateescape")).hexdigest()
    return caches.folder("digests") / f"{key[:32]}.json"


def remembered(files: list[Path], ident: list[list[Any]] | None) -> str | None:
    """The digest remembered for exactly these files, or None."""
    entry = _entry(files) if ident is not None else None
    if entry is None:
        return None
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("files") != ident:
        return None
    value = data.get("sha256")
    return value if isinstance(value, str) and len(value) == 64 else None


def remember(files: list[Path], before: list[list[Any]] | None, value: str, began_ns: int) -> None:
    """Record `value` for `files` unless the case is racy (see the module docstring)."""
    entry = _entry(files) if before is not None else None
    if entry is None or before is None or identity(files) != before:
        return
    if any(began_ns - max(mtime_ns, ctime_ns) < SETTLE_S * 1e9 for *_, mtime_ns, ctime_ns in before):
        return
    from ..fileio import write_text

    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text(entry, json.dumps({"files": before, "sha256": value}))
        _prune(entry)
    except Exception:  # noqa: BLE001, S110 - a cache that cannot be written only costs the next run a hash
        pass


def _prune(kept: Path) -> None:
    """Remove the entries of files that no longer exist (a model removed, a temporary one): an entry is read
    back only for the same path, and a hash has just been paid for, so the scan costs little beside it."""
    for other in kept.parent.glob("*.json"):
        if other == kept:
            continue
        try:
            files = json.loads(other.read_text(encoding="utf-8"))["files"]
            if all(Path(row[0]).exists() for row in files):
                continue
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            pass
        other.unlink(missing_ok=True)


class FileDigest:
    """sha256 of `files`, from the cache or computed on a thread from the moment it is made: hashing a large
    model's weights overlaps checking it, planning its taps and running it. `value` waits for it; an unreadable
    file is a ModelError there."""

    def __init__(self, files: list[Path]):
        self._files, self._value = files, ""
        self._error: ModelError | None = None
        self._thread = threading.Thread(target=self._hash, name="infercmp-model-digest", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        began = time.time_ns()
        before = identity(self._files)
        known = remembered(self._files, before)
        if known is not None:
            self._value = known
            return
        digest = hashlib.sha256()
        try:
            for f in self._files:
                with f.open("rb") as fh:
                    for block in iter(lambda: fh.read(BLOCK), b""):  # noqa: B023 - fh of this iteration
                        digest.update(block)
        except OSError as exc:
            self._error = ModelError(f"{exc.filename or self._files[0]} could not be read while hashing it "
                                     f"({exc.strerror})", "check that the file is readable and not being replaced")
            return
        self._value = digest.hexdigest()
        remember(self._files, before, self._value, began)

    @property
    def value(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

