"""Which tensors to tap, and the model copies the workers run.

Every variant runs the model twice: untapped (the input model's graph and weights as they are: the numbers a
deployment gets) and a tapped copy, whose graph outputs are extended with every tapped tensor, each typed from
shape inference. A tensor that shape inference could not type is not tapped (never given a made-up type) and the
report says so. Tensors inside subgraphs are no graph outputs: the tapped copy lists them in its metadata for the
backends that record them (graph/subgraphs.py).
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence

from ..errors import UsageError
from . import stored, subgraphs
from .model import Model, TensorInfo


@dataclass
class TapPlan:
    tapped: list[TensorInfo]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (tensor, reason)
    # `--tap fused`: every tensor is planned, and each variant taps those its own optimized graph computes
    # (graph/fusion.py); the tapped copy serves the variants that cannot show that graph.
    fused: bool = False

    @property
    def names(self) -> list[str]:
        """The tapped tensors of the main graph: the tapped copy's extra graph outputs."""
        return [t.name for t in self.tapped if not t.scope]

    @property
    def inside(self) -> list[str]:
        """The tapped tensors inside subgraphs, recorded by the backends that can (see graph/subgraphs.py)."""
        return [t.name for t in self.tapped if t.scope]


def _patterns(spec: str | Sequence[str]) -> list[str]:
    """A tap spec's words: a list, or one comma-separated string."""
    return [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]


def is_fused(spec: str | Sequence[str]) -> bool:
    """Whether a tap spec asks for fusion-aware taps (`fused`)."""
    return _patterns(spec) == ["fused"]


def plan(model: Model, spec: str | Sequence[str] = "all") -> TapPlan:
    """`all` | `fused` | `outputs` | names and globs (a list, or one comma-separated string)."""
    patterns = _patterns(spec)
    if not patterns:
        raise UsageError("--tap is empty", "use all, fused, outputs, or tensor names/globs")
    if patterns == ["outputs"]:
        chosen = [t for t in model.tensors if t.is_output]
    elif patterns in (["all"], ["fused"]):
        chosen = list(model.tensors)
    else:
        chosen = []
        for pat in patterns:
            hits = [t for t in model.tensors if fnmatch.fnmatchcase(t.name, pat)]
            if not hits:
                raise UsageError(f"--tap {pat!r} matches no tensor of the model",
                                 f"tensor names look like {', '.join(t.name for t in model.tensors[:3])}")
            chosen.extend(h for h in hits if h not in chosen)
        chosen.extend(t for t in model.tensors if t.is_output and t not in chosen)
        chosen.sort(key=lambda t: t.index)
    result = TapPlan([], fused=patterns == ["fused"])
    for t in chosen:
        if t.is_output or t.elem_type or t.scope:  # subgraph tensors are recorded, not typed graph outputs
            result.tapped.append(t)
        else:
            result.skipped.append((t.name, "shape inference gave no element type"))
    return result


def write_copies(model: Model, tap_plan: TapPlan, folder: Path, with_tapped: bool = True) -> tuple[Path, Path]:
    """Write `model.onnx` (untapped) and `tapped.onnx` (every tapped tensor added as an output) into folder and
    return both paths (with `with_tapped` false, the untapped copy alone, and its path twice). Both hold the graph only:
    their weights are read in place from the input model's files (graph/stored.py), so nothing is copied, and a
    runtime never parses a multi-GB protobuf to find them."""
    import onnx

    untapped = onnx.ModelProto()
    untapped.ParseFromString(stored.skim(model.path.resolve()))  # the input as given: no inferred value_info
    untapped_path = stored.save_derived(untapped, folder / "model.onnx", model.data_dir or model.path.resolve().parent)
    if not with_tapped:
        return untapped_path, untapped_path
    tapped_proto = onnx.ModelProto()
    tapped_proto.CopyFrom(model.proto)
    graph = tapped_proto.graph
    existing = {o.name for o in graph.output}
    types = {vi.name: vi for vi in graph.value_info}
    if tap_plan.inside:
        entry = tapped_proto.metadata_props.add()
        entry.key, entry.value = subgraphs.METADATA_KEY, json.dumps(tap_plan.inside)
    for t in tap_plan.tapped:
        if t.scope:
            continue
        if t.name in existing:
            continue
        vi = graph.output.add()
        if t.name in types:
            vi.CopyFrom(types[t.name])
        else:  # planned taps always have an element type (plan() skips the others)
            vi.CopyFrom(onnx.helper.make_tensor_value_info(t.name, t.elem_type or 0, None))
    return untapped_path, stored.save_derived(tapped_proto, folder / "tapped.onnx",
                                              model.data_dir or model.path.resolve().parent)
