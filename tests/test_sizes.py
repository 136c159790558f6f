"""The shapes a run gives the tensors, known before it runs (graph/sizes.py): what sizes its disk, memory and
windows. Each is checked against the files a real run writes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from comparator import api
from comparator.errors import UsageError
from comparator.graph import model as model_mod, shapefold, sizes, tap
from comparator.run import variants
from comparator.variant import parse_list
from conftest import make_model, vi


def empty_constant_model() -> onnx.ModelProto:
    """c: a Constant holding an empty tensor, whose inferred dim is 0 (an ONNX Runtime reader takes a 0 dim_value
    in a model's own annotations as dynamic)."""
    empty = helper.make_tensor("e", T.FLOAT, [0], [])
    return make_model([helper.make_node("Constant", [], ["c"], name="const", value=empty),
                       helper.make_node("Concat", ["x", "c"], ["y"], name="concat", axis=0)],
                      [vi("x", T.FLOAT, ["n"])], [vi("y", T.FLOAT, ["m"])])


def save(proto: onnx.ModelProto, tmp_path, name: str = "m") -> model_mod.Model:
    path = tmp_path / f"{name}.onnx"
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


def test_a_size_that_depends_on_the_data_stays_unknown(models):
    loaded = model_mod.load(models.nonzero)
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


def reshape_by_shape_model(opset: int = 12, big: bool = False) -> onnx.ModelProto:
    """y = Reshape(r, Concat(Slice(Shape(r), 0, 2), [-1])): at opset 12 ONNX's data propagation does not follow
    the Slice, so y's shape needs that computation evaluated (graph/shapefold.py). `big`: the Slice's ends come
    from a Constant too large to read (weights stored as Constant nodes are never evaluated)."""
    def const(name: str, values: list[int]) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.int64)))

    ends = [helper.make_node("Constant", [], ["table"], value=numpy_helper.from_array(np.full(2048, 2, np.int64))),
            helper.make_node("Slice", ["table", "st", "one"], ["en"])] if big else [const("en", [2])]
    return make_model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                       helper.make_node("Shape", ["r"], ["s"], name="shape"),
                       const("st", [0]), const("one", [1]), *ends,
                       helper.make_node("Slice", ["s", "st", "en"], ["head"], name="slice"),
                       const("tail", [-1]),
                       helper.make_node("Concat", ["head", "tail"], ["target"], name="concat", axis=0),
                       helper.make_node("Reshape", ["r", "target"], ["y"], name="reshape")],
                      [vi("x", T.FLOAT, ["n", 3, "h", "w"])], [vi("y", T.FLOAT, [None, None, None])], opset=opset)


def test_a_shape_computed_from_shapes_is_evaluated(tmp_path):
    loaded = save(reshape_by_shape_model(), tmp_path)
    assert sizes.run_shapes(loaded, {"x": (2, 3, 4, 5)})["y"] == (2, 3, 20)
    big = save(reshape_by_shape_model(big=True), tmp_path, "big")  # its ends would be read from a weight
    assert "y" not in sizes.run_shapes(big, {"x": (2, 3, 4, 5)})
    feeds = {"x": np.ones((1, 2, 3, 4, 5), np.float32)}  # one sample
    rs = api.run_variants(loaded, parse_list(["ort", "ref"]), tmp_path / "run", feeds)
    assert {r.variant.backend: np.load(r.path("untapped", "y")).shape[1:] for r in rs.runs} == {
        "ort": (2, 3, 20), "ref": (2, 3, 20)}


def fixed(proto: onnx.ModelProto) -> onnx.ModelProto:
    for d, v in zip(proto.graph.input[0].type.tensor_type.shape.dim, (2, 3, 4, 5)):
        d.Clear()
        d.dim_value = v
    return proto


def test_onnx_alone_follows_the_computed_shape_at_opset_17_only():
    def dims(opset: int) -> list[int]:
        got = onnx.shape_inference.infer_shapes(fixed(reshape_by_shape_model(opset)), data_prop=True)
        return [d.dim_value for d in got.graph.output[0].type.tensor_type.shape.dim]

    assert dims(17) == [2, 3, 20] and dims(12) == [0, 0, 0]  # unknown: what folding is for


def test_folding_evaluates_only_small_values_and_leaves_the_graph_it_was_given_alone(tmp_path):
    proto = fixed(reshape_by_shape_model())
    before = proto.SerializeToString()
    inferred = shapefold.infer(proto)
    assert proto.SerializeToString() == before
    assert [o.type.tensor_type.shape.dim[2].dim_value for o in inferred.graph.output] == [20]
    assert {n.op_type for n in inferred.graph.node} == {n.op_type for n in onnx.load_from_string(before).graph.node}
    assert [i.name for i in inferred.graph.initializer] == ["target.folded"]  # the Reshape reads the value folded
    assert np.array_equal(numpy_helper.to_array(inferred.graph.initializer[0]), [2, 3, -1])


def test_a_budget_checked_against_sizes_that_depend_on_the_data_says_so(models):
    path = models.nonzero
    listed = ["ort", "ort:opt=disable"]
    report = api.compare(path, listed, shapes={"x": (64,)}, max_disk=1 << 30)
    assert [n for n in report.model["notes"] if "on the data" in n] == [
        "1 tapped tensor (y) has a size that depends on the data: the estimate checked against --max-disk counted "
        "each of its unknown dims as 1"]
    assert not any("on the data" in n for n in api.compare(path, listed, shapes={"x": (64,)}).model["notes"])
    known = api.compare(models.dynamic, listed, shapes={"z": (2, 64)}, max_disk=1 << 30, max_memory=1 << 30)
    assert not any("on the data" in n for n in known.model["notes"])  # every size known: nothing to say
    loaded = model_mod.load(models.dynamic)
    assert api._unsized(tap.plan(loaded, "all"), {}, None, 1) == [
        "2 tapped tensors (the first: rx) have sizes that depend on the data: the estimate checked against "
        "--max-memory counted each of their unknown dims as 1"]
