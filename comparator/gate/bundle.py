"""The `.icmp` bundle: one captured run in one file, to compare across machines and days.

A zip of `.npy` members and a `meta.json`, read without pickle and written atomically:

    meta.json                    what was run, where, on what (see docs/gate.md for every key)
    feeds/00000.npy              one per model input, leading sample axis
    labels.npy                   optional ground-truth labels (from the inputs file)
    runs/<i>/untapped/<j>.npy    final outputs of variant i, untapped (the numbers a deployment gets)
    runs/<i>/tapped/<j>.npy      tapped tensors of variant i (only when capture tapped more than the outputs)

Members with identical bytes are stored once, and each is deflated only where that pays (comparator.npyzip;
benchmarks/bench_bundle.py measures the choice). Opening a bundle checks the whole structure before any data is
read (gate/bundle_checks.py): every member name in the layout above (nothing else, no name twice), sizes that
deflate could produce, meta.json under META_MAX bytes and of the documented shape, and every member's `.npy` header
(no object dtype, dtype, shape and size as meta.json declares). The zip CRC catches corrupted bytes when a member
is read; reading refuses members that would not fit in memory (or on disk, when extracted). Nothing is ever
unpickled.

Writing (gate/bundle_writer.py) is atomic and under the folder's lock: without `force` an existing file is never
replaced (not even by a writer racing this one); `expect` makes a replacement conditional on the file being the one
that was read.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping

import numpy as np

from ..measure.facts import kind_for
from . import npyzip
from .bundle_checks import (FORMAT, KINDS, MEMBER, READ_ERRORS, SCHEMA_VERSION, SUFFIX, MetaShape, check_names,
                            dtype_matches, need, read_meta, unusable)
from ..errors import InfercmpError, InputError, ReportError, UsageError
from ..fileio import available_memory, write_error
from ..graph.inputs import check_feed_file
from ..graph.model import TensorInfo
from ..run.record import VariantRun
from ..variant import Variant



class ChangedError(InfercmpError):
    """The file to replace is no longer the one that was read (another writer replaced it meanwhile)."""


Stamp = tuple[int, int, int, int]


def stamp(path: str | os.PathLike[str]) -> Stamp | None:
    """What identifies one version of a file: device, inode, size, modification time (a rewrite renames a new file
    into place, so its inode changes); None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, order=True)
class LabeledVariant(Variant):
    """A variant plus where its numbers come from (`ort@machine-a`): one variant captured twice stays two runs."""

    label: str = ""

    def __str__(self) -> str:
        base = Variant.__str__(self)
        return f"{base}@{self.label}" if self.label else base

    @property
    def plain(self) -> Variant:
        """The variant without its label."""
        return Variant(self.backend, self.options)


