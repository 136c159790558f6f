"""infercmp vs Polygraphy vs the floor, side by side, on one model with every tensor tapped and two ORT variants.

    python benchmarks/bench_core.py [--model models/cnn.onnx | resnet50 | vgg19 | decoder] [--repeat 3]
                                    [--also ort,ort:opt=disable,torch]

--model takes a path, the name of an architecture from the onnx wheel's `light` models (built once with seeded
weights as the real-model suite builds it, models/real.py), or `decoder`: the 2.3 GB transformer of
benchmarks/build_decoder.py, its weights as external data. Built models are kept in the `bench` cache
(`infercmp cache info`).
--also adds a row: infercmp on those variants (e.g. with torch), which Polygraphy cannot run.

(a) infercmp compare MODEL --backends ort,ort:opt=disable (every tensor tapped, JSON written)
(b) Polygraphy doing the same work: `polygraphy run MODEL --onnxrt --onnx-outputs mark all --save-outputs A.json`,
    then a second run compared against it with `--load-outputs A.json` (Polygraphy cannot set ORT's optimisation
    level, so its second run uses the same configuration: it does less work than infercmp here)
(c) the floor: one Python process that imports onnxruntime and runs the tapped model once under each of the two
    session configurations: the inference infercmp cannot avoid.
(d) one ORT session: the same process with the first configuration alone; its peak RSS is the memory floor of
    any tool that runs the model on ONNX Runtime's default CPU kernels (it holds the weights and their packed
    copies). "one untapped session" is the same for the model as given (as a deployment runs it: fused, with no
    tapped outputs), which a tool must run to report the numbers a deployment gets.
infercmp's modules are byte-compiled first, as an installation's are. Each command runs as a fresh process; wall
time is the median of --repeat rounds (each round runs every case once, in turn, so that the machine's drift
weighs on all alike), peak RSS the largest resident set of any process in the command's tree (getrusage of
waited-for children), and for infercmp also that of its parent process alone (the workers hold the model; the
parent must not). The machine is noisy: read the ratios.
"""
from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

FLOOR = """
import sys, numpy as np, onnxruntime as ort
path, feeds, weights, levels = sys.argv[1], dict(np.load(sys.argv[2])), sys.argv[3], sys.argv[4:]
for level in (getattr(ort.GraphOptimizationLevel, name) for name in levels):
    so = ort.SessionOptions(); so.graph_optimization_level = level
    so.add_session_config_entry("session.model_external_initializers_file_folder_path", weights)
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    s.run(None, {k: v[0] for k, v in feeds.items()})
"""

