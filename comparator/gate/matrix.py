"""An N-way matrix of bundles of one model on the same inputs, captured on several machines (`infercmp matrix`).

Built on the N-way diff (check.diff: every run as `variant@file-stem`, the first the reference). It adds what a
fleet question needs: the classes of bit-identical final outputs with each member's machine beside it, what the
members of a class share that no other run has (its ISA features, CPU, GPU, library versions: "without
avx512f"), the pairwise max ULP and max abs matrix, and per pair of runs the first tensor where they differ (when
the bundles hold taps).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..measure.metrics import Tolerance
from ..result import Report


@dataclass
class Matrix:
    """The result of `matrix`; `to_dict()` is what `--json` writes, `report` what `--html` draws."""

    report: Report
    runs: list[dict[str, Any]]  # per run: name, variant, bundle, class, machine
    classes: list[dict[str, Any]]  # per class: members, what they share that no other run has
    first_difference: dict[str, dict[str, str | None]]  # run -> run -> first tensor where they differ

    @property
    def exit_code(self) -> int:
        """As `diff`'s: 0 every run's final outputs within tolerance of the first run's, 1 beyond it."""
        return self.report.exit_code

    def to_dict(self) -> dict[str, Any]:
        return {"format": "infercmp-matrix", "schema_version": 1, "model": self.report.model,
                "runs": self.runs, "classes": self.classes, "pairwise": self.report.pairwise,
                "first_difference": self.first_difference, "exit_code": self.exit_code}

    def lines(self, width: int = 100) -> list[str]:
        name = Path(str(self.report.model.get("path"))).name
        out = [f"{name}: {len(self.runs)} runs from {len({r['bundle'] for r in self.runs})} bundles, "
               f"{len(self.classes)} class(es) of bit-identical final outputs"]
        for k, c in enumerate(self.classes, 1):
            why = "; ".join(c["distinct"][:3]) or "nothing in the fingerprints sets it apart"
            out.append(f"class {k} ({why}):")
            for member in c["members"]:
                run = next(r for r in self.runs if r["name"] == member)
                m = run["machine"]
                gpus = ", ".join(m.get("gpus") or []) or "none"
                out.append(f"  {member:<28} {m.get('host') or '-'}: {m.get('cpu') or '-'}, "
                           f"{len(m.get('cpu_flags') or [])} ISA features, GPU {gpus}")
        names = self.report.pairwise.get("variants", [])
        if len(names) > 1:
            label = {n: f"r{i + 1}" for i, n in enumerate(names)}
            out += ["", "max ULP between final outputs, run by run:"]
            out += [f"  {label[n]} = {n}" for n in names]
            cell = max(6, max(len(_ulp(u)) for row in self.report.pairwise["max_ulp"] for u in row) + 1)
            out.append(" " * 4 + "".join(f"{label[n]:>{cell}}" for n in names))
            for n, row in zip(names, self.report.pairwise["max_ulp"]):
                out.append(f"{label[n]:<4}" + "".join(f"{_ulp(u):>{cell}}" for u in row))
            order = {n: i for i, n in enumerate(names)}
            pairs = [(a, b, t) for a, row in self.first_difference.items() for b, t in row.items()
                     if t and a in order and b in order and order[a] < order[b]]
            if pairs:
                out += ["", "first tensor where two runs differ:"]
                out += [f"  {label[a]} / {label[b]}: {t}" for a, b, t in sorted(pairs, key=lambda p: (order[p[0]],
                                                                                                     order[p[1]]))]
        return [line if len(line) <= width else line[:width - 1] + "…" for line in out]


def _ulp(u: Any) -> str:
    return "-" if u is None else f"{u:,}" if u < 100_000 else f"{u:.1e}"


def bundle_paths(given: Sequence[str | Path]) -> list[Path]:
    """Files as given; a folder stands for its .icmp files, in name order."""
    out: list[Path] = []
    for g in given:
        p = Path(g)
        if p.is_dir():
            found = sorted(p.glob("*.icmp"))
            if not found:
                raise UsageError(f"{p} holds no .icmp bundle", "capture some with `infercmp capture ... -o X.icmp`")
            out.extend(found)
        else:
            out.append(p)
    return out


