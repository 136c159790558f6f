"""JSON report: write atomically, read back with schema checks."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ReportError
from ..fileio import dumps, write_text
from ..result import Report


def render(report: Report) -> str:
    """The report as JSON text."""
    return dumps(report.to_dict()) + "\n"


def write(report: Report, path: str | Path) -> None:
    """Write the report as JSON to `path` (atomically; `-` is standard output)."""
    write_text(path, render(report))


def read(path: str | Path) -> Report:
    """A Report from a JSON report file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"report {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"report {str(path)!r} is not valid JSON ({exc})", "it may be truncated") from None
    return Report.from_dict(data)
