"""A fleet run on Ray: each variant is a Ray task that captures a bundle on the node it lands on.

The driver loads the model once, makes the feeds, and puts the model's files (with their external data) and the
feeds into Ray's object store: the nodes need no shared file system, only infercmp installed. On its node, a task
writes them to a temporary folder and runs the ordinary capture path (api.run_variants: a worker process with the
variant's environment knobs set before any framework is imported), then writes a bundle whose run provenance
names the Ray node (id, labels, address), and returns it through the object store. The driver writes each bundle
into the output folder and builds the matrix of them (gate/matrix.py).

A label selector that matches no alive node, a task that raises, a node that dies and a task past the timeout are
reported per task; the others finish.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import api, scratch
from ..errors import UsageError
from ..fileio import save_npz
from ..graph import model as model_mod
from ..variant import Variant
from .placement import Placement, matches, parse

INSTALL = "pip install 'infercmp[ray]'"


@dataclass
class Task:
    """One variant on one node (or on whichever node Ray picks)."""

    placement: Placement
    node: str | None = None  # the node id asked for (all-nodes), else the one it ran on
    status: str = "pending"  # ok | failed | crashed | timeout | unplaced
    error: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    bundle: str | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"variant": str(self.placement.variant), "placement": self.placement.describe(), "node": self.node,
                "labels": self.labels, "status": self.status, "error": self.error, "bundle": self.bundle,
                "wall_s": round(self.wall_s, 3)}


@dataclass
class FleetResult:
    """What `fleet` did: one Task per variant and node, and the matrix of the bundles that came back."""

    model: str
    address: str
    tasks: list[Task]
    matrix: Any = None  # gate.matrix.Matrix when two or more bundles came back

    @property
    def exit_code(self) -> int:
        """3 when any task did not bring a bundle back; else the matrix's (0 within tolerance, 1 beyond)."""
        if any(t.status != "ok" for t in self.tasks):
            return 3
        return self.matrix.exit_code if self.matrix is not None else 0

    def to_dict(self) -> dict[str, Any]:
        return {"format": "infercmp-fleet", "schema_version": 1, "model": self.model, "cluster": self.address,
                "tasks": [t.to_dict() for t in self.tasks],
                "matrix": None if self.matrix is None else self.matrix.to_dict(), "exit_code": self.exit_code}

    def lines(self, width: int = 100) -> list[str]:
        out = [f"fleet run of {Path(self.model).name} on {self.address}: {len(self.tasks)} task(s), "
               f"{sum(t.status == 'ok' for t in self.tasks)} brought a bundle back"]
        for t in self.tasks:
            node = (t.node or "-")[:12]
            labels = ", ".join(f"{k}={v}" for k, v in t.labels.items() if not k.startswith("ray.io/")) or "-"
            what = f"-> {t.bundle}" if t.status == "ok" else f"{t.status.upper()}: {t.error}"
            out.append(f"  {str(t.placement.variant):<24} node {node} ({labels}) {what}")
        if self.matrix is not None:
            out += [""] + self.matrix.lines(width)
        return out


