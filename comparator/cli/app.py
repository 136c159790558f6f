"""The one typer app every command registers on, and the helpers the command modules share."""
from __future__ import annotations

from typing import Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compare one ONNX model across inference backends and kernel settings, layer by layer.")


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _click_exceptions() -> Any:
    """typer >= 0.24 vendors click as typer._click; older releases depend on click itself."""
    try:
        from typer._click import exceptions
    except ImportError:
        import click.exceptions as exceptions  # type: ignore[import-not-found, no-redef]
    return exceptions
