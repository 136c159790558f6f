"""The tvm backend folds shape computations when TVM's frontend refuses them, and names the nodes it cannot convert.

Exported models compute a Reshape's target from the input's own shape (Shape -> Gather -> Unsqueeze -> Concat);
TVM's Relax ONNX frontend takes that operand only as a constant, so it refuses such a model even with every input
shape bound. The backend then folds the shape arithmetic for the bound shapes (comparator/backends/tvm/fold.py)
and compiles the folded graph, under the same tensor names.
"""
import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

from conftest import const, make_model, vi

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tvm") is None, reason="apache-tvm is not installed")

TAPPED = ("s", "n", "target", "flat", "y")


def exported_reshape_model():
    """x[-1, 3, 4] -> Reshape(x, Concat(Gather(Shape(x), [0]), [12])) -> Relu: the target comes from the first
    dimension, declared -1 as exporters write an unknown one."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="/Shape"),
             helper.make_node("Gather", ["s", "first"], ["n"], axis=0, name="/Gather"),
             helper.make_node("Concat", ["n", "rest"], ["target"], axis=0, name="/Concat"),
             helper.make_node("Reshape", ["x", "target"], ["flat"], name="/Reshape"),
             helper.make_node("Relu", ["flat"], ["y"], name="/Relu")]
    return make_model(nodes, [vi("x", T.FLOAT, [-1, 3, 4])], [vi("y", T.FLOAT, [-1, 12])],
                      [const("first", np.array([0], np.int64)), const("rest", np.array([12], np.int64))])


def lstm_model():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((1, 16, 3)).astype(np.float32)
    r = rng.standard_normal((1, 16, 4)).astype(np.float32)
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["seq"], hidden_size=4, name="/rnn/LSTM"),
             helper.make_node("Relu", ["seq"], ["y"], name="/relu")]
    return make_model(nodes, [vi("x", T.FLOAT, [2, 1, 3])], [vi("y", T.FLOAT, [2, 1, 1, 4])],
                      [const("W", w), const("R", r)])


def value_reshape_model():
    """Reshape(x, Cast(Ceil(k))): a target computed from a run-time float input, which no folding may replace."""
    nodes = [helper.make_node("Ceil", ["k"], ["kc"], name="ceil"),
             helper.make_node("Cast", ["kc"], ["target"], to=T.INT64, name="cast"),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="my_reshape")]
    return make_model(nodes, [vi("x", T.FLOAT, [2, 6]), vi("k", T.FLOAT, [2])], [vi("y", T.FLOAT, ["a", "b"])])


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERCMP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("INFERCMP_NO_CACHE", raising=False)
    paths = {}
    for name, proto in {"reshape": exported_reshape_model(), "lstm": lstm_model(),
                        "value": value_reshape_model()}.items():
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(proto, str(paths[name]))
    return type("Env", (), {"root": tmp_path, "cache": tmp_path / "cache" / "tvm", **paths})


def open_session(path):
    from comparator.backends import get
    from comparator.backends.options import resolve

    backend = get("tvm")
    options = resolve("tvm", backend.options, {})
    backend.validate(options)
    return backend.open(str(path), options)


def test_fold_keeps_every_name_and_computes_only_shapes():
    from comparator.backends.tvm.fold import TOOL, fold_shapes

    model = exported_reshape_model()
    # Tap every tensor, as the tapped copy does: each intermediate is also a graph output.
    model.graph.output.extend(helper.make_tensor_value_info(n, T.INT64, [-1]) for n in ("s", "n", "target"))
    model.graph.output.append(helper.make_tensor_value_info("flat", T.FLOAT, [-1, 12]))
    folded, info = fold_shapes(model, {"x": [5, 3, 4]})
    assert info == {"tool": TOOL, "nodes_before": 5, "nodes_after": 2}
    assert [n.op_type for n in folded.graph.node] == ["Reshape", "Relu"]  # the tensor computations stay
    values = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in folded.graph.initializer}
    assert values["s"] == [5, 3, 4] and values["n"] == [5] and values["target"] == [5, 12]
    assert [o.name for o in folded.graph.output] == [o.name for o in model.graph.output]
    onnx.checker.check_model(folded)


def test_refused_reshape_runs_folded_and_agrees_with_ort(env):
    from comparator import compare

    report = compare(env.reshape, ["ort", "tvm"], shapes={"x": (2, 3, 4)}, seed=1)
    run = report.variant("tvm")
    assert run.status == "ok", (run.error, run.stderr_tail)
    names = {t.name for t in report.tensors}
    assert set(TAPPED) <= names
    for t in report.tensors:
        assert t.metrics["tvm"]["max_abs"] <= 1e-6, (t.name, t.metrics["tvm"])
    assert report.tensor("target").metrics["tvm"]["max_abs"] == 0
    folded = run.provenance["graph_folded"]
    assert folded["tool"] == "infercmp constant folding"
    assert folded["nodes_before"] == 5 and folded["nodes_after"] == 2
    assert "Reshape" in folded["why"]  # what TVM said about the unfolded graph


def test_cache_key_follows_the_bound_shapes(env):
    session = open_session(env.reshape)
    x2 = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 10
    x3 = np.arange(36, dtype=np.float32).reshape(3, 3, 4) - 10
    np.testing.assert_array_equal(session.run({"x": x2})["y"], np.maximum(x2.reshape(2, 12), 0))
    first = session.provenance()
    np.testing.assert_array_equal(session.run({"x": x3})["y"], np.maximum(x3.reshape(3, 12), 0))
    second = session.provenance()
    assert first["cache"]["key"] != second["cache"]["key"]
    assert first["cache"]["hit"] is False and second["cache"]["hit"] is False
    # A new session for the first shapes hits the folded entry, and its provenance still says it was folded.
    again = open_session(env.reshape)
    np.testing.assert_array_equal(again.run({"x": x2})["y"], np.maximum(x2.reshape(2, 12), 0))
    hit = again.provenance()
    assert hit["cache"]["hit"] is True and hit["cache"]["key"] == first["cache"]["key"]
    assert hit["graph_folded"]["nodes_after"] == 2 and "Reshape" in hit["graph_folded"]["why"]


def test_unconvertible_op_is_named_with_its_node(env):
    from comparator.errors import UnsupportedError

    with pytest.raises(UnsupportedError) as info:
        open_session(env.lstm)
    assert "TVM's Relax ONNX frontend has no converter for op LSTM (opset 17) (node /rnn/LSTM)" in info.value.message


def test_refusal_of_a_run_time_value_names_the_node_and_folds_nothing(env):
    from comparator.errors import UnsupportedError

    with pytest.raises(UnsupportedError) as info:
        open_session(env.value)
    assert "at op Reshape (node my_reshape)" in info.value.message
    assert "folded" not in info.value.message  # nothing to fold: Ceil and Cast compute on the input k


def test_dimension_declared_minus_one_is_symbolic(env, tmp_path):
    # TVM's frontend reads a declared -1 as a fixed size and then rejects every feed ("match_cast error").
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x", T.FLOAT, [-1, 3])],
                       [vi("y", T.FLOAT, [-1, 3])])
    onnx.save(model, str(tmp_path / "minus_one.onnx"))
    session = open_session(tmp_path / "minus_one.onnx")
    x = np.array([[-1, 0, 1], [2, -3, 4]], np.float32)
    np.testing.assert_array_equal(session.run({"x": x})["y"], np.maximum(x, 0))
    assert session.provenance()["shapes"] == "symbolic"
