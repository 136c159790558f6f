"""What one variant's worker left behind: status, provenance, timings and where its tensors are."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..variant import Variant


def manifest(folder: Path, kind: str) -> Path:
    """Where a worker writes the manifest of one run kind (its entry of the record's `tensors`) as soon as that
    run's files are written, before the record itself (run/worker.py, measure/ahead.py)."""
    return folder / f"{kind}.json"


@dataclass
class VariantRun:
    variant: Variant
    folder: Path
    status: str = "pending"  # ok | failed | unsupported | crashed | timeout
    error: str | None = None
    hint: str | None = None
    stderr_tail: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)  # run kind -> name -> file info
    wall_s: float = 0.0
    # --tap fused, a variant that tapped its optimized graph: {"mode": "optimized", "tapped": [...], "folded": [...],
    # "nodes": [...]}
    fusion: dict[str, Any] = field(default_factory=dict)
    # The variant ran once, tapped: it computes every tensor whether tapped or not (backends' `fusion` says
    # "node-by-node"), so that run's final outputs are its untapped ones too; it has no observer effect to measure.
    one_run: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def path(self, kind: str, name: str) -> Path | None:
        info = self.tensors.get(kind, {}).get(name)
        return None if info is None else self.folder / info["file"]
