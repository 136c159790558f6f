"""What opening a `.icmp` bundle checks before any of its data is read (gate/bundle.py reads it): the format's
constants, every member name in the layout (`check_names`: nothing else, no name twice, sizes that deflate could
produce), meta.json under META_MAX bytes (`read_meta`) and of the documented shape (`MetaShape`), and a member's
`.npy` dtype against what meta.json declares (`dtype_matches`). Each refusal is one `unusable` error naming what.
"""
from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import npyzip
from ..errors import ReportError

FORMAT = "infercmp-bundle"
SCHEMA_VERSION = 1
SUFFIX = ".icmp"
KINDS = ("untapped", "tapped")
MEMBER = re.compile(r"^(?:feeds|runs/\d+/(?:untapped|tapped))/\d{5,}\.npy$|^labels\.npy$")
META_MAX = 128 << 20  # bytes of meta.json, checked before it is decompressed
DEFLATE_RATIO = 1032  # deflate never expands more than this: a member declaring more is forged


def unusable(path: Path, what: str, hint: str | None = None) -> ReportError:
    """The error that refuses the bundle at `path` for `what`."""
    return ReportError(f"{path} is not a usable {SUFFIX} bundle: {what}",
                       hint or "it is truncated, corrupt or not written by infercmp; capture it again")


def need(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    """meta[key], refused unless it is a `kind`."""
    value = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(value, kind):
        raise unusable(path, f"meta.json has no valid {key!r}")
    return value


READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib.error)
_JSON = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
         bool: "true or false", type(None): "null"}


def _what(value: Any) -> str:
    return _JSON.get(type(value), type(value).__name__)


class MetaShape:
    """Checks meta.json's structure, each error naming the key (`runs[0].options`) and what it holds instead."""

    def __init__(self, path: Path):
        self.path = path

    def need(self, value: Any, kind: type | tuple[type, ...], where: str) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            want = " or ".join(_JSON.get(k, k.__name__) for k in kinds)
            raise unusable(self.path, f"meta.json: {where} must be {want}, not {_what(value)}")
        return value

    def field(self, table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
              optional: bool = False) -> Any:
        if key not in table:
            if optional:
                return None
            raise unusable(self.path, f"meta.json: {where} has no {key!r}")
        return self.need(table[key], kind, f"{where}.{key}")

    def entry(self, value: Any, where: str) -> dict[str, Any]:
        e = self.need(value, dict, where)
        self.field(e, "file", str, where)
        self.field(e, "dtype", str, where)
        shape = self.field(e, "shape", list, where)
        for i, d in enumerate(shape):
            if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                raise unusable(self.path, f"meta.json: {where}.shape[{i}] must be a size >= 0, not {d!r}")
        return e

    def check(self, meta: dict[str, Any]) -> None:
        model = self.need(meta["model"], dict, "model")
        self.field(model, "outputs", list, "model", optional=True)
        for i, t in enumerate(self.need(meta["catalogue"], list, "catalogue")):
            where = f"catalogue[{i}]"
            self.need(t, dict, where)
            for key in ("name", "op_type", "node"):
                self.field(t, key, str, where)
            self.field(t, "index", int, where)
            self.field(t, "shape", (list, type(None)), where)
            self.field(t, "elem_type", (int, type(None)), where)
            self.field(t, "is_output", bool, where)
        tap = self.need(meta["tap"], dict, "tap")
        self.field(tap, "spec", (str, list), "tap", optional=True)
        for name, e in self.need(meta["feeds"], dict, "feeds").items():
            self.entry(e, f"feeds.{name}")
        if meta.get("labels") is not None:
            self.entry(meta["labels"], "labels")
        for i, run in enumerate(self.need(meta["runs"], list, "runs")):
            where = f"runs[{i}]"
            self.need(run, dict, where)
            self.field(run, "variant", str, where)
            self.field(run, "backend", str, where)
            for key, value in self.field(run, "options", dict, where).items():
                self.need(value, (str, int, float, bool), f"{where}.options.{key}")
            for key in ("provenance", "timings"):
                self.field(run, key, (dict, type(None)), where, optional=True)
            self.field(run, "wall_s", (int, float, type(None)), where, optional=True)
            for kind, entries in self.field(run, "tensors", dict, where).items():
                if kind not in KINDS:
                    raise unusable(self.path, f"meta.json: {where}.tensors has an unknown run kind {kind!r}")
                for name, e in self.need(entries, dict, f"{where}.tensors.{kind}").items():
                    self.entry(e, f"{where}.tensors.{kind}.{name}")


def dtype_matches(found: np.dtype, declared: str) -> bool:
    """Whether a member's .npy dtype is the dtype meta.json declares. NumPy writes dtypes it does not know
    (ml_dtypes' bfloat16, float8...) as raw bytes of the same width (`|V2`)."""
    if str(found) == declared:
        return True
    try:
        want = np.dtype(declared)
    except TypeError:
        try:
            import ml_dtypes

            want = np.dtype(getattr(ml_dtypes, declared))
        except (ImportError, AttributeError, TypeError):
            return False
    return found == want or (found.kind == "V" and not found.names and found.itemsize == want.itemsize
                             and want.kind == "V")


def check_names(path: Path, zr: npyzip.Reader) -> None:
    """Every member is meta.json or in the layout (no `../x`, no `/abs`, nothing else), named once, and declares a
    size that deflate could produce from its compressed bytes; all checked before anything is decompressed."""
    infos = zr.zf.infolist()
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name != "meta.json" and not MEMBER.match(name):
            raise unusable(path, f"member name {name!r} is outside the bundle layout; refused",
                        "a bundle holds meta.json, feeds/, labels.npy and runs/ only")
        if name in seen:
            raise unusable(path, f"member {name} appears twice")
        seen.add(name)
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > DEFLATE_RATIO * info.compress_size + 1024:
            raise unusable(path, f"member {name} declares {info.file_size} bytes from {info.compress_size} compressed: "
                              "more than deflate can produce; refused")


def read_meta(path: Path, zr: npyzip.Reader) -> bytes:
    """meta.json's bytes, refused when it is missing or declares more than META_MAX before it is decompressed."""
    info = zr.infos.get("meta.json")
    if info is None:
        raise unusable(path, "it has no meta.json")
    if info.file_size > META_MAX:
        raise unusable(path, f"meta.json declares {info.file_size} bytes, over the limit of {META_MAX} "
                          "(checked before decompressing it); refused")
    return zr.zf.read(info)
