"""compare() end to end with real workers: first divergence, equivalence classes, observer effect, label flips,
exit codes and tolerances. Findings are checked against the workers' own tensor files where possible."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import comparator
from comparator import api, assemble
from comparator.graph import inputs as feeds_mod, model as model_mod
from comparator.errors import UsageError
from comparator.measure.metrics import Tolerance
from comparator.variant import Variant
from conftest import make_model, vi, worker_record

FOUR = ["ort", "ort:opt=disable", "ref", "ref:dtype=float64"]


def output(work, variant, name, kind="untapped"):
    """A tensor as the variant's worker wrote it (leading sample axis), in the one run folder under `work`."""
    folder, record = worker_record(work, variant)
    return np.load(folder / record["tensors"][kind][name]["file"], allow_pickle=False)


@pytest.fixture(scope="module")
def exp_run(models, tmp_path_factory):
    work = tmp_path_factory.mktemp("exp")
    return comparator.compare(models.exp_chain, FOUR, workdir=work), work


def test_every_variant_ran(exp_run):
    report, _ = exp_run
    assert [(v.name, v.status) for v in report.variants] == [(v, "ok") for v in FOUR]
    assert report.reference == "ort"
    assert [t.name for t in report.tensors] == ["mul", "add", "relu", "exp", "y"]
    assert report.inputs == {"source": "random", "seed": 0, "samples": 1, "shapes": {"x": [16, 64]}}


def test_first_divergence_is_at_the_transcendental(exp_run):
    report, _ = exp_run
    for variant in ("ref", "ref:dtype=float64"):
        for name in ("mul", "add", "relu"):  # correctly rounded: every library agrees bit for bit
            assert report.tensor(name).metrics[variant]["bit_identical"] is True, (variant, name)
        assert report.first_divergence[variant] in ("exp", "y")
    # within the default tolerance: a few ULPs
    assert report.first_beyond_tolerance == {v: None for v in FOUR[1:]}
    assert report.exit_code == 0 and report.passed


def test_first_divergence_agrees_with_the_metrics(exp_run):
    report, _ = exp_run
    for variant in FOUR[1:]:
        differing = [t.name for t in report.tensors if not t.metrics[variant]["bit_identical"]]
        assert report.first_divergence[variant] == (differing[0] if differing else None)


def test_metrics_match_the_workers_files(exp_run):
    report, work = exp_run
    ref, got = output(work, "ort", "y"), output(work, "ref", "y")
    m = report.tensor("y").metrics["ref"]
    assert m["bit_identical"] == np.array_equal(ref, got)
    assert m["max_abs"] == pytest.approx(float(np.abs(ref.astype(np.float64) - got).max()))
    assert m["identical_fraction"] == pytest.approx(float((ref == got).mean()))
    assert m["count"] == ref.size == 16 * 64
    inner = output(work, "ref", "relu", kind="tapped")
    assert inner.shape == (1, 16, 64)


def test_equivalence_classes_partition_by_final_output_bytes(exp_run):
    report, work = exp_run
    classes = report.equivalence_classes
    assert sorted(v for c in classes for v in c) == sorted(FOUR)
    assert [len(c) for c in classes] == sorted((len(c) for c in classes), reverse=True)
    for c in classes:
        first = output(work, c[0], "y")
        for v in FOUR:
            same = output(work, v, "y")
            identical = same.dtype == first.dtype and same.tobytes() == first.tobytes()
            assert identical == (v in c), (c, v)
    assert ["ref:dtype=float64"] in classes  # float64 bytes never equal float32 bytes


def test_per_tensor_classes(exp_run):
    report, _ = exp_run
    for t in report.tensors:
        assert sorted(v for c in t.classes for v in c) == sorted(FOUR)
    ort_class = next(c for c in report.tensor("mul").classes if "ort" in c)
    assert {"ort", "ort:opt=disable", "ref"} <= set(ort_class)


