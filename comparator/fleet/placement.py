"""Where a fleet variant may run: `VARIANT@LABEL=VALUE[@LABEL=VALUE...]` or `VARIANT@all-nodes[@LABEL=VALUE...]`.

A label selector is Ray's: `key=value`, `key=!value`, `key=in(a,b)`, `key=!in(a,b)`. `all-nodes` runs the variant
once on every alive node the selector matches; without it, Ray picks one matching node. A spec without `@` may
run on any node. The variant part may be a sweep (`ort:opt=disable|all`): each expanded variant gets the same
placement.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import UsageError
from ..variant import Variant, expand

ALL_NODES = "all-nodes"


@dataclass(frozen=True)
class Placement:
    """One variant and where it runs."""

    variant: Variant
    selector: dict[str, str] = field(default_factory=dict)
    all_nodes: bool = False

    def describe(self) -> str:
        where = "every node" if self.all_nodes else "one node"
        return where + (" with " + ", ".join(f"{k}={v}" for k, v in self.selector.items()) if self.selector else "")


def parse(specs: Sequence[str]) -> list[Placement]:
    """Placements from `-b` values (comma separated); UsageError naming the bad part."""
    out: list[Placement] = []
    for chunk in specs:
        for spec in (s.strip() for s in chunk.split(",")):
            if not spec:
                continue
            head, *parts = spec.split("@")
            selector: dict[str, str] = {}
            every = False
            for part in parts:
                if part == ALL_NODES:
                    every = True
                    continue
                key, eq, value = part.partition("=")
                if not eq or not key or not value:
                    raise UsageError(f"placement {part!r} in {spec!r} is not LABEL=VALUE or {ALL_NODES}",
                                     "e.g. torch:isa=avx512@cpu-family=zen4 or ort@all-nodes")
                selector[key] = value
            for v in expand(head):
                p = Placement(v, dict(selector), every)
                if p in out:
                    raise UsageError(f"{spec}: variant {v} with this placement is given twice")
                out.append(p)
    if not out:
        raise UsageError("no variants given", "e.g. -b ort@cpu-isa=avx512,ort@cpu-isa=sse")
    return out


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a node with `labels` satisfies `selector` (Ray's equality, negation and in() forms)."""
    for key, want in selector.items():
        have = labels.get(key)
        negate = want.startswith("!")
        want = want[1:] if negate else want
        if want.startswith("in(") and want.endswith(")"):
            ok = have in {v.strip() for v in want[3:-1].split(",")}
        else:
            ok = have == want
        if ok == negate:
            return False
    return True
