"""The shared ONNX walker (backends/common/executor.py) on its own, with a NumPy op table: registration by opset
range and domain, refusal of unsupported ops before running, schema defaults, subgraphs, and the order in which
nodes run and their values are kept."""
import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper

from comparator.backends.common.executor import GraphExecutor, OpContext, OpTable, unsupported_op
from comparator.errors import UnsupportedError


def model(nodes, inputs=("x",), outputs=("y",), opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, T.FLOAT, None) for n in inputs],
                              [helper.make_tensor_value_info(n, T.FLOAT, None) for n in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def test_lookup_picks_the_registration_whose_opset_range_holds():
    table = OpTable("numpy")
    table.register("Clip", until=10)(lambda ctx, inputs, attrs: "attrs")
    table.register("Clip", since=11)(lambda ctx, inputs, attrs: "inputs")
    assert table.lookup("Clip", 6)(None, [], {}) == "attrs"
    assert table.lookup("Clip", 10)(None, [], {}) == "attrs"
    assert table.lookup("Clip", 11)(None, [], {}) == "inputs"
    assert table.lookup("Relu", 11) is None
    assert table.op_types() == ["Clip"]


def test_lookup_by_domain_treats_ai_onnx_as_the_default():
    table = OpTable("numpy")
    fn = table.register("Relu")(lambda ctx, inputs, attrs: None)
    custom = table.register("Relu", domain="com.example")(lambda ctx, inputs, attrs: None)
    assert table.lookup("Relu", 17, "ai.onnx") is fn
    assert table.lookup("Relu", 17, "") is fn
    assert table.lookup("Relu", 1, "com.example") is custom
    table.register("Add", "Sub")(fn)
    assert table.lookup("Add", 1) is fn and table.lookup("Sub", 1) is fn


def test_every_unsupported_op_is_named_before_anything_runs():
    table = OpTable("numpy")
    ran = []
    table.register("Relu")(lambda ctx, inputs, attrs: ran.append(1) or inputs[0])
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Frob", ["a"], ["b"]),
             helper.make_node("Blur", ["b"], ["y"], domain="com.example")]
    m = model(nodes, extra_opsets=[helper.make_opsetid("com.example", 2)])
    with pytest.raises(UnsupportedError) as err:
        GraphExecutor(m, table, np.asarray)
    assert "op Frob (opset 17)" in str(err.value) and "op com.example.Blur (opset 2)" in str(err.value)
    assert "are not supported by the numpy backend" in str(err.value)
    assert ran == []


def test_ops_inside_subgraphs_are_checked_too():
    table = OpTable("numpy")
    table.register("If")(lambda ctx, inputs, attrs: None)
    body = helper.make_graph([helper.make_node("Frob", [], ["z"])], "then", [],
                             [helper.make_tensor_value_info("z", T.FLOAT, None)])
    m = model([helper.make_node("If", ["x"], ["y"], then_branch=body, else_branch=body)])
    with pytest.raises(UnsupportedError, match="op Frob"):
        GraphExecutor(m, table, np.asarray)


def test_nodes_run_in_order_with_defaults_filled_and_values_kept_by_name():
    table = OpTable("numpy")
    seen = []

    @table.register("LeakyRelu")
    def leaky(ctx, inputs, attrs):
        seen.append((ctx.node.name, ctx.opset, dict(attrs)))
        x = inputs[0]
        return np.where(x > 0, x, x * attrs["alpha"])

    @table.register("Add")
    def add(ctx, inputs, attrs):
        seen.append((ctx.node.name, ctx.opset, sorted(ctx.scope)))
        return [inputs[0] + inputs[1]]

    nodes = [helper.make_node("LeakyRelu", ["x"], ["a"], name="first"),
             helper.make_node("LeakyRelu", ["a"], ["b"], name="second", alpha=0.5),
             helper.make_node("Add", ["a", "b"], ["y"], name="third")]
    executor = GraphExecutor(model(nodes, opset=13), table, np.asarray)
    out = executor.run({"x": np.array([-2.0, 3.0])})
    np.testing.assert_allclose(out["y"], [-0.02 - 0.01 / 1, 6.0], rtol=1e-6)
    assert [s[0] for s in seen] == ["first", "second", "third"]
    assert seen[0][2] == {"alpha": pytest.approx(0.01)}  # the schema's default
    assert seen[1][2] == {"alpha": 0.5}
    assert seen[2][1] == 13 and seen[2][2] == ["a", "b", "x"]  # what the node sees: values so far


def test_omitted_optional_inputs_arrive_as_none_and_unnamed_outputs_are_dropped():
    table = OpTable("numpy")
    got = []

    @table.register("Clip", since=11)
    def clip(ctx, inputs, attrs):
        got.append(inputs)
        return inputs[0], "ignored"

    m = model([helper.make_node("Clip", ["x", "", "hi"], ["y", ""])], inputs=("x", "hi"))
    out = GraphExecutor(m, table, np.asarray).run({"x": np.array([1.0]), "hi": np.array(2.0)})
    assert got[0][1] is None and list(out) == ["y"]


def test_tensor_attributes_become_framework_tensors_once():
    class Wrapped:
        def __init__(self, a):
            self.a = a

    table = OpTable("wrapped")
    seen = []

    @table.register("Constant")
    def constant(ctx, inputs, attrs):
        seen.append(attrs["value"])
        return attrs["value"]

    value = helper.make_tensor("v", T.FLOAT, [2], [1.0, 2.0])
    m = model([helper.make_node("Constant", [], ["y"], value=value)], inputs=())
    executor = GraphExecutor(m, table, Wrapped)
    executor.tensor_attributes()
    executor.run({})
    executor.run({})
    assert isinstance(seen[0], Wrapped) and seen[0] is seen[1]
    np.testing.assert_array_equal(seen[0].a, [1.0, 2.0])


def test_subgraphs_see_the_enclosing_scope():
    table = OpTable("numpy")

    @table.register("If")
    def if_(ctx, inputs, attrs):
        branch = attrs["then_branch"] if bool(inputs[0]) else attrs["else_branch"]
        return ctx.run_subgraph(branch, {})

    table.register("Neg")(lambda ctx, inputs, attrs: -inputs[0])
    table.register("Identity")(lambda ctx, inputs, attrs: inputs[0])

    def branch(op):
        return helper.make_graph([helper.make_node(op, ["v"], ["z"])], op, [],
                                 [helper.make_tensor_value_info("z", T.FLOAT, None)])

    m = model([helper.make_node("Identity", ["x"], ["v"]),
               helper.make_node("If", ["c"], ["y"], then_branch=branch("Neg"), else_branch=branch("Identity"))],
              inputs=("x", "c"))
    executor = GraphExecutor(m, table, np.asarray)
    assert executor.run({"x": np.array([2.0]), "c": np.array(True)})["y"] == -2.0
    assert executor.run({"x": np.array([2.0]), "c": np.array(False)})["y"] == 2.0


def test_unsupported_op_names_the_node_the_opset_and_the_framework():
    node = helper.make_node("Resize", ["x"], ["y"])
    err = unsupported_op(OpContext(node, 19, None), "torch", "mode=area")
    assert str(err).startswith("op Resize (opset 19) with mode=area is not supported by the torch backend")
