"""The `infercmp` command. Errors become one line plus a hint and exit code 2 (a traceback only with
INFERCMP_DEBUG=1). Frameworks are imported only inside worker processes, never here."""
from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any, NoReturn

import typer

from ..errors import InfercmpError
from . import audit, cache, compare, conformance, fleet, gate  # noqa: F401  (each registers its commands on `app`)
from .app import _click_exceptions, _err, app, os_error_lines

__all__ = ["app", "main", "run"]


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that every `finally` runs: workers stopped, temporary folders gone."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _interrupted(code: int, how: str) -> NoReturn:
    _err(f"infercmp: {how}: every worker was stopped and temporary files removed; nothing was written")
    sys.exit(code)


def main() -> None:
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        _main()
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def run() -> NoReturn:
    """The `infercmp` command: `main()`, then the exit it asked for, without the interpreter's teardown (with numpy
    and onnx loaded, freeing every module's objects one by one, once the work is done and every file is written).
    What a normal exit does first still happens: atexit handlers run and the output is flushed. While a thread
    other than daemons still runs, or where any of that fails, the exit is the normal one."""
    code: Any = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if not isinstance(code, int) or run_exitfuncs is None or any(
            t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the normal exit reports it as Python does
        sys.exit(code)
    os._exit(code)


def _main() -> None:
    try:
        # Without standalone mode click returns typer.Exit's code instead of exiting with it.
        code = app(standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into Exit(130), which click returns here
            _interrupted(130, "interrupted (Ctrl-C)")
        sys.exit(code if isinstance(code, int) else 0)
    except Terminated:
        _interrupted(143, "terminated (SIGTERM)")
    except KeyboardInterrupt:
        _interrupted(130, "interrupted (Ctrl-C)")
    except InfercmpError as exc:
        if os.environ.get("INFERCMP_DEBUG") == "1":
            raise
        _err(f"error: {exc.message}")
        if exc.hint:
            _err(f"  hint: {exc.hint}")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors and the like
        errors = _click_exceptions()
        if isinstance(exc, errors.Abort if hasattr(errors, "Abort") else typer.Abort):
            # typer turns an EOFError escaping a command into Abort
            if not isinstance(exc.__context__, EOFError):
                _interrupted(130, "interrupted (Ctrl-C)")
            if os.environ.get("INFERCMP_DEBUG") == "1":
                raise
            _err(f"error: a file ended before its data did ({type(exc.__context__).__name__}): a truncated input?")
            _err("  hint: check the files given as inputs; rerun with INFERCMP_DEBUG=1 to see which one")
            sys.exit(2)
        if isinstance(exc, errors.ClickException):
            exc.show()
            sys.exit(exc.exit_code or 2)
        if os.environ.get("INFERCMP_DEBUG") == "1":
            raise
        lines = os_error_lines(exc) if isinstance(exc, OSError) else None
        if lines is not None:  # a full or read-only disk is not a bug
            for line in lines:
                _err(line)
            sys.exit(2)
        _err(f"error: {type(exc).__name__}: {exc}")
        _err("  hint: this is a bug in infercmp; rerun with INFERCMP_DEBUG=1 and report the traceback")
        sys.exit(2)
