"""float64 promotion: every float tensor, type and Cast target becomes double; integers and quantization
scales stay; the ref backend with dtype=float64 really computes and returns float64."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import comparator
from comparator.backends.reference import ReferenceBackend
from comparator.graph.promote import promote_float64
from conftest import const, loop_model, make_model, vi


def mixed_model():
    """Float initializer, float input, int input, Constant (tensor/value_float/value_floats),
    ConstantOfShape, a Cast through float16 and a Cast to int64."""
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["a"]),
        helper.make_node("Constant", [], ["c1"], value=numpy_helper.from_array(np.full(3, 0.1, np.float32))),
        helper.make_node("Add", ["a", "c1"], ["b"]),
        helper.make_node("Constant", [], ["c2"], value_float=0.3),
        helper.make_node("Mul", ["b", "c2"], ["d"]),
        helper.make_node("Constant", [], ["c3"], value_floats=[0.1, 0.2, 0.7]),
        helper.make_node("Add", ["d", "c3"], ["e"]),
        helper.make_node("ConstantOfShape", ["shape"], ["f"],
                         value=numpy_helper.from_array(np.array([1 / 3], np.float32))),
        helper.make_node("Add", ["e", "f"], ["g"]),
        helper.make_node("Cast", ["g"], ["h"], to=T.FLOAT16),
        helper.make_node("Cast", ["h"], ["y"], to=T.FLOAT),
        helper.make_node("Cast", ["y"], ["yi"], to=T.INT64),
        helper.make_node("Add", ["yi", "n"], ["z"]),
    ]
    return make_model(nodes, [vi("x", T.FLOAT, [2, 3]), vi("n", T.INT64, [2, 3])],
                      [vi("y", T.FLOAT, [2, 3]), vi("z", T.INT64, [2, 3])],
                      [const("w", np.array([0.1, 1 / 3, 1e-3], np.float32)),
                       const("shape", np.array([2, 3], np.int64))])


@pytest.fixture(scope="module")
def promoted():
    original = mixed_model()
    return original, promote_float64(original)


def attrs(model):
    return {(n.output[0], a.name): a for n in model.graph.node for a in n.attribute}


def test_initializers_inputs_and_outputs(promoted):
    original, out = promoted
    inits = {t.name: t for t in out.graph.initializer}
    assert inits["w"].data_type == T.DOUBLE
    assert np.array_equal(numpy_helper.to_array(inits["w"]),
                          np.array([0.1, 1 / 3, 1e-3], np.float32).astype(np.float64))
    assert inits["shape"].data_type == T.INT64
    assert [i.type.tensor_type.elem_type for i in out.graph.input] == [T.DOUBLE, T.INT64]
    assert [o.type.tensor_type.elem_type for o in out.graph.output] == [T.DOUBLE, T.INT64]
    assert original.graph.initializer[0].data_type == T.FLOAT  # the input model is not modified


def test_cast_targets_and_constants(promoted):
    _, out = promoted
    a = attrs(out)
    assert a[("h", "to")].i == T.DOUBLE and a[("y", "to")].i == T.DOUBLE
    assert a[("yi", "to")].i == T.INT64
    assert a[("c1", "value")].t.data_type == T.DOUBLE
    assert a[("f", "value")].t.data_type == T.DOUBLE
    # value_float / value_floats have no double form: they become a double tensor
    assert ("c2", "value_float") not in a and a[("c2", "value")].t.data_type == T.DOUBLE
    assert numpy_helper.to_array(a[("c2", "value")].t) == np.float64(np.float32(0.3))
    assert numpy_helper.to_array(a[("c3", "value")].t).dtype == np.float64


def test_promoted_model_is_valid_and_computes_in_float64(promoted):
    original, out = promoted
    onnx.checker.check_model(out)
    onnx.shape_inference.infer_shapes(out, strict_mode=True)
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    n = np.ones((2, 3), np.int64)
    y32, _ = ReferenceEvaluator(original).run(None, {"x": x, "n": n})
    y64, z64 = ReferenceEvaluator(out).run(None, {"x": x.astype(np.float64), "n": n})
    assert y32.dtype == np.float32 and y64.dtype == np.float64 and z64.dtype == np.int64
    w = np.array([0.1, 1 / 3, 1e-3], np.float32).astype(np.float64)
    exact = (x * w + np.float32(0.1)) * np.float32(0.3) + np.array([0.1, 0.2, 0.7], np.float32) + np.float32(1 / 3)
    assert np.abs(y64 - exact).max() < 1e-12   # no float16 rounding left on the way
    assert np.abs(y32 - exact).max() > 1e-4    # the float16 Cast in the original really rounds


def test_subgraphs_are_promoted():
    out = promote_float64(loop_model(3))
    body = out.graph.node[0].attribute[0].g
    assert body.initializer[0].data_type == T.DOUBLE
    assert [i.type.tensor_type.elem_type for i in body.input] == [T.INT64, T.BOOL, T.DOUBLE]
    (y,) = ReferenceEvaluator(out).run(None, {"x": np.zeros(4)})
    assert y.dtype == np.float64 and y.tolist() == [3.0] * 4


def qdq_model():
    """Relu -> QuantizeLinear (initializer scale) -> DequantizeLinear (Constant scale) -> Mul by a float weight."""
    return make_model([helper.make_node("Relu", ["x"], ["r"]),
                       helper.make_node("Constant", [], ["s2"], value=numpy_helper.from_array(np.float32(0.05))),
                       helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["q"]),
                       helper.make_node("DequantizeLinear", ["q", "s2", "zp"], ["d"]),
                       helper.make_node("Mul", ["d", "w"], ["y"])],
                      [vi("x", T.FLOAT, [5])], [vi("y", T.FLOAT, [5])],
                      [const("s", np.float32(0.1)), const("zp", np.uint8(3)),
                       const("w", np.full(5, 1 / 3, np.float32))], opset=21)


def open_ref(model, folder, dtype):
    path = folder / f"m{len(list(folder.iterdir()))}.onnx"
    onnx.save(model, str(path))
    return ReferenceBackend().open(str(path), {"dtype": dtype})


def test_quantization_keeps_float32_scales_behind_casts():
    out = promote_float64(qdq_model())
    onnx.checker.check_model(out, full_check=True)  # every node well typed
    inits = {t.name: t.data_type for t in out.graph.initializer}
    assert inits == {"s": T.FLOAT, "zp": T.UINT8, "w": T.DOUBLE}
    assert attrs(out)[("s2", "value")].t.data_type == T.FLOAT
    ops = [(n.op_type, list(n.input), list(n.output)) for n in out.graph.node]
    assert ops[2:6] == [("Cast", ["r"], ["r_float32"]), ("QuantizeLinear", ["r_float32", "s", "zp"], ["q"]),
                        ("DequantizeLinear", ["q", "s2", "zp"], ["d_dequantized"]),
                        ("Cast", ["d_dequantized"], ["d"])]
    assert attrs(out)[("r_float32", "to")].i == T.FLOAT and attrs(out)[("d", "to")].i == T.DOUBLE


def test_quantized_model_in_float64_quantizes_as_the_model_does(tmp_path):
    # 0.26 / 0.1 = 2.6 rounds to 3 (+3) -> 6; dequantized (6 - 3) * 0.05 = 0.15 exactly in float32's grid
    x = np.array([-1, 0.26, 0.5, 7, 30], np.float32)
    y32 = ReferenceEvaluator(qdq_model()).run(None, {"x": x})[0]
    session = open_ref(qdq_model(), tmp_path, "float64")
    y64 = session.run({"x": x})["y"]
    q = np.clip(np.rint(np.maximum(x, 0) / np.float32(0.1)) + 3, 0, 255)
    d = ((q - 3) * np.float32(0.05)).astype(np.float32)  # DequantizeLinear computes in its scale's type
    assert y64.dtype == np.float64 and np.array_equal(y64, d.astype(np.float64) * np.float64(np.float32(1 / 3)))
    assert y32.dtype == np.float32 and np.abs(y32 - y64).max() < 1e-6


def test_float64_erf_is_exact(tmp_path):
    # onnx.reference's own Erf returns float32 values even for float64 tensors; the ref backend replaces it
    import math

    x = np.linspace(-3, 3, 101)
    model = make_model([helper.make_node("Erf", ["x"], ["y"])], [vi("x", T.DOUBLE, [101])],
                       [vi("y", T.DOUBLE, [101])])
    y = open_ref(model, tmp_path, "model").run({"x": x})["y"]
    assert np.abs(y - np.array([math.erf(v) for v in x])).max() == 0
    x32 = x.astype(np.float32)  # float32 stays bit-identical to onnx.reference's own kernel
    model32 = make_model([helper.make_node("Erf", ["x"], ["y"])], [vi("x", T.FLOAT, [101])], [vi("y", T.FLOAT, [101])])
    assert np.array_equal(open_ref(model32, tmp_path, "model").run({"x": x32})["y"],
                          ReferenceEvaluator(model32).run(None, {"x": x32})[0])


def test_ref_backend_float64(models):
    session = ReferenceBackend().open(str(models.exp_chain), {"dtype": "float64"})
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    (y64,) = session.run({"x": x}).values()
    (y32,) = ReferenceBackend().open(str(models.exp_chain), {"dtype": "model"}).run({"x": x}).values()
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    exact = np.tanh(np.exp(np.maximum(x.astype(np.float64) * 0.5 + 0.25, 0)))
    assert np.abs(y64 - exact).max() < 1e-15 < np.abs(y32 - exact).max()
    assert session.provenance()["dtype"] == "float64"


def test_float64_variant_writes_float64_tensors(tmp_path, models):
    report = comparator.compare(models.small, ["ref", "ref:dtype=float64"], workdir=tmp_path)
    assert [v.status for v in report.variants] == ["ok", "ok"]
    (run,) = tmp_path.glob("run-*")  # the run's own folder under --workdir
    files = sorted((run / "01-ref__dtype=float64").rglob("*.npy"))
    assert len(files) == 2  # y and mm, tapped: the interpreter runs once (tests/test_one_run.py)
    assert {np.load(f, allow_pickle=False).dtype for f in files} == {np.dtype(np.float64)}
    assert {np.load(f, allow_pickle=False).dtype for f in (run / "00-ref").rglob("*.npy")} == {
        np.dtype(np.float32)}


def test_qdq_conv_runs_on_every_float64_oracle(tmp_path):
    """An opset-13 Q/DQ Conv (per-channel int8 weights, uint8 activations), as quantization tools export: the
    float64 oracles run it and agree bit for bit, since the model's quantization steps are the same in each."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "sy", "zy"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"])]
    model = make_model(nodes, [vi("x", T.FLOAT, [1, 3, 8, 8])], [vi("y", T.FLOAT, [1, 4, 8, 8])],
                       [const("sx", np.float32(0.02)), const("zx", np.uint8(128)), const("wq", w),
                        const("sw", np.array([0.01, 0.02, 0.015, 0.005], np.float32)),
                        const("zw", np.zeros(4, np.int8)), const("b", rng.standard_normal(4).astype(np.float32)),
                        const("sy", np.float32(0.05)), const("zy", np.uint8(0))], opset=13)
    path = tmp_path / "qdq.onnx"
    onnx.save(model, str(path))
    report = comparator.compare(path, ["ref:dtype=float64", "torch:dtype=float64", "ref", "ort:opt=disable"],
                                workdir=tmp_path / "work")
    assert [(v.name, v.status) for v in report.variants] == [
        ("ref:dtype=float64", "ok"), ("torch:dtype=float64", "ok"), ("ref", "ok"), ("ort:opt=disable", "ok")]
    assert ["ref:dtype=float64", "torch:dtype=float64"] in report.equivalence_classes
    assert report.tensor("y").metrics["torch:dtype=float64"]["bit_identical"]


def test_constant_of_shape_default_and_sequence_types_are_promoted():
    # ConstantOfShape without `value` makes float32 zeros; a sequence input's tensors are typed inside the sequence.
    seq = helper.make_tensor_sequence_value_info("s", T.FLOAT, [3])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["z"], name="zeros"),
             helper.make_node("SequenceAt", ["s", "zero"], ["first"], name="at"),
             helper.make_node("Add", ["z", "first"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [seq], [vi("y", T.FLOAT, [3])],
                              [const("shape", np.array([3], np.int64)), const("zero", np.array(0, np.int64))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    promoted = promote_float64(model)
    zeros = next(n for n in promoted.graph.node if n.op_type == "ConstantOfShape")
    assert numpy_helper.to_array(zeros.attribute[0].t).dtype == np.float64
    assert promoted.graph.input[0].type.sequence_type.elem_type.tensor_type.elem_type == T.DOUBLE
    feeds = {"s": [np.arange(3, dtype=np.float64)]}
    assert ReferenceEvaluator(promoted).run(None, feeds)[0].dtype == np.float64
