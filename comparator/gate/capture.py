"""Capture: run a model on some variants and keep everything in one bundle (`infercmp capture`, and each task of
a fleet run on its node)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import api
from ..errors import UsageError
from ..events import Listener, emit
from ..graph import tap
from ..graph.model import Model
from ..variant import Variant
from ..workspace import Workspace
from . import bundle_writer


def capture(model: str | Path | Model, variants: Sequence[Variant], out: str | Path,
            inputs: str | Path | Mapping[str, np.ndarray] | None = None, *, tap_spec: str = "outputs",
            shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0, samples: int = 1,
            timeout: float | None = 600.0, jobs: int = 0, labels: np.ndarray | None = None,
            labels_key: str | None = None, force: bool = False, compression: str = "auto",
            provenance: Mapping[str, Any] | None = None, scratch: Path | None = None,
            events: Listener | None = None) -> dict[str, Any]:
    """Run `model` on `variants` and write the bundle at `out`; returns its meta. `provenance` is added to every
    run's (a fleet task names its Ray node there). The workers write into `scratch` (a new folder the caller
    removes), else into a temporary folder removed here; their tensor files into a memory-backed folder when they
    fit there (workspace.Workspace). bundle_writer.RunFailedError, with the run's status, when a
    variant could not run: nothing is written then. `events`: progress, as api.compare's."""
    if tap.is_fused(tap_spec):
        raise UsageError("--tap fused taps each variant's own optimized graph; a bundle keeps taps of the model's "
                         "graph, the same for every variant", "capture with --tap all, or compare with --tap fused")
    work = Workspace("infercmp-capture-", scratch)
    folder = work.folder
    try:
        rs = api.run_variants(model, variants, folder, inputs, tap_spec=tap_spec, shapes=shapes, seed=seed,
                              samples=samples, timeout=timeout, jobs=jobs, events=events, scratch=work.memory)
        for run in rs.runs:
            run.provenance.update(provenance or {})
        tapped = {"spec": tap_spec, "tapped": rs.plan.names, "skipped": rs.plan.skipped}
        emit(events, "bundle", "writing the bundle")
        meta = bundle_writer.write(out, rs.model, tapped, rs.runs, rs.feeds, rs.feed_info, labels=labels,
                                   labels_key=labels_key, force=force, compression=compression)
        emit(events, "bundle", "writing the bundle", end=True)
        return meta
    finally:
        work.close()
