"""`python -m comparator.run.worker REQUEST.json | --ready BACKEND OPTIONS FOLDER`: run one variant, write its
tensors and a record.

With --ready (how the parent starts every worker: run/spawn.py), the worker first imports what the backend needs
(`prepare(options)`, where the backend has one) and then serves requests: each line on stdin is the path of one,
written in full before its path is. After each it says `done` on its phase line and waits for the next; the end of
stdin means that no more come (none at all: the run was refused or interrupted), and it exits. FOLDER names the
folder of its logs. The import's seconds are `timings.framework.import_s` of its first request. A request with
`serving` set is not the last: the worker gives the memory it freed back to the system before it waits. A worker
started so exits as soon as its parent is gone (killed), whatever it is doing.

The parent sets the environment (the variant's knobs) before this process starts, so frameworks see it at
import. Tensors go to `.npy` files (one per tensor, leading sample axis). As each session's first run is written,
its manifest is too (`tapped.json`, `untapped.json`, `tapped.1.json`...: the record's `tensors` entry of that run)
and the worker says `<run> written` on its phase line: the parent may compare them while the next run goes on
(measure/ahead.py).
The record (`record.json`, written atomically, last) says what happened. A worker that dies leaves no record: the
parent reports the crash.

Request keys: backend, options (raw strings), model, tapped_model, outputs ({"untapped": [...], "tapped": [...]}:
the graph outputs of each file), feeds, feed_dtypes (input -> dtype name, for the types .npy stores as raw bytes:
bfloat16, float8), out_dir, tensor_dir (default out_dir: where the tensor files go), runs ("untapped", "tapped" or
both, in the order given), finals_from_tapped (default false: the variant computes every tensor whether tapped or
not, so its tapped run alone also gives the untapped run's final outputs: the record's `untapped` names the tapped
run's files and `one_run` is true), repeat (sessions per run kind, default 1), optional (tapped names that may be
absent: tensors inside subgraphs), time (default 0: when N > 0, the first untapped session, warmed up by its run,
runs N more times on the first sample's feeds, each run timed: `timings.latency`), fused (default false: `--tap
fused`; a backend whose `fusion` is "optimized" taps the graph it saves instead of `tapped_model`: graph/fusion.py),
types (tapped tensor -> ONNX element type, for the outputs added to that graph), serving (default false: another
request follows).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any
from collections.abc import Collection, Mapping

import numpy as np

from ..errors import BackendError, InfercmpError
from ..fileio import read_json, write_json
from ..graph.inputs import as_declared
from .machine import environment_fingerprint
from .record import manifest


def _run_kind(session: Any, feeds: Mapping[str, np.ndarray], expected: list[str], folder: Path, base: Path,
              optional: Collection[str] = ()) -> dict[str, Any]:
    """Run every sample; write each output as one .npy with a leading sample axis into `folder`; return the
    manifest, whose paths are relative to `base` (the worker's folder), or absolute for a folder elsewhere.

    `optional` names (tensors inside subgraphs) may be absent: a backend that does not record them, or a branch
    that did not run. One that is not there for every sample with one shape is left out of the manifest."""
    samples = next(iter(feeds.values())).shape[0] if feeds else 1
    # not its parents: they are the run's, and a run that has removed them is over (killed), not to be recreated
    folder.mkdir(exist_ok=True)
    files: dict[str, Any] = {}
    first: dict[str, tuple[tuple[int, ...], np.dtype]] = {}  # name -> the first sample's shape and dtype
    dropped: set[str] = set()
    for s in range(samples):
        # `v[s, ...]` keeps a 0-d array for scalar inputs; `v[s]` would give a NumPy scalar, which ORT refuses.
        out = session.run({k: v[s, ...] for k, v in feeds.items()})
        missing = [n for n in expected if n not in out and n not in optional]
        if missing:
            raise BackendError(f"the backend returned no value for {missing[0]!r} "
                               f"({len(missing)} of {len(expected)} outputs missing)")
        for i, name in enumerate(expected):
            if name in optional:
                if name in dropped or (s > 0 and name not in first):
                    continue
                value = np.asarray(out[name]) if name in out else None
                if value is None or (s > 0 and (value.shape, value.dtype) != first[name]):
                    dropped.add(name)
                    continue
            # np.require, not np.ascontiguousarray: the latter makes a 0-d value 1-d, a shape no backend gave
            value = _storable(np.require(out[name], requirements="C"), name, first.get(name))
            path = folder / f"{i:05d}.npy"
            if s == 0:
                first[name] = (value.shape, value.dtype)
                files[name] = {"file": str(path.relative_to(base) if path.is_relative_to(base) else path),
                               "dtype": str(value.dtype),
                               "shape": list(value.shape)}
            elif (value.shape, value.dtype) != first[name]:
                raise BackendError(f"output {name!r} changed shape or type between samples "
                                   f"({first[name][0]} -> {value.shape})")
            _append(path, value, samples if s == 0 else None)
        del out
    for name in dropped:
        if name in files:
            (base / files.pop(name)["file"]).unlink(missing_ok=True)
    return files


def _latency(session: Any, feeds: Mapping[str, np.ndarray], runs: int) -> dict[str, Any]:
    """Time `runs` runs of a warmed-up session on the first sample's feeds (outputs discarded): the median, the
    fastest and the slowest, in seconds."""
    first = {k: v[0, ...] for k, v in feeds.items()}
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(first)
        took.append(time.perf_counter() - t0)
    return {"runs": runs, "warmup": 1, "median_s": statistics.median(took), "min_s": min(took), "max_s": max(took),
            "sample": 0}


def _storable(value: np.ndarray, name: str, first: tuple[tuple[int, ...], np.dtype] | None) -> np.ndarray:
    """`value` as a .npy file can hold it without pickle: strings (object arrays of str) as fixed-width
    unicode, as wide as the first sample's (at least 64 characters) so that every sample fits one file."""
    if not value.dtype.hasobject and value.dtype.kind != "U":
        return value
    if value.dtype.hasobject and not all(isinstance(v, str) for v in value.reshape(-1)):
        raise BackendError(f"output {name!r} holds Python objects that are not strings: only numbers, bools and "
                           "strings are compared")
    text = value.astype(str)
    width = first[1].itemsize // 4 if first is not None else max(64, text.dtype.itemsize // 4)
    if text.dtype.itemsize // 4 > width:
        raise BackendError(f"output {name!r}: a string of {text.dtype.itemsize // 4} characters in a later sample, "
                           f"longer than the {width} the first sample's file holds", "compare one sample at a time")
    return text.astype(f"<U{width}")


def _append(path: Path, value: np.ndarray, samples: int | None) -> None:
    """Write one sample of a tensor: the first (`samples` given) creates the .npy file with its header for the
    whole [samples, *shape] array; the others append, in sample order. Plain writes: no memory map to flush."""
    with path.open("wb" if samples is not None else "ab") as fh:
        if samples is not None:
            header = {"descr": np.lib.format.dtype_to_descr(value.dtype), "fortran_order": False,
                      "shape": (samples, *value.shape)}
            try:
                np.lib.format.write_array_header_1_0(fh, header)
            except ValueError:  # a header over 64 KiB (a very high rank): format 2.0
                np.lib.format.write_array_header_2_0(fh, header)
        fh.write(value.reshape(-1).view(np.uint8).data if value.size else b"")  # raw bytes: ml_dtypes too


def _optimized(backend: Any, options: Mapping[str, Any], request: Mapping[str, Any], out_dir: Path,
               record: dict[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
    """The tapped copy of the graph the backend really runs (graph/fusion.py): its path, the options that run it
    as saved, and its graph outputs (the final outputs, then every planned tap the optimized graph computes). What
    it computes and its nodes go into the record's `fusion`."""
    from ..graph import fusion

    folder = out_dir / "optimized"
    folder.mkdir(exist_ok=True)
    saved, run_options = backend.optimized_graph(request["model"], options, str(folder))
    finals = request["outputs"]["untapped"]
    inside = set(request.get("optional", []))  # subgraph tensors: no graph outputs
    wanted = finals + [n for n in request["outputs"]["tapped"] if n not in finals and n not in inside]
    tapped, folded, nodes = fusion.tapped_copy(Path(saved), wanted, request.get("types", {}),
                                               folder / "tapped.onnx")
    missing = [n for n in finals if n not in tapped]
    if missing:
        raise BackendError(f"the optimized graph has no final output {missing[0]!r}")
    record["fusion"] = {"mode": "optimized", "tapped": tapped, "folded": folded, "nodes": nodes}
    return str(folder / "tapped.onnx"), dict(run_options), tapped


PARENT_POLL_S = 0.25  # how often a worker checks that its parent still lives
PHASE = "infercmp-phase: "  # a stdout line the parent reads as progress (run/runner.py)
DONE = "done"  # the phase that ends a request: its record is written


def _phase(what: str) -> None:
    sys.stdout.write(f"\n{PHASE}{what}\n")
    sys.stdout.flush()


def _prepare(backend_name: str, raw_options: Mapping[str, str]) -> float:
    """Import what the backend's sessions need, before the request comes; the seconds it took. A failure is left
    for `open` to meet again and report."""
    t0 = time.perf_counter()
    try:
        from .. import backends
        from ..variant import Variant

        backend, options = backends.resolve_variant(Variant(backend_name, tuple(sorted(raw_options.items()))))
        prepare = getattr(backend, "prepare", None)
        if prepare is not None:
            prepare(options)
    except Exception:  # noqa: BLE001, S110 - reported by open(), with the request's record to hold it
        pass
    return time.perf_counter() - t0


def _exit_with_parent() -> None:
    """Exit as soon as the parent is gone: killed (SIGKILL, the out-of-memory killer), it could not stop this
    worker, and nobody would read what it writes. Its folder is removed by the next run (comparator/scratch.py)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["--ready"]:  # run by hand, not by a run that made its folders
        request = read_json(args[0])
        for folder in (Path(request["out_dir"]), Path(request.get("tensor_dir") or request["out_dir"])):
            folder.mkdir(parents=True, exist_ok=True)
        serve(request, None, None)
        return 0
    _exit_with_parent()
    imported: float | None = _prepare(args[1], json.loads(args[2]))
    machine = environment_fingerprint()  # read while the request is being written, not after it
    while line := sys.stdin.readline():  # the end of stdin: no more requests (none: the run was refused)
        request = read_json(line.strip())
        serve(request, imported, machine)
        imported = None
        _phase(DONE)
        if request.get("serving"):
            _release()
    return 0


def _release() -> None:
    """Give the memory the last request freed back to the system while waiting for the next: the heap's free
    blocks (glibc keeps up to 1 GiB of them: run/spawn.py's MALLOC_TUNABLES), and cycles not yet collected."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def serve(request: Mapping[str, Any], imported: float | None, machine: Mapping[str, Any] | None) -> None:
    """Run one request and write its record (`imported`: the framework import's seconds, in the first request's
    timings; `machine`: the environment fingerprint, read already)."""
    out_dir = Path(request["out_dir"])
    tensor_dir = Path(request.get("tensor_dir") or out_dir)
    record: dict[str, Any] = {"status": "ok", "error": None, "hint": None, "provenance": {}, "timings": {},
                              "tensors": {}}
    if imported is not None:
        record["timings"]["framework"] = {"import_s": imported}
    try:
        from .. import backends
        from ..variant import Variant

        variant = Variant(request["backend"], tuple(sorted(request["options"].items())))
        backend, options = backends.resolve_variant(variant)
        declared = request.get("feed_dtypes", {})
        with np.load(request["feeds"], allow_pickle=False) as npz:
            feeds = {k: as_declared(npz[k], declared[k]) if k in declared else npz[k] for k in npz.files}
        record["provenance"] = {"environment": machine or environment_fingerprint(), "options": dict(options)}
        repeat = int(request.get("repeat", 1))
        timed = int(request.get("time", 0))
        for kind in request.get("runs", ["untapped", "tapped"]):
            path = request["model"] if kind == "untapped" else request["tapped_model"]
            expected = request["outputs"][kind]
            optional = set(request.get("optional", [])) if kind == "tapped" else set()
            run_options = options
            if kind == "tapped" and request.get("fused") and backends.fusion_mode(variant)[0] == "optimized":
                _phase("optimized graph")
                path, run_options, expected = _optimized(backend, options, request, out_dir, record)
                optional = set()
            # a request of untapped runs alone (a plan of final outputs only) runs the model as given, with no
            # "untapped" to tell it from a tapped one: its sessions are "open", "run", then "session 2 open"...
            alone = request.get("runs") == ["untapped"]
            for r in range(repeat):
                tag = kind if r == 0 else f"{kind}.{r}"
                shown = (f"session {r + 1} " if r else "") if alone else f"{tag} "
                _phase(f"{shown}open")
                t0 = time.perf_counter()
                session = backend.open(path, run_options)
                t1 = time.perf_counter()
                _phase(f"{shown}run")
                record["tensors"][tag] = _run_kind(session, feeds, expected, tensor_dir / tag, out_dir, optional)
                t2 = time.perf_counter()
                write_json(manifest(out_dir, tag), record["tensors"][tag])
                _phase(f"{tag} written")
                record["timings"][tag] = {"open_s": t1 - t0, "run_s": t2 - t1}
                record["provenance"].update(session.provenance())
                if kind == "untapped" and r == 0 and timed > 0:  # the run above was the warm-up
                    _phase(f"{tag} time")
                    record["timings"]["latency"] = _latency(session, feeds, timed)
                # Repeats: fresh sessions above (`kind.N`), and the first session run again (`kind.sameN`).
                for k in range(1, repeat if r == 0 else 1):
                    record["tensors"][f"{kind}.same{k}"] = _run_kind(session, feeds, expected,
                                                                     tensor_dir / f"{kind}.same{k}", out_dir,
                                                                     optional)
                del session
        if request.get("finals_from_tapped") and "tapped" in record["tensors"]:
            tapped_files = record["tensors"]["tapped"]
            record["tensors"]["untapped"] = {n: tapped_files[n] for n in request["outputs"]["untapped"]}
            record["one_run"] = True
    except InfercmpError as exc:
        record.update(status=getattr(exc, "status", "failed"), error=exc.message, hint=exc.hint)
    except MemoryError:
        record.update(status="failed", error="out of memory")
    except Exception as exc:  # noqa: BLE001 - any backend failure becomes this variant's status
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        record.update(status="failed", error=f"{type(exc).__name__}: {first}"[:2000])
        traceback.print_exc(file=sys.stderr)
    write_json(out_dir / "record.json", record)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The record is written: skip interpreter teardown, which for some frameworks takes seconds or hangs.
    os._exit(code)
