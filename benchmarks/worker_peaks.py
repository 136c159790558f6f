"""The peak resident memory of each process of one infercmp command: the parent and every worker.

    python benchmarks/worker_peaks.py [--cwd DIR] -- infercmp compare MODEL -b torch,ref:dtype=float64 --tap outputs

Runs the command (a leading `infercmp` runs `python -m comparator.cli` in --cwd, so that a checkout of another
revision runs its own code there, as benchmarks/ab_revisions.sh does; a `git worktree add` checkout lacks the built
metrics kernel, comparator/measure/_fold*.so: copy it in, or its comparisons take NumPy's slower path) and samples
/proc every 20 ms for the command's process tree; prints, per process, its high-water mark (VmHWM: exact, kept by
the kernel) and its command line, then the largest sum of the tree's resident sets in one sample (what the machine
held for the command at once: sampled, so a lower bound), the wall time and the exit code. A process that lives
less than one sample may be missed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    """Every descendant of `pid`, depth first."""
    found: list[int] = []
    direct: list[str] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):  # a child belongs to the thread that started it
        try:
            direct += (task / "children").read_text().split()
        except OSError:
            continue
    for child in map(int, direct):
        found += [child, *children(child)]
    return found


def sample(pid: int) -> tuple[int, str, int] | None:
    """(VmHWM in KiB, command line, VmRSS in KiB) of a live process; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields.get("VmHWM", "0 kB").split()[0]), cmdline, int(fields.get("VmRSS", "0 kB").split()[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cwd", default=".", help="run the command here (a checkout of the revision to measure)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command[:1] == ["infercmp"]:
        command = [sys.executable, "-m", "comparator.cli", *command[1:]]
    peaks: dict[int, tuple[int, str]] = {}
    together = 0  # the largest sum of the tree's resident sets in one sample
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=args.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        now = 0
        for pid in [proc.pid, *children(proc.pid)]:
            seen = sample(pid)
            if seen is None:
                continue
            now += seen[2]
            if seen[0] >= peaks.get(pid, (0, ""))[0]:
                peaks[pid] = seen[:2]
        together = max(together, now)
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    for hwm, cmdline in peaks.values():
        print(f"{hwm / 1024:9.0f} MiB  {cmdline[:110]}")
    print(f"{together / 1024:9.0f} MiB  all the processes at once (the largest sum of their resident sets sampled)")
    print(f"wall {wall:.2f} s, exit code {proc.returncode}")


if __name__ == "__main__":
    main()
