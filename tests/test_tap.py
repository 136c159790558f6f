"""Tap plans (all / outputs / names and globs) and the model copies the workers run."""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper

from comparator.graph import model as model_mod, stored
from comparator.graph import tap
from comparator.errors import UsageError
from conftest import vi


@pytest.fixture(scope="module")
def cnn(models):
    return model_mod.load(models.cnn)


@pytest.fixture(scope="module")
def conv_bn(models):
    return model_mod.load(models.conv_bn)


def test_all_and_outputs(cnn):
    everything = tap.plan(cnn, "all")
    assert everything.names == [t.name for t in cnn.tensors] and len(everything.names) == 17
    assert not everything.skipped
    assert tap.plan(cnn, "outputs").names == ["probs"]
    assert tap.plan(cnn).names == everything.names


def test_globs_keep_topological_order_and_always_include_outputs(cnn):
    got = tap.plan(cnn, "/block2/*,/block1/bn/*").names
    assert got == ["/block1/bn/BatchNormalization_output_0", "/block2/conv/Conv_output_0",
                   "/block2/bn/BatchNormalization_output_0", "/block2/relu/Relu_output_0", "probs"]
    assert tap.plan(cnn, ["/fc/Gemm_output_0", "/fc/*"]).names == ["/fc/Gemm_output_0", "probs"]
    assert tap.plan(cnn, "*/Relu_*").names == [t.name for t in cnn.tensors
                                               if t.op_type == "Relu" or t.is_output]


@pytest.mark.parametrize("spec", ["/block9/*", "conv", "/block1/bn/BatchNormalization_output_0,nope"])
def test_unknown_glob(cnn, spec):
    with pytest.raises(UsageError) as info:
        tap.plan(cnn, spec)
    assert "matches no tensor" in info.value.message
    assert "/block1/conv/Conv_output_0" in info.value.hint


@pytest.mark.parametrize("spec", ["", " , ", []])
def test_empty_tap(cnn, spec):
    with pytest.raises(UsageError, match="--tap is empty"):
        tap.plan(cnn, spec)


