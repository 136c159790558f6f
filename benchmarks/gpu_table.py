"""The markdown table of benchmarks/gpu_check.sh, built from infercmp's JSON reports (docs/report-schema.md).

    python benchmarks/gpu_table.py [--knobs a,b,c] [--environment FILE] [--elapsed S] REPORT.json ...

Per report (one model, run with --repeat N and a float64 oracle as the reference), one row per variant: the
values of the knobs swept, its bit-identity class of final outputs (A, B, ... in the order of
`equivalence_classes`, largest first), distinct final outputs over its runs (`determinism`), the run-to-run spread
(largest max abs over the repeats), and the largest max abs and max ULP of its final outputs against the
reference, and max abs against the second float64 oracle (`pairwise`). Reads plain JSON: no infercmp import.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from string import ascii_uppercase
from typing import Any

ORACLES = ("ref:dtype=float64", "torch:dtype=float64")


def number(value: Any) -> float:
    """A metric as a float: reports write non-finite numbers as the strings "nan", "inf", "-inf"."""
    return float(value) if value is not None else float("nan")


def fmt(value: float) -> str:
    if value != value:
        return "nan"
    if value == 0:
        return "0"
    return f"{value:.2e}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4g}"


def class_labels(report: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for i, group in enumerate(report["equivalence_classes"]):
        label = ascii_uppercase[i] if i < len(ascii_uppercase) else str(i + 1)
        labels.update({name: label for name in group})
    return labels


def against_reference(report: dict[str, Any], variant: str) -> tuple[float, int | None] | str:
    """Largest max abs and max ULP over the final outputs against the reference, or why there is none."""
    worst_abs, worst_ulp = 0.0, 0
    outputs = [t for t in report["tensors"] if t["is_output"]]
    for tensor in outputs:
        m = tensor["metrics"].get(variant)
        if m is None:
            return "not compared"
        if "error" in m:
            return m["error"]
        worst_abs = max(worst_abs, number(m["max_abs"]))
        worst_ulp = max(worst_ulp, int(m["max_ulp"] or 0))
    return (worst_abs, worst_ulp) if outputs else "no outputs"


def pairwise_abs(report: dict[str, Any], a: str, b: str) -> float | None:
    pw = report.get("pairwise") or {}
    names = pw.get("variants", [])
    if a not in names or b not in names:
        return None
    return number(pw["max_abs"][names.index(a)][names.index(b)])


def knob_values(variant: dict[str, Any], knobs: list[str]) -> list[str] | None:
    """The swept knobs' values as written, or None for a variant that is not one of the sweep (oracle, baseline)."""
    options = variant["options"]
    if not knobs or not all(k in options for k in knobs):
        return None
    return [str(options[k]) for k in knobs]


def device_line(report: dict[str, Any]) -> str | None:
    """GPU, CUDA and cuDNN as a CUDA variant's provenance records them; else the CPU of a torch variant."""
    found = None
    for v in report["variants"]:
        p = v.get("provenance") or {}
        if p.get("cuda_device"):
            return f"{p['cuda_device']}, torch {p.get('torch')}, CUDA {p.get('cuda')}, cuDNN {p.get('cudnn')}"
        if found is None and p.get("torch"):
            env = p.get("environment") or {}
            found = f"CPU only: {env.get('cpu')} ({env.get('cores')} cores), torch {p['torch']}"
    return found


