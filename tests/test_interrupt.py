"""Ctrl-C and SIGTERM stop every worker (their whole process groups) within 2 s, remove the temporary folder,
write no output, and exit 130 / 143 with one line."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from conftest import live_workers, loop_model, worker_pid

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                             (signal.SIGTERM, 143, "terminated (SIGTERM)")])
@pytest.mark.parametrize("variants", ["ref,ort:opt=disable,ref:dtype=float64", "ref"], ids=["three", "one"])
def test_an_interrupt_stops_every_worker_and_cleans_up(tmp_path, sig, code, word, variants):
    model = tmp_path / "slow.onnx"
    onnx.save(loop_model(2_000_000), str(model))  # ~50 s in onnx.reference
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "r.json"
    env = dict(os.environ, TMPDIR=str(tmp))
    env.pop("INFERCMP_DEBUG", None)
    # SIGINT at its default, as in a terminal: a suite started in the background (`.ci/run &`) inherits it ignored,
    # and Python then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen([sys.executable, "-m", "comparator.cli", "compare", str(model), "-b", variants,
                             "--jobs", "3", "--json", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    worker_pid(str(tmp))  # a worker of this run is up
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == code, err
    assert took < 2.0, took
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("infercmp: ref")
             and "running the variants" not in line and not line.startswith("infercmp: ort")]
    assert lines == [f"infercmp: {word}: every worker was stopped and temporary files removed; nothing was "
                     "written"], err
    assert live_workers(str(tmp)) == []  # every worker's group was killed before the parent exited
    assert list(tmp.iterdir()) == [] or all(p.name == ".ses" for p in tmp.iterdir())  # onnxruntime's own file
    assert not out.exists()
