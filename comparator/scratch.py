"""Temporary folders that a process owns while it lives: a run's folder, its memory-backed tensor folder, a fleet
task's copy of the model.

A process removes its own folders when it is done, on an error and on an interrupt alike; one that is killed
(SIGKILL, the out-of-memory killer, a node going down) cannot, and its folder may hold gigabytes of tensor files.
So each folder holds a lock file, locked by the process that made the folder for as long as that process lives
(flock: the kernel drops the lock when the process dies, in whatever way); the file takes its name (MARK) only once
locked. Making a new folder first removes, beside it, every folder of ours whose MARK is not locked: its owner is
gone. A folder being made has no MARK yet and is left alone; a live owner's lock holds whatever its process id is
seen as (containers that share /tmp); a file system without locks gets no MARK, and its folders are never taken
for abandoned. The lock is on the file, not the folder, so that writes into the folder may lock the folder itself
(fileio.folder_lock).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "infercmp-"  # every owned folder's name starts with it
MARK = ".infercmp-owned"  # the lock file of an owned folder, named so once its owner holds the lock
_LOCKING = ".infercmp-owning"  # its name until then
_HELD: dict[Path, int] = {}  # this process's folders: their locked descriptors


def make(prefix: str = PREFIX, parent: str | os.PathLike[str] | None = None) -> Path:
    """A fresh folder named `prefix`... (which starts with PREFIX) in `parent` (the temporary folder by default),
    held by this process until `remove`; abandoned ones in `parent` are removed first. Raises OSError."""
    if not prefix.startswith(PREFIX):
        raise ValueError(f"an owned folder's name starts with {PREFIX!r}")
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    remove_abandoned(base)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    fd = os.open(folder / _LOCKING, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # no locks on this file system: left unmarked, never removed by another process
        pass
    else:
        os.rename(folder / _LOCKING, folder / MARK)
    _HELD[folder] = fd
    return folder


def remove(folder: Path) -> None:
    """Remove a folder `make` gave (or any folder: one this process does not hold is just removed)."""
    shutil.rmtree(folder, ignore_errors=True)
    fd = _HELD.pop(folder, None)
    if fd is not None:
        os.close(fd)


def remove_abandoned(base: Path) -> list[Path]:
    """Remove the owned folders in `base` whose owner has died; returns them."""
    gone: list[Path] = []
    try:
        candidates = [p for p in base.glob(PREFIX + "*") if (p / MARK).is_file() and p not in _HELD]
    except OSError:
        return gone
    for folder in candidates:
        try:
            fd = os.open(folder / MARK, os.O_RDONLY)
        except OSError:  # another user's, or removed meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its owner lives
            os.close(fd)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)
        gone.append(folder)
    return gone
