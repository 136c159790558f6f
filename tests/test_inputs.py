"""Feeds: seeded random data per element type, --shape bindings, and the user's .npz/.npy checked against the
model's signature."""
import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

from comparator.graph import inputs as feeds_mod
from comparator.graph import model as model_mod
from comparator.errors import InputError, UsageError
from conftest import assert_clean_error, make_model, vi

EXPECTED = {"f16": np.float16, "bf16": ml_dtypes.bfloat16, "f32": np.float32, "f64": np.float64,
            "i8": np.int8, "i32": np.int32, "i64": np.int64, "u8": np.uint8, "b": np.bool_}


@pytest.fixture(scope="module")
def dtypes(models):
    return model_mod.load(models.dtypes)


@pytest.fixture(scope="module")
def dynamic(models):
    return model_mod.load(models.dynamic)


@pytest.fixture(scope="module")
def single(models):
    return model_mod.load(models.conv_bn)


def test_every_common_dtype(dtypes):
    feeds = feeds_mod.make_feeds(dtypes, {}, seed=0, samples=2)
    assert set(feeds) == {f"in_{k}" for k in EXPECTED}
    for key, dt in EXPECTED.items():
        arr = feeds[f"in_{key}"]
        assert arr.dtype == np.dtype(dt), key
        assert arr.shape == (2, 3, 5), key
    for key in ("f16", "bf16", "f32", "f64"):
        values = feeds[f"in_{key}"].astype(np.float64)
        assert np.isfinite(values).all() and np.abs(values).max() <= 4 and values.std() > 0.3, key
    for key in ("i32", "i64"):  # small non-negative: safe as indices
        assert feeds[f"in_{key}"].min() >= 0 and feeds[f"in_{key}"].max() < 8
    assert feeds["in_i8"].min() < 0 < feeds["in_i8"].max()
    assert feeds["in_b"].any() and not feeds["in_b"].all()


def test_seeded_feeds_are_deterministic_per_seed(dtypes):
    a = feeds_mod.make_feeds(dtypes, {}, seed=7)
    b = feeds_mod.make_feeds(dtypes, {}, seed=7)
    c = feeds_mod.make_feeds(dtypes, {}, seed=8)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name
        assert a[name].tobytes() != c[name].tobytes(), name


def test_samples_differ_and_inputs_are_seeded_by_name(dtypes):
    feeds = feeds_mod.make_feeds(dtypes, {}, seed=1, samples=3)["in_f32"]
    assert feeds.shape == (3, 3, 5) and not np.array_equal(feeds[0], feeds[1])
    # A model holding only in_f32 gets the very same data: other inputs do not shift its stream.
    alone = model_mod.Model(dtypes.path, dtypes.proto, "", [i for i in dtypes.inputs if i.name == "in_f32"],
                            [], [])
    assert np.array_equal(feeds_mod.make_feeds(alone, {}, seed=1, samples=3)["in_f32"], feeds)


def test_samples_must_be_positive(single):
    with pytest.raises(UsageError, match="--samples"):
        feeds_mod.make_feeds(single, {}, samples=0)


def test_parse_shapes():
    assert feeds_mod.parse_shapes(["x=2x4", "batch=3", "a=1,2;b=5"]) == {
        "x": (2, 4), "batch": (3,), "a": (1, 2), "b": (5,)}
    for bad in ["x", "x=", "x=2xa", "=3"]:
        with pytest.raises(UsageError, match="NAME=DIMS"):
            feeds_mod.parse_shapes([bad])


def test_shape_binds_named_dim_and_whole_input(dynamic):
    feeds = feeds_mod.make_feeds(dynamic, {"batch": (3,), "z": (2, 7)})
    assert feeds["x"].shape == (1, 3, 4) and feeds["z"].shape == (1, 2, 7)
    feeds = feeds_mod.make_feeds(dynamic, {"x": (5, 4), "z": (2, 1)}, samples=2)
    assert feeds["x"].shape == (2, 5, 4) and feeds["z"].shape == (2, 2, 1)


def test_dynamic_batch_defaults_to_one(dynamic):
    # x is [batch, 4]: an unbound first axis is the batch, one sample per run (inputs.DEFAULT_BATCH).
    feeds = feeds_mod.make_feeds(dynamic, {"z": (2, 1)})
    assert feeds["x"].shape == (1, feeds_mod.DEFAULT_BATCH, 4)


