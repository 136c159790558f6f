"""Model loading: every bad file is a one-line ModelError (exit 2 through the CLI); external data stays inside
the model's folder; the tensor catalogue is typed and in topological order."""
import hashlib
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from comparator.graph import model as model_mod, stored
from comparator.errors import ModelError
from conftest import assert_clean_error, small_model, vi


def load_error(path) -> ModelError:
    with pytest.raises(ModelError) as info:
        model_mod.load(path)
    assert "\n" not in info.value.message, info.value.message
    assert info.value.hint
    return info.value


# ---- files that are not models

def test_missing_file(tmp_path, cli):
    assert "does not exist" in load_error(tmp_path / "nope.onnx").message
    code, _, err = cli("compare", tmp_path / "nope.onnx")
    assert code == 2
    assert_clean_error(err, "does not exist", "nope.onnx")


def test_directory_is_not_a_model(tmp_path):
    assert "is not a file" in load_error(tmp_path).message


def test_empty_file(tmp_path, cli):
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert "is empty" in load_error(tmp_path / "empty.onnx").message
    code, _, err = cli("compare", tmp_path / "empty.onnx", "--backends", "ort")
    assert code == 2
    assert_clean_error(err, "is empty")


@pytest.mark.parametrize("data", [b"hello, I am not a model\n", b"PK\x03\x04" + bytes(range(256)) * 4,
                                  b"\x08\x08", b"\xff" * 64, b"\x00" * 100])
def test_not_onnx_bytes(tmp_path, cli, data):
    path = tmp_path / "junk.onnx"
    path.write_bytes(data)
    error = load_error(path)
    assert "not a readable ONNX model" in error.message or "holds no graph" in error.message
    code, _, err = cli("compare", path, "--backends", "ort")
    assert code == 2
    assert_clean_error(err, "junk.onnx")


@pytest.mark.parametrize("fraction", [0.5, 0.01, 0.1, 0.333, 0.9, 0.999])
def test_truncated_real_model(tmp_path, models, fraction):
    data = models.cnn.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:int(len(data) * fraction)])
    error = load_error(path)
    assert "truncated" in (error.message + error.hint)


def test_truncated_at_every_offset_of_a_small_model(tmp_path):
    data = small_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    for offset in range(1, len(data)):
        path.write_bytes(data[:offset])
        with pytest.raises(ModelError):
            model_mod.load(path)


