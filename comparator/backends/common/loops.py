"""The drivers of ONNX's subgraph loops (Loop, Scan, SequenceMap), written once for the framework executors.

A driver owns the loop control of the specification: the iteration count and condition, which body outputs are
carried into the next iteration and which are collected per iteration, scan axes and directions, and the order in
which the body runs. Everything that touches a tensor is one of the framework's own operations, passed in as a
small callable (a constant, slicing along an axis, stacking): the drivers move tensors around and never compute
one. `run(body, feeds)` runs a body subgraph (`OpContext.run_subgraph`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

RunBody = Callable[[Any, Mapping[str, Any]], Sequence[Any]]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def loop(body: Any, run: RunBody, limit: int | None, go: bool, carried: Sequence[Any], *,
         counter: Callable[[int], Any], flag: Callable[[bool], Any], truth: Callable[[Any], bool],
         stack: Callable[[list[Any]], Any], empty: Callable[[], Any]) -> list[Any]:
    """ONNX Loop: run `body` while `go` holds and fewer than `limit` (None: no limit) iterations ran.

    The body takes (iteration number, condition, *carried) and returns (condition, *carried, *scan outputs);
    returns the final carried values, then each scan output's per-iteration values stacked along a new first axis
    (`empty()` for a scan output of a loop that ran no iteration). `counter(i)` and `flag(b)` make the body's
    int64 and bool inputs; `truth(c)` reads the condition the body returns."""
    names = [i.name for i in body.input]
    state = list(carried)
    n = len(state)
    scans: list[list[Any]] = [[] for _ in range(len(body.output) - 1 - n)]
    i = 0
    while go and (limit is None or i < limit):
        feeds = {names[0]: counter(i), names[1]: flag(go)}
        feeds.update(zip(names[2:], state))
        out = run(body, feeds)
        go = truth(out[0])
        state = list(out[1:1 + n])
        for k, v in enumerate(out[1 + n:]):
            scans[k].append(v)
        i += 1
    return state + [stack(s) if s else empty() for s in scans]


def scan(body: Any, run: RunBody, inputs: Sequence[Any], attrs: Mapping[str, Any], *,
         rank: Callable[[Any], int], unstack: Callable[[Any, int], list[Any]],
         stack: Callable[[list[Any], int], Any]) -> list[Any]:
    """ONNX Scan (opset 9 on): `inputs` are the initial states then `num_scan_inputs` scanned tensors.

    Each scanned input is cut along its scan axis (`unstack(x, axis)`: the slices, that axis dropped), read in its
    direction; step t feeds the states and the t-th slices to `body`, which returns the new states then the scan
    outputs of the step. Returns the final states, then each scan output's steps in its direction stacked along
    its axis (`stack(values, axis)`, the axis counted in the stacked result)."""
    m = attrs["num_scan_inputs"]
    states, scanned = list(inputs[:len(inputs) - m]), list(inputs[len(inputs) - m:])
    n_out = len(body.output) - len(states)
    in_axes = list(attrs.get("scan_input_axes") or [0] * m)
    in_dirs = list(attrs.get("scan_input_directions") or [0] * m)
    out_axes = list(attrs.get("scan_output_axes") or [0] * n_out)
    out_dirs = list(attrs.get("scan_output_directions") or [0] * n_out)
    seqs = []
    for x, axis, backward in zip(scanned, in_axes, in_dirs):
        parts = unstack(x, _axis(axis, rank(x)))
        seqs.append(parts[::-1] if backward else parts)
    names = [i.name for i in body.input]
    outs: list[list[Any]] = [[] for _ in range(n_out)]
    for t in range(len(seqs[0]) if seqs else 0):
        res = run(body, dict(zip(names, states + [s[t] for s in seqs])))
        states = list(res[:len(states)])
        for k, v in enumerate(res[len(states):]):
            outs[k].append(v)
    stacked = []
    for values, axis, backward in zip(outs, out_axes, out_dirs):
        values = values[::-1] if backward else values
        stacked.append(stack(values, _axis(axis, rank(values[0]) + 1)))
    return states + stacked


def sequence_map(body: Any, run: RunBody, inputs: Sequence[Any]) -> list[list[Any]]:
    """ONNX SequenceMap: the body runs once per element of the first input (a sequence, as a list); each further
    input is a sequence read at the same position or a tensor given whole every time. Returns one sequence per
    body output."""
    names = [i.name for i in body.input]
    results: list[list[Any]] = [[] for _ in body.output]
    for i in range(len(inputs[0])):
        feeds = {name: (x[i] if isinstance(x, list) else x) for name, x in zip(names, inputs)}
        for k, v in enumerate(run(body, feeds)):
            results[k].append(v)
    return results
