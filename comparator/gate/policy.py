"""Gate policies: per-tensor tolerances, cosine floors, label budgets and required variants, from a TOML file.

    [defaults]                 # every final output (atol/rtol as in `compare`; max_ulp, cosine optional)
    atol = 1e-5
    rtol = 1e-5

    [outputs.logits]           # one final output, by exact name
    atol = 1e-3
    cosine = 0.9999            # floor on the cosine similarity with the reference

    [tensors."/conv*"]         # tensors by glob: these gate too, intermediates included
    atol = 1e-2

    [labels]
    min_agreement = 0.99       # top-1 accuracy >= 0.99 x the reference's (with labels), else agreement >= 0.99
    max_flips = 2              # at most 2 rows may change their top-1 class
    output = "logits"          # which classifier output (needed only when there are several)

    [variants]
    require = ["ort"]          # these must pass; the others are reported only (default: all)

Precedence per tensor: `[defaults]` < wildcard `[tensors]` globs < exact names (`[outputs.X]`, or a
`[tensors]` pattern without wildcards). Two rules of the same rank that match one tensor and set one key to
different values are a conflict, reported with both lines. Unknown keys and wrong types are errors naming the
key and its line.
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Sequence

import tomllib

from ..errors import InfercmpError, UsageError
from ..measure.metrics import Tolerance
from ..graph.model import TensorInfo
from ..variant import Variant

TOLERANCE_KEYS = ("atol", "rtol", "max_ulp", "cosine")
_WILDCARD = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Rule:
    """One table of tolerance keys; None = not set here."""

    where: str
    line: int
    atol: float | None = None
    rtol: float | None = None
    max_ulp: int | None = None
    cosine: float | None = None

    def get(self, key: str) -> Any:
        """This rule's value for `key` (None when the rule leaves it unset)."""
        return getattr(self, key)


@dataclass(frozen=True)
class Resolved:
    """What applies to one tensor: its tolerance, cosine floor, whether a rule names it, and which rules."""

    tolerance: Tolerance
    cosine: float | None
    explicit: bool
    rules: tuple[str, ...]


