"""The model's graph as the views draw it: every node with the tensors it reads and writes.

A node of the main graph is named by `subgraphs.node_key` (its name, or `<op_type>_<index>`); a node inside a
subgraph by its stable path (`If_3/then/Add_0`), with `parent` naming the node that holds the subgraph. Tensors
inside subgraphs carry their stable names without the loop-iteration suffix (graph/subgraphs.py), so a tensor
row `Loop_2/body/x@iter=last` belongs to the node whose outputs list `Loop_2/body/x`. Initializers are left out
of `inputs`: the views draw data flow, not weights.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import subgraphs


def nodes(proto: Any) -> list[dict[str, Any]]:
    """[{"id", "op_type", "domain", "inputs", "outputs", "parent"}] for every node, a node's subgraph nodes right
    after it; `parent` is "" in the main graph."""
    found: list[dict[str, Any]] = []
    _graph(proto.graph, "", "", set(), found)
    return found


def dead_ends(found: Sequence[Mapping[str, Any]], outputs: Iterable[str]) -> set[str]:
    """The main graph's node outputs that no final output is computed from: read by no node, or only by nodes
    whose own outputs are dead ends too (a Dropout's mask, a branch left over from training). `found`: `nodes()`
    (the main graph in topological order, as ONNX requires); a node inside a subgraph reads outer tensors by name
    for the node that holds it. Empty for an empty `found` (a report without its graph)."""
    reads: dict[str, list[str]] = {}  # main-graph node id -> what it and every node inside it read
    top: dict[str, str] = {}
    for n in found:
        root = top[n["parent"]] if n["parent"] else n["id"]
        top[n["id"]] = root
        reads.setdefault(root, []).extend(n["inputs"])
    main = [n for n in found if not n["parent"]]
    live = set(outputs)
    for n in reversed(main):
        if any(o in live for o in n["outputs"]):
            live.update(reads[n["id"]])
    return {o for n in main for o in n["outputs"] if o not in live}


def _graph(graph: Any, path: str, parent: str, outer_weights: set[str], found: list[dict[str, Any]]) -> None:
    weights = outer_weights | {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    local = {o for n in graph.node for o in n.output if o} | {i.name for i in graph.input}
    if not path:
        local = set()  # the main graph's names are the tensors' own names

    def named(tensor: str) -> str:
        return path + tensor if tensor in local else tensor

    for index, node in enumerate(graph.node):
        key = path + subgraphs.node_key(node, index)
        found.append({"id": key, "op_type": node.op_type, "domain": node.domain,
                      "inputs": [named(i) for i in node.input if i and i not in weights],
                      "outputs": [named(o) for o in node.output if o], "parent": parent})
        for a in node.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                _graph(g, f"{key}/{subgraphs.branch_name(a.name)}/", key, weights, found)

