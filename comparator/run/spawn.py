"""Worker processes: started with their variant's environment, ready before their request is.

A worker starts as `python -m comparator.run.worker --ready BACKEND OPTIONS REQUEST.json`: it imports its
framework at once, then waits for one line on stdin before it reads REQUEST.json. The parent starts the
workers of the variants that run first while it still loads the model and writes the tapped copy (`Ready`), so
that a framework's import (ONNX Runtime 0.2 s, PyTorch, TensorFlow and TVM seconds) overlaps that work; it
writes the request and says go when the request is complete (`go`). A worker that never hears go (the run was
refused, or interrupted) reads the end of stdin and exits; `Ready.close` kills it and removes its folder.

Every live worker is in one set, so that an interrupt (`stop_all`) kills every process group, whether the
worker runs, waits for its request, or waits for a free slot.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from collections.abc import Mapping

from ..backends.contract import SHARED_CORES
from ..variant import Variant

_LIVE: set[subprocess.Popen[bytes]] = set()  # the workers alive now, in every thread
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


class Interrupted(BaseException):
    """The run was interrupted (Ctrl-C or SIGTERM) while this worker waited to start."""


def environment(own: Mapping[str, str], shared: bool) -> dict[str, str]:
    """A worker's environment: the variant's own variables over the parent's; with `shared`, the note that other
    workers run at the same time (the backend may then keep its idle threads from spinning)."""
    env = dict(own)
    if shared:
        env[SHARED_CORES] = "1"
    return env


# glibc's malloc serves a block over its mmap threshold (128 KiB at first) from fresh pages and unmaps it when it is
# freed, so a worker that allocates a model's tapped tensors faults every page of them in again on each run. With
# the threshold fixed at 32 MiB and the heap trimmed only past 1 GiB free, freed blocks are reused instead (less
# system time, the same peak memory: benchmarks/ab_revisions.sh and worker_peaks.py measure both). Other C
# libraries ignore the variable; a key the user set wins.
MALLOC_TUNABLES = {"glibc.malloc.mmap_threshold": "33554432", "glibc.malloc.trim_threshold": "1073741824"}


def malloc_tunables(given: str | None) -> str:
    """GLIBC_TUNABLES for a worker: `given` (the user's), with each of MALLOC_TUNABLES it does not set added."""
    parts = [p for p in (given or "").split(":") if p]
    keys = {p.split("=", 1)[0] for p in parts}
    return ":".join(parts + [f"{k}={v}" for k, v in MALLOC_TUNABLES.items() if k not in keys])


def start(variant: Variant, own_environment: Mapping[str, str], folder: Path) -> subprocess.Popen[bytes]:
    """Start `variant`'s worker with its stdout and stderr in `folder` (created) and its request to come in
    `folder`/request.json; it imports its framework, then waits for `go`."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(own_environment)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["GLIBC_TUNABLES"] = malloc_tunables(env.get("GLIBC_TUNABLES"))
    command = [sys.executable, "-m", "comparator.run.worker", "--ready", variant.backend,
               json.dumps(variant.option_dict), str(folder / "request.json")]
    with (folder / "stderr.txt").open("wb") as err, (folder / "stdout.txt").open("wb") as out:
        with _LIVE_LOCK:
            if _STOPPING.is_set():  # an interrupt came while this job waited for a free slot
                raise Interrupted("stopped before it started")
            proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.PIPE, env=env,
                                    start_new_session=True)
            _LIVE.add(proc)
    return proc


def go(proc: subprocess.Popen[bytes]) -> None:
    """Tell a started worker that its request is written. One that has died already is left for the caller to
    find out (its exit code, its stderr)."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    except (BrokenPipeError, ValueError):
        pass


def forget(proc: subprocess.Popen[bytes]) -> None:
    """`proc` has exited or been killed: an interrupt need not stop it."""
    with _LIVE_LOCK:
        _LIVE.discard(proc)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


def stop_all() -> int:
    """Kill every live worker's process group and start no new one (an interrupt); returns how many there were."""
    with _LIVE_LOCK:
        _STOPPING.set()
        live = list(_LIVE)
    for proc in live:
        kill_group(proc)
    return len(live)


def resume() -> None:
    """A new run may start workers again (after an interrupt that the caller handled)."""
    _STOPPING.clear()


class Ready:
    """The workers started ahead of their requests, by the folder each was started for, and the environment of
    every worker of the run (those started later get the same). `take` hands one to the runner; `close` kills the
    ones never taken and removes their folders (a run refused before it ran leaves nothing behind)."""

    def __init__(self) -> None:
        self._procs: dict[Path, subprocess.Popen[bytes]] = {}
        # each variant's worker environment in this run, started ahead or not (None: its backend is not installed)
        self.environments: dict[Variant, dict[str, str] | None] = {}

    def start(self, variant: Variant, own_environment: Mapping[str, str], folder: Path) -> None:
        self._procs[folder] = start(variant, own_environment, folder)

    def take(self, folder: Path) -> subprocess.Popen[bytes] | None:
        return self._procs.pop(folder, None)

    def close(self) -> None:
        for folder, proc in self._procs.items():
            kill_group(proc)
            forget(proc)
            shutil.rmtree(folder, ignore_errors=True)
        self._procs.clear()

    def __enter__(self) -> Ready:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
