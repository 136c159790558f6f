"""The `infercmp` command. Errors become one line plus a hint and exit code 2 (a traceback only with
INFERCMP_DEBUG=1). Frameworks are imported only inside worker processes, never here."""
from __future__ import annotations

import os
import sys

import typer

from ..errors import InfercmpError
from . import compare, conformance, gate  # noqa: F401  (each registers its commands on `app`)
from .app import _click_exceptions, _err, app

__all__ = ["app", "main"]


def main() -> None:
    try:
        # Without standalone mode click returns typer.Exit's code instead of exiting with it.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
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
            sys.exit(130)
        if isinstance(exc, errors.ClickException):
            exc.show()
            sys.exit(exc.exit_code or 2)
        if os.environ.get("INFERCMP_DEBUG") == "1":
            raise
        _err(f"error: {type(exc).__name__}: {exc}")
        _err("  hint: this is a bug in infercmp; rerun with INFERCMP_DEBUG=1 and report the traceback")
        sys.exit(2)
