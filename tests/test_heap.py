"""A worker's malloc: freed blocks kept for reuse while a session runs, given back after it closes
(comparator/run/heap.py). Measured on a real process's resident memory, with a worker's settings."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from comparator.run import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="glibc's malloc only")

PROBE = """
import json, numpy as np
from comparator.run import heap

def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) // 1024

def freed():  # MiB still resident after 8 MiB were written and freed
    before = rss()
    a = np.ones(1 << 20)
    del a
    return rss() - before

kept = freed()
trimmed = rss(); heap.release(); trimmed -= rss()
after = freed()
print(json.dumps({"kept": kept, "trimmed": trimmed, "after": after}))
"""


def probe(tunables: str) -> dict[str, int]:
    env = {**os.environ, "GLIBC_TUNABLES": tunables}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_freed_blocks_stay_while_a_session_runs_and_go_back_after_it_closes():
    found = probe(heap.malloc_tunables(None))
    assert found["kept"] >= 7  # the run's setting: an 8 MiB block freed stays in the heap for reuse
    assert found["trimmed"] >= 7  # release() gives it back
    assert found["after"] >= 7  # and the heap keeps reusing blocks afterwards


def test_settings_the_user_gave_are_left_alone():
    found = probe(heap.malloc_tunables("glibc.malloc.mmap_threshold=65536"))
    assert found["kept"] <= 1 and found["after"] <= 1  # the user's 64 KiB threshold: every such block is mapped
    found = probe(heap.malloc_tunables("glibc.malloc.trim_threshold=2147483648"))
    assert found["kept"] >= 7 and found["trimmed"] <= 1  # the user's trim threshold: release() leaves the heap


def test_malloc_tunables_adds_each_key_the_user_did_not_set():
    assert heap.malloc_tunables(None) == "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
    assert heap.malloc_tunables("glibc.malloc.trim_threshold=1:glibc.cpu.x86_shstk=off") == \
        "glibc.malloc.trim_threshold=1:glibc.cpu.x86_shstk=off:glibc.malloc.mmap_threshold=33554432"
