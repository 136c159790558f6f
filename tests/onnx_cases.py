"""Op cases for the executor tests: one-node models, a model run through a named executor, and the check of its
outputs against a yardstick.

Executors by name: `torch` and `tf` (our ONNX executors; options such as `mode="graph"` or `dtype="float64"`
go to the backend), `ref` (the ref backend: onnx.reference with its own kernels added) and `ort`. The yardstick is
onnx.reference, or onnxruntime (`against="ort"`) where onnx.reference is wrong or ignores an attribute.
"""
from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

from conftest import vi

FRAMEWORK = {"torch": "torch", "tf": "tensorflow", "ref": "onnx", "ort": "onnxruntime"}
# Each executor's tolerance (rtol, atol) where a test states none.
TOLERANCE = {"torch": (1e-5, 1e-6), "tf": (1e-5, 1e-5), "ref": (1e-5, 1e-6), "ort": (1e-5, 1e-6)}


def executors(*names: str) -> list[Any]:
    """pytest parameters for `names`, each skipped where its framework is not installed."""
    return [pytest.param(n, id=n, marks=pytest.mark.skipif(importlib.util.find_spec(FRAMEWORK[n]) is None,
                                                           reason=f"{FRAMEWORK[n]} is not installed"))
            for n in names]


def make_model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: Sequence[Any] = (),
               opset: int = 17) -> Any:
    """conftest's make_model without the checker, which wants every graph output's shape: an op test may leave an
    output's shape (None) to the backend."""
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                             opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def one_node(op: str, inputs: Sequence[tuple[str, int, Any]], outputs: Sequence[tuple[str, int, Any]],
             opset: int = 17, inits: Sequence[Any] = (), **attrs: Any) -> Any:
    """A model of one node; `inputs`/`outputs` are (name, elem type, shape) triples (a shape may be None: the
    backend's to find), `inits` initializers fed after the inputs."""
    node = helper.make_node(op, [i[0] for i in inputs] + [t.name for t in inits], [o[0] for o in outputs],
                            **attrs)
    return make_model([node], [vi(*i) for i in inputs], [vi(*o) for o in outputs], list(inits), opset=opset)


def options(executor: str, **raw: Any) -> dict[str, Any]:
    """The executor's resolved options from `raw` (values as on the command line)."""
    from comparator.backends import get
    from comparator.backends.options import resolve

    return resolve(executor, get(executor).options, {k: str(v) for k, v in raw.items()})


def open_session(executor: str, model: Any, **raw: Any) -> Any:
    """A session of `model` in `executor` (torch and tf straight from the proto, the others from a file)."""
    opts = options(executor, **raw)
    if executor == "torch":
        from comparator.backends.torch import open_model

        return open_model(model, opts)
    if executor == "tf":
        from comparator.backends.tf import open_model as open_tf

        return open_tf(model, opts)
    from comparator.backends import get

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        onnx.save(model, str(path))
        return get(executor).open(str(path), opts)


def run(executor: str, model: Any, feeds: Mapping[str, Any], **raw: Any) -> dict[str, Any]:
    """Every output of `model` run by `executor`, by name."""
    return open_session(executor, model, **raw).run(dict(feeds))


def yardstick(model: Any, feeds: Mapping[str, Any], against: str = "ref") -> list[Any]:
    """The outputs of `model` by onnx.reference (`ref`) or onnxruntime (`ort`), in the graph's output order."""
    if against == "ort":
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, dict(feeds))
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, dict(feeds))


def check(executor: str, model: Any, feeds: Mapping[str, Any], rtol: float | None = None, atol: float | None = None,
          against: str = "ref", **raw: Any) -> dict[str, Any]:
    """Every output of `model` run by `executor` (with options `raw`) equals the yardstick's: same dtype, same
    shape, values within rtol/atol (the executor's TOLERANCE where not given). Returns what the executor gave."""
    want = yardstick(model, feeds, against)
    got = run(executor, model, feeds, **raw)
    default_rtol, default_atol = TOLERANCE[executor]
    where = " ".join([executor, *(f"{k}={v}" for k, v in raw.items())])
    for out, ref in zip(model.graph.output, want):
        ref = np.asarray(ref)
        assert got[out.name].dtype == ref.dtype, (where, out.name)
        assert got[out.name].shape == ref.shape, (where, out.name)
        np.testing.assert_allclose(got[out.name], ref, rtol=default_rtol if rtol is None else rtol,
                                   atol=default_atol if atol is None else atol, err_msg=f"{where} {out.name}")
    return got