PARENT = """
import atexit, resource, sys
peak_file = sys.argv.pop(1)
sys.argv[0] = "infercmp"
def peak():
    with open(peak_file, "a") as fh:
        fh.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
atexit.register(peak)
from comparator.cli import run  # the `infercmp` command: it runs the atexit handlers before it exits
run()
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


def once(cmds: list[list[str]]) -> tuple[float, float, list[int]]:
    """One run of a case: its commands in turn; (total wall seconds, largest peak RSS MiB, exit codes)."""
    total, peak, codes = 0.0, 0.0, []
    for cmd in cmds:
        wall, rss, code = measure(cmd)
        total, peak = total + wall, max(peak, rss)
        codes.append(code)
    return total, peak, codes


def medians(cases: list[tuple[str, list[list[str]]]], repeat: int,
            after: Callable[[str], None]) -> dict[str, tuple[float, float, list[int]]]:
    """Each case's median wall time, largest peak RSS and exit codes over `repeat` rounds. Every round runs every
    case once, in turn, so that the machine's drift (it is noisy) weighs on every case alike and not on the ones
    that happen to run last; `after(label)` is called after each run."""
    runs: dict[str, list[tuple[float, float, list[int]]]] = {label: [] for label, _ in cases}
    for _ in range(repeat):
        for label, cmds in cases:
            runs[label].append(once(cmds))
            after(label)
    return {label: (statistics.median(r[0] for r in found), max(r[1] for r in found),
                    [c for r in found for c in r[2]]) for label, found in runs.items()}


def model_path(model: str) -> Path:
    """A path as given, or a `light` architecture built with seeded weights, or the decoder (cached)."""
    if Path(model).suffix == ".onnx" or "/" in model:
        return Path(model)
    from comparator import caches

    cache = caches.folder("bench")
    if model == "decoder":
        import build_decoder

        built = cache / "decoder" / "decoder.onnx"
        return built if built.is_file() else build_decoder.build(cache / "decoder")
    sys.path.insert(0, str(ROOT / "models"))
    import real

    built = cache / "light" / f"{model}-seed0.onnx"
    return built if built.is_file() else real.build_light(model, cache / "light")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "cnn.onnx"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--also", default="", help="an extra infercmp row with these variants")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    # An installed package holds its compiled bytecode (pip compiles on install; a checkout writes it on its first
    # import unless PYTHONDONTWRITEBYTECODE is set): compile it once here, so that every run below measures the
    # run and not Python compiling infercmp's modules, as it never compiles onnxruntime's or Polygraphy's.
    compileall.compile_dir(str(ROOT / "comparator"), quiet=1)
    import numpy as np

    args.model = str(model_path(args.model))

    from comparator.graph import inputs, model as model_mod, tap

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        m = model_mod.load(args.model)
        plan = tap.plan(m, "all")
        untapped, tapped = tap.write_copies(m, plan, t)
        np.savez(t / "feeds.npz", **inputs.make_feeds(m, {}, seed=0))
        peaks = t / "parent_peaks.txt"

        def infercmp_cmd(variants: str) -> list[list[str]]:
            return [[sys.executable, "-c", PARENT, str(peaks), "compare", args.model, "--backends", variants,
                     "--json", str(t / "r.json"), "--quiet"]]

        infercmp = infercmp_cmd("ort,ort:opt=disable")
        polygraphy = [[str(BIN / "polygraphy"), "run", args.model, "--onnxrt", "--onnx-outputs", "mark", "all",
                       "--save-outputs", str(t / "a.json")],
                      [str(BIN / "polygraphy"), "run", args.model, "--onnxrt", "--onnx-outputs", "mark", "all",
                       "--load-outputs", str(t / "a.json")]]
        weights = str(Path(args.model).resolve().parent)  # the tapped copy reads them in place
        floor = [[sys.executable, "-c", FLOOR, str(tapped), str(t / "feeds.npz"), weights, "ORT_ENABLE_ALL",
                  "ORT_DISABLE_ALL"]]
        one_session = [[sys.executable, "-c", FLOOR, str(tapped), str(t / "feeds.npz"), weights, "ORT_ENABLE_ALL"]]
        one_untapped = [[sys.executable, "-c", FLOOR, str(untapped), str(t / "feeds.npz"), weights, "ORT_ENABLE_ALL"]]
        help_cmd = [[str(BIN / "infercmp"), "--help"]]
        parent: dict[str, float] = {}
        cases = [("infercmp", infercmp), ("polygraphy", polygraphy), ("floor", floor), ("one ORT session", one_session),
                 ("one untapped session", one_untapped), ("infercmp --help", help_cmd)]
        if args.also:
            cases.insert(1, (f"infercmp {args.also}", infercmp_cmd(args.also)))

        def parent_peak(label: str) -> None:  # the parent process alone writes its peak to `peaks`
            if label.startswith("infercmp") and "--help" not in label:
                parent[label] = max(parent.get(label, 0.0), max(int(x) for x in peaks.read_text().split()) / 1024)
            peaks.write_text("")

        peaks.write_text("")
        rows = medians(cases, args.repeat, parent_peak)
    print(f"model {args.model}: {len(plan.tapped)} tensors tapped, 2 ORT configurations, median of {args.repeat}")
    width = max(16, *map(len, rows))
    print(f"{'':<{width}} {'wall s':>8} {'peak RSS MiB':>13} {'parent MiB':>11} {'exit codes':>11}")
    for label, (wall, rss, codes) in rows.items():
        own = f"{parent[label]:.0f}" if label in parent else ""
        print(f"{label:<{width}} {wall:>8.2f} {rss:>13.0f} {own:>11} {','.join(map(str, sorted(set(codes)))):>11}")
    iw, ir, _ = rows["infercmp"]
    pw, pr, _ = rows["polygraphy"]
    fw, fr, _ = rows["floor"]
    print(f"infercmp / polygraphy: wall {iw / pw:.2f}x, peak RSS {ir / pr:.2f}x")
    print(f"infercmp / floor:      wall {iw / fw:.2f}x, peak RSS {ir / fr:.2f}x")
    print(f"infercmp / one ORT session (the memory floor): peak RSS {ir / rows['one ORT session'][1]:.2f}x")
    print(f"one untapped session / polygraphy:           peak RSS {rows['one untapped session'][1] / pr:.2f}x")
    print(f"infercmp --help:       {rows['infercmp --help'][0]:.2f} s (target < 0.5 s)")


if __name__ == "__main__":
    main()
