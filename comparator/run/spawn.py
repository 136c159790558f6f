"""Worker processes: started with their variant's environment, ready before their request is, and kept for the
next request when more come.

A worker starts as `python -m comparator.run.worker --ready BACKEND OPTIONS FOLDER`: it imports its framework at
once, then waits on stdin for the path of a request (written in full before its path is). The parent starts the
workers of the variants that run first while it still loads the model and writes the tapped copy (`Ready`), so
that a framework's import (ONNX Runtime 0.2 s, PyTorch, TensorFlow and TVM seconds) overlaps that work (`go`).
A worker serves requests until its stdin ends: where runs come in a series (the windows of a run tapped in
windows, windows.py; a batch audit's sizes; `check --against`'s two models), each variant's worker gets the next
run's request, so its framework is imported once, not once per run (`Ready.serving`). A worker that never hears of
a request (the run was refused, or interrupted) reads the end of stdin and exits; `Ready.close` kills it and
removes its folder.

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
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping

from ..backends.contract import SHARED_CORES
from ..variant import Variant

FINISH_S = 10.0  # how long a worker told that no request follows may take to exit before it is killed


@dataclass(eq=False)
class Worker:
    """A started worker: its process, the folder of its logs (`stdout.txt`, `stderr.txt`: every request it serves
    writes to them) and how far its stdout has been read (run/runner.py reads its phase lines from there)."""

    proc: subprocess.Popen[bytes]
    logs: Path
    read: int = 0


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


# NumPy asks the kernel for huge pages for every large array it allocates (ONNX Runtime's outputs, torch's
# returned to NumPy); on these machines their first touch costs more than the TLB misses they save:
# VGG-19 on ort,ort:opt=disable,torch ran 13% faster without (benchmarks/ab_revisions.sh). A value the user set wins.
NUMPY_HUGEPAGES = ("NUMPY_MADVISE_HUGEPAGE", "0")


def malloc_tunables(given: str | None) -> str:
    """GLIBC_TUNABLES for a worker: `given` (the user's), with each of MALLOC_TUNABLES it does not set added."""
    parts = [p for p in (given or "").split(":") if p]
    keys = {p.split("=", 1)[0] for p in parts}
    return ":".join(parts + [f"{k}={v}" for k, v in MALLOC_TUNABLES.items() if k not in keys])


def start(variant: Variant, own_environment: Mapping[str, str], folder: Path) -> Worker:
    """Start `variant`'s worker with its stdout and stderr in `folder` (created); it imports its framework, then
    waits for the path of a request (`go`)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(own_environment)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["GLIBC_TUNABLES"] = malloc_tunables(env.get("GLIBC_TUNABLES"))
    env.setdefault(*NUMPY_HUGEPAGES)
    command = [sys.executable, "-m", "comparator.run.worker", "--ready", variant.backend,
               json.dumps(variant.option_dict), str(folder)]
    with (folder / "stderr.txt").open("wb") as err, (folder / "stdout.txt").open("wb") as out:
        with _LIVE_LOCK:
            if _STOPPING.is_set():  # an interrupt came while this job waited for a free slot
                raise Interrupted("stopped before it started")
            proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.PIPE, env=env,
                                    start_new_session=True)
            _LIVE.add(proc)
    return Worker(proc, folder)


def go(worker: Worker, request: Path, last: bool) -> None:
    """Hand a started worker the request written at `request`; with `last`, tell it that none follows (it exits
    once it has served this one). One that has died already is left for the caller to find out (its exit code,
    its stderr)."""
    assert worker.proc.stdin is not None
    try:
        worker.proc.stdin.write(f"{request}\n".encode())
        worker.proc.stdin.flush()
        if last:
            worker.proc.stdin.close()
    except (BrokenPipeError, ValueError):
        pass


def finish(worker: Worker) -> int | None:
    """Tell a worker that no request follows and wait for it to exit (killed after FINISH_S); its exit code
    (None when it had to be killed)."""
    if worker.proc.stdin is not None:
        try:
            worker.proc.stdin.close()
        except BrokenPipeError:
            pass
    try:
        code: int | None = worker.proc.wait(timeout=FINISH_S)
    except subprocess.TimeoutExpired:
        kill_group(worker)
        code = None
    forget(worker)
    return code


def forget(worker: Worker) -> None:
    """`worker` has exited or been killed: an interrupt need not stop it."""
    with _LIVE_LOCK:
        _LIVE.discard(worker.proc)


def kill_group(worker: Worker) -> None:
    _kill(worker.proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass


def stop_all() -> int:
    """Kill every live worker's process group and start no new one (an interrupt); returns how many there were."""
    with _LIVE_LOCK:
        _STOPPING.set()
        live = list(_LIVE)
    for proc in live:
        _kill(proc)
    return len(live)


def resume() -> None:
    """A new run may start workers again (after an interrupt that the caller handled)."""
    _STOPPING.clear()


class Ready:
    """The workers waiting for a request, by the name of the variant's folder (the same in every run of a series):
    those started ahead of their first request, and, while `serving`, those kept after one for the next run's
    request (`keep`); and the environment of every worker of the series (those started later get the same). `take`
    hands one to the runner; `close` kills the ones never handed a request and removes their folders (a run refused
    before it ran leaves nothing behind), and tells the kept ones that no request follows."""

    def __init__(self) -> None:
        self._workers: dict[str, Worker] = {}
        self._kept: set[Worker] = set()
        # each variant's worker environment in this run, started ahead or not (None: its backend is not installed)
        self.environments: dict[Variant, dict[str, str] | None] = {}
        self.serving = False  # another request follows this one: the runner keeps each worker that served its own

    def start(self, variant: Variant, own_environment: Mapping[str, str], folder: Path) -> None:
        self._workers[folder.name] = start(variant, own_environment, folder)

    def waiting(self, folder: Path) -> bool:
        """Whether a worker waits here for the request of the variant whose folder is `folder`."""
        return folder.name in self._workers

    def take(self, folder: Path) -> Worker | None:
        worker = self._workers.pop(folder.name, None)
        if worker is not None:
            self._kept.discard(worker)
        return worker

    def keep(self, folder: Path, worker: Worker) -> None:
        """`worker` served its request in `folder` and waits for the next (the variant's folder in the next run of
        the series has the same name)."""
        self._workers[folder.name] = worker
        self._kept.add(worker)

    def close(self) -> None:
        for worker in self._workers.values():
            if worker in self._kept:
                finish(worker)  # its folder holds the logs of the requests it served
                continue
            kill_group(worker)
            forget(worker)
            shutil.rmtree(worker.logs, ignore_errors=True)
        self._workers.clear()
        self._kept.clear()

    def __enter__(self) -> Ready:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
