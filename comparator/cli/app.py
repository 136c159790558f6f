"""The one typer app every command registers on, and the helpers the command modules share."""
from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


class _Flags:
    """Help without a value type on flags: `--quiet` takes no value, so it shows none (typer shows `<bool>`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class _Command(_Flags, TyperCommand):
    pass


class _Group(_Flags, TyperGroup):
    pass


class Typer(typer.Typer):
    """A typer app (or command group) whose commands show flags without a value type."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", _Group)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Compare one ONNX model across inference backends and kernel settings, layer by layer.")


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("infercmp")
        except metadata.PackageNotFoundError:
            from .. import __version__ as version
        typer.echo(f"infercmp {version}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print infercmp's version and exit"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="on an error, show the traceback too "
                                 "(as INFERCMP_DEBUG=1)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines on stderr; errors still print"),
) -> None:
    """Compare one ONNX model across inference backends and kernel settings, layer by layer."""
    if verbose:
        os.environ["INFERCMP_DEBUG"] = "1"
    if quiet:
        os.environ["INFERCMP_QUIET"] = "1"


def quiet_blas() -> None:
    """Import numpy with its OpenBLAS pool at one thread, then put the environment back. On import OpenBLAS starts
    a thread per core, and each spins for about 0.1 s of CPU before it sleeps, while the workers start on the same
    cores; this process multiplies no matrices. The workers inherit the user's environment unchanged. Call it
    before a command's first numpy import (the module it imports the library from, `api`, does)."""
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]


def _err(message: str) -> None:
    """One line on stderr, printed as it is (no rich markup: `pip install 'infercmp[ort]'` keeps its brackets)."""
    typer.echo(message, err=True)


def plain(console: Any, text: str) -> None:
    """Print `text` on a rich console without reading `[...]` in it as markup or colouring its numbers."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def os_error_lines(exc: OSError) -> tuple[str, str] | None:
    """The error and hint lines for a file-system error that escaped a command (a full or read-only disk, a file
    where a folder should be); None for the others, which may be bugs."""
    import errno

    from ..fileio import write_error

    where = exc.filename if exc.filename is not None else "a file"
    if exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENOTDIR, errno.EISDIR):
        e = write_error(str(where), exc)
        return f"error: {e.message}", f"  hint: {e.hint or 'check the paths given'}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"error: {where}: permission denied", "  hint: check the file's permissions, or use another path"
    return None


def _click_exceptions() -> Any:
    """typer >= 0.24 vendors click as typer._click; older releases depend on click itself."""
    try:
        from typer._click import exceptions
    except ImportError:
        import click.exceptions as exceptions  # type: ignore[import-not-found, no-redef, unused-ignore]
    return exceptions
