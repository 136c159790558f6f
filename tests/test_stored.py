"""graph/stored.py: models read without their weights, and copies that read the weights in place."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T, helper, numpy_helper

from comparator.errors import ModelError
from comparator.graph import model as model_mod, stored, tap


def _model(tmp_path, external=False):
    w = numpy_helper.from_array(np.arange(64 * 64, dtype=np.float32).reshape(64, 64) / 7, "W")
    b = numpy_helper.from_array(np.arange(64, dtype=np.float32), "B")  # 256 bytes: stays inline
    shape = numpy_helper.from_array(np.array([1, 64], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Add", ["y", "B"], ["z"]),
         helper.make_node("Reshape", ["z", "shape"], ["out"])], "g",
        [helper.make_tensor_value_info("x", T.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("out", T.FLOAT, [1, 64])], [w, b, shape])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    if external:
        onnx.save(proto, str(path), save_as_external_data=True, location="m.data", size_threshold=1024)
    else:
        onnx.save(proto, str(path))
    return path, proto


def test_skim_drops_large_weights_and_keeps_small_ones(tmp_path):
    path, proto = _model(tmp_path)
    skeleton = onnx.load_from_string(stored.skim(path))
    w, b, shape = skeleton.graph.initializer
    assert w.data_location == T.EXTERNAL and not w.raw_data
    info = {e.key: e.value for e in w.external_data}
    assert info["location"] == "m.onnx" and int(info["length"]) == 64 * 64 * 4
    # the reference points at exactly the weight's bytes inside the file
    raw = path.read_bytes()[int(info["offset"]):int(info["offset"]) + int(info["length"])]
    assert raw == proto.graph.initializer[0].raw_data
    assert b.raw_data == proto.graph.initializer[1].raw_data and shape.raw_data
    assert skeleton.graph.node == proto.graph.node
    assert len(stored.skim(path)) < 1024


@pytest.mark.parametrize("external", [False, True], ids=["embedded", "external"])
def test_load_reads_every_weight_in_place(tmp_path, external):
    path, _ = _model(tmp_path, external)
    loaded = stored.load(path)
    want = {"W": np.arange(64 * 64, dtype=np.float32).reshape(64, 64) / 7, "B": np.arange(64, dtype=np.float32),
            "shape": np.array([1, 64], np.int64)}
    assert {t.name: numpy_helper.to_array(t).tolist() for t in loaded.graph.initializer} == \
        {k: v.tolist() for k, v in want.items()}


def test_a_derived_copy_in_another_folder_runs_on_the_same_weights(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "work").mkdir()
    path, _ = _model(tmp_path / "model")
    m = model_mod.load(path)
    assert m.proto.ByteSize() < 2048  # the parent holds the graph, not the 16 KiB of weights
    untapped, tapped = tap.write_copies(m, tap.plan(m, "all"), tmp_path / "work")
    assert untapped.parent == tapped.parent == tmp_path / "work"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["m.onnx"]  # nothing written there
    assert stored.external_dir(tapped) == (tmp_path / "model").resolve()
    so = ort.SessionOptions()
    so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                str(stored.external_dir(tapped)))
    x = {"x": np.ones((1, 64), np.float32)}
    got = dict(zip([o.name for o in ort.InferenceSession(str(tapped), so).get_outputs()],
                   ort.InferenceSession(str(tapped), so).run(None, x)))
    want = ort.InferenceSession(str(path)).run(None, x)[0]
    assert np.array_equal(got["out"], want) and set(got) == {"out", "y", "z"}
    # the untapped copy gives the numbers the input model itself gives, bit for bit
    plain = ort.InferenceSession(str(untapped), so).run(None, x)[0]
    assert plain.tobytes() == want.tobytes()


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_the_executors_read_each_weight_from_its_file_once(tmp_path, backend):
    """torch and tf copy every weight into their own tensors: they open a derived copy with its weights still
    references into the input model's file, read each into its tensor, and never hold the model's weights a
    second time (a 2.3 GB decoder's torch worker peaked at 5.0 GiB, now 2.6). The numbers are those of the model
    loaded whole."""
    from comparator import backends
    from comparator.variant import Variant

    (tmp_path / "model").mkdir()
    (tmp_path / "work").mkdir()
    path, _ = _model(tmp_path / "model")
    m = model_mod.load(path)
    untapped, _ = tap.write_copies(m, tap.plan(m, "all"), tmp_path / "work", with_tapped=False)
    impl, options = backends.resolve_variant(Variant(backend, ()))
    session = impl.open(str(untapped), options)
    w = session._executor.model.graph.initializer[0]
    assert w.data_location == T.EXTERNAL and not w.raw_data  # a reference, read into the tensor only
    x = {"x": np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)}
    got = session.run(x)["out"]
    module = __import__(f"comparator.backends.{backend}.backend", fromlist=["open_model"])
    whole = module.open_model(stored.load(untapped), options).run(x)["out"]
    assert np.asarray(got).tobytes() == np.asarray(whole).tobytes()


def _quantized(folder):
    """x @ DequantizeLinear(W_q, w_scale, axis=1) + B, every tensor over 1 KB stored as external data: the
    per-channel scale (2 KiB) too, which a float64 rewrite must keep float32."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.integers(-127, 128, (64, 512)).astype(np.int8), "W_q"),
             numpy_helper.from_array((rng.random(512) / 50 + 1e-3).astype(np.float32), "w_scale"),
             numpy_helper.from_array((rng.standard_normal(512) / 3).astype(np.float32), "B")]
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["W_q", "w_scale"], ["W"], axis=1),
         helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Add", ["y", "B"], ["out"])], "q",
        [helper.make_tensor_value_info("x", T.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("out", T.FLOAT, [2, 512])], inits)
    path = folder / "q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path),
              save_as_external_data=True, location="q.data", size_threshold=1024)
    return path


