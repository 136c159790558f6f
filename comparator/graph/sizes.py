"""The shape each tensor takes in a run, known before the run: what sizes the run's disk, memory and windows.

The catalogue (graph/model.py) keeps the model's own shapes, where a dynamic dim is a name (`batch`, `height`) or
unknown. A run binds every input to a shape, and most dynamic dims follow from those: shape inference, run again on
the graph with its inputs' dims fixed to the feeds' (per sample), resolves them. A tensor whose size depends on its
data (NonZero, TopK with a computed k, a loop's trip count) keeps a dynamic dim and stays unknown.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import shapefold
from .model import Model, TensorInfo

Shape = tuple[int, ...]


def static(shape: tuple[Any, ...] | None) -> bool:
    """Whether every dim of `shape` is a number (its rank known too)."""
    return shape is not None and all(isinstance(d, int) for d in shape)


def per_sample(feeds: Mapping[str, np.ndarray]) -> dict[str, Shape]:
    """Each feed's shape per sample (feeds hold a leading sample axis)."""
    return {name: tuple(int(d) for d in value.shape[1:]) for name, value in feeds.items()}


def run_shapes(model: Model, inputs: Mapping[str, Shape]) -> dict[str, Shape]:
    """The per-sample shape of each catalogue tensor whose shape is known once the graph inputs take these
    per-sample shapes: its catalogue shape where that is static, else what shape inference gives with the inputs
    fixed. A tensor it leaves dynamic is absent. Kept on the model for the inputs last asked about."""
    known: dict[str, Shape] = {t.name: t.shape for t in model.tensors if static(t.shape)}  # type: ignore[misc]
    if len(known) == len(model.tensors):
        return known
    key = tuple(sorted((name, tuple(shape)) for name, shape in inputs.items()))
    if model.sized is not None and model.sized[0] == key:
        return model.sized[1]
    found = dict(known, **{name: shape for name, shape in _inferred(model, inputs).items() if name not in known})
    model.sized = (key, found)
    return found


def _inferred(model: Model, inputs: Mapping[str, Shape]) -> dict[str, Shape]:
    """Shapes from shape inference on a copy of the model's graph (its large weights are not in it) with the
    inputs' dims fixed; {} when inference fails or an input's rank differs from the graph's."""
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    # The first inference carried the inputs' dynamic dims into the graph (an exporter's -1 among them); each would
    # contradict the number inference now finds, and a node whose output contradicts it is skipped: forget them.
    for vi in list(proto.graph.value_info) + list(proto.graph.output):
        if vi.type.WhichOneof("value") == "tensor_type":
            for dim in vi.type.tensor_type.shape.dim:
                if not (dim.HasField("dim_value") and dim.dim_value > 0):
                    dim.Clear()
    for vi in proto.graph.input:
        shape = inputs.get(vi.name)
        if shape is None or vi.type.WhichOneof("value") != "tensor_type":
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            return {}
        for dim, size in zip(dims, shape):
            dim.Clear()
            dim.dim_value = size
    try:
        inferred = shapefold.infer(proto)
    except Exception:  # noqa: BLE001 - an estimate only: the catalogue's shapes serve
        return {}
    shapes = shapefold.known_shapes(inferred.graph)
    return {t.name: shapes[t.name] for t in model.tensors if not t.scope and t.name in shapes}


def tensor_bytes(t: TensorInfo, shapes: Mapping[str, Shape] | None = None) -> int:
    """Bytes of one sample of `t`: its shape in `shapes` (run_shapes) where known, else its catalogue shape with
    each dynamic dim counted as 1 (a lower bound)."""
    shape: tuple[Any, ...] | None = (shapes or {}).get(t.name, t.shape)
    n = 1
    for d in shape or ():
        n *= d if isinstance(d, int) else 1
    try:
        size = np.dtype(t.dtype or "float32").itemsize
    except TypeError:
        size = 4
    return n * size


def bytes_of(tensors: Iterable[TensorInfo], shapes: Mapping[str, Shape] | None = None) -> int:
    """Bytes of one sample of these tensors (tensor_bytes)."""
    return sum(tensor_bytes(t, shapes) for t in tensors)


def all_known(tensors: Iterable[TensorInfo], shapes: Mapping[str, Shape]) -> bool:
    """Whether every one of these tensors has a known size in `shapes` (run_shapes): the estimate is exact."""
    return all(t.name in shapes for t in tensors)
