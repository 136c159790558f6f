"""Writing an `.icmp` bundle (the layout and the reading side: gate/bundle.py): the runs' tensor files, the
feeds and labels as members, and a meta.json with the model's catalogue, the tap plan, the inputs' digest and the
machine (its fingerprint, GPUs and package versions), written atomically and under the folder's lock."""
from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import subprocess
import zipfile
from datetime import datetime, UTC
from functools import cache
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import numpy as np

from . import npyzip
from .bundle import ChangedError, Stamp, feeds_digest, stamp
from .bundle_checks import FORMAT, KINDS, SCHEMA_VERSION
from ..errors import InfercmpError, UsageError
from ..fileio import atomic_path, dumps
from ..run.record import VariantRun

# Where a backend's numbers come from: the distributions whose versions a bundle records per backend.
_PACKAGES = {"ort": ("onnxruntime", "onnxruntime-gpu"), "ref": ("onnx",), "torch": ("torch",),
             "tf": ("tensorflow", "tensorflow-cpu"), "tvm": ("apache-tvm",)}


class RunFailedError(InfercmpError):
    """A variant could not run, so there is nothing to capture (exit code 3). `status`: the run's (failed,
    unsupported, crashed, timeout)."""

    exit_code = 3

    def __init__(self, message: str, hint: str | None = None, status: str = "failed"):
        super().__init__(message, hint)
        self.status = status


def gpus() -> list[dict[str, str]]:
    """GPU name and driver from nvidia-smi, when there is one; [] otherwise."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return [{"name": "unknown (nvidia-smi failed)", "driver": ""}]
    found = []
    for line in out.strip().splitlines():
        name, _, driver = line.rpartition(",")
        found.append({"name": name.strip(), "driver": driver.strip()})
    return found


@cache
def _package_versions(backends: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of infercmp, onnx, NumPy and each backend's framework (read without importing it)."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["infercmp", "numpy", "onnx", "ml_dtypes"]
    for b in backends:
        names.extend(p for p in _PACKAGES.get(b, (b,)) if p not in names)
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def package_versions(backends: list[str]) -> dict[str, str]:
    """Installed versions of infercmp, NumPy, onnx and each backend's framework (read without importing it)."""
    return dict(_package_versions(tuple(sorted(backends))))


@cache
def _machine() -> dict[str, Any]:
    from ..run.machine import environment_fingerprint

    return dict(environment_fingerprint(), host=platform.node(), gpus=gpus())


def environment(backends: list[str]) -> dict[str, Any]:
    """The machine fingerprint stored in a bundle: CPU, ISA flags, cores, OS, host, GPUs, package versions.
    Read once per process: the machine does not change under a running program."""
    return copy.deepcopy(dict(_machine(), packages=package_versions(backends)))


def _entry(member: str, array_dtype: str, shape: list[Any]) -> dict[str, Any]:
    return {"file": member, "dtype": array_dtype, "shape": list(shape)}


def write(path: str | os.PathLike[str], model: Any, tap: dict[str, Any], runs: list[VariantRun],
          feeds: Mapping[str, np.ndarray], inputs_info: Mapping[str, Any], *, labels: np.ndarray | None = None,
          labels_key: str | None = None, force: bool = False, keep_previous: bool = False,
          compression: str = "auto", expect: Stamp | None = None) -> dict[str, Any]:
    """Write a bundle of `runs` (all must be ok) of `model` (a loaded Model) fed `feeds`; return its meta.

    tap: {"spec": what was asked, "tapped": names, "skipped": [[name, why]]}. An existing file is replaced only
    with `force` (without it, a file that appears while this one is written is not replaced either);
    `keep_previous` first copies it to `<path>.prev`; `expect`: replace it only if it is still that version
    (`stamp()` of the file when it was read), else ChangedError. On any error nothing is written.
    """
    target = Path(path)
    exists = UsageError(f"{target} already exists; refusing to overwrite it", "pass --force to replace it")
    if target.exists() and not force:
        raise exists
    if compression not in ("auto", "stored", "deflate"):
        raise UsageError(f"unknown compression {compression!r}", "use auto, stored or deflate")
    failed = [r for r in runs if not r.ok]
    if failed:
        r = failed[0]
        raise RunFailedError(f"{r.variant} could not run ({r.status}): {r.error}", r.hint, r.status)
    meta: dict[str, Any] = {
        "format": FORMAT, "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": dict(model.summary(), file=Path(model.path).name),
        "catalogue": [{"name": t.name, "op_type": t.op_type, "node": t.node, "index": t.index,
                       "shape": None if t.shape is None else list(t.shape), "elem_type": t.elem_type,
                       "is_output": t.is_output} for t in model.tensors],
        "tap": dict(tap),
        "environment": environment(sorted({r.variant.backend for r in runs})),
        "inputs": dict(inputs_info, sha256=feeds_digest(feeds)),
    }
    def commit(real: Path) -> None:  # under the folder's lock, just before the new file is put in place
        if expect is not None and stamp(real) != expect:
            raise ChangedError(f"{target} changed while this run used it (another process replaced it); "
                               "not replaced", "run again against the file as it is now")
        if keep_previous and real.exists():
            with atomic_path(target.with_name(target.name + ".prev")) as prev:
                shutil.copyfile(real, prev)

    try:
        with atomic_path(target, exclusive=not force, lock=True, before_commit=commit) as tmp:
            _write_zip(tmp, meta, runs, feeds, labels, labels_key, compression)
    except FileExistsError:
        raise exists from None
    return meta


def _write_zip(tmp: Path, meta: dict[str, Any], runs: list[VariantRun], feeds: Mapping[str, np.ndarray],
               labels: np.ndarray | None, labels_key: str | None, compression: str) -> None:
    with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        w = npyzip.Writer(zf, compression)
        meta["feeds"] = {name: _entry(w.add_array(f"feeds/{i:05d}.npy", np.asarray(arr)), str(arr.dtype),
                                      list(arr.shape)) for i, (name, arr) in enumerate(feeds.items())}
        meta["labels"] = None
        if labels is not None:
            meta["labels"] = dict(_entry(w.add_array("labels.npy", labels), str(labels.dtype),
                                         list(labels.shape)), key=labels_key)
        meta["runs"] = [_run_meta(w, i, r) for i, r in enumerate(runs)]
        zf.writestr("meta.json", _meta_json(meta), compress_type=zipfile.ZIP_DEFLATED)


def _meta_json(meta: dict[str, Any]) -> str:
    # Compact: the C encoder is several times faster than the indented one. Non-finite floats (JSON has none)
    # are rare in provenance; fileio.dumps writes them as strings.
    try:
        return json.dumps(meta, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        return dumps(meta)


def _run_meta(w: npyzip.Writer, i: int, run: VariantRun) -> dict[str, Any]:
    tensors: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        for j, (name, info) in enumerate(run.tensors.get(kind, {}).items()):
            src = run.folder / info["file"]
            with src.open("rb") as fh:
                shape = npyzip.parse_header(fh.read(1 << 16)).shape
            member = w.add_file(f"runs/{i}/{kind}/{j:05d}.npy", src)
            tensors.setdefault(kind, {})[name] = _entry(member, info["dtype"], list(shape))
    variant = getattr(run.variant, "plain", run.variant)
    return {"variant": str(variant), "backend": variant.backend, "options": variant.option_dict,
            "provenance": run.provenance, "timings": run.timings, "wall_s": run.wall_s, "tensors": tensors}