def _npz_bytes(feeds: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    save_npz(buffer, dict(feeds))
    return buffer.getvalue()


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("a fleet run needs Ray, which is not installed", INSTALL) from None
    return ray


def _files(model: model_mod.Model) -> dict[str, bytes]:
    """The model file and its external data files, by name relative to the model's folder (the loaded model names
    them: its weights are references into those files)."""
    real = model.path.resolve()
    base = real.parent
    files = {real.name: real.read_bytes()}
    for f in model_mod.check_external_data(model.proto, base):
        if f != real:
            files[str(f.relative_to(base))] = f.read_bytes()
    return files


def capture_on_node(model_name: str, files: Mapping[str, bytes], feeds: bytes, variant: str, tap_spec: str,
                    timeout: float | None) -> dict[str, Any]:
    """The Ray task: capture one variant on this node and return the bundle's bytes (or why there is none)."""
    import numpy as np
    import ray

    from ..gate.bundle_writer import RunFailedError
    from ..gate.capture import capture

    ctx = ray.get_runtime_context()
    node_id = ctx.get_node_id()
    labels = next((dict(n.get("Labels") or {}) for n in ray.nodes() if n["NodeID"] == node_id), {})
    folder = scratch.make("infercmp-fleet-")  # the next task on this node removes it if this one is killed
    try:
        for name, data in files.items():
            target = folder / "model" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        with np.load(io.BytesIO(feeds), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        where = {"node_id": node_id, "labels": labels, "node_ip": ray.util.get_node_ip_address()}
        path = folder / "out.icmp"
        try:
            capture(folder / "model" / model_name, [Variant.parse(variant)], path, arrays, tap_spec=tap_spec,
                    timeout=timeout, provenance={"ray": where}, scratch=folder / "run")
        except RunFailedError as exc:
            return {"status": exc.status, "error": exc.message, "node_id": node_id, "labels": labels}
        return {"status": "ok", "bundle": path.read_bytes(), "node_id": node_id, "labels": labels}
    finally:
        scratch.remove(folder)


def fleet(model: str | Path, specs: Sequence[str], address: str, out: str | Path, inputs: str | Path | None = None,
          *, shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0, tap_spec: str = "outputs",
          timeout: float | None = 600.0, on_task: Callable[[Task], None] | None = None) -> FleetResult:
    """Run every placement's variant as a Ray task on the cluster at `address`; bundles go to folder `out`."""
    placements = parse(specs)
    loaded = model_mod.load(model)
    feeds, _ = api.resolve_feeds(loaded, inputs, shapes or {}, seed, 1)
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.glob("*.icmp")):
        raise UsageError(f"{out_dir} already holds bundles", "give a new or empty folder to -o")
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    _connect(ray, address)
    try:
        files_ref, feeds_ref = ray.put(_files(loaded)), ray.put(_npz_bytes(feeds))
        remote = ray.remote(num_cpus=1, max_retries=0)(capture_on_node)
        alive = [n for n in ray.nodes() if n.get("Alive")]
        tasks: list[Task] = []
        pending: dict[Any, tuple[Task, float]] = {}
        for p in placements:
            chosen = [n for n in alive if matches(p.selector, n.get("Labels") or {})]
            if not chosen:
                t = Task(p, status="unplaced", error=f"no alive node matches the label selector "
                                                     f"{p.selector or '{}'} ({len(alive)} node(s) in the cluster)")
                tasks.append(t)
                continue
            for n in chosen if p.all_nodes else [None]:
                t = Task(p, node=None if n is None else n["NodeID"])
                options: dict[str, Any] = {}
                if n is not None:
                    options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                elif p.selector:
                    options["label_selector"] = dict(p.selector)
                ref = remote.options(**options).remote(loaded.path.resolve().name, files_ref, feeds_ref,
                                                       str(p.variant), tap_spec, timeout)
                tasks.append(t)
                pending[ref] = (t, time.monotonic())
        # A task may wait for a node before its worker starts: allow it the worker's timeout and a minute more.
        deadline = None if timeout is None else time.monotonic() + timeout + 60
        out_dir.mkdir(parents=True, exist_ok=True)
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = ray.wait(list(pending), num_returns=1, timeout=left)
            if not done:
                for ref, (t, _) in pending.items():
                    ray.cancel(ref, force=True)
                    t.status, t.error = "timeout", f"no result within {timeout:g} s (+60 s to be scheduled)"
                    if on_task is not None:
                        on_task(t)
                break
            ref = done[0]
            t, started = pending.pop(ref)
            t.wall_s = time.monotonic() - started
            _collect(ray, ref, t, out_dir)
            if on_task is not None:
                on_task(t)
    finally:
        ray.shutdown()
    result = FleetResult(str(model), address, tasks)
    kept = [Path(t.bundle) for t in tasks if t.status == "ok" and t.bundle]
    if len(kept) >= 2:
        from ..gate.matrix import matrix

        result.matrix = matrix(kept)
    return result


def _collect(ray: Any, ref: Any, task: Task, out_dir: Path) -> None:
    """The task's result into `task`: its bundle written to `out_dir`, or why it has none."""
    from ray import exceptions

    try:
        found = ray.get(ref)
    except (exceptions.NodeDiedError, exceptions.WorkerCrashedError, exceptions.OwnerDiedError,
            exceptions.ObjectLostError, exceptions.LocalRayletDiedError) as exc:
        task.status, task.error = "crashed", f"the node or its worker died: {type(exc).__name__}"
        return
    except exceptions.TaskCancelledError:
        task.status, task.error = "timeout", "cancelled"
        return
    except exceptions.RayTaskError as exc:
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        task.status, task.error = "failed", f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300]}"
        return
    task.node, task.labels = found.get("node_id"), dict(found.get("labels") or {})
    if found["status"] != "ok":
        task.status, task.error = found["status"], found.get("error")
        return
    short = (task.node or "node")[:8]
    path, k = out_dir / f"{task.placement.variant.slug}.on-{short}.icmp", 2
    while path.exists():
        path, k = out_dir / f"{task.placement.variant.slug}.on-{short}-{k}.icmp", k + 1
    from ..fileio import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(found["bundle"])
    task.status, task.bundle = "ok", str(path)


def _connect(ray: Any, address: str) -> None:
    """Join the cluster at `address` as a driver; a UsageError, at once, when nothing listens there (Ray itself
    retries for minutes)."""
    import socket

    hint = "start one (`ray start --head`) and pass its address, e.g. --cluster 127.0.0.1:6379"
    if address != "auto" and "://" not in address:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--cluster {address!r} is not HOST:PORT", hint)
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as exc:
            raise UsageError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}", hint) from None
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError and others for a bad address
        raise UsageError(f"cannot join the Ray cluster at {address}: {type(exc).__name__}: {str(exc)[:200]}",
                         hint) from None


def node_labels(address: str) -> list[dict[str, Any]]:
    """The alive nodes of the cluster at `address`: id and labels."""
    ray = _ray()
    _connect(ray, address)
    try:
        return [{"node_id": n["NodeID"], "labels": n.get("Labels") or {}, "cpus": n["Resources"].get("CPU")}
                for n in ray.nodes() if n.get("Alive")]
    finally:
        ray.shutdown()


