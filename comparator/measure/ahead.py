"""Comparing ahead: each variant's tapped tensors against the reference's, while other runs still go on.

A worker runs its tapped model first and writes that run's manifest (`tapped.json` in its folder) as soon as its
tensors are written, then runs the untapped model (run/worker.py). When the reference's tapped run and another
variant's are both written, the parent compares them here, tensor by tensor in catalogue order, on one thread,
while the workers go on: on ResNet-50 the comparison then overlaps the untapped runs instead of following them.

What it finds is kept by the files it read: `facts.gather`, which builds the report once every run has ended,
takes a pair's metrics (and a value's digest) from here when they are of the same files under the same
tolerance, and reads only the rest. The results are those gather would compute itself (the same passes over the
same chunks: facts._Pass). A run that fails later is never asked about, a file that cannot be read is left for
gather to meet, and whatever is not done when gather starts (`finish`) is gather's to do.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

from ..fileio import read_json
from ..graph.model import TensorInfo
from ..run.record import VariantRun, manifest
from ..variant import Variant
from . import metrics
from .facts import File, Known, _Pass


class Ahead:
    """Compares written tapped runs with the reference's in the background (see the module's docstring).

    `reference`: the variant the others are compared with; `tolerance` (or `tolerance_for(info)`, per tensor) as
    gather will use it; `hashing`: whether gather will hash each value besides the reference's (two or more
    variants besides it), so that the digests are taken here too."""

    def __init__(self, reference: Variant, tolerance: metrics.Tolerance, hashing: bool,
                 tolerance_for: Callable[[TensorInfo], metrics.Tolerance] | None = None):
        self.reference, self.tolerance, self.hashing, self.tolerance_for = reference, tolerance, hashing, tolerance_for
        self.known = Known()
        self._catalogue: list[TensorInfo] | None = None
        self._written: dict[Variant, VariantRun] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None

    def begin(self, catalogue: Sequence[TensorInfo]) -> None:
        """The tensors to compare: the catalogue's tensors of the main graph that are no final output (final
        outputs come from the untapped runs). Until this is called, `written` does nothing."""
        self._catalogue = [t for t in catalogue if not t.is_output and not t.scope]

    def written(self, variant: Variant, folder: Path) -> None:
        """`variant`'s worker says its tapped run is written in `folder`: compare what can be compared now."""
        if self._catalogue is None or self._stop.is_set():
            return
        try:
            files = read_json(manifest(folder, "tapped"))
        except (OSError, ValueError):
            return  # gather reads the record instead
        run = VariantRun(variant, folder, status="ok", tensors={"tapped": files})
        with self._lock:
            if self._stop.is_set():
                return
            self._written[variant] = run
            ref = self._written.get(self.reference)
            if ref is None:
                return
            others = [r for v, r in self._written.items() if v != self.reference and (v == variant or run is ref)]
            if not others:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="infercmp-ahead")
            self._pool.submit(self._compare, [ref, *others])

    def finish(self) -> Known:
        """Stop: the tensor being compared is finished, the rest left to gather; what was found."""
        self.close()
        return self.known

    def close(self) -> None:
        with self._lock:
            self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _compare(self, runs: list[VariantRun]) -> None:
        assert self._catalogue is not None
        for info in self._catalogue:
            if self._stop.is_set():
                return
            tolerance = self.tolerance if self.tolerance_for is None else self.tolerance_for(info)
            p = _Pass(runs, info.name)
            found: list[tuple[File, File, dict[str, Any]]] = []
            digests: list[tuple[File, list[str]]] = []
            ref = p.file((0, "tapped"))
            if ref is None:
                continue
            try:
                for i in range(1, len(runs)):
                    got = p.file((i, "tapped"))
                    if got is None:
                        continue
                    slot: dict[str, Any] = {}
                    found.append((ref, got, slot))
                    p.compare((0, "tapped"), (i, "tapped"), tolerance, partial(slot.__setitem__, "metrics"),
                              partial(slot.__setitem__, "same"))
                    if self.hashing:
                        digest: list[str] = []
                        digests.append((got, digest))
                        p.digest((i, "tapped"), digest.append)
                p.run()
            except Exception:  # noqa: BLE001, S112 - an unreadable file is gather's to report; this only saves work
                p.close()
                continue
            for ref_file, got_file, slot in found:
                if "metrics" in slot and "same" in slot:
                    self.known.pairs[(ref_file, got_file, tolerance)] = (slot["metrics"], slot["same"])
            for file, digest in digests:
                if digest:
                    self.known.digests[file] = digest[0]
