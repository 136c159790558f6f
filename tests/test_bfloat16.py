"""bfloat16 inputs and outputs end to end: random feeds, .npz feeds (stored as raw `|V2` by NumPy), every backend
fed the right type, and the metrics computed in bfloat16."""
import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper

import comparator
from conftest import worker_record

BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory):
    """x (bfloat16) -> float32 -> Mul 1.1 -> Relu -> bfloat16 y: the bfloat16 rounding of y is the test."""
    k = onnx.numpy_helper.from_array(np.array(1.1, np.float32), "k")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["c"], to=T.FLOAT), helper.make_node("Mul", ["c", "k"], ["m"]),
         helper.make_node("Relu", ["m"], ["r"]), helper.make_node("Cast", ["r"], ["y"], to=T.BFLOAT16)],
        "g", [helper.make_tensor_value_info("x", T.BFLOAT16, [2, 3])],
        [helper.make_tensor_value_info("y", T.BFLOAT16, [2, 3])], [k])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path = tmp_path_factory.mktemp("bf16") / "bf16.onnx"
    onnx.save(proto, str(path))
    return path


def test_random_bfloat16_feeds_reach_every_backend(bf16_model):
    report = comparator.compare(bf16_model, ["ort", "ref", "torch", "tf"])
    assert {v.name: v.status for v in report.variants} == dict.fromkeys(["ort", "ref", "torch", "tf"], "ok"), \
        [(v.name, v.error) for v in report.variants]
    y = report.tensor("y")
    assert {m["ulp_dtype"] for m in y.metrics.values()} == {"bfloat16"}
    assert report.inputs["shapes"] == {"x": [2, 3]}


def test_bfloat16_npz_feeds_are_read_as_bfloat16(bf16_model, tmp_path):
    x = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5).astype(BF16)
    np.savez(tmp_path / "feeds.npz", x=x)  # NumPy stores it as raw bytes, |V2
    assert np.load(tmp_path / "feeds.npz")["x"].dtype.str == "|V2"
    report = comparator.compare(bf16_model, ["ort", "torch"], inputs=tmp_path / "feeds.npz",
                                workdir=tmp_path / "work")
    assert all(v.status == "ok" for v in report.variants), [(v.name, v.error) for v in report.variants]
    assert report.passed
    # the worker wrote y as bfloat16 of relu(1.1 * x): compare with the same computed here
    folder, record = worker_record(tmp_path / "work", "ort")
    info = record["tensors"]["untapped"]["y"]
    assert info["dtype"] == "bfloat16"
    raw = np.load(folder / info["file"])
    want = np.maximum(x.astype(np.float32) * np.float32(1.1), 0).astype(BF16)
    assert raw.view(BF16)[0].tobytes() == want.tobytes()
