"""Atomic writes, safe output paths, write locks, JSON and pickle-free array files.

Every file infercmp writes goes through `atomic_path` (or `write_text`):
- a regular file (or a new one) is written to a temporary file beside it and renamed over it only on success;
- a symlink is followed: the file it points to is written (atomically), the link itself stays;
- an existing path that is not a regular file (a device such as /dev/stdout or /dev/null, a FIFO, a link to one) is
  written through, never replaced; a folder is refused;
- `-` is standard output (text writes; binary data only when stdout is not a terminal);
- `exclusive=True` never replaces an existing file, even against a writer that races this one (a hard link, or a
  check and rename under the folder's lock); `lock=True` holds the folder's lock while the file is put in place.
Errors of the file system (read-only, full, a file where a folder should be) become one-line `WriteError`s.

`check_outputs` compares every output path of a command with every input by resolved identity (same file, hard
link, symlink) before anything runs.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from collections.abc import Callable, Iterable, Iterator, Mapping

from .errors import InfercmpError, UsageError
from .jsondata import plain

STDOUT = "-"
LOCK_WAIT_S = 10.0  # how long a writer waits for another one to finish with the same folder


class WriteError(InfercmpError):
    """An output cannot be written: read-only or full file system, no permission, a file where a folder should be.
    Nothing is left behind (exit code 2)."""


def is_stdout(path: str | os.PathLike[str] | None) -> bool:
    """`-`, or a path that reaches this process's standard output through /dev or /proc (/dev/stdout, /dev/fd/1):
    written through sys.stdout, so that it and the program's other output do not overwrite each other."""
    if path is None:
        return False
    text = os.fspath(path)
    if text == STDOUT:
        return True
    if not text.startswith(("/dev/", "/proc/")) and not os.path.islink(text):
        return False
    try:
        st, out = os.stat(text), os.fstat(1)
    except OSError:
        return False
    return _stream(text) and (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino)


def resolve_output(path: str | os.PathLike[str]) -> Path:
    """Where a write to `path` lands: every symlink followed (a dangling one to the file it names)."""
    return Path(os.path.realpath(os.fspath(path)))


def _free(folder: Path) -> str:
    try:
        return _size(shutil.disk_usage(folder).free)
    except OSError:
        return "?"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _existing_ancestor(path: Path) -> Path:
    for p in [path, *path.parents]:
        if os.path.lexists(p):
            return p
    return Path(path.anchor or ".")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                errno.EFBIG, errno.ENAMETOOLONG, errno.EEXIST, errno.ELOOP}


def write_error(path: str | os.PathLike[str], exc: OSError, what: str = "write") -> WriteError:
    """The one-line error for an OSError met while writing `path`."""
    p = Path(path)
    code = exc.errno
    if code == errno.EROFS:
        return WriteError(f"cannot {what} {p}: the file system is read-only", "write it to another folder")
    if code in (errno.ENOSPC, errno.EDQUOT):
        device = os.path.exists(p) and not os.path.isfile(p)
        free = "" if device else f" ({_free(_existing_ancestor(p.parent))} free there)"
        return WriteError(f"cannot {what} {p}: no space left on the device{free}",
                          "free some space, or write it to another disk")
    if code in (errno.EACCES, errno.EPERM):
        return WriteError(f"cannot {what} {p}: permission denied", "write it to a folder you may write in")
    if code == errno.ENOTDIR:
        blocker = next((a for a in [p.parent, *p.parent.parents] if a.exists() and not a.is_dir()), p.parent)
        return WriteError(f"cannot {what} {p}: {blocker} is a file, not a folder", "give a path in a folder")
    if code == errno.EISDIR:
        return WriteError(f"cannot {what} {p}: it is a folder", "give a file name")
    if code == errno.EFBIG:
        return WriteError(f"cannot {what} {p}: the file is too large for this file system")
    return WriteError(f"cannot {what} {p}: {exc.strerror or exc}")


