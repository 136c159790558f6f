"""Workers start before the model is read: each imports its framework while the parent reads the model and writes
its copies, then waits for its request. Real workers and real frameworks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import comparator
from comparator.errors import InfercmpError
from comparator.run import runner
from conftest import MODELS, ROOT

CNN = MODELS / "cnn.onnx"


def test_the_first_workers_import_their_framework_before_the_request() -> None:
    together = comparator.compare(CNN, ["ort", "ref"], jobs=2)
    for name in ("ort", "ref"):
        assert together.variant(name).timings["prepare"]["import_s"] > 0, name
    one_at_a_time = comparator.compare(CNN, ["ort", "ref"], jobs=1)
    assert "prepare" in one_at_a_time.variant("ort").timings  # the first: started early
    assert "prepare" not in one_at_a_time.variant("ref").timings  # the second starts when the first is done
    assert together.tensors[-1].metrics == one_at_a_time.tensors[-1].metrics


def test_a_model_that_fails_to_load_stops_the_started_workers(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InfercmpError):
        comparator.compare(bad, ["ort", "ref"], workdir=work)
    assert not runner._LIVE  # every started worker was stopped and waited for
    assert list(work.glob("run-*")) == []  # and nothing of the run is left


def test_a_started_worker_without_a_request_exits_quietly() -> None:
    done = subprocess.run([sys.executable, "-m", "comparator.run.worker", "--wait", "ort"], cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert done.returncode == 0 and done.stderr == ""
