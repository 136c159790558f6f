"""String tensors are compared for equality (no ULPs, no error figures between 0 and inf)."""
import numpy as np
import onnx
from onnx import TensorProto as T, helper

import comparator
from comparator.measure.metrics import compare


def test_string_metrics_by_hand():
    ref = np.array(["a", "bb", "c", "d"])
    got = np.array(["a", "bc", "c", "e"])
    r = compare(ref, got)
    # 2 of 4 equal; the first difference is at flat index 1; each difference is a violation
    assert (r["identical_fraction"], r["violations"], r["worst_index"], r["bit_identical"]) == (0.5, 2, 1, False)
    assert (r["max_abs"], r["max_ulp"], r["ulp_dtype"]) == (float("inf"), None, None)
    same = compare(ref, ref.copy())
    assert same["bit_identical"] and same["max_abs"] == 0.0 and same["violations"] == 0 and same["cosine"] == 1.0


def test_a_string_output_is_compared_across_backends(tmp_path):
    """Cast float -> string: onnxruntime writes 9 for 9.0 where onnx.reference writes 9.0."""
    graph = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["m"]),
                               helper.make_node("Cast", ["m"], ["s"], to=T.STRING)], "g",
                              [helper.make_tensor_value_info("x", T.FLOAT, [4])],
                              [helper.make_tensor_value_info("s", T.STRING, [4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(tmp_path / "str.onnx"))
    report = comparator.compare(tmp_path / "str.onnx", ["ort", "ref"],
                                inputs={"x": np.array([1.5, 0.1, 3.0, 1e-8], np.float32)})
    assert all(v.status == "ok" for v in report.variants), [(v.name, v.error) for v in report.variants]
    m = report.tensor("s").metrics["ref"]
    assert (m["identical_fraction"], m["violations"], m["worst_index"]) == (0.75, 1, 2)
    assert report.exit_code == 1
