"""infercmp vs Polygraphy vs the floor, side by side, on one model with every tensor tapped and two ORT variants.

    python benchmarks/bench_core.py [--model models/cnn.onnx] [--repeat 3]

(a) infercmp compare MODEL --backends ort,ort:opt=disable (every tensor tapped, JSON written)
(b) Polygraphy doing the same work: `polygraphy run MODEL --onnxrt --onnx-outputs mark all --save-outputs A.json`,
    then a second run compared against it with `--load-outputs A.json` (Polygraphy cannot set ORT's optimisation
    level, so its second run uses the same configuration: it does less work than infercmp here)
(c) the floor: one Python process that imports onnxruntime and runs the tapped model once under each of the two
    session configurations: the inference infercmp cannot avoid.
Each command runs as a fresh process; wall time is the median of --repeat runs, peak RSS the largest resident set
of any process in the command's tree (getrusage of waited-for children). The machine is noisy: read the ratios.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

FLOOR = """
import sys, numpy as np, onnxruntime as ort
path, feeds = sys.argv[1], dict(np.load(sys.argv[2]))
for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
    so = ort.SessionOptions(); so.graph_optimization_level = level
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    s.run(None, {k: v[0] for k, v in feeds.items()})
"""

MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
wall = time.perf_counter() - t
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB over the command's process tree, exit code), in a fresh wrapper process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True).stdout
    wall, rss_kib, code = out.split()
    return float(wall), int(rss_kib) / 1024, int(code)


def median_of(cmds: list[list[str]], repeat: int) -> tuple[float, float, list[int]]:
    walls, peaks, codes = [], [], []
    for _ in range(repeat):
        total, peak = 0.0, 0.0
        for cmd in cmds:
            wall, rss, code = measure(cmd)
            total, peak = total + wall, max(peak, rss)
            codes.append(code)
        walls.append(total)
        peaks.append(peak)
    return statistics.median(walls), max(peaks), codes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "cnn.onnx"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from comparator.graph import inputs, model as model_mod, tap

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        m = model_mod.load(args.model)
        plan = tap.plan(m, "all")
        _, tapped = tap.write_copies(m, plan, t)
        np.savez(t / "feeds.npz", **inputs.make_feeds(m, {}, seed=0))
        infercmp = [[str(BIN / "infercmp"), "compare", args.model, "--backends", "ort,ort:opt=disable",
                     "--json", str(t / "r.json"), "--quiet"]]
        polygraphy = [[str(BIN / "polygraphy"), "run", args.model, "--onnxrt", "--onnx-outputs", "mark", "all",
                       "--save-outputs", str(t / "a.json")],
                      [str(BIN / "polygraphy"), "run", args.model, "--onnxrt", "--onnx-outputs", "mark", "all",
                       "--load-outputs", str(t / "a.json")]]
        floor = [[sys.executable, "-c", FLOOR, str(tapped), str(t / "feeds.npz")]]
        help_cmd = [[str(BIN / "infercmp"), "--help"]]
        rows = {}
        for label, cmds in (("infercmp", infercmp), ("polygraphy", polygraphy), ("floor", floor),
                            ("infercmp --help", help_cmd)):
            rows[label] = median_of(cmds, args.repeat)
    print(f"model {args.model}: {len(plan.tapped)} tensors tapped, 2 ORT configurations, median of {args.repeat}")
    print(f"{'':<16} {'wall s':>8} {'peak RSS MiB':>13} {'exit codes':>12}")
    for label, (wall, rss, codes) in rows.items():
        print(f"{label:<16} {wall:>8.2f} {rss:>13.0f} {','.join(map(str, sorted(set(codes)))):>12}")
    iw, ir, _ = rows["infercmp"]
    pw, pr, _ = rows["polygraphy"]
    fw, fr, _ = rows["floor"]
    print(f"infercmp / polygraphy: wall {iw / pw:.2f}x (target <= 0.5x), peak RSS {ir / pr:.2f}x (target <= 1x)")
    print(f"infercmp / floor:      wall {iw / fw:.2f}x (target <= 2x)")
    print(f"infercmp --help:       {rows['infercmp --help'][0]:.2f} s (target < 0.5 s)")


if __name__ == "__main__":
    main()
