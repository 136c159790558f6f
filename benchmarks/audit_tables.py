"""The invariance tables of docs/audit.md: batch, thread and run-to-run audits of the shipped models and
ResNet-50 (seeded weights, as the real-model suite builds it) on ORT, torch, TF and onnx.reference settings, and
the cost of pinning. Prints Markdown; every audit's JSON goes to --out.

    python benchmarks/audit_tables.py [--out out/audit] [--models cnn,digits,transformer,resnet50] [--render]

--render prints the tables from the JSON files an earlier run left in --out, running nothing.

ResNet-50 runs batch sizes 1 and 2 only (its tapped activations at batch 7 would fill the disk), the others
1, 2 and 7. Takes about 15 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ["ort", "ort:opt=disable", "ort:deterministic=on", "torch", "torch:isa=default", "torch:mkldnn=off",
            "torch:deterministic=on", "tf", "tf:onednn=off", "tf:mode=xla", "ref"]
THREADED = [v for v in VARIANTS if not v.startswith("ref")]
TIMED_RUNS = 20


def model_path(name: str) -> Path:
    if name == "resnet50":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_core import model_path as built  # the cached `light` build with seeded weights

        return Path(built("resnet50"))
    return ROOT / "models" / {"digits": "digits_cnn.onnx"}.get(name, f"{name}.onnx")


def cell_batch(v: dict) -> str:
    if v["status"] != "ok":
        return f"could not run ({v['status']})"
    if v["invariant"]:
        return "invariant"
    f = v["first"]
    moved = "outputs unchanged" if not v["outputs_max_abs"] else f"outputs {v['outputs_max_ulp']:,} ULP"
    return f"**from {f['op_type']} `{f['node']}`**, {moved}"


def cell_threads(v: dict) -> str:
    if v["status"] != "ok":
        return f"could not run ({v['status']})"
    if v["invariant"]:
        return "invariant"
    row = next(r for r in v["settings"] if not r["identical"])
    moved = "outputs unchanged" if not row["outputs_max_abs"] else f"outputs {row['outputs_max_ulp']:,} ULP"
    return f"**from {row['op_type']} `{row['node']}`** ({row['threads']} threads), {moved}"


def cell_repeat(v: dict) -> str:
    if v["status"] != "ok":
        return f"could not run ({v['status']})"
    return "invariant" if v["invariant"] else f"**{v['distinct_outputs']} distinct outputs**"


def cost_table(results: dict[str, dict]) -> list[str]:
    """Median latency of each setting against its backend's default, per model (`compare --time`)."""
    names = list(results)
    rows = [f"### What pinning costs (`infercmp compare MODEL -b V... --tap outputs --time {TIMED_RUNS}`: median "
            "latency, and its ratio to the backend's default)", "",
            "| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for v in VARIANTS:
        cells = []
        for m in names:
            lat = results[m].get(v)
            base = results[m].get(v.split(":")[0])
            if lat is None:
                cells.append("-")
            elif v == v.split(":")[0] or base is None:
                cells.append(f"{lat * 1e3:.3g} ms")
            else:
                cells.append(f"{lat * 1e3:.3g} ms ({lat / base:.2f}x)")
        rows.append(f"| `{v}` | " + " | ".join(cells) + " |")
    return rows + [""]


def table(title: str, results: dict[str, dict], cell) -> list[str]:
    names = list(results)
    rows = [f"### {title}", "", "| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    variants = list(dict.fromkeys(v for r in results.values() for v in r["variants"]))
    for v in variants:
        rows.append(f"| `{v}` | " + " | ".join(cell(results[m]["variants"][v]) if v in results[m]["variants"]
                                               else "-" for m in names) + " |")
    return rows + [""]


def run_audit(kind: str, path: Path, inputs: Path | None, sizes: tuple[int, ...]) -> dict:
    from comparator import compare
    from comparator.audit.batch import audit_batch
    from comparator.audit.knobs import audit_repeat, audit_threads

    if kind == "batch":
        return audit_batch(path, VARIANTS, inputs, sizes=sizes, jobs=1).to_dict()
    if kind == "threads":
        return audit_threads(path, THREADED, inputs, threads=(1, 2), jobs=1).to_dict()
    if kind == "repeat":
        return audit_repeat(path, VARIANTS, inputs, runs=3, tap_spec="outputs", jobs=1).to_dict()
    report = compare(path, VARIANTS, inputs, tap_spec="outputs", time=TIMED_RUNS, jobs=1)
    return {v.name: v.timings["latency"]["median_s"] for v in report.variants if v.status == "ok"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "out" / "audit"))
    ap.add_argument("--models", default="cnn,digits,transformer,resnet50")
    ap.add_argument("--render", action="store_true", help="print the tables from the JSON already in --out")
    ap.add_argument("--audits", default="batch,threads,repeat,cost")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    audits = args.audits.split(",")
    batch: dict[str, dict] = {}
    threads: dict[str, dict] = {}
    repeat: dict[str, dict] = {}
    cost: dict[str, dict] = {}
    kinds = [(k, f) for k, f in (("batch", batch), ("threads", threads), ("repeat", repeat), ("cost", cost))
             if k in audits]
    for name in args.models.split(","):
        if not args.render:
            path = model_path(name)
            t = time.perf_counter()
            sizes = (1, 2) if name == "resnet50" else (1, 2, 7)
            inputs = ROOT / "models" / "digits_test.npz" if name == "digits" else None
            for kind, _ in kinds:
                found_now = run_audit(kind, path, inputs, sizes)
                (out / f"{name}-{kind}.json").write_text(json.dumps(found_now, indent=1, default=str))
            print(f"{name}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
        for kind, found in kinds:
            found[name] = json.loads((out / f"{name}-{kind}.json").read_text())
    lines: list[str] = []
    if batch:
        lines += table("Batch invariance (`infercmp audit batch MODEL -b V --sizes 1,2,7`; ResNet-50: `--sizes 1,2`)",
                       batch, cell_batch)
    if threads:
        lines += table("Thread invariance (`infercmp audit threads MODEL -b V --threads 1,2`)", threads, cell_threads)
    if repeat:
        lines += table("Run-to-run (`infercmp audit repeat MODEL -b V --runs 3 --tap outputs`)", repeat, cell_repeat)
    if cost:
        lines += cost_table(cost)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
