"""The bad-input corpus (tests/bad_inputs.py) through the command line: each case exits with its code and one
error line naming the problem, changes no input, and leaves no file, temporary folder or worker process behind."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

from bad_inputs import CASES, base, materialize
from conftest import assert_clean_error


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder`: a file's sha256, a link's target, or `dir`."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                found[rel] = "link -> " + os.readlink(p)
            elif p.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def processes_naming(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if text.encode() in fh.read():
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """A good bundle of the corpus's model, captured once (the bundle cases derive theirs from it)."""
    from test_bundle import run_cli

    folder = tmp_path_factory.mktemp("corpus-bundle")
    base(folder, None)
    code, _, err = run_cli("capture", folder / "m" / "model.onnx", "-b", "ort", "-o", folder / "base.icmp")
    assert code == 0, err
    return folder / "base.icmp"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_input_is_refused_cleanly(case, captured, tmp_path, monkeypatch, cli):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    base(corpus, captured if case.needs_bundle else None)
    args = materialize(case, corpus)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # every temporary folder of the run, workers' included, goes here
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    monkeypatch.chdir(corpus)
    before = snapshot(corpus)
    code, _, err = cli(*args)
    assert code == case.code, err
    if case.runs:  # progress lines of the phases that ran come first (a log's plain lines)
        err = "\n".join(line for line in err.splitlines() if not line.startswith("infercmp: "))
    assert_clean_error(err, *case.needles)
    assert snapshot(corpus) == before  # no input changed, nothing written, no temporary file beside an output
    # no temporary folder left (onnxruntime keeps a session id in $TMPDIR/.ses, across runs: not ours)
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
    assert processes_naming(str(tmp_path)) == []  # no worker left running


def test_the_corpus_covers_every_class():
    names = {c.name for c in CASES}
    assert len(names) == len(CASES)
    for phrase in ("onto the model", "symlink", "hard link", "external data", "baseline", "workdir", "atol",
                   "timeout", "max-ulp", "seed", "ULP of 2**64", "sweep", "../../x", "/abs/x", "dtype",
                   "options as a list", "bomb", "truncated npz", "bad CRC", "CSV", "folder as inputs", "full device"):
        assert any(phrase in n for n in names), phrase
