"""docs/gate.md runs as written: every `$ command` of its console blocks, in order, in one folder that starts with
the shipped digits model and its inputs, with the files its script blocks define (a block whose first line is
`# NAME.py` or `# NAME.toml` is written to NAME first).

A command must exit 0, or N when the line ends with `# exit N`. Its printed lines must appear in the real output
in the same order (other lines may come between). Volatile parts are masked on both sides: timestamps, the host,
the machine and software lines, byte sizes, durations, and the measured figures (SNR, ULP, abs, the element, the
fitted atol and rtol: they depend on the machine's kernels, so the doc shows one machine's); a `...` line stands
for any lines, and drawn tables are not compared.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from conftest import ROOT

DOC = ROOT / "docs" / "gate.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
FILE_HEADER = re.compile(r"^# ([\w.-]+\.(?:py|toml))\b")
EXIT = re.compile(r"#\s*exit (\d+)\s*$")
MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"), "<time>"),
    (re.compile(r"\bon [\w.-]+(?=[ :,)]|$)"), "on <host>"),
    (re.compile(r"(captured <time> on <host>) \(.*"), r"\1 <machine>"),
    (re.compile(r"\d[\d.,]* (?:B|KB|MB|GB)\b"), "<size>"),
    (re.compile(r"\bin \d+(?:\.\d+)?s\b"), "in <secs>"),
    (re.compile(r"\b(SNR|ULP|abs|element|atol|rtol|max_ulp|max_abs|max_rel) -?\d[\d.,]*(?:e[+-]?\d+)?"), r"\1 <n>"),
    (re.compile(r"\b\d+ of (\d+) elements"), r"<n> of \1 elements"),
    (re.compile(r"^\s*(r\d+)(?:\s+[\d.,e+-]+)+\s*$"), r"\1 <row of figures>"),  # a matrix of max ULP
    (re.compile(r"\s+"), " "),
]
SKIP = re.compile(r"^(machine|software|variant |\s+ISA |\s+GPU )|[┏┃┡│└━]|ISA features, GPU ")


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        m = EXIT.search(self.command)
        return int(m.group(1)) if m else 0


def blocks(text: str) -> list[tuple[str, object]]:
    """The doc in order: ("file", (name, text)) for script blocks, ("steps", [Step]) for console blocks."""
    out: list[tuple[str, object]] = []
    for lang, body in FENCE.findall(text):
        header = FILE_HEADER.match(body)
        if lang in ("python", "toml") and header:
            out.append(("file", (header.group(1), body)))
        elif not lang and body.startswith("$ "):
            steps: list[Step] = []
            for line in body.splitlines():
                if line.startswith("$ "):
                    steps.append(Step(line[2:]))
                else:
                    steps[-1].expected.append(line)
            out.append(("steps", steps))
    return out


def normal(line: str) -> str:
    for pattern, repl in MASKS:
        line = pattern.sub(repl, line)
    return line.strip()


def missing(expected: list[str], actual: str) -> str | None:
    """The first expected line not found (in order) in `actual`, or None."""
    lines = [normal(a) for a in actual.splitlines()]
    pos = 0
    for line in expected:
        if line.strip() in ("...", "") or SKIP.search(line):
            continue
        want = normal(line)
        while pos < len(lines) and lines[pos] != want:
            pos += 1
        if pos == len(lines):
            return line
        pos += 1
    return None


def test_the_doc_parses_into_files_and_commands():
    parts = blocks(DOC.read_text())
    files = [p[1][0] for p in parts if p[0] == "file"]  # type: ignore[index]
    commands = [s.command for p in parts if p[0] == "steps" for s in p[1]]  # type: ignore[union-attr]
    assert {"make_version.py", "release.toml", "test_release.py", "reexport.py"} <= set(files)
    assert len(commands) >= 12 and any(c.startswith("python -m pytest") for c in commands)
    assert missing(["a  b", "...", "d"], "a b\nc\nd") is None and missing(["d", "a b"], "a b\nd") == "a b"


def test_docs_gate_runs_as_written(models, tmp_path):
    shutil.copy(models.digits, tmp_path / "digits_cnn.onnx")
    shutil.copy(models.digits_npz, tmp_path / "digits_test.npz")
    # As in a user's shell, with the test run's own settings left out (pytest's output is 80 columns wide).
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "INFERCMP_DEBUG", "PYTEST_ADDOPTS") and not k.startswith("PYTEST_XDIST")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", INFERCMP_QUIET="1")
    for kind, part in blocks(DOC.read_text()):
        if kind == "file":
            name, text = part  # type: ignore[misc]
            (tmp_path / name).write_text(text)
            continue
        for step in part:  # type: ignore[union-attr]
            done = subprocess.run(["bash", "-c", step.command], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=300)
            shown = done.stdout + done.stderr
            assert done.returncode == step.exit_code, f"$ {step.command}\nexit {done.returncode}\n{shown[-3000:]}"
            gone = missing(step.expected, shown)
            assert gone is None, f"$ {step.command}\nprinted no line like:\n{gone}\nit printed:\n{shown[-4000:]}"
