"""The torch backend's executor against the torch module the ONNX file was exported from; its session open against
reading the weights.

    python benchmarks/bench_torch.py [--runs 200] [--threads 1] [--model cnn|transformer]
    python benchmarks/bench_torch.py --open MODEL.onnx [--repeat 3]

For each model: `models/zoo.py`'s `make_<name>()` module and the torch backend's executor on
`models/<name>.onnx`, fed the same `example_input(name)`, both under torch.inference_mode() in this process.
Printed per model: median time per inference of the module, of the executor (torch tensors in and out, every
graph output returned), of the backend session (NumPy in and out, as a worker calls it), the executor/module
ratio (target <= 1.5x), and the largest difference between the two final outputs. Runs of the two are
interleaved after a warm-up so that machine load hits both alike.

--open: the seconds the torch backend takes to open MODEL (e.g. the decoder of build_decoder.py, 2.3 GB of
weights), against the floor of reading its weights from their files into memory that is kept, each in a fresh
process with a worker's environment (run/spawn.py's malloc settings), alternated; medians of --repeat.
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


OPEN = """
import sys, time
sys.path.insert(0, sys.argv[1])
import torch
from comparator.backends import resolve_variant
from comparator.graph import stored
from comparator.graph.promote import read_weights
from comparator.variant import Variant
path, what = sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if what == "open":
    backend, options = resolve_variant(Variant.parse("torch"))
    session = backend.open(path, options)
else:
    kept = [v for _, v in read_weights(stored.load(path, weights=False), str(stored.external_dir(path)), False)]
print(time.perf_counter() - t0)
"""


def bench_open(model: str, repeat: int) -> None:
    import os
    import statistics
    import subprocess

    from comparator.run.spawn import malloc_tunables

    env = dict(os.environ, GLIBC_TUNABLES=malloc_tunables(os.environ.get("GLIBC_TUNABLES")))
    took: dict[str, list[float]] = {"open": [], "read": []}
    for _ in range(repeat):
        for what in took:
            out = subprocess.run([sys.executable, "-c", OPEN, str(ROOT), model, what], env=env, check=True,
                                 capture_output=True, text=True).stdout
            took[what].append(float(out.split()[-1]))
    session, floor = statistics.median(took["open"]), statistics.median(took["read"])
    print(f"{Path(model).name}: torch session open {session:.2f} s, reading the weights {floor:.2f} s "
          f"({session / floor:.2f}x), medians of {repeat}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both (0 = torch's default)")
    ap.add_argument("--model", action="append", choices=["cnn", "transformer"])
    ap.add_argument("--open", help="time the session open of this model instead")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.open:
        bench_open(args.open, args.repeat)
        return
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
