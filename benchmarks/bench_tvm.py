"""What the TVM compile cache saves, and what tapping costs a compiled TVM model.

    python benchmarks/bench_tvm.py [--model models/cnn.onnx] [--variant tvm] [--runs 50]

(a) `comparator.compare(MODEL, [VARIANT])` twice with a fresh cache folder: the first compiles the untapped
    and the tapped model, the second finds both in the cache. Printed: each compare's wall time and the
    worker's summed open time (import + compile or cache load), with the ratio (target: cached >= 5x faster).
(b) The same in this process, with TVM already imported: `backend.open` on a miss and on a hit, per model copy.
(c) Run time per inference, median of --runs: the compiled untapped module called directly on the Relax VM
    (the floor), the backend's session on the untapped model, and on the tapped model (every tensor returned).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from timing import median_time

ROOT = Path(__file__).resolve().parents[1]


def timed_compare(model: str, variant: str) -> tuple[float, float, bool]:
    """(wall s, worker open s summed over untapped+tapped, every open was a cache hit)."""
    from comparator import compare

    t0 = time.perf_counter()
    report = compare(model, [variant])
    wall = time.perf_counter() - t0
    run = report.variant(variant)
    if run.status != "ok":
        raise SystemExit(f"{variant} failed: {run.error}\n{run.stderr_tail}")
    opened = sum(t["open_s"] for t in run.timings.values())
    return wall, opened, bool(run.provenance["cache"]["hit"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "cnn.onnx"))
    ap.add_argument("--variant", default="tvm")
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from comparator import backends, inputs, model as model_mod, tap
    from comparator.backends.tvm import import_tvm
    from comparator.variant import Variant

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["INFERCMP_CACHE_DIR"] = str(Path(tmp) / "cache-a")
        os.environ.pop("INFERCMP_NO_CACHE", None)
        first = timed_compare(args.model, args.variant)
        second = timed_compare(args.model, args.variant)
        print(f"(a) compare {args.model} --backends {args.variant}, fresh cache, twice")
        print(f"    {'':<8} {'wall s':>8} {'open s':>8} {'cache hit':>10}")
        for label, (wall, opened, hit) in (("first", first), ("second", second)):
            print(f"    {label:<8} {wall:>8.2f} {opened:>8.2f} {str(hit):>10}")
        print(f"    cached / first: wall {first[0] / second[0]:.1f}x faster, open {first[1] / second[1]:.1f}x "
              "faster (target >= 5x)")

        os.environ["INFERCMP_CACHE_DIR"] = str(Path(tmp) / "cache-b")
        tvm = import_tvm()
        backend, options = backends.resolve_variant(Variant.parse(args.variant))
        loaded = model_mod.load(args.model)
        plan = tap.plan(loaded, "all")
        untapped, tapped = tap.write_copies(loaded, plan, Path(tmp))
        print(f"(b) backend.open in this process (TVM imported), {len(plan.tapped)} tensors tapped")
        sessions = {}
        for label, path in (("untapped", untapped), ("tapped", tapped)):
            t0 = time.perf_counter()
            backend.open(str(path), options)
            miss = time.perf_counter() - t0
            t0 = time.perf_counter()
            sessions[label] = backend.open(str(path), options)
            hit = time.perf_counter() - t0
            prov = sessions[label].provenance()
            print(f"    {label:<8} miss {miss:6.2f} s (compile {prov['compile_s']:.2f} s)   hit {hit * 1000:7.1f} ms"
                  f"   {miss / hit:6.0f}x")

        feeds = {k: v[0] for k, v in inputs.make_feeds(loaded, {}, seed=0).items()}
        vm = sessions["untapped"].vm
        device = tvm.cpu(0)
        raw_args = [tvm.runtime.tensor(feeds[n], device=device) for n in sessions["untapped"].input_names]
        direct = median_time(lambda: vm["main"](*raw_args).numpy() if len(loaded.outputs) == 1
                            else [v.numpy() for v in vm["main"](*raw_args)], args.runs)
        plain = median_time(lambda: sessions["untapped"].run(feeds), args.runs)
        full = median_time(lambda: sessions["tapped"].run(feeds), args.runs)
        print(f"(c) run time per inference, median of {args.runs}")
        print(f"    compiled untapped module on the VM directly {direct * 1000:8.3f} ms")
        print(f"    backend session, untapped                   {plain * 1000:8.3f} ms  ({plain / direct:.2f}x)")
        print(f"    backend session, tapped (every tensor)      {full * 1000:8.3f} ms  ({full / direct:.2f}x)")


if __name__ == "__main__":
    main()
