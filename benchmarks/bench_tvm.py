"""What the TVM compile cache saves, and what tapping costs a compiled TVM model.

    python benchmarks/bench_tvm.py [--model models/cnn.onnx] [--variant tvm] [--cached 3] [--runs 50]

(a) `comparator.compare(MODEL, [VARIANT])` with a fresh cache folder (it compiles the untapped and the tapped
    model), then --cached times more (each finds both in the cache; the median is shown). Printed: each compare's
    wall time and the worker's open time per model copy, as the worker measures it around `backend.open`, and
    the worker's `import tvm` (the backend's `prepare`, in the environment the backend gives the worker, timed
    by the worker before its request comes). The ratio of the summed import and open times is the figure of merit
    (target: cached >= 5x faster). `import tvm` alone, in a fresh process with that environment, is shown too.
(b) The same in this process, with TVM already imported: `backend.open` on a miss and on a hit, per model copy.
(c) Run time per inference, median of --runs: the compiled untapped module called directly on the Relax VM
    (the floor), the backend's session on the untapped model, and on the tapped model (every tensor returned).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import median_time

ROOT = Path(__file__).resolve().parents[1]


def timed_compare(model: str, variant: str) -> tuple[float, dict[str, float], bool]:
    """(wall s, the worker's import s and open s per model copy, the last open was a cache hit)."""
    from comparator import compare

    t0 = time.perf_counter()
    report = compare(model, [variant])
    wall = time.perf_counter() - t0
    run = report.variant(variant)
    if run.status != "ok":
        raise SystemExit(f"{variant} failed: {run.error}\n{run.stderr_tail}")
    opened = {"import": run.timings["framework"]["import_s"]}
    opened.update((kind, t["open_s"]) for kind, t in run.timings.items() if "open_s" in t)
    return wall, opened, bool(run.provenance["cache"]["hit"])


def import_alone(environment: dict[str, str], times: int = 3) -> float:
    """Median seconds of `import_tvm()` in a fresh process with the worker's environment (and, as in the
    worker, NumPy already imported)."""
    code = ("import time; from comparator.backends.tvm import import_tvm; t = time.perf_counter(); import_tvm(); "
            "print(time.perf_counter() - t)")
    env = dict(os.environ, **environment)
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True,
                                                  capture_output=True, text=True).stdout) for _ in range(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "cnn.onnx"))
    ap.add_argument("--variant", default="tvm")
    ap.add_argument("--cached", type=int, default=3, help="compares after the cold one (median shown)")
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from comparator import backends
    from comparator.graph import inputs, model as model_mod, tap
    from comparator.backends.tvm import import_tvm
    from comparator.variant import Variant

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["INFERCMP_CACHE_DIR"] = str(Path(tmp) / "cache-a")
        os.environ.pop("INFERCMP_NO_CACHE", None)
        cold = timed_compare(args.model, args.variant)
        hits = [timed_compare(args.model, args.variant) for _ in range(max(1, args.cached))]
        cached = sorted(hits, key=lambda h: sum(h[1].values()))[len(hits) // 2]
        kinds = list(cold[1])
        print(f"(a) compare {args.model} --backends {args.variant}, fresh cache, then {len(hits)} more "
              "(median of those)")
        print(f"    {'':<8} {'wall s':>8} " + " ".join(f"{k + ' s':>16}" for k in kinds)
              + f" {'sum':>12} {'cache hit':>10}")
        for label, (wall, opened, hit) in (("cold", cold), ("cached", cached)):
            print(f"    {label:<8} {wall:>8.2f} " + " ".join(f"{opened.get(k, float('nan')):>16.3f}" for k in kinds)
                  + f" {sum(opened.values()):>12.3f} {str(hit):>10}")
        ratio = sum(cold[1].values()) / sum(cached[1].values())
        print(f"    cached / cold: open {ratio:.1f}x faster (target >= 5x: {'met' if ratio >= 5 else 'NOT met'}), "
              f"wall {cold[0] / cached[0]:.1f}x faster")
        backend, options = backends.resolve_variant(Variant.parse(args.variant))
        print(f"    of which `import tvm` alone, fresh process, worker environment: "
              f"{import_alone(backend.environment(options)):.3f} s (the import column)")

        os.environ["INFERCMP_CACHE_DIR"] = str(Path(tmp) / "cache-b")
        tvm = import_tvm()
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
