"""Write docs/real-models.md: every real model x every backend against the float64 oracle.

    .venv/bin/python tests/real_matrix.py [--out docs/real-models.md] [--models resnet50,magika]

Runs the comparisons of tests/test_real_suite.py (real_models_table.run, one per model) and writes a Markdown
table: a row per model, a column per backend variant, each cell `agrees (max abs, max rel)`, `deviates by X`
or `unsupported at NODE (OP)`, and whether the two float64 oracles agree. Exits 1 when an outcome differs from
tests/real_models_table.py (the table, not this page, is what CI asserts).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import real_models_table as table
from real_models_table import ROOT, TABLE, VARIANTS

COMMAND = ".venv/bin/python tests/real_matrix.py"
DISTRIBUTIONS = ("onnx", "onnxruntime", "torch", "tensorflow-cpu", "apache-tvm", "numpy")


def num(x: float) -> str:
    """Two significant figures; below 0.001 as 9.1e-6, without exponent padding."""
    if 0 < abs(x) < 1e-3:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{x:.2g}"


def cell(report: Any, variant: str, atol: float) -> tuple[str, str]:
    """(outcome, the cell's text) of one variant."""
    got = table.observe(report, variant)
    if got.outcome == "agrees":
        return got.outcome, f"agrees (abs {num(got.max_abs)}, rel {num(got.max_rel)})"
    if got.outcome == "deviates":
        return got.outcome, f"**deviates by {num(got.max_abs)}** (atol {num(atol)})"
    if got.outcome == "unsupported":
        return got.outcome, f"unsupported at {table.unsupported_at(got.error)}"
    return got.outcome, f"**{got.outcome}**: {got.error.splitlines()[0] if got.error else ''}"


def oracle_cell(report: Any) -> str:
    if not report.oracle:
        return "**not compared** (an oracle did not run)"
    found = report.oracle["disagreements"]
    if not found:
        checked = sum(1 for t in report.tensors if table.ORACLES[1] in t.metrics)
        return f"agree ({checked} tensor{'s' if checked != 1 else ''})"
    first = found[0]
    return f"**disagree** at {first['node']} ({first['op_type']}), {len(found)} tensors"


def versions() -> str:
    found = []
    for dist in DISTRIBUTIONS:
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist} (not installed)")
    return ", ".join([f"Python {platform.python_version()}", *found])


def cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def render(rows: list[tuple[str, list[str], str]], mismatches: list[str]) -> str:
    head = ["model", "atol", "taps", *[f"`{v}`" for v in VARIANTS], "float64 oracles"]
    lines = [
        "# Real models: every backend against the float64 oracle",
        "",
        f"Written by `{COMMAND}`, which runs the comparisons that `tests/test_real_suite.py` asserts:",
        "each model of `models/real.py` on its own feeds (`real.feeds(name)`), through every variant below and",
        "the two float64 oracles in one `comparator.compare(..., oracle=True)` call. The reference is",
        "`ref:dtype=float64`; `torch:dtype=float64` runs beside it, and the last column says whether the two",
        "agree to float64 noise on every tapped tensor (If and Loop bodies included; with `outputs` taps, on the",
        "final outputs alone). `tf` is eager.",
        "",
        "A cell is `agrees` when every final output is within the model's atol (rtol 0) of the reference, with",
        "the largest max abs and max rel over the final outputs; `deviates by X` when one is not (X: its max abs);",
        "`unsupported at NODE (OP)` when the backend refuses the model, naming what it cannot run. Each atol is",
        "10x the largest max abs measured over the five variants, rounded up (`tests/real_models_table.py`",
        "says why and records the expected outcome of every cell).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, cells, oracle in rows:
        entry = TABLE[name]
        lines.append(f"| `{name}` | {num(entry.atol)} | {entry.tap} | " + " | ".join(cells) + f" | {oracle} |")
    lines += ["", f"Versions: {versions()}.", "", f"Machine: {cpu()}."]
    if mismatches:
        lines += ["", "Outcomes that differ from `tests/real_models_table.py`:", ""]
        lines += [f"- {m}" for m in mismatches]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "real-models.md")
    parser.add_argument("--models", default=",".join(TABLE), help="comma-separated (default: every model)")
    args = parser.parse_args(argv)
    real = table.load_real()
    cache = real.default_cache()
    rows, mismatches = [], []
    with tempfile.TemporaryDirectory(prefix="real-matrix-") as light:
        for name in args.models.split(","):
            entry = TABLE[name]
            report = table.run(name, table.model_path(name, cache, Path(light)))
            cells = []
            for variant in VARIANTS:
                outcome, text = cell(report, variant, entry.atol)
                cells.append(text)
                if outcome != entry.outcome(variant).outcome:
                    mismatches.append(f"`{name}` x `{variant}`: {outcome}, the table expects "
                                      f"{entry.outcome(variant).outcome}")
            oracle = oracle_cell(report)
            found = {d["tensor"] for d in report.oracle.get("disagreements", [])}
            if not report.oracle or found != set(entry.oracle_disagreements):
                mismatches.append(f"`{name}`: float64 oracles {oracle}")
            rows.append((name, cells, oracle))
            print(f"{name}: " + "; ".join(cells) + f"; oracles {oracle}", file=sys.stderr)
    args.out.write_text(render(rows, mismatches), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
