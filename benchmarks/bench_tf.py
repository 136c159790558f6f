"""The tf backend's executor in each mode against onnxruntime, on the same model and inputs, in one process.

    python benchmarks/bench_tf.py [--runs 200] [--threads 0] [--model cnn|transformer]

For each model: an ORT CPU session (ORT_ENABLE_ALL) and tf backend sessions in eager, graph (tf.function) and
xla (jit_compile) modes on `models/<name>.onnx`, all fed `models.zoo.example_input(name)` as NumPy (what a
worker does), plus graph mode on the tapped copy (every intermediate tensor a graph output, as infercmp runs
it). Printed: the median time per run of each after a warm-up (runs interleaved so that machine load hits all
alike), each one's ratio to ORT, graph/eager and xla/eager, and the largest difference of the final output
from ORT's. The environment knobs (TF_ENABLE_ONEDNN_OPTS...) are whatever this process was started with.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from collections.abc import Callable

from timing import interleaved_medians

ROOT = Path(__file__).resolve().parents[1]


def sessions(name: str, threads: int, folder: Path) -> tuple[dict[str, Callable[[], dict]], str]:
    import numpy as np
    import onnxruntime as ort

    from comparator.graph import model as model_mod, tap
    from comparator.backends.options import resolve
    from comparator.backends.tf import TfBackend
    from models import zoo

    path = ROOT / "models" / f"{name}.onnx"
    loaded = model_mod.load(path)
    _, tapped = tap.write_copies(loaded, tap.plan(loaded, "all"), folder)
    x = zoo.example_input(name).numpy()
    feed, out = loaded.inputs[0].name, loaded.outputs[0]
    feeds = {feed: x}
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    ort_session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    backend = TfBackend()
    raw = {"threads": str(threads)}
    tf_sessions = {mode: backend.open(str(path), resolve("tf", backend.options, dict(raw, mode=mode)))
                   for mode in ("eager", "graph", "xla")}
    tapped_session = backend.open(str(tapped), resolve("tf", backend.options, dict(raw, mode="graph")))
    fns = {"ort": lambda: dict(zip([out], ort_session.run([out], feeds)))}
    for mode, s in tf_sessions.items():
        fns[f"tf {mode}"] = lambda s=s: s.run(feeds)
    fns["tf graph, tapped"] = lambda: tapped_session.run(feeds)
    assert np.isfinite(fns["ort"]()[out]).all()
    return fns, out


def bench(name: str, runs: int, threads: int) -> None:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        fns, out = sessions(name, threads, Path(tmp))
        labels = list(fns)
        medians = dict(zip(labels, interleaved_medians([fns[k] for k in labels], runs)))
        want = fns["ort"]()[out]
        print(f"\n{name}: median of {runs} interleaved runs after warm-up")
        print(f"  {'variant':<18} {'time':>10} {'vs ort':>8}  max |diff| vs ort")
        for label in labels:
            diff = float(np.abs(fns[label]()[out].astype(np.float64) - want).max())
            print(f"  {label:<18} {medians[label] * 1e3:>8.3f}ms {medians[label] / medians['ort']:>7.2f}x  {diff:.2e}")
        eager = medians["tf eager"]
        print(f"  graph/eager {medians['tf graph'] / eager:.2f}x   xla/eager {medians['tf xla'] / eager:.2f}x   "
              f"tapped/untapped graph {medians['tf graph, tapped'] / medians['tf graph']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0 = each one's default)")
    ap.add_argument("--model", action="append", choices=["cnn", "transformer"])
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnxruntime
    import tensorflow as tf

    print(f"tensorflow {tf.__version__} (TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}),"
          f" onnxruntime {onnxruntime.__version__}, threads {args.threads or 'default'}, {os.cpu_count()} cores")
    for name in args.model or ["cnn"]:
        bench(name, args.runs, args.threads)


if __name__ == "__main__":
    main()