@pytest.mark.parametrize("backend", ["ref", "torch", "tf"])
def test_float64_widens_each_weight_as_it_reads_it(tmp_path, backend):
    """The float64 oracles read each external weight from its file and widen it as the rewrite widens inline
    ones (quantization scales stay float32): the numbers are those of the model loaded whole and promoted, bit for
    bit, and no float32 copy of the weights stays in the proto (a 2.3 GB decoder's torch:dtype=float64 worker
    peaked at 13.4 GiB, now 4.8)."""
    from comparator import backends
    from comparator.graph import promote
    from comparator.variant import Variant

    path = _quantized(tmp_path)
    assert promote.widened(stored.load(path, weights=False)) == {"B"}  # not the int8 weights, not the scale
    impl, options = backends.resolve_variant(Variant(backend, (("dtype", "float64"),)))
    session = impl.open(str(path), options)
    x = {"x": np.linspace(-2, 2, 128, dtype=np.float32).reshape(2, 64)}
    got = np.asarray(session.run(x)["out"])
    assert got.dtype == np.float64
    if backend == "ref":
        from onnx.reference import ReferenceEvaluator

        from comparator.backends import reference

        assert session._weights["B"].dtype == np.float64 and session._weights["w_scale"].dtype == np.float32
        promoted = promote.promote_float64(stored.load(path))  # the model loaded whole, then promoted
        evaluator = reference._evaluator_class(ReferenceEvaluator)(promoted, new_ops=reference._kernels(13))
        evaluator.wanted = set()
        want = reference.ReferenceSession(evaluator, promoted, options, "").run(x)["out"]
    else:
        module = __import__(f"comparator.backends.{backend}.backend", fromlist=["open_model"])
        want = np.asarray(module.open_model(stored.load(path), options).run(x)["out"])
    assert got.tobytes() == np.asarray(want).tobytes()


def test_a_user_model_naming_an_external_folder_is_refused(tmp_path):
    path, proto = _model(tmp_path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = stored.EXTERNAL_DIR_KEY, "/etc"
    onnx.save(proto, str(path))
    with pytest.raises(ModelError, match="reserves"):
        model_mod.load(path)


def test_malformed_bytes_are_a_model_error(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x3a\xff\xff\xff\x0f" + b"x" * 10)  # a graph field longer than the file
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        model_mod.load(path)


def test_metadata_is_read_without_the_graph(tmp_path):
    path, proto = _model(tmp_path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "k", "v"
    onnx.save(proto, str(path))
    assert stored.metadata(path) == {"k": "v"}