def table(report: dict[str, Any], knobs: list[str]) -> list[str]:
    model = report["model"]
    reference = report["reference"]
    second = next((o for o in ORACLES if o != reference), None)
    labels = class_labels(report)
    runs = max((d["runs"] for d in report["determinism"].values()), default=1)
    lines = [f"## {Path(model['path']).name} (sha256 {model['sha256'][:12]})", ""]
    feeds = report.get("inputs", {})
    source = feeds.get("source")
    where = Path(source).name if source and source != "random" else f"random, seed {feeds.get('seed', 0)}"
    fresh = (runs + 1) // 2  # --repeat N: N fresh sessions and N-1 more runs of the first one
    again = f"{runs - fresh} time{'s' if runs - fresh != 1 else ''}"
    lines.append(f"Feeds: {where}; reference `{reference}`; each variant run {runs} times in one worker process "
                 f"({fresh} fresh sessions, the first one rerun {again}); tolerance atol "
                 f"{report['tolerance']['atol']}, rtol {report['tolerance']['rtol']}.")
    device = device_line(report)
    if device:
        lines.append(f"Device: {device}.")
    swept = [v for v in report["variants"] if knob_values(v, knobs) is not None]
    swept_classes = {labels[v["name"]] for v in swept if v["name"] in labels}
    lines.append(f"Bit-identity classes of final outputs: {len(report['equivalence_classes'])} among "
                 f"{len(labels)} variants that ran; {len(swept_classes)} among the {len(swept)} swept ones.")
    lines.append("")
    head = ["variant", *knobs, "class", "distinct/runs", "run-to-run max abs", f"max abs vs {reference}",
            "max ULP vs it", f"max abs vs {second}" if second else "-"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in report["variants"]:
        name = v["name"]
        values = knob_values(v, knobs)
        # A swept variant's name without the swept knobs, which have their own columns.
        label = (":".join(part for part in name.split(":") if part.split("=")[0] not in knobs) + ":…"
                 if values is not None else name)
        cells = [f"`{label}`", *(values or ["" for _ in knobs])]
        if v["status"] != "ok":
            why = (v.get("error") or "").strip().splitlines()
            cells.append(f"{v['status']}: {why[0][:100] if why else ''}")
            cells += [""] * (len(head) - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
            continue
        det = report["determinism"].get(name)
        spread = (det.get("suggested_tolerance") or {}).get("atol", 0.0) if det else None
        cells += [labels.get(name, "?"),
                  f"{det['distinct_outputs']}/{det['runs']}" if det else "-",
                  fmt(number(spread)) if spread is not None else "-"]
        if name == reference:
            cells += ["(reference)", ""]
        else:
            ref = against_reference(report, name)
            cells += [fmt(ref[0]), f"{ref[1]:,}"] if isinstance(ref, tuple) else [ref, ""]
        other = pairwise_abs(report, name, second) if second and name != second else None
        cells.append(fmt(other) if other is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Same class letter: bit-identical final outputs. distinct/runs: distinct final outputs over the "
                  "variant's runs; run-to-run max abs: their largest difference. Max abs and ULP over every final "
                  "output; ULP in the narrower dtype (float32, or float64 between the two oracles)."]
    oracle = report.get("oracle") or {}
    if oracle.get("variants"):
        found = oracle.get("disagreements", [])
        lines += [f"The two float64 oracles ({', '.join(oracle['variants'])}) "
                      + ("agree to float64 noise on every tensor compared." if not found else
                         f"disagree beyond float64 noise at {len(found)} tensor(s), first {found[0]['tensor']}.")]
    verdict = "every variant ran and is within tolerance" if report["passed"] else "not all within tolerance or ran"
    lines.append(f"infercmp exit code {report['exit_code']}: {verdict}.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="infercmp compare --json reports")
    parser.add_argument("--knobs", default="cudnn_benchmark,cudnn_deterministic,tf32",
                        help="option keys swept, one column each (default: the CUDA ones)")
    parser.add_argument("--environment", type=Path, help="a text file describing the machine, quoted as is")
    parser.add_argument("--elapsed", type=float, help="seconds the whole check took")
    args = parser.parse_args(argv)
    knobs = [k for k in args.knobs.split(",") if k]
    out = ["# infercmp: torch kernel switches against the float64 oracle", ""]
    if args.environment is not None:
        out += ["```", args.environment.read_text(encoding="utf-8").rstrip(), "```", ""]
    for path in args.reports:
        out += table(json.loads(path.read_text(encoding="utf-8")), knobs) + [""]
    if args.elapsed is not None:
        out.append(f"Whole check: {args.elapsed:.0f} s.")
    sys.stdout.write("\n".join(out).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
