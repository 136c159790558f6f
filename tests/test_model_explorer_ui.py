"""The Model Explorer overlay as Model Explorer's web app draws it: the real server (`model-explorer`, with the ONNX
adapter) shows the model with one node-data file that `infercmp compare --model-explorer` wrote, in headless
Chromium driven over the DevTools protocol (the graph is drawn with WebGL once the model is converted, after the
page has loaded); a screenshot of the graph shows the nodes in the overlay's colours, gone once the node data is
removed in the app."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from browser import DevTools, needs_chromium
from conftest import ROOT

pytest.importorskip("onnxruntime")
pytest.importorskip("model_explorer")
pytest.importorskip("model_explorer_onnx")
image = pytest.importorskip("PIL.Image", reason="the screenshot check needs Pillow (the test extra)")

SERIES = "cnn.ort.max_ulp.json"  # the ort variant against a float64 reference: errors of a few ulp to thousands
PX = 50  # fewer pixels than a node's box (about 110 px at the zoom that fits the expanded graph in view)


@pytest.fixture(scope="module")
def overlay(models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("me") / "overlay"
    proc = subprocess.run([sys.executable, "-m", "comparator.cli", "compare", str(models.cnn), "-b",
                           "ref:dtype=float64,ort", "-q", "--model-explorer", str(folder)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env={**os.environ, "INFERCMP_QUIET": "1"})
    assert proc.returncode == 0, proc.stderr
    assert (folder / SERIES).is_file(), sorted(p.name for p in folder.iterdir())
    return folder / SERIES


@pytest.fixture
def explorer(models: Any, overlay: Path, tmp_path: Path) -> Iterator[str]:
    """The URL Model Explorer's server gives for the cnn model with the overlay file; the server ends after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "server.log"
    exe = Path(sys.executable).with_name("model-explorer")
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe), "--extensions=model_explorer_onnx", str(models.cnn),
                                 f"--node_data_paths={overlay}", "--no_open_in_browser", "--host=127.0.0.1",
                                 f"--port={port}"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(rf"http://127\.0\.0\.1:{port}/\?data=\S+", log.read_text("utf-8", "replace"))):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text("utf-8", "replace")[-3000:]
            time.sleep(0.2)
        yield found.group(0)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def painted(png: bytes, colours: Iterable[str]) -> dict[str, int]:
    """Pixels of each colour (`#rrggbb`) in a screenshot."""
    with image.open(io.BytesIO(png)) as shot:
        count = {c: n for n, c in shot.convert("RGB").getcolors(maxcolors=1 << 22)}
    return {c: count.get(rgb(c), 0) for c in colours}


def shot(browser: DevTools, page: str, colours: Iterable[str], done: Callable[[dict[str, int]], bool],
         timeout: float = 20) -> dict[str, int]:
    """The pixels of each colour on the graph's canvas, shot again until `done` says they are what is
    expected (the app draws in steps) or `timeout` s have passed."""
    box = browser.evaluate(page, "(r => ({x: r.x, y: r.y, width: r.width, height: r.height}))"
                                 "(document.querySelector('canvas.main').getBoundingClientRect())")
    deadline = time.monotonic() + timeout
    while True:
        found = painted(browser.screenshot(page, box), colours)
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


@needs_chromium
def test_model_explorer_draws_the_overlay(explorer: str, overlay: Path, tmp_path: Path) -> None:
    data = json.loads(overlay.read_text("utf-8"))["cnn"]
    values = {node: r["value"] for node, r in data["results"].items()}
    # Model Explorer's colour for a value: that of the first threshold the value does not exceed.
    nodes = Counter(next(t["bgColor"] for t in data["thresholds"] if v <= t["value"]) for v in values.values())
    assert len(nodes) >= 2, nodes
    with DevTools(tmp_path) as browser:
        page = browser.open(explorer)
        # The app converts the model, then draws the graph and lists the node data under the series' name.
        browser.wait_for(page, "(t => t.includes('ort max_ulp') && !t.includes('Processing graph'))"
                               "(document.body?.innerText ?? '') && "
                               "document.querySelector('canvas.main')?.getBoundingClientRect().width > 0")
        table = browser.evaluate(page, "document.body.innerText")
        for node, op in (("/block1/conv/Conv", "Conv"), ("/softmax/Softmax", "Softmax")):
            assert f"\t{op}\t{values[node]}\n" in table, (node, table[-2000:])
        browser.evaluate(page, "document.querySelector('div.expand-all').click()")  # every op node in view

        def coloured(found: dict[str, int]) -> bool:
            return all(found[c] >= PX * n for c, n in nodes.items())

        drawn = shot(browser, page, nodes, coloured)
        (tmp_path / "graph.png").write_bytes(browser.screenshot(page))
        assert coloured(drawn), (drawn, nodes)
        # The same graph without the node data (removed with the delete button of its row among the node data
        # providers) has none of these colours.
        browser.evaluate(page, "document.querySelector('.icon-container.action').click()")
        browser.wait_for(page, "!document.body.innerText.includes('ort max_ulp')")
        plain = shot(browser, page, nodes, lambda found: not any(found.values()))
        assert plain == dict.fromkeys(nodes, 0), plain
