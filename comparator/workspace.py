"""Where a run's files go: a --workdir (checked, never holding files infercmp did not create) and its run folders,
or a temporary folder; and beside either, a memory-backed folder for the tensor files (`Workspace`)."""
from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

from . import scratch
from .errors import UsageError
from .fileio import write_error
from .run import variants as variants_mod

WORKDIR_MARKER = ".infercmp-workdir"  # in a --workdir infercmp created or adopted (it was empty)


def check_workdir(workdir: str | Path) -> Path:
    """A --workdir must be a folder that is new, empty, or marked as infercmp's (it never holds user files
    a run could overwrite); UsageError otherwise. Checks only: nothing is written."""
    w = Path(workdir)
    if os.path.lexists(w) and not w.is_dir():
        raise UsageError(f"--workdir {w} is {'a broken link' if not w.exists() else 'a file'}, not a folder",
                         "give a new or empty folder")
    if w.is_dir():
        try:
            entries = sorted(os.listdir(w))
        except OSError as exc:
            raise UsageError(f"--workdir {w} cannot be read: {exc.strerror}") from None
        if entries and WORKDIR_MARKER not in entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UsageError(f"--workdir {w} holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
                             f"infercmp did not create ({shown})",
                             "give a new or empty folder: infercmp keeps its runs there and marks it as its own")
    parent = next((a for a in [w, *w.absolute().parents] if os.path.lexists(a)), Path("."))
    if not parent.is_dir():
        raise UsageError(f"--workdir {w}: {parent} is a file, not a folder", "give a new or empty folder")
    try:
        read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only or not os.access(parent, os.W_OK):
        raise UsageError(f"--workdir {w}: cannot write in {parent} "
                         f"({'read-only file system' if read_only else 'permission denied'})",
                         "give a folder you may write in")
    return w


def new_run_dir(workdir: str | Path) -> Path:
    """A fresh folder for one run under a checked --workdir (created, and marked, when needed): each run has its
    own, so a run never reads what another left, and runs sharing a workdir never see each other's files."""
    w = check_workdir(workdir)
    try:
        w.mkdir(parents=True, exist_ok=True)
        # Created in one step (no temporary file a concurrent run's check could see as a stranger's entry).
        try:
            fd = os.open(w / WORKDIR_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("A folder of infercmp runs (--workdir): one run-* folder per run.\n")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        while True:
            run = w / f"run-{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
            try:
                run.mkdir()  # fails if it exists: never shared
                return run
            except FileExistsError:
                continue
    except OSError as exc:
        raise write_error(w, exc, "create a run folder in") from None


def temp_dir(prefix: str) -> Path:
    """A fresh temporary folder this process owns (scratch.make: the next run removes it if this one is killed);
    remove it with `scratch.remove`. A full or read-only temporary disk is a one-line error."""
    try:
        return scratch.make(prefix)
    except OSError as exc:
        raise write_error(Path(tempfile.gettempdir()) / prefix, exc, "create a temporary folder") from None


class Workspace:
    """Where a run's files go: `folder`, a fresh temporary folder (or the one given, which is kept), for its logs,
    models and feeds, and `memory`, a memory-backed folder for its tensor files (run/variants.memory_scratch; None
    where there is none, or without `memory`). Pass `memory` to run_variants as `scratch`; `close` removes both."""

    def __init__(self, prefix: str, folder: Path | None = None, memory: bool = True) -> None:
        self._own = folder is None
        self.folder = temp_dir(prefix) if folder is None else folder
        self.memory = variants_mod.memory_scratch() if memory else None

    def close(self) -> None:
        """Remove the memory folder, and the run's folder unless it was given."""
        if self.memory is not None:
            scratch.remove(self.memory)
        if self._own:
            scratch.remove(self.folder)
