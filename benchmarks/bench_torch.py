"""The torch backend's executor against the torch module the ONNX file was exported from.

    python benchmarks/bench_torch.py [--runs 200] [--threads 1] [--model cnn|transformer]

For each model: `models/zoo.py`'s `make_<name>()` module and the torch backend's executor on
`models/<name>.onnx`, fed the same `example_input(name)`, both under torch.inference_mode() in this process.
Printed per model: median time per inference of the module, of the executor (torch tensors in and out, every
graph output returned), of the backend session (NumPy in and out, as a worker calls it), the executor/module
ratio (target <= 1.5x), and the largest difference between the two final outputs. Runs of the two are
interleaved after a warm-up so that machine load hits both alike.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from timing import interleaved_medians

ROOT = Path(__file__).resolve().parents[1]


def bench(name: str, runs: int) -> tuple[float, float, float, float]:
    import numpy as np
    import torch

    from comparator.backends.options import resolve
    from comparator.backends.torch import TorchBackend
    from models import zoo

    backend = TorchBackend()
    session = backend.open(str(ROOT / "models" / f"{name}.onnx"), resolve("torch", backend.options, {}))
    executor = session._executor
    module = zoo.make(name)
    x = zoo.example_input(name)
    feed_name = executor.inputs[0]
    out_name = executor.outputs[-1]
    feeds_np = {feed_name: x.numpy()}

    with torch.inference_mode():
        t_module, t_exec, t_session = interleaved_medians(
            [lambda: module(x), lambda: executor.run({feed_name: x}), lambda: session.run(feeds_np)], runs)
        diff = float((module(x) - executor.run({feed_name: x})[out_name]).abs().max())
    assert np.isfinite(diff)
    return t_module, t_exec, t_session, diff


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both (0 = torch's default)")
    ap.add_argument("--model", action="append", choices=["cnn", "transformer"])
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), capability "
          f"{torch.backends.cpu.get_cpu_capability()}, median of {args.runs} interleaved runs after warm-up")
    print(f"{'model':<12} {'module':>10} {'executor':>10} {'session':>10} {'ratio':>7}  max |diff|")
    for name in args.model or ["cnn", "transformer"]:
        t_module, t_exec, t_session, diff = bench(name, args.runs)
        print(f"{name:<12} {t_module * 1e3:>8.3f}ms {t_exec * 1e3:>8.3f}ms {t_session * 1e3:>8.3f}ms "
              f"{t_exec / t_module:>6.2f}x  {diff:.2e}")


if __name__ == "__main__":
    main()
