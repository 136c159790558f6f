"""Every executor error names its node: name, op type, opset, and the types and shapes of its inputs."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper

from comparator.backends.common.executor import OpContext, describe_node, describe_value, node_error
from comparator.errors import BackendError, UnsupportedError
from conftest import const, vi
from onnx_cases import executors, make_model, run

X = np.arange(6, dtype=np.float32).reshape(2, 3)


def bad_reshape_model():
    """Two Reshape nodes; the second asks for 4 elements from 6."""
    return make_model([helper.make_node("Reshape", ["x", "s6"], ["a"], name="fine_reshape"),
                       helper.make_node("Reshape", ["a", "s4"], ["y"], name="bad_reshape")],
                      [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, None)],
                      [const("s6", np.array([6], np.int64)), const("s4", np.array([4], np.int64))])


def bad_branch_model():
    """The failing Reshape sits inside an If's then branch: the error names it, not the If."""
    then = helper.make_graph([helper.make_node("Reshape", ["x", "s4"], ["t"], name="inner_reshape")], "then", [],
                             [vi("t", T.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="inner_identity")], "else", [],
                              [vi("e", T.FLOAT, None)])
    return make_model([helper.make_node("If", ["c"], ["y"], name="the_if", then_branch=then, else_branch=other)],
                      [vi("x", T.FLOAT, [2, 3]), vi("c", T.BOOL, [])], [vi("y", T.FLOAT, None)],
                      [const("s4", np.array([4], np.int64))])


@pytest.mark.parametrize("executor", executors("torch", "tf", "ref"))
def test_a_failing_node_is_named_with_its_op_opset_and_input_shapes(executor):
    with pytest.raises(BackendError) as err:
        run(executor, bad_reshape_model(), {"x": X})
    message = err.value.message
    assert "node 'bad_reshape' (op Reshape, opset 17" in message, message
    assert "a float32[6]" in message and "s4 int64[1]" in message, message


@pytest.mark.parametrize("executor", executors("torch", "tf", "ref"))
def test_a_node_failing_inside_a_subgraph_is_the_one_named(executor):
    with pytest.raises(BackendError) as err:
        run(executor, bad_branch_model(), {"x": X, "c": np.array(True)})
    message = err.value.message
    assert "node 'inner_reshape' (op Reshape, opset 17; inputs: x float32[2, 3], s4 int64[1])" in message, message
    assert "the_if" not in message


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_tf_traced_modes_name_the_node_too(mode):
    pytest.importorskip("tensorflow")
    with pytest.raises(BackendError) as err:
        run("tf", bad_reshape_model(), {"x": X}, mode=mode)
    assert "'bad_reshape' (op Reshape, opset 17" in err.value.message, err.value.message


def test_an_unsupported_error_keeps_its_text_and_gains_the_node():
    node = helper.make_node("Shape", ["x"], ["y"], name="shape_7", domain="com.example")
    err = UnsupportedError("op Shape (opset 16) with start=9 is not supported by the torch backend", "hint")
    out = node_error(err, node, 16, [X], "torch")
    assert out is err and out.hint == "hint"
    assert out.message == ("op Shape (opset 16) with start=9 is not supported by the torch backend "
                           "[in node 'shape_7' (op Shape, opset 16, domain com.example; inputs: x float32[2, 3])]")
    assert node_error(out, helper.make_node("If", ["c"], ["z"]), 16, [], "torch").message == out.message


def test_describe_value_by_duck_typing():
    assert describe_value(None) == "omitted"
    assert describe_value([X, X]) == "sequence of 2"
    assert describe_value(np.zeros((0, 4), np.int64)) == "int64[0, 4]"
    assert describe_value(np.float64(1.0)) == "float64[]"
    node = helper.make_node("Add", ["a", ""], ["y"])
    assert describe_node(node, 13, [X, None]) == "node '(unnamed)' (op Add, opset 13; inputs: a float32[2, 3], " \
                                                 "(omitted) omitted)"
    assert OpContext(node, 13, None).opset == 13
