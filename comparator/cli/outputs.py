"""What a command writes, checked before anything runs against what it reads, and where its own lines go.

Every command calls `guard` first: each output (reports, bundles) is compared with every input (models and their
external data files, feeds, policy, baselines, bundles) and with the other outputs by resolved identity (the same
path, a symlink, a hard link), and must be writable; a clash is a usage error (exit 2) and nothing is written.
`-` is standard output for text reports; then the command's own lines go to stderr (`console`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn
from collections.abc import Callable, Iterable, Mapping

from ..errors import UsageError
from ..fileio import check_output_folder, check_outputs, is_stdout, resolve_output

Given = Path | str | None


def _data_files(model: Path) -> list[Path]:
    """The external data files a model names (they sit in its folder); [] when it cannot be read: loading the
    model reports that."""
    try:
        import onnx

        from ..graph import model as model_mod
        from ..graph import stored

        real = model.resolve()
        proto = onnx.load_from_string(stored.skim(real))
        return [f for f in model_mod.check_external_data(proto, stored.external_dir(real)) if f != real]
    except Exception:  # noqa: BLE001 - best effort: model_mod.load gives the real error later
        return []


def _inside(path: Path, folder: Path) -> bool:
    return folder == path or folder in path.parents


def guard(outputs: Mapping[str, Given], inputs: Mapping[str, Given | Iterable[Given]],
          models: Mapping[str, Given] | None = None, folders: Mapping[str, Given] | None = None) -> None:
    """Refuse outputs that would overwrite an input or each other, or cannot be written (fileio.check_outputs).
    `models`: what each model is (`the model`, `--against`) -> its path; its external data files count too.
    `folders`: outputs that are folders of files (`--model-explorer`): each must be a folder, or creatable, and
    no file output; `guard_files` checks their files once they are known."""
    written = [resolve_output(p) for p in outputs.values() if p is not None and not is_stdout(p)]
    check_outputs(outputs, _inputs(inputs, models, written))
    for flag, folder in (folders or {}).items():
        if folder is not None:
            check_output_folder(flag, folder, [p for p in outputs.values() if p is not None])


def guard_files(flag: str, files: Iterable[Path], inputs: Mapping[str, Given | Iterable[Given]],
                models: Mapping[str, Given] | None = None) -> None:
    """Refuse the files an output folder is about to get when one of them is an input (`guard`'s rules)."""
    files = list(files)
    ins = _inputs(inputs, models, [resolve_output(f) for f in files])
    for f in files:
        check_outputs({flag: f}, ins)


def _inputs(inputs: Mapping[str, Given | Iterable[Given]], models: Mapping[str, Given] | None,
            written: list[Path]) -> dict[str, Any]:
    """What each input is -> its paths; a model's external data files too when an output lands in its folder."""
    ins: dict[str, Any] = {}
    for label, value in inputs.items():
        if value is None:
            continue
        paths = [value] if isinstance(value, (str, os.PathLike)) else [v for v in value if v is not None]
        ins[label] = paths
    for label, model in (models or {}).items():
        if model is None:
            continue
        ins[label] = [model]
        folder = Path(model).resolve().parent
        if Path(model).is_file() and any(_inside(w, folder) for w in written):  # data files sit in that folder
            data = _data_files(Path(model))
            if data:
                ins[f"{label}'s external data"] = data
    return ins


def no_stdout(flag: str, value: Given) -> None:
    """Refuse `-` for a binary output."""
    if is_stdout(value):
        raise UsageError(f"{flag} - : a bundle is a binary file, not for standard output", "give a file name")


def console(to_stderr: bool = False) -> Any:
    """The console of a command's own lines: stdout, or stderr when a report takes stdout (`--json -`). Output that
    is not a terminal (a CI log, a file) is plain text as wide as COLUMNS says, else 100 columns; on a terminal rich
    reads its width (COLUMNS first)."""
    from rich.console import Console

    stream: Any = ReaderMayLeave(sys.stderr if to_stderr else sys.stdout)  # rich takes any object with write()
    if stream.isatty():
        return Console(file=stream)
    return Console(file=stream, width=_columns() or 100)


class ReaderMayLeave:
    """A text stream that stops writing, silently, once its reader has gone (`infercmp compare ... | head`): a
    closed pipe must not stop a command before it writes its report files, nor change its exit code."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.left = False

    def write(self, text: str) -> int:
        if not self.left:
            try:
                return int(self._stream.write(text))
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.left:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self.left = True
        # Python flushes the stream once more at exit: its descriptor now leads to /dev/null, not the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)


def _columns() -> int | None:
    columns = os.environ.get("COLUMNS", "").strip()
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


TABLES = ("worst", "full", "none")
TABLE_HELP = ("worst: the findings, the op types and the --top worst tensors, fitted to the terminal; full: every "
              "tensor and variant, one row each; none: the findings only")


def check_table(table: str, top: int) -> None:
    """Refuse a `--table` or `--top` value before anything runs."""
    if table not in TABLES:
        raise UsageError(f"--table {table}: no such table", f"--table takes {', '.join(TABLES)}")
    if top < 1:
        raise UsageError(f"--top {top}: the table of the worst tensors needs 1 row or more")


def show(report: Any, out: Any, table: str = "worst", top: int = 15, quiet: bool = False) -> None:
    """Print a report: the summary (findings first; with `worst`, the op types and the `top` worst tensors too),
    or with `full` every tensor and variant (200 columns when piped without COLUMNS: its rows need them).
    `quiet`: the findings only."""
    from ..report import console as console_report, table as table_report

    if table == "full" and not quiet:
        if not out.is_terminal and _columns() is None:
            out.width = 200
        table_report.render(report, out)
    else:
        console_report.summary(report, out, top=top, tables=table == "worst" and not quiet)


def takes_stdout(*paths: Given) -> bool:
    return any(is_stdout(p) for p in paths)


def _writer(module: str) -> Any:
    """`write` of comparator.report.<module>, imported when that report is asked for."""
    import importlib

    return importlib.import_module(f"..report.{module}", __package__).write


def write_reports(out: Any, result: Any, paths: Mapping[str, Given], inputs: Mapping[str, Given] | None = None,
                  models: Mapping[str, Given] | None = None) -> None:
    """Write `result` (a Report, or a gate's GateResult) to each report flag given (`--json`, `--html`,
    `--junit` -> a path or `-`; for a Report also `--model-explorer` -> a folder), saying where each went unless it
    went to standard output. `inputs` and `models` (as for `guard`): the Model Explorer files, known only now, are
    checked against them, and against the other outputs, before anything is written."""
    from ..result import Report
    from .app import plain

    overlay: tuple[Path, dict[str, Any]] | None = None
    if not isinstance(result, Report):  # a gate's GateResult
        from ..fileio import write_json
        from ..gate import pages

        writers: dict[str, Any] = {"--json": lambda r, p: write_json(p, r.to_dict()), "--html": pages.write_html,
                                   "--junit": pages.write_junit}
    else:
        writers = {flag: _writer(module) for flag, module in (("--json", "json"), ("--html", "html"),
                                                               ("--junit", "junit")) if paths.get(flag) is not None}
        folder = paths.get("--model-explorer")
        if folder is not None:
            from ..report import model_explorer

            model = (models or {}).get("the model")
            found = model_explorer.series(result, _skimmed(model) if model is not None else None)
            others = {f"the {flag} output": p for flag, p in paths.items()
                      if flag != "--model-explorer" and p is not None and not is_stdout(p)}
            guard_files("--model-explorer", [Path(folder) / name for name in found], {**(inputs or {}), **others},
                        models)
            overlay = (Path(folder), found)
    names = {"--json": "JSON report", "--html": "HTML report", "--junit": "JUnit report"}
    for flag, path in paths.items():
        if path is None or flag not in writers:
            continue
        writers[flag](result, path)
        if not is_stdout(path):
            plain(out, f"{names[flag]}: {path}")
    if overlay is not None:
        from ..report import model_explorer

        written = model_explorer.write_series(*overlay)
        plain(out, f"Model Explorer node data: {overlay[0]} ({len(written)} file{'s' * (len(written) != 1)}, one "
                   "per variant and metric)")


def _skimmed(model: Path | str) -> Any:
    """The model's ModelProto without its large weights (graph/stored.py), or its path when it cannot be read so
    (the reader then says why)."""
    try:
        import onnx

        from ..graph import stored

        return onnx.load_from_string(stored.skim(model))
    except Exception:  # noqa: BLE001 - the plain reader reports the error
        return model


def finish(result: Any, json_out: Given, lines: Callable[[int], list[str]] | None = None, html_out: Given = None,
           html_report: Any = None) -> NoReturn:
    """End a command whose result has `lines()`, `to_dict()` and `exit_code` (an audit, advice, a matrix, a fleet
    run): print its lines (`lines(width)` when given, fitted to the console), write it as JSON to `json_out` and
    `html_report` as HTML to `html_out` (`-`: stdout, the lines then go to stderr), say where, and exit."""
    from ..fileio import write_json
    from .app import plain

    out = console(takes_stdout(json_out, html_out))
    for line in lines(out.width) if lines is not None else result.lines():
        plain(out, line)
    if json_out is not None:
        write_json(json_out, result.to_dict())
        if not is_stdout(json_out):
            plain(out, f"JSON: {json_out}")
    if html_out is not None and html_report is not None:
        write_reports(out, html_report, {"--html": html_out})
    sys.exit(result.exit_code)
