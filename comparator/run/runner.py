"""Run variants in worker processes: one process per variant, its environment set before any import.

A worker that crashes (signal, abort, OOM kill), exits without a record, or runs past the timeout is reported
with its reason and the tail of its stderr; the other variants are unaffected. Starting and stopping the
processes is run/spawn.py.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping

from ..fileio import read_json, write_json
from ..variant import Variant
from . import spawn
from .record import VariantRun
from .spawn import Interrupted, stop_all  # noqa: F401 - part of this module's interface
from .worker import DONE, PHASE

STDERR_TAIL_LINES = 20
POLL_S = 0.05  # how often a running worker's phases are read (a written run is compared at once: measure/ahead.py)
FULL_BELOW = 1 << 20  # free bytes under which a worker that left no record is taken to have filled the disk
FATAL_HEADER = "Fatal Python error: "  # faulthandler's first line


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last `lines` lines of stderr; when the interpreter's fatal-error report (faulthandler) is among them
    or cut off above them, the report's head instead: its header and innermost frames come first."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    all_lines = text.rstrip().splitlines()
    starts = [i for i, line in enumerate(all_lines) if line.startswith(FATAL_HEADER)]
    if not starts:
        return "\n".join(all_lines[-lines:])
    report = all_lines[starts[-1]:]
    if len(report) > lines:
        report = report[:lines - 1] + [f"... ({len(report) - lines + 1} more lines)"]
    return "\n".join(report)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_variant(variant: Variant, environment: Mapping[str, str], request: dict[str, Any], folder: Path,
                timeout: float | None, on_phase: Callable[[str], None] | None = None,
                started: spawn.Worker | None = None,
                keep: Callable[[spawn.Worker], None] | None = None) -> VariantRun:
    """Run one variant's worker; `on_phase(what)` hears each phase the worker starts (`untapped open`...).
    `started`: its worker, started ahead with `environment` (spawn.Ready), or kept from the run before; else one
    starts now. `keep`: another request follows (the next window's, say): a worker that served this one is handed
    to `keep`, alive, instead of told to exit. The timeout counts from the moment the request is handed over."""
    worker = started if started is not None else spawn.start(variant, environment, folder)
    run = VariantRun(variant, folder)
    request = dict(request, backend=variant.backend, options=variant.option_dict, out_dir=str(folder),
                   serving=keep is not None)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # a kept worker's own folder is the one of its first request
        write_json(folder / "request.json", request)
        begun = time.perf_counter()
        spawn.go(worker, folder / "request.json", last=keep is None)
        code = _wait(worker, begun, timeout, on_phase, served=keep is not None)
    except BaseException:  # Ctrl-C, SIGTERM (cli turns it into an exception), a request not written
        spawn.kill_group(worker)
        spawn.forget(worker)
        raise
    run.wall_s = time.perf_counter() - begun
    run.stderr_tail = _tail(worker.logs / "stderr.txt")
    record_path = folder / "record.json"
    if code is None:
        run.status, run.error = "timeout", f"no result after {timeout:g} s (--timeout); the worker was killed"
        run.hint = "raise --timeout if the model is just slow"
    elif record_path.exists():
        record = read_json(record_path)
        run.status, run.error, run.hint = record["status"], record.get("error"), record.get("hint")
        run.provenance, run.timings, run.tensors = record["provenance"], record["timings"], record["tensors"]
        run.fusion = record.get("fusion", {})
        run.one_run = bool(record.get("one_run", False))
    elif code < 0:
        run.status = "crashed"
        run.error = f"the worker died from {_signal_name(code)}"
        if -code == signal.SIGKILL:
            run.hint = "SIGKILL usually means the out-of-memory killer: try fewer taps or --samples"
    elif "[Errno 28]" in run.stderr_tail or _disk_full(tensors := Path(request.get("tensor_dir") or folder)):
        # its stderr may not have fitted either
        run.status, run.error = "failed", f"the disk filled up while the worker wrote its tensors in {tensors}"
        run.hint = "free some space, use a --workdir on a bigger disk, or tap fewer tensors (--tap)"
    else:
        run.status, run.error = "crashed", f"the worker exited with code {code} without a result"
    if keep is not None and code == SERVED and run.ok:
        keep(worker)
    elif code is not None:  # it exited, or it served and hears that nothing follows
        spawn.finish(worker)
    else:  # it ran past the timeout: _wait killed it
        spawn.forget(worker)
    return run


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW
    except OSError:
        return False


SERVED = -1000  # _wait's answer when the worker served its request and waits for the next (no exit code)


def _wait(worker: spawn.Worker, started: float, timeout: float | None, on_phase: Callable[[str], None] | None,
          served: bool = False) -> int | None:
    """The worker's exit code; with `served`, SERVED as soon as it says it has served its request (it lives on,
    waiting for the next); None when it ran past the timeout (then it is killed). Phases are read from its stdout
    as they appear."""
    proc = worker.proc
    while True:
        left = None if timeout is None else started + timeout - time.perf_counter()
        try:
            code = proc.wait(timeout=POLL_S if left is None else max(0.0, min(POLL_S, left)))
        except subprocess.TimeoutExpired:
            code = None
        worker.read, done = _phases(worker.logs / "stdout.txt", worker.read, on_phase)
        if code is not None:
            return code
        if done and served:
            return SERVED
        if left is not None and left <= POLL_S:
            if proc.poll() is not None:
                return proc.returncode
            spawn.kill_group(worker)
            return None


def _phases(stdout: Path, seen: int, on_phase: Callable[[str], None] | None) -> tuple[int, bool]:
    """Report the phase lines written to `stdout` since byte `seen`; return the new position, and whether the
    worker said it has served its request (DONE)."""
    try:
        with stdout.open("rb") as fh:
            fh.seek(seen)
            text = fh.read()
    except OSError:
        return seen, False
    cut = text.rfind(b"\n") + 1  # whole lines only
    done = False
    for line in text[:cut].decode("utf-8", "replace").splitlines():
        if line == PHASE + DONE:
            done = True
        elif line.startswith(PHASE) and on_phase is not None:
            on_phase(line[len(PHASE):].strip())
    return seen + cut, done


def run_all(jobs: list[tuple[Variant, Mapping[str, str], dict[str, Any], Path]], timeout: float | None,
            parallel: int = 1, on_done: Callable[[VariantRun], None] | None = None,
            on_phase: Callable[[Variant, str], None] | None = None,
            ready: spawn.Ready | None = None) -> list[VariantRun]:
    """Run every job (variant, its worker's environment, request, folder), `parallel` at a time; results in the
    order given. `on_done` is called as each finishes, `on_phase(variant, what)` as each worker starts a phase
    (progress). `ready`: workers started ahead or kept from the run before, by the name of their folder (their
    environment is the job's); while it is `serving`, each worker that served its job is kept there for the next."""
    def one(job: tuple[Variant, Mapping[str, str], dict[str, Any], Path]) -> VariantRun:
        hear = None if on_phase is None else partial(on_phase, job[0])
        started = None if ready is None else ready.take(job[3])
        keep = partial(ready.keep, job[3]) if ready is not None and ready.serving else None
        result = run_variant(job[0], job[1], job[2], job[3], timeout, hear, started, keep)
        if on_done is not None:
            on_done(result)
        return result

    spawn.resume()
    if parallel <= 1 or len(jobs) <= 1:
        return [one(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(one, j) for j in jobs]
        try:
            return [f.result() for f in futures]
        except BaseException:
            stop_all()
            for f in futures:
                f.cancel()
            raise