@contextmanager
def folder_lock(folder: Path, wait: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on the folder itself: no lock file is left behind). Another holder
    is waited for up to `wait` seconds; a file system without locks (some network ones) is used without."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise write_error(folder, exc, "lock") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WriteError(f"another process has been writing in {folder} for {wait:g} s",
                                     "wait for it to finish, then run this again") from None
                time.sleep(0.05)
            except OSError:  # no locks on this file system: the exclusive create below still guards
                break
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, exclusive: bool = False, lock: bool = False,
                before_commit: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success put it at `path` (see the module docstring). `exclusive`: raise
    FileExistsError rather than replace an existing file. `before_commit(target)` runs just before the file is put
    in place (under the lock with `lock`), and may raise to keep the target as it is."""
    if is_stdout(path):
        yield from _through_stdout()
        return
    try:
        st: os.stat_result | None = os.stat(path)  # the kernel follows every link, /proc's magic ones too
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise write_error(path, exc) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise WriteError(f"cannot write {path}: it is a folder", "give a file name")
    if st is not None and (not stat.S_ISREG(st.st_mode) or _stream(path)):
        if exclusive:
            raise FileExistsError(errno.EEXIST, "exists", str(path))
        yield from _through(path, before_commit)
        return
    target = resolve_output(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    tmp = Path(name)
    try:
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~umask))  # mkstemp makes 0600
        yield tmp
        with folder_lock(target.parent) if lock else _nothing():
            if before_commit is not None:
                before_commit(target)
            _commit(tmp, target, exclusive)
    except OSError as exc:
        _unlink(tmp)
        if exc.errno in WRITE_ERRNOS and exc.errno != errno.EEXIST and \
                (exc.filename is None or Path(exc.filename) in (tmp, target, target.parent)):
            raise write_error(path, exc) from None
        raise
    except BaseException:
        _unlink(tmp)
        raise


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _commit(tmp: Path, target: Path, exclusive: bool) -> None:
    if not exclusive:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails if the target exists, whoever created it and when
    except FileExistsError:
        raise
    except OSError:  # no hard links here: check, then rename (the folder lock guards the gap)
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.replace(tmp, target)
        return
    _unlink(tmp)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _stream(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is reached through /dev or /proc (/dev/stdout, /dev/fd/3, a link to one): a stream another
    process opened, written through even when it is a regular file (replacing that file would hide the write)."""
    p = os.path.abspath(os.fspath(path))
    for _ in range(40):
        if p.startswith(("/dev/", "/proc/")):
            return True
        if not os.path.islink(p):
            return False
        p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
    return False