def test_unbound_named_dim_is_named(tmp_path, cli):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, ["batch", "seq"])],
                       [vi("y", T.FLOAT, ["batch", "seq"])])
    onnx.save(model, str(tmp_path / "seq.onnx"))
    with pytest.raises(InputError) as info:
        feeds_mod.make_feeds(model_mod.load(tmp_path / "seq.onnx"), {})
    assert "'x'" in info.value.message and "'seq'" in info.value.message
    assert info.value.hint == "bind it: --shape seq=N"
    code, _, err = cli("compare", tmp_path / "seq.onnx", "--backends", "ort", "--shape", "batch=2")
    assert code == 2
    assert_clean_error(err, "unbound dimension 'seq'")


def test_every_unbound_dimension_of_every_input_is_named_at_once(tmp_path, cli):
    """One error names them all, with the --shape arguments that bind them all: the next try runs. A named
    dimension is bound once by its name, even where two inputs share it; an input with an unnamed one by its whole
    shape, its dynamic batch axis at one sample."""
    model = make_model([helper.make_node("Add", ["a", "b"], ["y"]), helper.make_node("Relu", ["c"], ["z"])],
                       [vi("a", T.FLOAT, ["batch", "seq", "dim"]), vi("b", T.FLOAT, ["batch", "seq", "dim"]),
                        vi("c", T.FLOAT, [None, 4, None])],
                       [vi("y", T.FLOAT, ["batch", "seq", "dim"]), vi("z", T.FLOAT, [None, 4, None])])
    onnx.save(model, str(tmp_path / "m.onnx"))
    m = model_mod.load(tmp_path / "m.onnx")
    with pytest.raises(InputError) as info:
        feeds_mod.make_feeds(m, {})
    assert info.value.message == ("input 'a' [batch, seq, dim] has unbound dimensions 'seq', 'dim'; "
                                  "input 'b' [batch, seq, dim] has unbound dimensions 'seq', 'dim'; "
                                  "input 'c' [?, 4, ?] has an unbound dimension #2")
    assert info.value.hint == "bind them: --shape seq=N --shape dim=N --shape c=1x4xN"
    code, _, err = cli("compare", tmp_path / "m.onnx", "--backends", "ort", "--shape", "seq=3", "--shape", "dim=5",
                       "--shape", "c=1x4x6", "--tap", "outputs")
    assert code == 0, err
    with pytest.raises(InputError, match=r"^input 'c' \[\?, 4, \?\] has an unbound dimension #2\n") as info:
        feeds_mod.make_feeds(m, {"seq": (3,), "dim": (5,)})
    assert info.value.hint == "bind it: --shape c=1x4xN"


def test_a_named_dimension_is_one_value_in_every_input(tmp_path, cli):
    """silero_vad's `input [batch, sequence]` and `state [2, batch, 128]`: the batch that the first input's leading
    axis gets (one sample), or that an input's whole --shape gives, binds `batch` in the other input too."""
    model = make_model([helper.make_node("Relu", ["input"], ["y"]), helper.make_node("Relu", ["state"], ["z"])],
                       [vi("input", T.FLOAT, ["batch", "sequence"]), vi("state", T.FLOAT, [2, "batch", 3])],
                       [vi("y", T.FLOAT, ["batch", "sequence"]), vi("z", T.FLOAT, [2, "batch", 3])])
    onnx.save(model, str(tmp_path / "vad.onnx"))
    m = model_mod.load(tmp_path / "vad.onnx")
    with pytest.raises(InputError) as info:
        feeds_mod.make_feeds(m, {})
    assert info.value.message == "input 'input' [batch, sequence] has an unbound dimension 'sequence'"
    assert info.value.hint == "bind it: --shape sequence=N"
    feeds = feeds_mod.make_feeds(m, {"sequence": (5,)})
    assert feeds["input"].shape == (1, 1, 5) and feeds["state"].shape == (1, 2, 1, 3)
    feeds = feeds_mod.make_feeds(m, {"input": (4, 5)})
    assert feeds["input"].shape == (1, 4, 5) and feeds["state"].shape == (1, 2, 4, 3)
    feeds = feeds_mod.make_feeds(m, {"sequence": (5,), "batch": (2,)})
    assert feeds["input"].shape == (1, 2, 5) and feeds["state"].shape == (1, 2, 2, 3)
    code, _, err = cli("compare", tmp_path / "vad.onnx", "--backends", "ort", "--shape", "sequence=5")
    assert code == 0, err