def test_truncated_through_the_cli(tmp_path, models, cli):
    data = models.cnn.read_bytes()
    (tmp_path / "half.onnx").write_bytes(data[:len(data) // 2])
    code, _, err = cli("compare", tmp_path / "half.onnx", "--backends", "ort")
    assert code == 2
    assert_clean_error(err, "not a readable ONNX model")


def test_checker_failure(tmp_path, cli):
    # Relu reads a tensor nothing produces: onnx.checker refuses the graph.
    graph = helper.make_graph([helper.make_node("Relu", ["ghost"], ["y"])], "g",
                              [vi("x", T.FLOAT, [2])], [vi("y", T.FLOAT, [2])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "bad.onnx"
    path.write_bytes(proto.SerializeToString())
    error = load_error(path)
    assert "fails the ONNX checker" in error.message and "ghost" in error.message
    code, _, err = cli("compare", path, "--backends", "ort")
    assert code == 2
    assert_clean_error(err, "fails the ONNX checker")


# ---- external data

def external_model(folder, location="w.bin"):
    """small_model with its initializer stored in `location`, relative to folder (the file is written there
    unless the location leaves the folder: then the caller places it)."""
    proto = small_model()
    tensor = proto.graph.initializer[0]
    data = numpy_helper.to_array(tensor).tobytes()
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "ext.onnx"
    path.write_bytes(proto.SerializeToString())
    return path, data


def test_external_data_inside_folder_loads_and_is_hashed(tmp_path):
    (tmp_path / "data").mkdir()
    path, data = external_model(tmp_path, "data/w.bin")
    (tmp_path / "data" / "w.bin").write_bytes(data)
    loaded = model_mod.load(path)
    assert not loaded.proto.graph.initializer[0].raw_data  # the parent never holds the weights
    weights = numpy_helper.to_array(stored.load(path).graph.initializer[0])
    assert np.array_equal(weights, np.arange(16, dtype=np.float32).reshape(4, 4) / 7)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes() + data).hexdigest()
    # same .onnx bytes, different weights: a different model, a different hash
    (tmp_path / "data" / "w.bin").write_bytes(data[::-1])
    assert model_mod.load(path).sha256 != loaded.sha256


def test_external_data_escaping_with_dotdot(tmp_path, cli):
    inner = tmp_path / "model"
    inner.mkdir()
    path, data = external_model(inner, "../x.bin")
    (tmp_path / "x.bin").write_bytes(data)  # exists, but outside the model's folder
    error = load_error(path)
    assert "outside the model's folder" in error.message and "../x.bin" in error.message
    code, _, err = cli("compare", path, "--backends", "ort")
    assert code == 2
    assert_clean_error(err, "outside the model's folder")


def test_external_data_absolute_path(tmp_path):
    target = tmp_path / "abs.bin"
    path, data = external_model(tmp_path, str(target))
    target.write_bytes(data)
    assert "absolute" in load_error(path).message


def test_external_data_symlink_escaping(tmp_path):
    inner, outside = tmp_path / "model", tmp_path / "outside"
    inner.mkdir()
    outside.mkdir()
    path, data = external_model(inner, "w.bin")
    (outside / "w.bin").write_bytes(data)
    os.symlink(outside / "w.bin", inner / "w.bin")
    assert "outside the model's folder" in load_error(path).message
    # a symlinked folder escapes the same way
    os.symlink(outside, inner / "sub")
    path, _ = external_model(inner, "sub/w.bin")
    assert "outside the model's folder" in load_error(path).message


def test_external_data_missing_file(tmp_path, cli):
    path, _ = external_model(tmp_path, "w.bin")
    error = load_error(path)
    assert "'w.bin'" in error.message and "missing" in error.message
    code, _, err = cli("compare", path, "--backends", "ort")
    assert code == 2
    assert_clean_error(err, "missing")


# ---- the catalogue

def test_catalogue_of_conv_bn(models):
    m = model_mod.load(models.conv_bn)
    assert [t.name for t in m.tensors] == ["conv", "bn", "y"]
    assert [t.op_type for t in m.tensors] == ["Conv", "BatchNormalization", "Relu"]
    assert [t.index for t in m.tensors] == [0, 1, 2]
    assert [t.is_output for t in m.tensors] == [False, False, True]
    assert all(t.shape == (1, 8, 8, 8) and t.dtype == "float32" for t in m.tensors)
    assert [(i.name, i.dtype, i.shape) for i in m.inputs] == [("x", "float32", (1, 3, 8, 8))]
    assert m.outputs == ["y"]
    summary = m.summary()
    assert summary["sha256"] == hashlib.sha256(models.conv_bn.read_bytes()).hexdigest()
    assert summary["opsets"] == {"ai.onnx": 17} and summary["nodes"] == 3


def test_catalogue_keeps_dynamic_dims(models):
    m = model_mod.load(models.dynamic)
    assert [(i.name, i.shape) for i in m.inputs] == [("x", ("batch", 4)), ("z", (2, None))]
    assert m.summary()["inputs"][0] == {"name": "x", "dtype": "float32", "shape": ["batch", 4]}


def test_initializers_are_not_inputs(tmp_path):
    proto = small_model()
    proto.graph.input.append(vi("w", T.FLOAT, [4, 4]))  # IR < 4 style: initializer listed as an input too
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    assert [i.name for i in model_mod.load(path).inputs] == ["x"]


def test_output_passed_straight_from_input(tmp_path):
    graph = helper.make_graph([], "g", [vi("x", T.FLOAT, [2])], [vi("x", T.FLOAT, [2])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(tmp_path / "m.onnx"))
    m = model_mod.load(tmp_path / "m.onnx")
    assert [(t.name, t.op_type, t.is_output) for t in m.tensors] == [("x", "(input)", True)]


def test_an_optional_output_shape_inference_skips_is_typed_from_the_schema(tmp_path):
    """Dropout-7's mask (as in VGG-19 from the onnx wheel): shape inference leaves it untyped, the schema says `T`,
    the type of its data. It is tapped and compared like any tensor."""
    import comparator
    from comparator.graph import tap

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]),
                               helper.make_node("Dropout", ["r"], ["y", "mask"], ratio=0.5)],
                              "g", [helper.make_tensor_value_info("x", T.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [2, 3])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    proto.ir_version = 7
    path = tmp_path / "dropout.onnx"
    onnx.save(proto, str(path))
    m = model_mod.load(path)
    mask = next(t for t in m.tensors if t.name == "mask")
    assert mask.dtype == "float32"
    assert not tap.plan(m, "all").skipped
    report = comparator.compare(path, ["ref", "torch", "tf", "ort"])
    metrics = report.tensor("mask").metrics
    # inference keeps every element: a mask of ones (onnx.reference, torch and TF); onnxruntime writes zeros
    assert metrics["torch"]["bit_identical"] and metrics["tf"]["bit_identical"], metrics
    assert metrics["ort"]["max_abs"] == 1.0