def _through(path: str | os.PathLike[str], before_commit: Callable[[Path], None] | None) -> Iterator[Path]:
    """Write to a device, FIFO or stream: staged in a temporary folder, then copied through it (never replaced)."""
    with tempfile.TemporaryDirectory(prefix="infercmp-out-") as folder:
        tmp = Path(folder) / "out"
        yield tmp
        if before_commit is not None:
            before_commit(Path(path))
        try:
            with tmp.open("rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except OSError as exc:
            raise write_error(path, exc) from None


def _through_stdout() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="infercmp-out-") as folder:
        tmp = Path(folder) / "out"
        yield tmp
        out = getattr(sys.stdout, "buffer", None)
        if out is None or sys.stdout.isatty():
            raise WriteError("binary output to a terminal refused", "redirect standard output to a file, or give "
                                                                    "a file name instead of -")
        sys.stdout.flush()
        with tmp.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        out.flush()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` atomically; `-` is standard output."""
    if is_stdout(path):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def available_memory() -> int | None:
    """Bytes of memory a new allocation can take without swapping (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def size_text(n: float) -> str:
    """Bytes as a person reads them: 512 B, 3.4 MiB, 12.0 GiB."""
    return _size(n)


# -- outputs against inputs ---------------------------------------------------------------------------------------

PathLike = str | os.PathLike[str]


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the regular file `path` resolves to; None when it does not exist or is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def check_outputs(outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | Iterable[PathLike] | None],
                  ) -> None:
    """Refuse, before anything runs, outputs that would destroy an input or each other, or cannot be written.

    outputs: flag -> path (None: not asked for; `-`: standard output, at most one). inputs: what each path is
    (`the model`, `--inputs`...) -> a path or several. An output is compared with every input and every other
    output by resolved identity: the same path, a symlink to it, or a hard link (same device and inode). A clash,
    an output that is a folder, or one whose folder cannot be created or written is a UsageError (exit 2)."""
    given = {flag: p for flag, p in outputs.items() if p is not None}
    stdout = [flag for flag, p in given.items() if is_stdout(p)]
    if len(stdout) > 1:
        raise UsageError(f"{' and '.join(stdout)} both write to standard output (-)", "give one of them a file name")
    known: list[tuple[str, Path, tuple[int, int] | None]] = []  # (what it is, where it resolves, identity)
    for label, value in inputs.items():
        if value is None:
            continue
        for p in [value] if isinstance(value, (str, os.PathLike)) else value:
            real = resolve_output(p)
            known.append((f"{label} ({p})", real, _identity(Path(p))))
    for flag, p in given.items():
        if is_stdout(p) or not _check_writable(flag, p):
            continue  # standard output, a device, a FIFO: written through, and may be shared
        real = resolve_output(p)
        ident = _identity(Path(p))
        for what, other, other_ident in known:
            if (ident is not None and ident == other_ident) or real == other:
                raise UsageError(f"{flag} {p} is {what}: refusing to overwrite it",
                                 "write the output to another file")
        known.append((f"also written by {flag}", real, ident))


def _check_writable(flag: str, given: PathLike) -> bool:
    """UsageError unless `given` can be written; True for a file (replaced atomically), False for a stream
    (a device, a FIFO, /dev/stdout...: written through)."""
    try:
        st: os.stat_result | None = os.stat(given)
    except OSError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{flag} {given} is a folder", "give a file name")
    if st is not None and (not stat.S_ISREG(st.st_mode) or _stream(given)):
        if not os.access(given, os.W_OK):
            raise UsageError(f"{flag} {given}: cannot write to it (permission denied)")
        return False
    real = resolve_output(given)
    if st is not None:
        folder = real.parent
    else:
        folder = _existing_ancestor(real.parent)
        if not folder.is_dir():
            raise UsageError(f"{flag} {given}: {folder} is a file, not a folder", "give a path in a folder")
    if _read_only(folder):
        raise UsageError(f"{flag} {given}: {folder} is on a read-only file system", "write it to another folder")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {given}: cannot write in {folder} (permission denied)",
                         "write it to a folder you may write in")
    return True


def check_output_folder(flag: str, folder: PathLike, others: Iterable[PathLike] = ()) -> None:
    """UsageError unless `folder` is a folder, or can be created, that this process may write in, and is none of
    the file outputs `others` (a command that writes a folder of files checks each file again before writing)."""
    if is_stdout(folder):
        raise UsageError(f"{flag} {folder}: it writes a folder of files, not a stream", "give a folder")
    real = resolve_output(folder)
    if os.path.exists(real) and not os.path.isdir(real):
        raise UsageError(f"{flag} {folder} is a file, not a folder", "give a folder (it is created when missing)")
    for other in others:
        if not is_stdout(other) and resolve_output(other) == real:
            raise UsageError(f"{flag} {folder} is also the path of another output", "give each output its own path")
    existing = _existing_ancestor(real)
    if not existing.is_dir():
        raise UsageError(f"{flag} {folder}: {existing} is a file, not a folder", "give a path in a folder")
    if _read_only(existing):
        raise UsageError(f"{flag} {folder}: {existing} is on a read-only file system", "write it to another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {folder}: cannot write in {existing} (permission denied)",
                         "write it to a folder you may write in")


def dumps(obj: Any, open_levels: int = 3) -> str:
    """JSON with the outer `open_levels` levels of objects and arrays one member a line (readable, diffable per
    tensor) and everything deeper on one line, written by json's C encoder: an indented dump would run the pure
    Python one, 10x slower on a report of thousands of tensors."""
    return _layout(plain(obj), open_levels, "\n")


def _layout(obj: Any, levels: int, newline: str) -> str:
    if levels <= 0 or not isinstance(obj, (dict, list)) or not obj:
        return json.dumps(obj, allow_nan=False, separators=(", ", ": "))
    inner = newline + " "
    if isinstance(obj, dict):
        members = [f"{json.dumps(k)}: {_layout(v, levels - 1, inner)}" for k, v in obj.items()]
        return "{" + inner + ("," + inner).join(members) + newline + "}"
    members = [_layout(v, levels - 1, inner) for v in obj]
    return "[" + inner + ("," + inner).join(members) + newline + "]"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as JSON to `path` (write_text: atomic, `-` is standard output); see dumps."""
    write_text(path, dumps(obj) + "\n")


def save_npz(path: str | os.PathLike[str] | IO[bytes], arrays: dict[str, Any]) -> None:
    """Like np.savez(path, **arrays), but any key works: np.savez would take a key named `file` or
    `allow_pickle` for its own parameter. Written without pickle."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by write_json."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
