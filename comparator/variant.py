"""Variant strings: `BACKEND(:KEY=VALUE)*`.

`str(Variant.parse(s))` is canonical (keys sorted) and round-trips; it is the variant's identity, its report
key and (made file-safe) its folder name. A value written `a|b|c` is a sweep: `expand()` turns one spec into the
cartesian product of variants. Commas are never part of a variant so that `--backends a,b` splits cleanly.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from collections.abc import Iterable

from .errors import UsageError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_VALUE = re.compile(r"^[^,:=\s]+$")


@dataclass(frozen=True, order=True)
class Variant:
    """A backend and its options, e.g. `ort:opt=disable`. Frozen and ordered; `str()` gives the canonical string
    (options sorted by key), which `Variant.parse` reads back: it is the variant's identity in reports."""

    backend: str
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """One variant from its string, e.g. `ort:opt=disable:threads=1`; UsageError for a sweep or bad syntax."""
        variants = expand(spec)
        if len(variants) != 1:
            raise UsageError(f"{spec!r} is a sweep of {len(variants)} variants, not one variant",
                             "use expand() / list each variant")
        return variants[0]

    @property
    def option_dict(self) -> dict[str, str]:
        """The options as written, by name (untyped: the backend types them)."""
        return dict(self.options)

    def __str__(self) -> str:
        return ":".join([self.backend] + [f"{k}={v}" for k, v in self.options])

    @property
    def slug(self) -> str:
        """A file-name-safe form of the canonical string."""
        return re.sub(r"[^A-Za-z0-9_.=+-]", "_", str(self).replace(":", "__"))


def expand(spec: str) -> list[Variant]:
    """Parse one variant spec, expanding `key=a|b` sweeps into the cartesian product (in the order written)."""
    spec = spec.strip()
    if not spec:
        raise UsageError("empty variant", "write BACKEND or BACKEND:KEY=VALUE, e.g. ort:opt=disable")
    if "," in spec:
        raise UsageError(f"variant {spec!r} contains a comma", "separate variants with commas, options with ':'")
    backend, *parts = spec.split(":")
    if not _NAME.match(backend):
        raise UsageError(f"variant {spec!r}: {backend!r} is not a backend name",
                         "write BACKEND or BACKEND:KEY=VALUE, e.g. ort:opt=disable")
    keys: list[str] = []
    values: list[list[str]] = []
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or not _NAME.match(key) or not value:
            raise UsageError(f"variant {spec!r}: {part!r} is not KEY=VALUE",
                             "options are written BACKEND:KEY=VALUE:KEY=VALUE")
        if key in keys:
            raise UsageError(f"variant {spec!r}: option {key!r} given twice")
        choices = value.split("|")
        for choice in choices:
            if not _VALUE.match(choice):
                raise UsageError(f"variant {spec!r}: bad value {choice!r} for {key!r}",
                                 "values contain no spaces, ',', ':' or '='; sweep values are a|b|c")
        keys.append(key)
        values.append(choices)
    out = []
    for combo in itertools.product(*values):
        out.append(Variant(backend, tuple(sorted(zip(keys, combo)))))
    return out


def parse_list(specs: Iterable[str]) -> list[Variant]:
    """Split comma lists, expand sweeps, reject duplicates; order is kept."""
    out: list[Variant] = []
    for chunk in specs:
        for spec in chunk.split(","):
            if not spec.strip():
                continue
            for v in expand(spec):
                if v in out:
                    raise UsageError(f"variant {v} is given twice", "each variant may appear once")
                out.append(v)
    if not out:
        raise UsageError("no variants given", "e.g. --backends ort,ort:opt=disable,ref")
    return out
