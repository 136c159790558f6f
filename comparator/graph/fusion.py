"""Fusion-aware taps (`--tap fused`): tap only what a variant's optimized graph computes.

A runtime that rewrites the graph (ONNX Runtime fuses Conv, BatchNormalization and Relu into one FusedConv,
folds constants, moves convolutions to a blocked layout) computes some of the model's tensors never: tapping
them would make it keep them, and so change what it runs. For a variant whose backend can save the graph its
session really runs (`Backend.fusion(options)` is "optimized"), the worker saves that graph, keeps the tensors of
the original model it still computes (the survivors: same name, same value), adds them as graph outputs, and runs
that graph with no further rewriting. The tapped run then computes exactly what the untapped run computes.

The report maps the optimized graph back to the original one: original nodes joined by tensors that did not
survive form one group, which the optimized nodes between the group's surviving inputs and outputs implement.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MODES = ("optimized", "node-by-node", "unavailable")
OptimizedNode = list[Any]  # [op_type, domain, name, inputs, outputs] of one node of the optimized graph


def tapped_copy(optimized: Path, wanted: Sequence[str], types: Mapping[str, int],
                out: Path) -> tuple[list[str], list[str], list[OptimizedNode]]:
    """Write `out`: the optimized graph with every tensor of `wanted` that a node of it computes as a graph output
    (typed from `types`, the original model's element types), its weights left where the runtime saved them (out
    must be in the same folder). Returns the tapped tensors, in `wanted`'s order; the tensors of `wanted` the
    runtime folded into constants, which are not tapped (it may store a different value under the same name, as
    long as the consumer means the same: ORT folds a Reshape's computed shape [0, 1, 24, 120] into [0, 1, -1, 120]);
    and the optimized graph's nodes."""
    import onnx

    from . import stored

    proto = onnx.load(str(optimized), load_external_data=False)
    kept = [p for p in proto.metadata_props if p.key != stored.EXTERNAL_DIR_KEY]  # its weights are beside it
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    graph = proto.graph
    constants = {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    computed = {o for n in graph.node for o in n.output if o} | ({i.name for i in graph.input} - constants)
    outputs = {o.name for o in graph.output}
    tapped = [name for name in wanted if name in computed or name in outputs]
    folded = [name for name in wanted if name in constants and name not in tapped]
    for name in tapped:
        if name not in outputs:
            graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, 0), None))
    with open(out, "wb") as fh:
        fh.write(proto.SerializeToString())
    nodes = [[n.op_type, n.domain, n.name, list(n.input), list(n.output)] for n in graph.node]
    return tapped, folded, nodes


def groups(original: Iterable[Mapping[str, Any]], survivors: Collection[str],
           optimized: Sequence[OptimizedNode]) -> list[dict[str, Any]]:
    """The original main-graph nodes the optimized graph runs otherwise, as groups: nodes joined by tensors that
    did not survive (`survivors`: the tensors the optimized graph computes or holds as folded constants; a node
    whose outputs all survive and whose inputs come from survivors stands alone, unchanged or replaced one for one).
    Each group: "nodes" (original node ids, graph order), "outputs" (its surviving tensors), "ops" (the optimized
    nodes that compute them from surviving tensors, `domain.op_type`; empty when the group's values were folded
    into constants or removed)."""
    main = [n for n in original if not n["parent"]]
    survived = set(survivors)
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(main):
        for t in n["inputs"]:
            consumers.setdefault(t, []).append(i)
    parent = list(range(len(main)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    lost = [any(o not in survived for o in n["outputs"]) for n in main]
    for i, n in enumerate(main):
        for t in n["outputs"]:
            if t not in survived:
                for j in consumers.get(t, ()):
                    parent[root(j)] = root(i)
    members: dict[int, list[int]] = {}
    for i in range(len(main)):
        members.setdefault(root(i), []).append(i)
    producer = {o: k for k, node in enumerate(optimized) for o in node[4]}
    boundary = {o for n in main for o in n["outputs"] if o in survived}  # the original tensors still computed
    found = []
    for idx in sorted(members.values()):
        if len(idx) == 1 and not lost[idx[0]]:
            continue
        outs = [o for i in idx for o in main[i]["outputs"] if o in survived]
        found.append({"nodes": [main[i]["id"] for i in idx], "outputs": outs,
                      "ops": _implementing(outs, producer, optimized, boundary)})
    return found


def _implementing(outputs: Sequence[str], producer: Mapping[str, int], optimized: Sequence[OptimizedNode],
                  boundary: Collection[str]) -> list[str]:
    """The optimized nodes that compute `outputs` from the original tensors still computed (`boundary`), in the
    optimized graph's order."""
    seen: set[int] = set()
    stack = [producer[o] for o in outputs if o in producer]
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        stack.extend(producer[t] for t in optimized[k][3] if t in producer and t not in boundary)
    return [f"{optimized[k][1]}.{optimized[k][0]}" if optimized[k][1] else optimized[k][0] for k in sorted(seen)]
