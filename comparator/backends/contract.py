"""The backend contract.

A backend is any object with the attributes and methods of `Backend` (a Protocol: plugins need not inherit).
Built-ins subclass `BackendBase` for the shared defaults. The module that defines a backend imports no
framework at import time: frameworks are imported inside the worker process, after the environment from
`environment()` is in place: in `prepare()` (optional), which the worker calls while the parent still loads the
model, and in `open()`.

Tapping is one mechanism for every backend: the runner hands `open()` a model file whose graph outputs already
include every tapped tensor, and `Session.run` returns every graph output by name. Tensors inside subgraphs
cannot be graph outputs: a backend whose `taps_subgraphs(options)` holds records those the copy's metadata
lists and returns them beside the graph outputs.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Protocol, runtime_checkable
from collections.abc import Mapping

import numpy as np

from .options import Option

# Set (to "1") in a worker's environment when other workers run at the same time (run/runner.py): a backend may
# then stop its idle threads from spinning, which would take cores from the others. Never a change of numerics.
SHARED_CORES = "INFERCMP_SHARED_CORES"


def idle_numpy_blas() -> dict[str, str]:
    """Environment for a worker whose framework computes nothing with NumPy's linear algebra (ORT, TF, TVM; not
    the reference, which computes with NumPy, nor PyTorch, whose own BLAS can be OpenBLAS): NumPy's OpenBLAS gets
    one thread, whose idle siblings would otherwise spin for about 0.1 s of CPU after NumPy's import, while the
    workers start. A value the user set is kept."""
    return {} if "OPENBLAS_NUM_THREADS" in os.environ else {"OPENBLAS_NUM_THREADS": "1"}


@runtime_checkable
class Session(Protocol):
    """A model opened by a backend, in the worker process: run it, say what ran."""

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; return every graph output of the opened model, keyed by ONNX name."""

    def provenance(self) -> dict[str, Any]:
        """Library versions, the device/EP/target really used, effective knob values."""


@runtime_checkable
class Backend(Protocol):
    """What the registry needs of a backend, built in or a plugin (docs/plugins.md): its name, description and
    declared options, and the four methods below."""

    name: str
    description: str
    options: tuple[Option, ...]

    def available(self) -> tuple[bool, str]:
        """(installed?, why not) without importing the framework."""

    def validate(self, options: Mapping[str, Any]) -> None:
        """Raise UsageError for option combinations that make no sense (checked in the parent)."""

    def environment(self, options: Mapping[str, Any]) -> dict[str, str]:
        """Environment variables the worker needs before the framework is imported."""

    def open(self, model_path: str, options: Mapping[str, Any]) -> Session:
        """Load the model; raise UnsupportedError before running anything if an op is missing."""


class BackendBase:
    """Defaults for a backend: no options, no extra environment, available when the modules in `requires`
    import. Subclass it and set `name`, `description`, `options`, `requires`; implement `open()`."""

    name = ""
    description = ""
    options: tuple[Option, ...] = ()
    requires: tuple[str, ...] = ()  # importable module names

    def available(self) -> tuple[bool, str]:
        """(True, "") when every module in `requires` can be imported (nothing is imported to find out)."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"module {missing[0]!r} is not installed (pip install 'infercmp[{self.name}]')"
        return True, ""

    def validate(self, options: Mapping[str, Any]) -> None:
        """Raise UsageError for option combinations that make no sense (none by default)."""
        return None

    def taps_subgraphs(self, options: Mapping[str, Any]) -> bool:
        """Whether a session with these options records the tensors inside subgraphs (If branches, Loop and
        Scan bodies) that a tapped copy lists in its metadata (graph/subgraphs.py). Backends that run a tapped
        copy's graph outputs only (ORT, TVM) cannot: the report says how many tensors they leave out."""
        return False

    def fusion(self, options: Mapping[str, Any]) -> tuple[str, str]:
        """What `--tap fused` can tap for a session with these options (graph/fusion.py), checked in the parent:
        ("optimized", "") when `optimized_graph` saves the graph the runtime really runs; ("node-by-node", "") when
        the session runs every node of the ONNX graph as it stands, so a tapped tensor is computed as it is
        untapped; ("unavailable", why) otherwise: the variant is tapped as with --tap all."""
        return "unavailable", f"{self.name or 'this backend'} does not expose the graph it runs"

    def optimized_graph(self, model_path: str, options: Mapping[str, Any], folder: str) -> tuple[str, dict[str, Any]]:
        """In the worker, for a backend whose `fusion` is "optimized": save the graph a session with these options
        really runs as an ONNX file in `folder`; return its path and the options that run it as saved, rewriting
        nothing more."""
        raise NotImplementedError

    def environment(self, options: Mapping[str, Any]) -> dict[str, str]:
        """Environment variables for the worker, set before anything is imported there (none by default)."""
        return {}

    def prepare(self, options: Mapping[str, Any]) -> None:
        """In the worker, before its request comes: import what `open` will need (by default the modules in
        `requires`), so that the import overlaps the parent's work. Optional for a plugin; an error here is
        ignored, and met again by `open`."""
        for name in self.requires:
            importlib.import_module(name)

    def open(self, model_path: str, options: Mapping[str, Any]) -> Session:
        """Load the model at `model_path` with the typed `options` and return a Session (in the worker)."""
        raise NotImplementedError