@pytest.mark.parametrize("dims", [[-1, 3, 8, -1], [0, 3, 8, 0], ["?", 3, 8, "?"], [None, 3, 8, None]],
                         ids=["minus-one", "zero", "question-mark", "missing"])
def test_non_positive_missing_and_unnamed_dims_are_dynamic(tmp_path, dims):
    # Paddle exports dims as -1; ORT and Polygraphy read any non-positive or missing dim as dynamic.
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, dims)],
                       [vi("y", T.FLOAT, dims)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    m = model_mod.load(tmp_path / "m.onnx")
    assert m.inputs[0].shape == (None, 3, 8, None)
    with pytest.raises(InputError, match="unbound dimension #3") as info:
        feeds_mod.make_feeds(m, {})
    assert info.value.hint == "bind it: --shape x=1x3x8xN"  # the dynamic batch axis runs one sample
    assert feeds_mod.make_feeds(m, {"x": (1, 3, 8, 20)})["x"].shape == (1, 1, 3, 8, 20)
    np.savez(tmp_path / "f.npz", x=np.ones((2, 3, 8, 7), np.float32))
    assert feeds_mod.load_feeds(m, tmp_path / "f.npz")["x"].shape == (1, 2, 3, 8, 7)
    with pytest.raises(InputError, match="contradicts"):
        feeds_mod.make_feeds(m, {"x": (1, 4, 8, 20)})


def test_unbound_unnamed_dim(dynamic):
    with pytest.raises(InputError) as info:
        feeds_mod.make_feeds(dynamic, {"batch": (1,)})
    assert "'z'" in info.value.message and "#1" in info.value.message
    assert info.value.hint == "bind it: --shape z=2xN"


@pytest.mark.parametrize("shapes, fragment", [({"batch": (1,), "z": (2, 3, 4)}, "has rank 3"),
                                              ({"batch": (1,), "z": (3, 3)}, "contradicts")])
def test_whole_input_binding_is_checked(dynamic, shapes, fragment):
    with pytest.raises(InputError, match=fragment):
        feeds_mod.make_feeds(dynamic, shapes)


def test_unknown_shape_key_lists_known_names(dynamic):
    with pytest.raises(UsageError) as info:
        feeds_mod.make_feeds(dynamic, {"btach": (1,)})
    assert "btach" in info.value.message
    assert info.value.hint == "inputs and named dimensions: batch, x, z"


# ---- user feeds

def test_npz_single_sample_and_stack(tmp_path, single):
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "one.npz", x=x, label=np.arange(3))  # keys naming no input are ignored
    feeds = feeds_mod.load_feeds(single, tmp_path / "one.npz")
    assert list(feeds) == ["x"] and feeds["x"].shape == (1, 1, 3, 8, 8)
    assert np.array_equal(feeds["x"][0], x)
    stack = np.stack([x, x + 1, x + 2])
    np.savez(tmp_path / "stack.npz", x=stack)
    feeds = feeds_mod.load_feeds(single, tmp_path / "stack.npz")
    assert feeds["x"].shape == (3, 1, 3, 8, 8) and np.array_equal(feeds["x"], stack)


def test_npy_for_single_input_model(tmp_path, single):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert feeds_mod.load_feeds(single, tmp_path / "x.npy")["x"].shape == (1, 1, 3, 8, 8)


def test_npy_for_multi_input_model(tmp_path, dynamic):
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(InputError, match="model has 2 inputs") as info:
        feeds_mod.load_feeds(dynamic, tmp_path / "x.npy")
    assert "x, z" in info.value.hint


def test_missing_input(tmp_path, dynamic):
    np.savez(tmp_path / "f.npz", x=np.zeros((2, 4), np.float32))
    with pytest.raises(InputError) as info:
        feeds_mod.load_feeds(dynamic, tmp_path / "f.npz")
    assert "f.npz lacks input 'z'" in info.value.message
    assert "x, z" in info.value.hint


def test_wrong_dtype(tmp_path, single):
    np.savez(tmp_path / "f.npz", x=np.zeros((1, 3, 8, 8), np.float64))
    with pytest.raises(InputError) as info:
        feeds_mod.load_feeds(single, tmp_path / "f.npz")
    assert "is float64, the model wants float32" in info.value.message
    assert "astype(np.float32)" in info.value.hint