@pytest.fixture(scope="module")
def tolerance_runs(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tol")
    variants = [Variant.parse("ort"), Variant.parse("ref")]
    rs = api.run_variants(models.exp_chain, variants, folder)

    def build(tolerance):
        return assemble.build_report(rs.model, rs.plan, rs.runs, variants[0], tolerance, rs.feed_info)

    return build


def test_exit_code_1_beyond_tolerance(tolerance_runs):
    report = tolerance_runs(Tolerance(0.0, 0.0))
    assert report.exit_code == 1 and report.passed is False
    assert report.first_beyond_tolerance["ref"] == report.first_divergence["ref"]
    assert report.tensor("y").metrics["ref"]["violations"] > 0
    assert report.tensor("relu").metrics["ref"]["violations"] == 0


def test_tolerance_flags(tolerance_runs):
    worst = tolerance_runs(Tolerance(0.0, 0.0)).tensor("y").metrics["ref"]
    assert tolerance_runs(Tolerance(0.0, 0.0, max_ulp=worst["max_ulp"])).exit_code == 0
    assert tolerance_runs(Tolerance(0.0, 0.0, max_ulp=worst["max_ulp"] - 1)).exit_code == 1
    assert tolerance_runs(Tolerance(worst["max_abs"], 0.0)).exit_code == 0
    assert tolerance_runs(Tolerance(0.0, 1e-3)).exit_code == 0
    report = tolerance_runs(Tolerance(1e-6, 1e-7, 4))
    assert report.tolerance == {"atol": 1e-6, "rtol": 1e-7, "max_ulp": 4}


def test_exit_code_0_within_tolerance(models):
    report = comparator.compare(models.cnn, ["ort", "ort:opt=disable"])
    assert report.exit_code == 0 and report.passed
    assert report.first_beyond_tolerance == {"ort:opt=disable": None}


# ---- observer effect: tapping the Conv output stops onnxruntime from folding BatchNormalization into it

def ort_outputs(path, level, feeds, extra=()):
    model = onnx.load(str(path))
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in extra)
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["y"], feeds)[0]


@pytest.fixture(scope="module")
def observer_report(models):
    return comparator.compare(models.conv_bn, ["ort:opt=disable", "ort"])


def test_observer_effect_is_flagged_when_taps_change_the_outputs(models, observer_report):
    feeds = {k: v[0] for k, v in feeds_mod.make_feeds(model_mod.load(models.conv_bn), {}, seed=0).items()}
    level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    untapped = ort_outputs(models.conv_bn, level, feeds)
    tapped = ort_outputs(models.conv_bn, level, feeds, extra=["conv", "bn"])
    differ = not np.array_equal(untapped, tapped)
    assert observer_report.observer_effect["ort"] is differ
    if not differ:
        pytest.skip("assumes onnxruntime folds BatchNormalization into Conv only when nothing is tapped, which "
                    "changes this model's rounding; this onnxruntime's outputs are the same either way")
    detail = observer_report.observer_detail["ort"]["y"]
    assert detail["max_abs"] == pytest.approx(float(np.abs(untapped - tapped).max()))
    assert detail["max_ulp"] > 0


def test_no_observer_effect_without_fusions(observer_report):
    assert observer_report.observer_effect["ort:opt=disable"] is False
    assert "ort:opt=disable" not in observer_report.observer_detail
    assert observer_report.label_flips == {}  # rank-4 output: not a classifier


# ---- label flips

def check_flips(info, rows):
    assert info["rows"] == rows
    assert 0.0 <= info["agreement"] <= 1.0
    assert info["agreement"] == pytest.approx((rows - info["flip_count"]) / rows)
    assert len(info["flips"]) == min(info["flip_count"], 100)
    for flip in info["flips"]:
        assert set(flip) == {"sample", "row", "reference", "variant"}
        assert all(isinstance(v, int) for v in flip.values())
        assert flip["reference"] != flip["variant"]


def test_label_flips_on_digits(models):
    # logits come from a Gemm: class scores only when named.
    plain = comparator.compare(models.digits, ["ort", "ref"], inputs=models.digits_npz, tap_spec="outputs")
    assert plain.label_flips == {}
    report = comparator.compare(models.digits, ["ort", "ref", "ort:opt=disable"], inputs=models.digits_npz,
                                classes=["logits"])
    assert report.inputs["shapes"] == {"image": [64, 1, 8, 8]}
    for variant in ("ref", "ort:opt=disable"):
        info = report.label_flips[variant]["logits"]
        check_flips(info, 64)
        assert info["agreement"] >= 0.95  # a trained model: rounding rarely changes a prediction


def test_label_flips_match_an_independent_argmax(models, tmp_path):
    report = comparator.compare(models.tied, ["ort", "ref"], samples=2, workdir=tmp_path, classes="logits")
    info = report.label_flips["ref"]["logits"]
    check_flips(info, 128)
    ref, got = output(tmp_path, "ort", "logits").argmax(-1), output(tmp_path, "ref", "logits").argmax(-1)
    where = np.argwhere(ref != got)
    assert info["flip_count"] == len(where) > 0  # exact ties broken by summation order
    assert [(f["sample"], f["row"]) for f in info["flips"]] == [tuple(map(int, w)) for w in where[:100]]
    assert {f["sample"] for f in info["flips"]} <= {0, 1}


