"""Stable names of the tensors inside subgraphs (If branches, Loop and Scan bodies), shared by the catalogue
and every executor that records them.

A subgraph tensor is named by where it lives: `<node>/<branch>/<tensor>`, where `<node>` is the node's name
(or `<op_type>_<index>` for an unnamed node, its position in its graph) and `<branch>` is `then`, `else` or
`body`; nesting repeats the pattern (`Loop_3/body/If_0/then/x`). A loop body runs many times: each of its
tensors is catalogued twice, at the first iteration (`@iter=0`) and at the last (`@iter=last`), which bounds
the report's size whatever the trip count; a tensor inside nested loops carries one label per enclosing loop,
outermost first (`@iter=0,last`). A branch that does not run (the If went the other way, a loop ran no
iteration) produces none of its tensors.

The tapped model copy lists the subgraph tensors to record in its metadata (`METADATA_KEY`, a JSON list);
a backend that can record them returns them beside the graph outputs.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

METADATA_KEY = "infercmp.subgraph_taps"
BRANCHES = {"then_branch": "then", "else_branch": "else", "body": "body"}
LOOPS = ("Loop", "Scan", "SequenceMap")
FIRST, LAST = "0", "last"


def node_key(node: Any, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def branch_name(attribute: str) -> str:
    return BRANCHES.get(attribute, attribute)


def suffix(labels: Sequence[str]) -> str:
    return f"@iter={','.join(labels)}" if labels else ""


def iteration_labels(i: int) -> tuple[str, ...]:
    """The labels the i-th run (from 0) of a loop body is recorded under."""
    return (FIRST, LAST) if i == 0 else (LAST,)


def extend(suffixes: Sequence[tuple[str, ...]], labels: Sequence[str]) -> list[tuple[str, ...]]:
    return [s + (label,) for s in suffixes for label in labels]


def walk(graph: Any, path: str = "", loops: int = 0) -> Iterator[tuple[str, Any, str, int]]:
    """Every node output inside the subgraphs of `graph`'s nodes, nested ones too, in each graph's node order
    with a node's subgraph tensors before its own outputs: (stable name without the iteration suffix, the node,
    the output's name, the number of enclosing loops). The outputs of `graph`'s own nodes are not listed."""
    for index, node in enumerate(graph.node):
        yield from inside(node, index, path, loops)


def inside(node: Any, index: int, path: str = "", loops: int = 0) -> Iterator[tuple[str, Any, str, int]]:
    """The tensors inside the subgraphs of one node (see `walk`)."""
    for a in node.attribute:
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            inner = f"{path}{node_key(node, index)}/{branch_name(a.name)}/"
            deeper = loops + (1 if node.op_type in LOOPS else 0)
            for k, inner_node in enumerate(g.node):
                yield from inside(inner_node, k, inner, deeper)
                for out in inner_node.output:
                    if out:
                        yield inner + out, inner_node, out, deeper


def names(base: str, loops: int) -> list[str]:
    """The catalogue names of a tensor `base` inside `loops` enclosing loops."""
    return [base + suffix(labels) for labels in itertools.product((FIRST, LAST), repeat=loops)]


def read_metadata(model: Any) -> set[str] | None:
    """The subgraph tensors a tapped copy asks to record; None when it asks for none."""
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            return set(json.loads(p.value)) or None
    return None