@pytest.mark.parametrize("shape, fragment", [((3, 8, 8), "or a stack of samples"),
                                             ((1, 3, 8, 9), "axis 3 differs"),
                                             ((2, 1, 4, 8, 8), "axis 1 differs"),
                                             ((1, 1, 1, 3, 8, 8), "or a stack of samples")])
def test_wrong_shape(tmp_path, single, shape, fragment):
    np.savez(tmp_path / "f.npz", x=np.zeros(shape, np.float32))
    with pytest.raises(InputError, match=fragment):
        feeds_mod.load_feeds(single, tmp_path / "f.npz")


def test_bound_dim_checked_against_user_feeds(tmp_path, dynamic):
    np.savez(tmp_path / "f.npz", x=np.zeros((3, 4), np.float32), z=np.zeros((2, 5), np.float32))
    assert feeds_mod.load_feeds(dynamic, tmp_path / "f.npz", {"batch": (3,)})["x"].shape == (1, 3, 4)
    with pytest.raises(InputError, match="axis 0 differs"):
        feeds_mod.load_feeds(dynamic, tmp_path / "f.npz", {"batch": (2,)})


def test_sample_counts_must_agree(tmp_path, dynamic):
    np.savez(tmp_path / "f.npz", x=np.zeros((2, 3, 4), np.float32), z=np.zeros((5, 2, 1), np.float32))
    with pytest.raises(InputError, match=r"disagree on the number of samples \(\[2, 5\]\)"):
        feeds_mod.load_feeds(dynamic, tmp_path / "f.npz")


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_object_array_refused_without_pickle(tmp_path, suffix):
    path = tmp_path / f"obj{suffix}"
    objects = np.array([{"a": 1}, None], dtype=object)
    if suffix == ".npy":
        np.save(path, objects, allow_pickle=True)
    else:
        np.savez(path, s=objects)
    proto = make_model([helper.make_node("Identity", ["s"], ["t"])], [vi("s", T.FLOAT, [2])],
                       [vi("t", T.FLOAT, [2])])
    onnx.save(proto, str(tmp_path / "m.onnx"))
    with pytest.raises(InputError) as info:
        feeds_mod.load_feeds(model_mod.load(tmp_path / "m.onnx"), path)
    assert "without pickle" in info.value.message


@pytest.mark.parametrize("name, data", [("gone.npz", None), ("bad.npz", b"not a zip"),
                                        ("bad.npy", b"\x93NUMPY garbage")])
def test_unreadable_feed_files(tmp_path, single, name, data):
    if data is not None:
        (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError) as info:
        feeds_mod.load_feeds(single, tmp_path / name)
    assert name in info.value.message and "\n" not in info.value.message


def test_arrays_passed_directly(single):
    x = np.ones((1, 3, 8, 8), np.float32)
    assert feeds_mod.check_feeds(single, {"x": x}, {})["x"].shape == (1, 1, 3, 8, 8)
    with pytest.raises(InputError, match="inputs lacks input 'x'"):
        feeds_mod.check_feeds(single, {"y": x}, {})


def test_every_variant_failing_on_random_inputs_says_the_model_may_need_real_ones(tmp_path):
    """A Gather whose indices come from an int64 input: random indices (0 to 7) fall outside a 2-row table and
    every variant fails. The report says the inputs were random and names the integer input; real indices pass."""
    import comparator

    table = helper.make_tensor("table", T.FLOAT, [2, 3], [float(i) for i in range(6)])
    model = make_model([helper.make_node("Gather", ["table", "idx"], ["y"])], [vi("idx", T.INT64, [8])],
                       [vi("y", T.FLOAT, [8, 3])], inits=[table])
    onnx.save(model, str(tmp_path / "gather.onnx"))
    report = comparator.compare(tmp_path / "gather.onnx", ["ort", "ref"])
    assert {v.status for v in report.variants} == {"failed"} and report.exit_code == 3
    notes = [n for n in report.model.get("notes", []) if n.startswith("every variant failed on random inputs")]
    assert notes and "'idx'" in notes[0] and "--inputs" in notes[0]
    np.savez(tmp_path / "idx.npz", idx=np.array([0, 1, 1, 0, 1, 0, 0, 1], np.int64))
    real = comparator.compare(tmp_path / "gather.onnx", ["ort", "ref"], inputs=tmp_path / "idx.npz")
    assert real.passed and not any("random inputs" in n for n in real.model.get("notes", []))