def feeds_digest(feeds: Mapping[str, np.ndarray]) -> str:
    """sha256 over every input's name, dtype, shape and bytes: equal digests = the same inputs."""
    h = hashlib.sha256()
    for name in sorted(feeds):
        arr = np.ascontiguousarray(feeds[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


@dataclass
class Bundle:
    """An opened, validated bundle. Arrays are read on demand (each read reopens the file)."""

    path: Path
    meta: dict[str, Any]
    sizes: dict[str, tuple[int, int]]  # member -> (bytes in the zip, bytes uncompressed)
    _offsets: dict[str, int] = field(default_factory=dict, repr=False)  # found while validating
    _headers: dict[str, npyzip.Header] = field(default_factory=dict, repr=False)
    stamp: Stamp | None = None  # the version of the file that was opened (see stamp())

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Bundle:
        """Open and validate: readable zip, known format, supported schema, every member present and sane."""
        p = Path(path)
        if p.is_dir():
            raise ReportError(f"bundle {str(p)!r} is a folder, not a {SUFFIX} file", "give the bundle's file")
        if not p.is_file():
            raise ReportError(f"bundle {str(p)!r} does not exist" if not p.exists()
                              else f"bundle {str(p)!r} is not a regular file", "check the path")
        version = stamp(p)
        try:
            with npyzip.Reader(p) as zr:
                check_names(p, zr)
                meta = json.loads(read_meta(p, zr).decode("utf-8"))
                bundle = cls(p, meta, {n: (i.compress_size, i.file_size) for n, i in zr.infos.items()},
                             stamp=version)
                bundle._validate(zr)
                bundle._offsets = dict(zr.offsets)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise unusable(p, f"meta.json is not valid JSON ({exc})") from None
        except RecursionError:
            raise unusable(p, "meta.json nests too deeply") from None
        except READ_ERRORS as exc:
            raise unusable(p, f"the zip cannot be read ({exc})") from None
        return bundle

    def _validate(self, zr: npyzip.Reader) -> None:
        meta, p = self.meta, self.path
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise unusable(p, "meta.json does not describe an infercmp bundle")
        version = meta.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise unusable(p, f"invalid schema_version {version!r}")
        if version > SCHEMA_VERSION:
            raise ReportError(f"{p} has bundle schema version {version}, newer than this infercmp reads "
                              f"({SCHEMA_VERSION})", "upgrade infercmp to read it")
        for key, kind in (("created", str), ("model", dict), ("catalogue", list), ("tap", dict),
                          ("environment", dict), ("inputs", dict), ("feeds", dict), ("runs", list)):
            need(meta, key, kind, p)
        need(meta["model"], "sha256", str, p)
        need(meta["inputs"], "sha256", str, p)
        if not meta["runs"]:
            raise unusable(p, "it holds no run")
        MetaShape(p).check(meta)
        try:
            _ = (self.catalogue, self.variants)
        except (KeyError, TypeError, ValueError, AttributeError, InfercmpError) as exc:
            raise unusable(p, f"meta.json is malformed ({exc})") from None
        for entry in self._entries():
            self._check_member(zr, entry)

    def _entries(self) -> Iterator[dict[str, Any]]:
        p = self.path
        yield from self.meta["feeds"].values()
        if self.meta.get("labels") is not None:
            yield self.meta["labels"]
        for run in self.meta["runs"]:
            tensors = need(run, "tensors", dict, p)
            for kind, entries in tensors.items():
                if kind not in KINDS or not isinstance(entries, dict):
                    raise unusable(p, f"unknown run kind {kind!r}")
                yield from entries.values()

    def _check_member(self, zr: npyzip.Reader, entry: Any) -> None:
        p = self.path
        member = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(member, str) or not MEMBER.match(member):
            raise unusable(p, f"bad member name {member!r}")
        if member not in zr.infos:
            raise unusable(p, f"member {member} is missing")
        if member in self._headers:
            h = self._headers[member]  # stored once, named by several entries
        else:
            try:
                h = zr.header(member)
            except ValueError as exc:
                raise unusable(p, f"member {member} is not a .npy array ({exc})") from None
            self._headers[member] = h
        if h.dtype.hasobject:
            raise unusable(p, f"member {member} holds Python objects (a pickle); refused",
                        "bundles hold plain arrays only; do not load this file with pickling enabled")
        if not dtype_matches(h.dtype, entry.get("dtype")):
            raise unusable(p, f"member {member} holds {h.dtype}, meta.json says {entry.get('dtype')}")
        if list(h.shape) != entry.get("shape"):
            raise unusable(p, f"member {member} has shape {list(h.shape)}, meta.json says {entry.get('shape')}")
        if h.length + h.nbytes != zr.infos[member].file_size:
            raise unusable(p, f"member {member} has {zr.infos[member].file_size} bytes, not the "
                           f"{h.length + h.nbytes} its header declares")

    # -- what the bundle holds ------------------------------------------------------------------------------------
    @property
    def created(self) -> str:
        """When the bundle was captured (ISO 8601, UTC)."""
        return self.meta["created"]

    @property
    def model_sha256(self) -> str:
        """sha256 of the model the bundle was captured from (with its external data)."""
        return self.meta["model"]["sha256"]

    @property
    def feeds_sha256(self) -> str:
        """sha256 of the feeds the bundle's runs were fed."""
        return self.meta["inputs"]["sha256"]

    @property
    def outputs(self) -> list[str]:
        """The model's final outputs, in graph order."""
        return list(self.meta["model"].get("outputs", []))

    @property
    def variants(self) -> list[Variant]:
        """The captured variants, in capture order."""
        return [Variant(str(r["backend"]), tuple(sorted((str(k), str(v)) for k, v in r["options"].items())))
                for r in self.meta["runs"]]

    @property
    def catalogue(self) -> list[TensorInfo]:
        """The captured tensors' catalogue (names, op types, shapes, dtypes)."""
        return [TensorInfo(str(t["name"]), str(t["op_type"]), str(t["node"]), int(t["index"]),
                           None if t["shape"] is None else tuple(t["shape"]), t["elem_type"], bool(t["is_output"]))
                for t in self.meta["catalogue"]]

    def stored(self) -> list[TensorInfo]:
        """Catalogue entries with values in every run (outputs from the untapped runs, the rest tapped)."""
        keep = []
        for t in self.catalogue:
            kind = kind_for(t)
            if all(t.name in r["tensors"].get(kind, {}) for r in self.meta["runs"]):
                keep.append(t)
        return keep

    def summary(self) -> dict[str, Any]:
        """The model summary as a report shows it (path: the file the bundle was captured from)."""
        return dict(self.meta["model"])

    def read(self, member: str) -> np.ndarray:
        """One member as an in-memory array, without pickle."""
        return self.arrays([member])[member]

    def arrays(self, members: list[str] | None = None) -> dict[str, np.ndarray]:
        """Members (default: every array) in memory, by member name, in one pass over the file."""
        names = members if members is not None else [m for m in self.sizes if m.endswith(".npy")]
        need, have = sum(self.sizes[m][1] for m in set(names) if m in self.sizes), available_memory()
        if have is not None and need > have:
            raise ReportError(f"reading {self.path} needs {_gib(need)} of memory for its arrays; "
                              f"{_gib(have)} is available", "free memory, or read fewer members at once")
        try:
            with npyzip.Reader(self.path, self._offsets) as zr:
                return {m: zr.array(m, self._headers.get(m)) for m in names}
        except READ_ERRORS as exc:
            raise unusable(self.path, f"a member cannot be read ({exc})") from None

    def feeds(self) -> dict[str, np.ndarray]:
        """The feeds, read from the bundle (leading sample axis)."""
        entries = self.meta["feeds"]
        arrays = self.arrays([e["file"] for e in entries.values()])
        feeds = {name: arrays[e["file"]] for name, e in entries.items()}
        if feeds_digest(feeds) != self.feeds_sha256:
            raise unusable(self.path, "its feeds do not match the digest in meta.json")
        return feeds

    def labels(self) -> np.ndarray | None:
        """The reference labels stored with the feeds, if any."""
        entry = self.meta.get("labels")
        return None if entry is None else self.read(entry["file"])

    def extract(self, folder: Path, label: str = "") -> list[VariantRun]:
        """Unpack every run's arrays into `folder`, laid out like workers' output; one ok VariantRun per run,
        its variant labelled `label` and its provenance completed with the bundle's machine fingerprint."""
        members = sorted({e["file"] for e in self._entries()})
        try:
            folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            raise write_error(folder, exc, "unpack the bundle into") from None
        need = sum(self.sizes[m][1] for m in members)
        if need > free:
            raise ReportError(f"unpacking {self.path} needs {_gib(need)} in {folder}; {_gib(free)} is free",
                              "free some space, or point TMPDIR to a bigger disk")
        try:
            with npyzip.Reader(self.path) as zr:
                for member in members:
                    (folder / member).parent.mkdir(parents=True, exist_ok=True)
                    zr.copy_to(member, folder / member)
        except OSError as exc:
            if exc.filename is not None and str(exc.filename).startswith(str(folder)):
                raise write_error(exc.filename, exc, "unpack") from None
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # while writing a member
                raise write_error(folder, exc, "unpack the bundle into") from None
            raise unusable(self.path, f"a member cannot be read ({exc})") from None
        except READ_ERRORS as exc:
            raise unusable(self.path, f"a member cannot be read ({exc})") from None
        scalars = self._scalars()
        stray = self._stray_axis(scalars)
        for member in stray:  # beside the member, which may hold another tensor of the same bytes too
            np.save(folder / _flattened(member), np.load(folder / member, allow_pickle=False).reshape(-1))
        machine = {k: self.meta["environment"][k] for k in ("host", "gpus", "packages")
                   if k in self.meta["environment"]}
        runs = []
        for variant, r in zip(self.variants, self.meta["runs"]):
            provenance = dict(r.get("provenance") or {})
            provenance["environment"] = dict(provenance.get("environment") or {}, **machine)
            provenance.update(bundle=self.path.name, captured=self.created)
            tensors = {k: {n: dict(e, file=_flattened(e["file"]), shape=e["shape"][:1]) if e["file"] in stray and
                           n in scalars else e for n, e in v.items()} for k, v in r["tensors"].items()}
            runs.append(VariantRun(LabeledVariant(variant.backend, variant.options, label), folder, status="ok",
                                   provenance=provenance, timings=dict(r.get("timings") or {}), tensors=tensors,
                                   wall_s=float(r.get("wall_s") or 0.0)))
        return runs

    def _stray_axis(self, scalars: set[str]) -> set[str]:
        """Members holding a tensor of `scalars` (one value per sample) as [samples, 1]: how infercmp captured such
        tensors before it stored them as [samples], the shape every run writes now."""
        return {e["file"] for r in self.meta["runs"] for entries in r["tensors"].values()
                for name, e in entries.items() if name in scalars and len(e["shape"]) == 2 and e["shape"][1] == 1}

    def _scalars(self) -> set[str]:
        """The catalogue's tensors of one value per sample."""
        return {t["name"] for t in self.meta["catalogue"] if t["shape"] == []}


def _flattened(member: str) -> str:
    """Where `extract` writes a member of `Bundle._stray_axis` as [samples]."""
    return member[:-len(".npy")] + "-scalars.npy"


def read_labels(path: str | os.PathLike[str] | None, key: str | None) -> tuple[np.ndarray | None, str | None]:
    """Labels stored next to the feeds in an .npz (`key`, default `label` when present); (None, None) if none."""
    if path is None or Path(path).suffix != ".npz" or not Path(path).is_file():
        return None, None  # no labels; a missing inputs file is reported where the feeds are read
    if check_feed_file(Path(path)) != "npz":
        return None, None
    try:
        with np.load(path, allow_pickle=False) as npz:
            name = key or ("label" if "label" in npz.files else None)
            if name is None:
                return None, None
            if name not in npz.files:
                raise UsageError(f"--labels {name!r}: {Path(path).name} has no such array",
                                 f"its arrays: {', '.join(npz.files)}")
            labels = npz[name]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read labels from {str(path)!r} without pickle ({exc})",
                         "save arrays with numpy (np.savez), not object arrays") from None
    if labels.dtype.kind not in "iub":
        raise UsageError(f"labels {name!r} in {Path(path).name} are {labels.dtype}, not class indices",
                         "store integer class indices")
    return labels, name
