"""Load time of the HTML report's graph view on DenseNet-121 (910 nodes) in headless Chromium.

    python benchmarks/bench_graphview.py [--report d.json] [--runs 5] [--cache DIR]

Without --report, builds DenseNet-121 from the onnx wheel's light models (models/real.py) and compares it on
ort and ort:opt=disable. The page records, once the graph is laid out and drawn, `performance.now()` (milliseconds
since the navigation started: parsing, scripts, dagre's layout and drawing) in `data-ready-ms` and the layout and
drawing alone in `data-layout-ms` on #graph; this script reads both from the dumped DOM of each of `--runs`
loads and prints their medians, with the page's size with and without the graph section and the time to render
it in Python. Target: ready in under 2 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
DRAWN = re.compile(r'<div id="graph" data-state="drawn" data-nodes="(\d+)" data-layout-ms="(\d+)" '
                   r'data-ready-ms="(\d+)"')


def densenet_report(cache: Path) -> object:
    """DenseNet-121 with seeded weights, compared on two ORT variants."""
    import comparator

    sys.path.insert(0, str(ROOT / "models"))
    import real  # models/real.py

    model = real.build_light("densenet121", cache / "light", seed=0)
    return comparator.compare(model, ["ort", "ort:opt=disable"])


def load(page: Path, tmp: str) -> tuple[int, int, int]:
    """(nodes drawn, layout and drawing ms, ready ms) of one headless load of `page`."""
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp}/profile", "--window-size=1400,1000", "--dump-dom", page.as_uri()],
                          check=True, capture_output=True, text=True)
    found = DRAWN.search(done.stdout)
    if not found:
        raise SystemExit("the page did not draw its graph")
    nodes, layout_ms, ready_ms = map(int, found.groups())
    return nodes, layout_ms, ready_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", type=Path, help="a JSON report to draw (default: build and compare DenseNet-121)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "infercmp-bench-graphview")
    args = ap.parse_args()

    from comparator.report import html
    from comparator.result import Report

    report = Report.from_dict(json.loads(args.report.read_text())) if args.report else densenet_report(args.cache)
    assert isinstance(report, Report)
    t0 = time.perf_counter()
    page = html.render(report)
    render_s = time.perf_counter() - t0
    bare = html.render(dataclasses.replace(report, graph=[]))
    print(f"{len(report.graph)} nodes, {len(report.tensors)} tensors; page {len(page.encode()) / 2**10:.0f} KiB "
          f"({(len(page.encode()) - len(bare.encode())) / 2**10:.0f} KiB of it the graph view), rendered in "
          f"{render_s:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        path.write_text(page, encoding="utf-8")
        runs = [load(path, tmp) for _ in range(args.runs)]
    layout = statistics.median(r[1] for r in runs)
    ready = statistics.median(r[2] for r in runs)
    print(f"headless Chromium, {runs[0][0]} nodes drawn: ready {ready / 1000:.2f} s after navigation start "
          f"(median of {args.runs}; each {', '.join(f'{r[2] / 1000:.2f}' for r in runs)} s), of which "
          f"layout and drawing {layout / 1000:.2f} s")


if __name__ == "__main__":
    main()