def features(run: dict[str, Any]) -> set[str]:
    """A run's fingerprint as comparable facts: ISA features, CPU, GPUs and driver, library versions, variant."""
    m = run["machine"]
    found = set(m.get("cpu_flags") or [])
    found |= {f"cpu {m['cpu']}"} if m.get("cpu") else set()
    found |= {f"gpu {g}" for g in m.get("gpus") or []}
    found |= {f"{k} {v}" for k, v in (m.get("packages") or {}).items() if k != "infercmp"}
    found |= {f"label {k}={v}" for k, v in (m.get("labels") or {}).items() if not k.startswith("ray.io/")}
    found.add(f"variant {run['variant']}")
    return found


def distinct(members: list[dict[str, Any]], others: list[dict[str, Any]]) -> list[str]:
    """What every member has and no other run has ("avx512f"), or lacks while every other has ("without
    avx512f"): variant and CPU facts first."""
    if not others:
        return []
    mine = [features(r) for r in members]
    theirs = [features(r) for r in others]
    shared, common = set.intersection(*mine), set.intersection(*theirs)
    has = sorted(f for f in shared if not any(f in t for t in theirs))
    packages = {f.split(" ", 1)[0] for m in mine for f in m if f.count(" ") == 1 and not f.startswith(
        ("cpu ", "gpu ", "label ", "variant "))}

    def absent(f: str) -> bool:  # a package version is missing only where the members have another version
        if f.startswith("variant "):
            return False
        if " " in f and not f.startswith(("cpu ", "gpu ", "label ")):
            return f.split(" ", 1)[0] in packages
        return True

    lacks = sorted(f"without {f}" for f in common if not any(f in m for m in mine) and absent(f))

    def rank(f: str) -> tuple[int, str]:
        bare = f.removeprefix("without ")
        return (0 if bare.startswith("variant ") else 2 if " " in bare else 1, f)

    return sorted(has + lacks, key=rank)


def matrix(paths: Sequence[str | Path], tolerance: Tolerance | None = None) -> Matrix:
    """The matrix of the bundles at `paths` (files, or folders of .icmp files): all of one model and one set of
    inputs, else a UsageError."""
    from .check import bundle_labels, diff

    files = bundle_paths(paths)
    report = diff(files, tolerance)
    by_label = dict(zip(bundle_labels(files), map(str, files)))
    # A run is named VARIANT@LABEL; a label may hold "@" itself (a file named so): the longest label that ends
    # the name is its bundle's.
    labels = {}
    for v in report.variants:
        label = max((b for b in by_label if v.name.endswith("@" + b)), key=len, default=v.name.rsplit("@", 1)[-1])
        labels[v.name] = (v.name[:-len(label) - 1], label)
    runs: list[dict[str, Any]] = []
    klass = {n: k for k, members in enumerate(report.equivalence_classes) for n in members}
    for v in report.variants:
        env = v.provenance.get("environment", {})
        variant, label = labels[v.name]
        runs.append({"name": v.name, "variant": variant, "bundle": by_label.get(label, label), "status": v.status,
                     "class": klass.get(v.name),
                     "machine": {"host": env.get("host"), "cpu": env.get("cpu"), "cpu_flags": env.get("cpu_flags"),
                                 "gpus": [f"{g.get('name')} (driver {g.get('driver')})" for g in env.get("gpus", [])],
                                 "packages": env.get("packages", {}), "captured": v.provenance.get("captured"),
                                 "labels": (v.provenance.get("ray") or {}).get("labels", {}),
                                 "node_id": (v.provenance.get("ray") or {}).get("node_id")}})
    classes = []
    for members in report.equivalence_classes:
        mine = [r for r in runs if r["name"] in members]
        others = [r for r in runs if r["name"] not in members and r["status"] == "ok"]
        classes.append({"members": list(members), "distinct": distinct(mine, others)})
    first: dict[str, dict[str, str | None]] = {str(r["name"]): {} for r in runs if r["status"] == "ok"}
    for a in first:
        for b in first:
            if a == b:
                continue
            first[a][b] = next((t.name for t in report.tensors if t.classes
                                and _class_of(t.classes, a) != _class_of(t.classes, b)), None)
    return Matrix(report, runs, classes, first)


def _class_of(classes: list[list[str]], name: str) -> int | None:
    return next((k for k, c in enumerate(classes) if name in c), None)
