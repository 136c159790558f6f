"""The shapes a run gives the tensors, known before it runs (graph/sizes.py): what sizes its disk, memory and
windows. Each is checked against the files a real run writes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

from comparator import api
from comparator.errors import UsageError
from comparator.graph import model as model_mod, sizes, tap
from comparator.run import variants
from comparator.variant import parse_list
from conftest import make_model, vi


def nonzero_model() -> onnx.ModelProto:
    """y = NonZero(x > 0): how many elements y has depends on x's values, not on its shape."""
    return make_model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                       helper.make_node("NonZero", ["r"], ["y"], name="nonzero")],
                      [vi("x", T.FLOAT, ["n"])], [vi("y", T.INT64, [1, None])])


def empty_constant_model() -> onnx.ModelProto:
    """c: a Constant holding an empty tensor, whose inferred dim is 0 (an ONNX Runtime reader takes a 0 dim_value
    in a model's own annotations as dynamic)."""
    empty = helper.make_tensor("e", T.FLOAT, [0], [])
    return make_model([helper.make_node("Constant", [], ["c"], name="const", value=empty),
                       helper.make_node("Concat", ["x", "c"], ["y"], name="concat", axis=0)],
                      [vi("x", T.FLOAT, ["n"])], [vi("y", T.FLOAT, ["m"])])


def save(proto: onnx.ModelProto, tmp_path) -> model_mod.Model:
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    return model_mod.load(path)


def test_the_feeds_shapes_fix_every_dim_that_follows_from_them(models):
    loaded = model_mod.load(models.dynamic)
    assert [t.shape[0] for t in loaded.tensors] == ["batch", 2] and not isinstance(loaded.tensors[1].shape[1], int)
    shapes = sizes.run_shapes(loaded, {"x": (3, 4), "z": (2, 4096)})
    assert shapes == {"rx": (3, 4), "nz": (2, 4096)}
    assert sizes.bytes_of(loaded.tensors, shapes) == (3 * 4 + 2 * 4096) * 4
    assert sizes.bytes_of(loaded.tensors) == (4 + 2) * 4  # the catalogue's dynamic dims count 1: a lower bound
    assert sizes.all_known(loaded.tensors, shapes) and not sizes.all_known(loaded.tensors, {})
    assert sizes.run_shapes(loaded, {"z": (2, 4096), "x": (3, 4)}) is shapes  # kept for the same inputs
    assert sizes.run_shapes(loaded, {"x": (5, 4), "z": (2, 1)}) == {"rx": (5, 4), "nz": (2, 1)}
    assert [sizes.static(t.shape) for t in loaded.tensors] == [False, False]  # the catalogue keeps the model's own


def test_a_size_that_depends_on_the_data_stays_unknown(tmp_path):
    loaded = save(nonzero_model(), tmp_path)
    shapes = sizes.run_shapes(loaded, {"x": (6,)})
    assert shapes == {"r": (6,)} and not sizes.all_known(loaded.tensors, shapes)


def test_an_inferred_empty_axis_is_zero_and_an_input_of_another_rank_fixes_nothing(tmp_path):
    loaded = save(empty_constant_model(), tmp_path)
    assert [t.shape for t in loaded.tensors] == [(None,), ("m",)]
    assert sizes.run_shapes(loaded, {"x": (5,)}) == {"c": (0,), "y": (5,)}
    assert sizes.run_shapes(loaded, {"x": (5, 2)}) == {}


def test_a_run_writes_the_shapes_that_were_estimated(models, tmp_path):
    feeds = {"x": np.ones((2, 3, 4), np.float32), "z": np.ones((2, 2, 300), np.float32)}
    rs = api.run_variants(models.dynamic, parse_list(["ort", "ort:opt=disable"]), tmp_path / "run", feeds)
    shapes = sizes.run_shapes(rs.model, sizes.per_sample(rs.feeds))
    for run in rs.runs:
        for name in ("rx", "nz"):
            written = np.load(run.path("untapped", name))  # final outputs only: one run, untapped
            assert written.shape[1:] == shapes[name] and written.shape[0] == 2


def test_the_disk_budget_counts_the_dims_the_feeds_fix(models, tmp_path):
    loaded = model_mod.load(models.dynamic)
    plan = tap.plan(loaded, "all")
    listed = parse_list(["ort", "ort:opt=disable"])
    kinds, once, _ = variants.run_kinds(loaded, plan, listed, ("untapped", "tapped"), 1, 0)
    shapes = sizes.run_shapes(loaded, {"x": (1, 4), "z": (2, 100_000)})
    need = variants.check_disk(plan, loaded, 2, 1, 1, kinds, tmp_path, None, once=len(once), shapes=shapes)
    assert need >= 2 * 2 * 100_000 * 4  # z's output alone: 800 kB for each variant
    with pytest.raises(UsageError, match="over the budget"):
        api.compare(models.dynamic, listed, shapes={"z": (2, 100_000)}, max_disk=need - 1)
    report = api.compare(models.dynamic, listed, shapes={"z": (2, 100_000)}, max_disk=need)
    assert report.exit_code == 0