# ---- arguments

def test_reference_is_added_when_not_listed(models):
    report = comparator.compare(models.small, ["ort:opt=disable"], reference="ort")
    assert report.reference == "ort"
    assert [v.name for v in report.variants] == ["ort", "ort:opt=disable"]
    assert set(report.tensor("y").metrics) == {"ort:opt=disable"}


def test_arrays_as_inputs_and_temporary_folder_removed(models):
    folders = []
    x = np.stack([np.full((1, 4), i, np.float32) for i in range(3)])
    report = comparator.compare(models.small, ["ref", Variant.parse("ort")], inputs={"x": x},
                                progress=lambda run: folders.append(run.folder))
    assert report.inputs == {"source": "arrays", "shapes": {"x": [1, 4]}, "samples": 3}
    assert report.tensor("y").metrics["ort"]["count"] == 12
    assert len(folders) == 2 and not any(f.exists() for f in folders)


@pytest.mark.parametrize("kwargs, fragment", [({"jobs": -1}, "--jobs"), ({"repeat": 0}, "--repeat"),
                                              ({"samples": 0}, "samples"), ({"tap_spec": "nope*"}, "--tap")])
def test_bad_arguments_fail_before_any_worker(models, kwargs, fragment, tmp_path):
    with pytest.raises(UsageError, match=fragment):
        comparator.compare(models.small, ["ort", "ref"], workdir=tmp_path / "w", **kwargs)
    assert not list(tmp_path.rglob("record.json"))


def test_unusual_input_names_and_scalar_inputs(tmp_path):
    # `file` and `allow_pickle` are np.savez's own parameter names; a rank-0 input is fed as a 0-d array
    f32 = onnx.TensorProto.FLOAT
    proto = make_model([onnx.helper.make_node("Mul", ["file", "allow_pickle"], ["y"], name="mul")],
                       [vi("file", f32, []), vi("allow_pickle", f32, [2])], [vi("y", f32, [2])])
    onnx.save(proto, str(tmp_path / "m.onnx"))
    report = comparator.compare(tmp_path / "m.onnx", ["ort", "ref"])
    assert [v.status for v in report.variants] == ["ok", "ok"], [v.error for v in report.variants]
    assert report.inputs["shapes"] == {"file": [], "allow_pickle": [2]}
    assert report.tensor("y").metrics["ref"]["bit_identical"] is True


def test_events_follow_the_phases(models, tmp_path):
    events = []
    report = comparator.compare(models.small, ["ort", "ref"], events=events.append)
    assert report.exit_code in (0, 1)
    phases = [e.phase for e in events if e.phase != "variant"]
    assert phases[:4] == ["load", "load", "tap", "tap"]
    runs = [(e.done, e.total, e.end) for e in events if e.phase == "run"]
    assert runs[0] == (0, 2, False) and runs[-1] == (2, 2, True)
    compared = [(e.done, e.total) for e in events if e.phase == "compare"]
    assert compared[-1][0] == compared[-1][1] == len(report.tensors) and events[-1].end
    per_variant = {(e.variant, e.text) for e in events if e.phase == "variant"}
    assert {("ort", "untapped open"), ("ort", "tapped run"), ("ref", "tapped open"), ("ref", "ok")} <= per_variant
    assert ("ref", "untapped open") not in per_variant  # the interpreter runs once (tests/test_one_run.py)


def test_a_plan_over_the_disk_budget_is_refused_before_running(models, tmp_path):
    with pytest.raises(UsageError, match=r"need at least .* over the budget of 10 B \(--max-disk\)"):
        comparator.compare(models.small, ["ort", "ref"], max_disk=10, workdir=tmp_path / "w")
    assert not list((tmp_path / "w").glob("*/record.json"))  # nothing ran


@pytest.mark.parametrize("text,value", [("1000", 1000), ("500M", 500 << 20), ("1.5G", 3 << 29), ("2GiB", 2 << 30),
                                        ("20g", 20 << 30)])
def test_parse_size(text, value):
    assert api.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "x", "-1G", "nanG", "infT", "1Q"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(UsageError, match="is not a size"):
        api.parse_size(text)
