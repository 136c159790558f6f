"""Temporary folders a process owns (comparator/scratch.py): one that a killed process left is removed by the next
that makes one beside it; a live owner's, an unmarked one and another program's are not. A killed `infercmp
compare` takes its workers with it, and the next run removes its folders, on disk and in memory."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import live_workers, pid_alive

from comparator import scratch
from comparator.fileio import read_json
from comparator.run import variants

HOLD = """
import sys, time
from comparator import scratch
folder = scratch.make("infercmp-test-", sys.argv[1])
(folder / "tensor.npy").write_bytes(b"x" * 4096)
print(folder, flush=True)
time.sleep(600)
"""


def holder(base: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process that makes an owned folder in `base` and then waits; (the process, its folder)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(base)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_owners_folder_is_removed_by_the_next_and_a_live_ones_is_kept(tmp_path):
    killed, dead_folder = holder(tmp_path)
    live, live_folder = holder(tmp_path)
    try:
        unmarked = tmp_path / "infercmp-being-made"  # no mark yet: in the making, or made without locks
        unmarked.mkdir()
        other = tmp_path / "other-program"
        other.mkdir()
        (other / scratch.MARK).touch()  # not one of ours by name: never touched
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert dead_folder.is_dir() and (dead_folder / scratch.MARK).is_file()
        mine = scratch.make(parent=tmp_path)
        assert not dead_folder.exists()
        assert live_folder.is_dir() and unmarked.is_dir() and other.is_dir() and mine.is_dir()
        assert scratch.remove_abandoned(tmp_path) == []  # its own folder is held too
        scratch.remove(mine)
        assert not mine.exists()
    finally:
        live.kill()
        live.wait(timeout=30)
    assert scratch.remove_abandoned(tmp_path) == [live_folder]


def test_an_owned_folders_name_says_whose_it_is(tmp_path):
    with pytest.raises(ValueError):
        scratch.make("mine-", tmp_path)


WAITING_PARENT = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-m", "comparator.run.worker", "--ready", "ref", "{}", "request.json"])
print(worker.pid, flush=True)
time.sleep(600)
"""


def test_a_worker_whose_parent_is_killed_exits_even_while_its_stdin_stays_open():
    # The worker inherits a pipe whose writing end this test keeps open: the end of stdin never comes.
    parent = subprocess.Popen([sys.executable, "-c", WAITING_PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None and parent.stdin is not None
    worker = int(parent.stdout.readline())
    time.sleep(1.0)
    assert pid_alive(worker)  # it waits for its request
    parent.kill()
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while pid_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not pid_alive(worker)
    finally:
        if pid_alive(worker):
            os.kill(worker, signal.SIGKILL)
        parent.stdin.close()


def test_a_killed_compare_takes_its_workers_with_it_and_the_next_run_removes_its_folders(models, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "comparator.cli", "compare", str(models.cnn), "-b",
                             "ort,ort:opt=disable,torch", "-q"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("infercmp-*/*-torch/request.json")) and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = live_workers(str(tmp_path))
        run_folders = set(tmp_path.glob("infercmp-*"))
        assert workers and run_folders, "the run never handed a worker its request"
        requests = [read_json(p) for p in tmp_path.glob("infercmp-*/*/request.json")]
        # the tensor files' folder: in the run's memory folder (MEMORY_DIR/infercmp-...), or in the run's folder
        memory = {a for r in requests if r.get("tensor_dir") for a in Path(r["tensor_dir"]).parents
                  if a.parent == variants.MEMORY_DIR}
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(map(pid_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(pid_alive, workers))  # its workers saw it go and exited
    if variants.MEMORY_DIR.is_dir():
        assert len(memory) == 1
    assert all(f.is_dir() for f in run_folders)  # (its memory folder is in the machine's: another run may take it)
    done = subprocess.run([sys.executable, "-m", "comparator.cli", "compare", str(models.cnn), "-b", "ort", "-q"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not any(f.exists() for f in run_folders) and not list(tmp_path.glob("infercmp-*"))
    assert not any(f.exists() for f in memory)