def test_tapped_copy_is_typed_and_runs(tmp_path, cnn):
    plan = tap.plan(cnn, "all")
    untapped, tapped = tap.write_copies(cnn, plan, tmp_path)
    assert untapped.parent == tapped.parent == tmp_path  # graph-only copies: the weights are read in place
    assert onnx.load(str(untapped), load_external_data=False).graph.node == onnx.load(str(cnn.path)).graph.node
    base, copy = stored.load(untapped), stored.load(tapped)
    assert [o.name for o in base.graph.output] == ["probs"]
    assert [o.name for o in copy.graph.output] == ["probs"] + [n for n in plan.names if n != "probs"]
    for out in copy.graph.output:
        assert out.type.tensor_type.elem_type == T.FLOAT, out.name
    onnx.checker.check_model(copy)
    # the copy holds the graph only: its weights are read from the input model's file
    assert tapped.stat().st_size < cnn.path.stat().st_size
    assert stored.external_dir(tapped) == cnn.path.resolve().parent
    so = ort.SessionOptions()
    so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                str(stored.external_dir(tapped)))
    session = ort.InferenceSession(str(tapped), so, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 32, 32), np.float32)
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": x})))
    assert set(values) == set(plan.names)
    assert values["/block1/conv/Conv_output_0"].shape == (1, 16, 32, 32)
    plain = ort.InferenceSession(str(cnn.path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    np.testing.assert_allclose(values["probs"], plain, rtol=1e-5)  # same weights; tapping may change fusion


def test_untyped_tensor_is_skipped_not_given_a_made_up_type(tmp_path):
    # shape inference cannot type the output of an op from an unknown domain (Cast types its own)
    graph = helper.make_graph([helper.make_node("Foo", ["x"], ["f"], domain="com.example"),
                               helper.make_node("Cast", ["f"], ["r"], to=T.FLOAT),
                               helper.make_node("Neg", ["r"], ["y"])],
                              "g", [vi("x", T.FLOAT, [2])], [vi("y", T.FLOAT, [2])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    proto.ir_version = 8
    onnx.save(proto, str(tmp_path / "custom.onnx"))
    m = model_mod.load(tmp_path / "custom.onnx")
    plan = tap.plan(m, "all")
    assert plan.skipped == [("f", "shape inference gave no element type")]
    assert plan.names == ["r", "y"]
    folder = tmp_path / "copies"
    folder.mkdir()
    _, tapped = tap.write_copies(m, plan, folder)
    outputs = {o.name: o.type.tensor_type.elem_type for o in onnx.load(str(tapped)).graph.output}
    assert outputs == {"y": T.FLOAT, "r": T.FLOAT}


def _ort_session(path):
    from comparator.backends.ort import OrtBackend
    from comparator.backends.options import resolve

    backend = OrtBackend()
    return backend.open(str(path), resolve("ort", backend.options, {}))


def test_a_copy_is_lowered_only_when_the_installed_runtime_refuses_the_ir_version(tmp_path, models):
    # Decided by trying the installed onnxruntime, not by a version number: IR 99 is refused by every release,
    # the onnx package's own IR 14 only by those older than 1.32.
    proto = onnx.load(str(models.ir14))
    proto.ir_version = 99
    onnx.save(proto, str(tmp_path / "ir99.onnx"))
    for path, ir in ((tmp_path / "ir99.onnx", 99), (models.ir14, 14)):
        try:
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            refused = False
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            assert "IR version" in str(exc)
            refused = True
        assert refused or ir != 99
        session = _ort_session(path)
        out = session.run({"x": np.ones((1, 4), np.float32)})["y"]
        assert np.allclose(out, np.ones((1, 4)) @ (np.arange(16).reshape(4, 4) / 7))
        lowered = session.provenance().get("ir_version_lowered")
        if refused:
            assert lowered["from"] == ir and lowered["to"] == 8  # what opset 17 needs
            assert lowered["runtime_max"] >= 8
            assert onnx.load(str(path)).ir_version == ir  # the copy is a new file beside the model
        else:
            assert lowered is None


def test_copies_keep_the_model_ir_version(tmp_path, models):
    m = model_mod.load(models.ir14)
    for path in tap.write_copies(m, tap.plan(m, "all"), tmp_path):
        assert onnx.load(str(path)).ir_version == 14
    assert m.summary()["ir_version"] == 14


def test_needed_ir_version_follows_the_opset():
    from comparator.graph.irversion import needed_ir_version

    def proto(opset, ir):
        p = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", opset)])
        p.ir_version = ir
        return p

    assert needed_ir_version(proto(17, 14)) == 8
    assert needed_ir_version(proto(21, 14)) == 10
    assert needed_ir_version(proto(9, 14)) == 7  # never below 7
    assert needed_ir_version(proto(17, 7)) == 7  # never raised


def test_a_runtime_too_old_for_the_opset_is_named(tmp_path, models):
    from comparator.graph.irversion import lowered

    with pytest.raises(ValueError, match="needs IR version 8; the runtime reads at most 7"):
        lowered(models.ir14, 7)


def test_lowered_overrides_the_ir_version_in_memory(tmp_path, models):
    from comparator.graph.irversion import lowered

    before = sorted(p.name for p in Path(models.ir14).parent.iterdir())
    data, old, new = lowered(models.ir14, 13)
    proto = onnx.load_from_string(data)
    assert (old, new, proto.ir_version) == (14, 8, 8)
    assert proto.graph == onnx.load(str(models.ir14)).graph
    assert sorted(p.name for p in Path(models.ir14).parent.iterdir()) == before  # nothing written


def test_copies_leave_the_original_untouched(tmp_path, conv_bn):
    before = conv_bn.proto.SerializeToString()
    tap.write_copies(conv_bn, tap.plan(conv_bn, "all"), tmp_path)
    assert conv_bn.proto.SerializeToString() == before
    assert [o.name for o in conv_bn.proto.graph.output] == ["y"]