@dataclass
class Policy:
    """A parsed policy. Build it with `load(path)`, `parse(text)` or `Policy()` (compare's defaults)."""

    source: str = "defaults"
    defaults: Rule = field(default_factory=lambda: Rule("[defaults]", 0, 1e-5, 1e-5))
    outputs: dict[str, Rule] = field(default_factory=dict)
    tensors: dict[str, Rule] = field(default_factory=dict)
    min_agreement: float | None = None
    max_flips: int | None = None
    label_output: str | None = None
    require: list[str] | None = None
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    _cache: dict[str, Resolved] = field(default_factory=dict, repr=False)

    @classmethod
    def from_tolerance(cls, tolerance: Tolerance) -> Policy:
        """A policy that applies one tolerance to every final output and asks nothing else."""
        return cls(source="tolerance", defaults=Rule("[defaults]", 0, tolerance.atol, tolerance.rtol,
                                                     tolerance.max_ulp))

    @property
    def default_tolerance(self) -> Tolerance:
        """The tolerance of the final outputs that no per-tensor rule names."""
        d = self.defaults
        return Tolerance(d.atol if d.atol is not None else 1e-5, d.rtol if d.rtol is not None else 1e-5, d.max_ulp)

    def _error(self, path: tuple[str, ...], message: str, hint: str | None = None) -> UsageError:
        return UsageError(f"{self.source}:{_line(self.lines, path)}: {message}", hint)

    def bind(self, tensors: Sequence[TensorInfo], outputs: Sequence[str], variants: Iterable[Variant],
             classifiers: Sequence[str]) -> None:
        """Check the policy against a model and the variants to run, and resolve every tensor's rules.
        Raises UsageError (exit 2) before anything runs: unknown outputs, globs that match nothing,
        conflicting tolerances, required variants that are not run, label rules without a classifier."""
        names = {str(v) for v in variants}
        for req in self.require or []:
            if req not in names:
                raise self._error(("variants", "require"), f"required variant {req!r} is not among the variants "
                                  f"run ({', '.join(sorted(names))})")
        for name in self.outputs:
            if name not in outputs:
                raise self._error(("outputs", name), f"[outputs.{_quote(name)}]: the model has no output "
                                  f"{name!r}", f"its outputs: {', '.join(outputs)}")
        for pattern in self.tensors:
            if not any(fnmatch.fnmatchcase(t.name, pattern) for t in tensors):
                raise self._error(("tensors", pattern), f"[tensors.{_quote(pattern)}] matches no tensor of "
                                  "the model", f"tensor names look like {', '.join(t.name for t in tensors[:3])}")
        if self.min_agreement is not None or self.max_flips is not None:
            key = ("labels", "min_agreement" if self.min_agreement is not None else "max_flips")
            if not classifiers:
                raise self._error(key, "label rules need a classifier output (shaped [N, C] per sample); "
                                  "the model has none")
            if self.label_output is not None and self.label_output not in classifiers:
                raise self._error(("labels", "output"), f"output {self.label_output!r} is not a classifier "
                                  f"output of the model", f"classifier outputs: {', '.join(classifiers)}")
            if self.label_output is None and len(classifiers) > 1:
                raise self._error(key, f"the model has {len(classifiers)} classifier outputs "
                                  f"({', '.join(classifiers)})", 'name one: [labels] output = "..."')
        self._cache = {t.name: self._resolve(t) for t in tensors}

    def required(self, variant: str) -> bool:
        """Whether `variant` must pass for the gate to pass (every variant when the policy names none)."""
        return self.require is None or variant in self.require

    def labels_output(self, classifiers: Sequence[str]) -> str | None:
        """The class-score output whose labels are checked against the label budget, if any."""
        return self.label_output or (classifiers[0] if classifiers else None)

    def rule_for(self, info: TensorInfo) -> Resolved:
        """What applies to one tensor: its tolerance and cosine floor, and the rules that name it."""
        found = self._cache.get(info.name)
        return found if found is not None else self._resolve(info)

    def tolerance_for(self, info: TensorInfo) -> Tolerance:
        """The tolerance the policy sets for one tensor."""
        return self.rule_for(info).tolerance

    def _resolve(self, info: TensorInfo) -> Resolved:
        globs = [r for p, r in self.tensors.items() if _WILDCARD.search(p) and fnmatch.fnmatchcase(info.name, p)]
        exact = [r for p, r in self.tensors.items() if not _WILDCARD.search(p) and p == info.name]
        if info.is_output and info.name in self.outputs:
            exact.append(self.outputs[info.name])
        values = {k: self.defaults.get(k) for k in TOLERANCE_KEYS}
        for rank in (globs, exact):
            for key in TOLERANCE_KEYS:
                setters = [r for r in rank if r.get(key) is not None]
                distinct = {r.get(key) for r in setters}
                if len(distinct) > 1:
                    a, b = setters[0], next(r for r in setters if r.get(key) != setters[0].get(key))
                    raise UsageError(f"{self.source}:{a.line} and {self.source}:{b.line}: conflicting tolerances "
                                     f"for tensor {info.name!r}: {a.where} sets {key} = {a.get(key)}, "
                                     f"{b.where} sets {key} = {b.get(key)}",
                                     "make the globs disjoint, or give the tensor one exact rule")
                if setters:
                    values[key] = setters[0].get(key)
        tol = Tolerance(values["atol"] if values["atol"] is not None else 1e-5,
                        values["rtol"] if values["rtol"] is not None else 1e-5, values["max_ulp"])
        used = tuple(r.where for r in globs + exact)
        return Resolved(tol, values["cosine"], bool(used), used)

    def to_dict(self) -> dict[str, Any]:
        """The policy as it was applied, for reports (JSON-able)."""
        def rule(r: Rule) -> dict[str, Any]:
            return {k: v for k, v in asdict(r).items() if v is not None and k not in ("where", "line")}

        return {"source": self.source, "defaults": rule(self.defaults),
                "outputs": {k: rule(v) for k, v in self.outputs.items()},
                "tensors": {k: rule(v) for k, v in self.tensors.items()},
                "labels": {"min_agreement": self.min_agreement, "max_flips": self.max_flips,
                           "output": self.label_output},
                "require": self.require}


