"""Memory of the analysis and cost of --isolate.

    python benchmarks/bench_analysis.py [--mib 2200] [--repeat 3]

1. Peak RSS of the comparing process on a model whose tapped tensors total more than 2 GB across two ORT
   variants, against the workers' own peak (the backends' unavoidable use). The parent memory-maps the workers'
   files and compares in chunks, so its peak should not grow with the model (target: < 500 MB above the
   backends' own use).
2. Wall time of `compare --isolate` relative to the plain compare, on the shipped CNN and transformer.
3. Time to write the HTML report of a large comparison (2,000 tensors x 5 variants) relative to writing its JSON
   report, the cost the page adds over the machine-readable record; and, where Debian's chromium is installed,
   the time headless Chromium takes to load and draw that page relative to a 20-tensor one.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from timing import interleaved_medians  # noqa: E402

CHILD = """
import resource, sys, comparator
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = comparator.compare(sys.argv[1], ["ort", "ort:opt=disable"], jobs=1)
assert report.passed, report.exit_code
self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(before // 1024, self_peak // 1024, workers // 1024, len(report.tensors))
"""


def big_model(path: Path, mib_total: int) -> tuple[Path, int]:
    """A chain of elementwise ops on a [1, 64, 512, 512] float32 tensor (64 MiB each), long enough for the
    tapped tensors of two variants to total `mib_total` MiB."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    per = 64
    n = max(2, -(-mib_total // (2 * per)))
    ops = ["Relu", "Neg", "Abs", "Sqrt", "Exp"]
    nodes, prev = [], "x"
    for i in range(n):
        op = ops[i % len(ops)]
        if op == "Exp":
            nodes.append(helper.make_node("Mul", [prev, "small"], [f"t{i}"], name=f"n{i}"))
        else:
            nodes.append(helper.make_node(op, [prev], [f"t{i}"], name=f"n{i}"))
        prev = f"t{i}"
    shape = [1, 64, 512, 512]
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, shape)],
                              initializer=[numpy_helper.from_array(np.array(0.5, np.float32), "small")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path, n


def timed(cmd: list[str], repeat: int) -> float:
    walls = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t)
    return statistics.median(walls)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=2200, help="total MiB of tapped tensors across both variants")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, n = big_model(Path(tmp) / "big.onnx", args.mib)
        out = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True, capture_output=True, text=True,
                             cwd=ROOT).stdout.split()
    start, parent, workers, tensors = map(int, out)
    total = 2 * n * 64
    print(f"memory: {tensors} tapped tensors of 64 MiB, {total} MiB across 2 ORT variants")
    print(f"  comparing process: peak RSS {parent} MiB, {parent - start} MiB above its start after imports "
          f"(target < 500 MiB beyond the backends' own use)")
    print(f"  the backend's own use (worker peak, holds one run's outputs): {workers} MiB")
    infercmp = str(Path(sys.executable).parent / "infercmp")
    for model in ("cnn", "transformer"):
        m = str(ROOT / "models" / f"{model}.onnx")
        base = [infercmp, "compare", m, "-b", "ort,ort:opt=disable,ref", "-q"]
        plain, iso = timed(base, args.repeat), timed(base + ["--isolate"], args.repeat)
        print(f"isolate on {model}: plain {plain:.2f} s, --isolate {iso:.2f} s, ratio {iso / plain:.2f}x")
    report_writing(args.repeat)


def report_writing(repeat: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_report_html import synthetic  # the suite's large synthetic report

    from comparator.report import html, json as json_report
    report = synthetic(2000, 5)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "r.json", Path(tmp) / "r.html"]
        walls = interleaved_medians([lambda: json_report.write(report, paths[0]),
                                     lambda: html.write(report, paths[1])], repeat, warmup=1)
        mib = [p.stat().st_size / 2**20 for p in paths]
        print(f"report of 2,000 tensors x 5 variants: JSON {walls[0]:.2f} s ({mib[0]:.1f} MiB), "
              f"HTML {walls[1]:.2f} s ({mib[1]:.1f} MiB), HTML/JSON ratio {walls[1] / walls[0]:.2f}x")
        if Path(CHROMIUM).exists():
            small = Path(tmp) / "small.html"
            html.write(synthetic(20, 5), small)
            loads = interleaved_medians([lambda: _draw(small, tmp), lambda: _draw(paths[1], tmp)], repeat, warmup=1)
            print(f"headless Chromium, load and draw: 20 tensors {loads[0]:.2f} s, 2,000 tensors {loads[1]:.2f} s, "
                  f"ratio {loads[1] / loads[0]:.2f}x")


CHROMIUM = "/usr/bin/chromium"


def _draw(page: Path, tmp: str) -> None:
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp}/profile",
                    f"--screenshot={tmp}/shot.png", "--window-size=1400,900", page.as_uri()],
                   check=True, capture_output=True)


if __name__ == "__main__":
    main()
