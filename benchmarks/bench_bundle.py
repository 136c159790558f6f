"""A captured run on disk: the .icmp bundle vs Polygraphy's `--save-outputs` JSON, for one tapped run.

    python benchmarks/bench_bundle.py [--model models/cnn.onnx] [--repeat 20]

Both sides hold the same run: the model on onnxruntime (default options) with every tensor tapped.
(a) Polygraphy: `polygraphy run MODEL --onnxrt --onnx-outputs mark all --save-outputs A.json --save-inputs I.json`;
    write = `RunResults.save`, read = `RunResults.load` (Polygraphy's own API), both in this process.
(b) infercmp: one `api.run_variants(MODEL, [ort], tap_spec="all")`, then write = `bundle_writer.write` (feeds, final
    outputs, every tapped tensor, the machine fingerprint), read = `Bundle.open(path).arrays()` (validate, then
    every member into memory), for each member compression (auto is the default).
Times are medians of --repeat warm runs in one process (the files sit in the page cache); sizes are bytes on disk.
The bundle also holds the inputs, so its size is compared with A.json alone and with A.json + I.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import median_time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent


def polygraphy_side(model: Path, folder: Path, repeat: int) -> dict[str, float]:
    outputs, inputs = folder / "A.json", folder / "I.json"
    subprocess.run([str(BIN / "polygraphy"), "run", str(model), "--onnxrt", "--onnx-outputs", "mark", "all",
                    "--save-outputs", str(outputs), "--save-inputs", str(inputs)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from polygraphy.comparator import RunResults
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR  # its "Loading inference results" lines would be timed too
    results = RunResults.load(str(outputs))
    tensors = sum(len(it) for _, its in results.items() for it in its)
    copy = folder / "B.json"
    write = median_time(lambda: results.save(str(copy)), repeat)
    read = median_time(lambda: RunResults.load(str(copy)), repeat)
    return {"size": outputs.stat().st_size, "size_with_inputs": outputs.stat().st_size + inputs.stat().st_size,
            "write": write, "read": read, "tensors": tensors}


def infercmp_side(model: Path, folder: Path, repeat: int) -> dict[str, dict[str, float]]:
    import numpy as np

    from comparator import api
    from comparator.gate import bundle, bundle_writer
    from comparator.variant import Variant

    rs = api.run_variants(model, [Variant.parse("ort")], folder / "run", tap_spec="all")
    run = rs.runs[0]
    if not run.ok:
        raise SystemExit(f"ort failed: {run.error}")
    with np.load(folder / "run" / "feeds.npz", allow_pickle=False) as npz:
        feeds = {k: npz[k] for k in npz.files}
    tap = {"spec": "all", "tapped": rs.plan.names, "skipped": rs.plan.skipped}
    found = {}
    for codec in ("auto", "stored", "deflate"):
        path = folder / f"run-{codec}.icmp"

        def write(path: Path = path, codec: str = codec) -> None:
            bundle_writer.write(path, rs.model, tap, rs.runs, feeds, rs.feed_info, force=True, compression=codec)

        t_write = median_time(write, repeat)
        t_read = median_time(lambda path=path: bundle.Bundle.open(path).arrays(), repeat)
        t_extract = median_time(lambda path=path: bundle.Bundle.open(path).extract(folder / "x"), repeat)
        b = bundle.Bundle.open(path)
        tensors = sum(len(v) for r in b.meta["runs"] for v in r["tensors"].values())
        raw = sum(u for m, (_, u) in b.sizes.items() if m.endswith(".npy"))
        found[codec] = {"size": path.stat().st_size, "write": t_write, "read": t_read, "extract": t_extract,
                        "tensors": tensors, "raw": raw}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "cnn.onnx")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as tmp:
        folder = Path(tmp)
        pg = polygraphy_side(args.model, folder, args.repeat)
        ours = infercmp_side(args.model, folder, args.repeat)
    print(f"model {args.model.name}, every tensor tapped, onnxruntime; medians of {args.repeat} warm runs")
    print(f"{'format':<28} {'bytes':>9} {'write ms':>9} {'read ms':>9} {'extract ms':>10}  tensors")
    print(f"{'polygraphy A.json':<28} {pg['size']:>9,} {1e3 * pg['write']:>9.2f} {1e3 * pg['read']:>9.2f} "
          f"{'-':>10}  {pg['tensors']} (inputs in I.json: {pg['size_with_inputs'] - pg['size']:,} bytes more)")
    for codec, r in ours.items():
        print(f"{'infercmp .icmp ' + codec:<28} {r['size']:>9,} {1e3 * r['write']:>9.2f} {1e3 * r['read']:>9.2f} "
              f"{1e3 * r['extract']:>10.2f}  {r['tensors']} entries, {r['raw']:,} bytes of .npy (inputs included)")
    print("ratios (polygraphy / infercmp; > 1 means the bundle is smaller or faster):")
    for codec, r in ours.items():
        print(f"  {codec:<8} size {pg['size'] / r['size']:.2f}x (vs A.json + I.json: "
              f"{pg['size_with_inputs'] / r['size']:.2f}x)  write {pg['write'] / r['write']:.2f}x  "
              f"read {pg['read'] / r['read']:.2f}x")
    auto = ours["auto"]
    print(f"targets (auto): >= 3x smaller: {'met' if pg['size_with_inputs'] / auto['size'] >= 3 else 'NOT met'}; "
          f">= 3x faster to load: {'met' if pg['read'] / auto['read'] >= 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