def load(path: str | Path) -> Policy:
    """Read and validate a policy file; UsageError (exit 2) naming the key and line on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"policy file {str(p)!r} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read policy file {str(p)!r}: {exc}") from None
    return parse(text, str(p))


def parse(text: str, source: str = "policy") -> Policy:
    """Parse a policy from TOML text; a UsageError naming the line on anything invalid."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}", "see https://toml.io for the syntax") from None
    lines = _key_lines(text)
    policy = Policy(source=source, lines=lines)

    def err(path: tuple[str, ...], message: str, hint: str | None = None) -> UsageError:
        return UsageError(f"{source}:{_line(lines, path)}: {message}", hint)

    known = {"defaults", "outputs", "tensors", "labels", "variants"}
    for key in data:
        if key not in known:
            raise err((key,), f"unknown key {key!r}", f"known tables: {', '.join(sorted(known))}")
    if "defaults" in data:
        policy.defaults = _rule(_table(data, ("defaults",), err), ("defaults",), lines, err,
                                base=Rule("[defaults]", 0, 1e-5, 1e-5))
    for section in ("outputs", "tensors"):
        for name, table in _table(data, (section,), err).items():
            path = (section, name)
            if not isinstance(table, dict):
                raise err(path, f"[{section}.{_quote(name)}] must be a table of {', '.join(TOLERANCE_KEYS)}, "
                          f"got {_kind(table)}")
            getattr(policy, section)[name] = _rule(table, path, lines, err)
    labels = _table(data, ("labels",), err)
    for key, value in labels.items():
        path = ("labels", key)
        if key == "min_agreement":
            policy.min_agreement = _number(value, path, err, low=0.0, high=1.0, open_low=True)
        elif key == "max_flips":
            policy.max_flips = _integer(value, path, err)
        elif key == "output":
            if not isinstance(value, str):
                raise err(path, f"[labels] output must be a string, got {_kind(value)}")
            policy.label_output = value
        else:
            raise err(path, f"unknown key {key!r} in [labels]", "known keys: min_agreement, max_flips, output")
    variants = _table(data, ("variants",), err)
    for key, value in variants.items():
        path = ("variants", key)
        if key != "require":
            raise err(path, f"unknown key {key!r} in [variants]", "known keys: require")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise err(path, f"[variants] require must be a list of variant strings, got {_kind(value)}")
        try:
            policy.require = [str(Variant.parse(v)) for v in value]
        except InfercmpError as exc:
            raise err(path, f"[variants] require: {exc.message}") from None
    return policy


def _table(data: dict[str, Any], path: tuple[str, ...], err: Any) -> dict[str, Any]:
    value = data.get(path[-1], {})
    if not isinstance(value, dict):
        raise err(path, f"{path[-1]} must be a table ([{path[-1]}]), got {_kind(value)}")
    return value


def _rule(table: dict[str, Any], path: tuple[str, ...], lines: dict[tuple[str, ...], int], err: Any,
          base: Rule | None = None) -> Rule:
    where = "[" + ".".join(_quote(p) for p in path) + "]"
    values: dict[str, Any] = {} if base is None else {k: base.get(k) for k in TOLERANCE_KEYS}
    for key, value in table.items():
        kpath = path + (key,)
        if key in ("atol", "rtol"):
            values[key] = _number(value, kpath, err, low=0.0)
        elif key == "max_ulp":
            values[key] = _integer(value, kpath, err, high=(1 << 64) - 1)
        elif key == "cosine":
            values[key] = _number(value, kpath, err, low=-1.0, high=1.0)
        else:
            raise err(kpath, f"unknown key {key!r} in {where}", f"known keys: {', '.join(TOLERANCE_KEYS)}")
    return Rule(where, _line(lines, path), **values)


def _kind(value: Any) -> str:
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a float", list: "an array",
             dict: "a table"}
    text = json.dumps(value, default=str) if not isinstance(value, dict) else "{...}"
    return f"{names.get(type(value), type(value).__name__)} ({text[:40]})"


def _number(value: Any, path: tuple[str, ...], err: Any, low: float | None = None, high: float | None = None,
            open_low: bool = False) -> float:
    key = path[-1]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise err(path, f"{key} must be a number, got {_kind(value)}")
    x = float(value)
    if not math.isfinite(x) or (low is not None and (x < low or (open_low and x == low))) or \
            (high is not None and x > high):
        span = f"{'(' if open_low else '['}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise err(path, f"{key} = {value} is out of range {span}")
    return x


def _integer(value: Any, path: tuple[str, ...], err: Any, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise err(path, f"{path[-1]} must be a non-negative integer, got {_kind(value)}")
    if value < 0:
        raise err(path, f"{path[-1]} = {value} must be >= 0")
    if high is not None and value > high:
        raise err(path, f"{path[-1]} = {value} is over {high}" + (" (2**64 - 1: ULPs are counted in 64 bits)"
                                                                   if high == (1 << 64) - 1 else ""))
    return value


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


# tomllib gives no positions: a light scan of the text maps each key path to the line that defines it.
_PART = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*""")


def _split_key(text: str) -> tuple[tuple[str, ...], int] | None:
    parts: list[str] = []
    pos = 0
    while True:
        m = _PART.match(text, pos)
        if not m:
            return None
        token = m.group(1)
        if token.startswith('"'):
            try:
                token = json.loads(token)
            except json.JSONDecodeError:
                return None
        elif token.startswith("'"):
            token = token[1:-1]
        parts.append(token)
        pos = m.end()
        if text[pos:pos + 1] != ".":
            return tuple(parts), pos
        pos += 1


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if stripped.startswith("["):
            found = _split_key(stripped[2 if stripped.startswith("[[") else 1:])
            if found:
                table = found[0]
                lines.setdefault(table, number)
            continue
        found = _split_key(line)
        if found and line[found[1]:].startswith("="):
            lines.setdefault(table + found[0], number)
    return lines


def _line(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int:
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1
