"""Progress on stderr while a comparison runs: moving lines on a terminal, plain lines in a log.

On a terminal every phase that is going on has a line with a spinner, its count and its elapsed time, and every
running variant a line saying which run it is in (`tapped run`); all of it disappears when the work is done. When
stderr is not a terminal (CI logs, files) each phase gets plain lines instead: the ones that only validate
(loading, writing the tapped copy) a line when they end if they took a second or more, the others a line when they
start and when they end, and each variant a line per run it starts. Nothing is printed before a usage error.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..events import Event, Listener

QUIET_PHASES = ("load", "tap", "baseline", "bundle")  # reading and writing: a line only when slow
SLOW_S = 1.0


@contextlib.contextmanager
def phases(console: Any, enabled: bool = True) -> Iterator[Listener | None]:
    """A listener for api.compare(events=...), live for the `with` block; None when disabled."""
    if not enabled:
        yield None
    elif console.is_terminal:
        with _Live(console) as live:
            yield live
    else:
        yield _Plain()


def stderr_phases() -> contextlib.AbstractContextManager[Listener | None]:
    """`phases` on stderr, unless -q (INFERCMP_QUIET) asked for none: what every command that runs a model shows."""
    from rich.console import Console

    return phases(Console(stderr=True), enabled=os.environ.get("INFERCMP_QUIET") != "1")


class _Plain:
    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, e: Event) -> None:
        now = time.perf_counter()
        with self.lock:
            if e.phase == "variant":
                line = f"{e.variant}: {e.text}" + (" (finished)" if e.end else "")
            elif e.end:
                took = now - self.started.pop(e.phase, now)
                if e.phase in QUIET_PHASES and took < SLOW_S:
                    return
                line = f"{e.text}: done in {took:.1f} s" + (f" ({e.total})" if e.total else "")
            elif e.phase in self.started:
                return  # an advance: a log gets the start and the end only
            else:
                self.started[e.phase] = now
                if e.phase in QUIET_PHASES:
                    return
                line = e.text + (f" ({e.total})" if e.total else "") + "..."
            print(f"infercmp: {line}", file=sys.stderr, flush=True)


class _Live:
    def __init__(self, console: Any):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, \
            TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
        self.tasks: dict[str, Any] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> _Live:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def __call__(self, e: Event) -> None:
        key = f"variant {e.variant}" if e.phase == "variant" else e.phase
        text = f"  {e.variant}: {e.text}" if e.phase == "variant" else e.text
        with self.lock:
            task = self.tasks.get(key)
            if e.end:
                if task is not None:
                    self.progress.remove_task(task)
                    del self.tasks[key]
                return
            if task is None:
                self.tasks[key] = self.progress.add_task(text, total=e.total or None, completed=e.done)
            else:
                self.progress.update(task, description=text, completed=e.done, total=e.total or None)
