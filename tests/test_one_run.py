"""A variant that computes every tensor whether tapped or not runs once, tapped; workers that share the cores
do not spin. Real workers, real ONNX Runtime."""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import comparator
from comparator import backends
from comparator.graph import inputs as feeds_mod, model as model_mod
from comparator.run.worker import PHASE
from comparator.variant import Variant
from conftest import MODELS, worker_record

CNN = MODELS / "cnn.onnx"


def record(work: Path, variant: str) -> dict:
    return worker_record(work, variant)[1]


@pytest.fixture(scope="module")
def once(tmp_path_factory: pytest.TempPathFactory) -> tuple[comparator.Report, Path]:
    work = tmp_path_factory.mktemp("once")
    return comparator.compare(CNN, ["ort", "ort:opt=disable", "ref"], workdir=work, samples=2), work


def test_node_by_node_variants_run_once_and_optimizing_ones_twice(once) -> None:
    report, work = once
    for variant in ("ort:opt=disable", "ref"):
        assert backends.fusion_mode(Variant.parse(variant))[0] == "node-by-node"
        rec = record(work, variant)
        assert rec["one_run"] is True and set(rec["timings"]) == {"framework", "tapped"}, variant
        # the final outputs are the tapped run's files: nothing computed twice, nothing written twice
        for name, info in rec["tensors"]["untapped"].items():
            assert info == rec["tensors"]["tapped"][name]
        assert report.observer_effect[variant] is False and variant not in report.observer_detail
    rec = record(work, "ort")
    assert "one_run" not in rec and set(rec["timings"]) == {"framework", "untapped", "tapped"}
    assert all(info["file"].startswith("untapped/") for info in rec["tensors"]["untapped"].values())
    assert report.passed


def test_the_one_run_gives_the_numbers_of_an_untapped_session(once) -> None:
    """What justifies one run for ONNX Runtime at opt=disable: no graph optimizer runs, so a session of the tapped
    copy computes the final outputs bit for bit as a session of the model does (bare onnxruntime, both ways)."""
    report, work = once
    loaded = model_mod.load(CNN)
    feeds = {k: v[0] for k, v in feeds_mod.make_feeds(loaded, {}, seed=0, samples=2).items()}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    proto = onnx.load(str(CNN))
    finals = [o.name for o in proto.graph.output]
    untapped = ort.InferenceSession(str(CNN), so).run(finals, feeds)
    inner = [n.output[0] for n in proto.graph.node]
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in inner if n not in finals)
    tapped = ort.InferenceSession(proto.SerializeToString(), so).run(finals, feeds)
    for a, b in zip(untapped, tapped):
        assert a.tobytes() == b.tobytes()
    # and the worker's one run holds exactly those numbers (first sample)
    folder, rec = worker_record(work, "ort:opt=disable")
    for name, want in zip(finals, untapped):
        got = np.load(folder / rec["tensors"]["untapped"][name]["file"])[0]
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("kwargs", [{"repeat": 2}, {"time": 2}])
def test_repeats_and_timing_keep_the_untapped_session(kwargs, tmp_path: Path) -> None:
    """Run-to-run repeats and latency are measured on sessions of the untapped model: those still run."""
    comparator.compare(CNN, ["ort:opt=disable"], workdir=tmp_path, **kwargs)
    rec = record(tmp_path, "ort:opt=disable")
    assert "one_run" not in rec and "untapped" in rec["timings"]


def test_workers_that_share_the_cores_do_not_spin(tmp_path: Path) -> None:
    together = comparator.compare(CNN, ["ort", "ort:opt=disable"], jobs=2)
    alone = comparator.compare(CNN, ["ort", "ort:opt=disable"], jobs=1)
    for name in ("ort", "ort:opt=disable"):
        assert together.variant(name).provenance["threads_spin"] is False
        assert alone.variant(name).provenance["threads_spin"] is True
    assert together.tensors[-1].metrics == alone.tensors[-1].metrics  # spinning changes speed, not numbers


def test_the_disk_estimate_counts_one_run_for_a_node_by_node_variant(tmp_path: Path) -> None:
    """A variant that runs once writes its tapped tensors and nothing more: a budget of exactly those bytes
    admits one pass; one byte less taps in windows (comparator/windows.py)."""
    from comparator.graph import sizes
    from comparator.graph import tap

    plan = tap.plan(model_mod.load(CNN), "all")
    need = sizes.bytes_of(plan.tapped)  # the CNN's shapes are static
    report = comparator.compare(CNN, ["ort:opt=disable"], max_disk=need)
    assert report.passed and not any("windows" in n for n in report.model.get("notes", []))
    report = comparator.compare(CNN, ["ort:opt=disable"], max_disk=need - 1)
    assert report.passed and any(n.startswith("tapped in 2 windows") for n in report.model["notes"])


def test_a_plan_of_final_outputs_only_runs_every_variant_once_on_the_model_as_given(tmp_path: Path) -> None:
    """Tapping the final outputs only adds nothing to the graph: a tapped session would run the model as given a
    second time. Every variant, an optimizing one too, runs once, on the model as given (a deployment's numbers),
    and no tapped copy is written."""
    report = comparator.compare(CNN, ["ort", "ort:opt=disable"], tap_spec="outputs", workdir=tmp_path, samples=2)
    finals = [o.name for o in onnx.load(str(CNN)).graph.output]
    for variant in ("ort", "ort:opt=disable"):
        folder, rec = worker_record(tmp_path, variant)
        assert set(rec["timings"]) == {"framework", "untapped"} and set(rec["tensors"]) == {"untapped"}, variant
        assert sorted(rec["tensors"]["untapped"]) == sorted(finals)
        assert report.observer_effect[variant] is False
    (run_dir,) = tmp_path.glob("run-*")
    request = json.loads((run_dir / "00-ort" / "request.json").read_text())
    assert request["tapped_model"] == request["model"] == str(run_dir / "model.onnx")
    assert request["runs"] == ["untapped"] and not (run_dir / "tapped.onnx").exists()
    # the terminal calls that run what it is, the model as given: "ort: open", "ort: run", not "untapped"
    phases = [line.removeprefix(PHASE) for line in (run_dir / "00-ort" / "stdout.txt").read_text().splitlines()
              if line.startswith(PHASE)]
    assert phases == ["open", "run", "untapped written", "done"]
    # the one run of `ort` holds what a default session of the model computes (bare onnxruntime)
    loaded = model_mod.load(CNN)
    feeds = {k: v[0] for k, v in feeds_mod.make_feeds(loaded, {}, seed=0, samples=2).items()}
    want = ort.InferenceSession(str(CNN), providers=["CPUExecutionProvider"]).run(finals, feeds)
    folder, rec = worker_record(tmp_path, "ort")
    for name, value in zip(finals, want):
        assert np.load(folder / rec["tensors"]["untapped"][name]["file"])[0].tobytes() == value.tobytes()
    assert report.passed


def test_repeats_of_a_plan_of_final_outputs_only_run_the_model_as_given_once_each(tmp_path: Path) -> None:
    """With --repeat, each repeat is one session of the model as given (and one more run of the first session),
    not a second, "tapped", session of the same file: three repeats are three sessions and five runs."""
    report = comparator.compare(CNN, ["ort", "ort:opt=disable"], tap_spec="outputs", workdir=tmp_path, repeat=3)
    for variant in ("ort", "ort:opt=disable"):
        rec = record(tmp_path, variant)
        assert set(rec["tensors"]) == {"untapped", "untapped.1", "untapped.2", "untapped.same1", "untapped.same2"}
        assert set(rec["timings"]) == {"framework", "untapped", "untapped.1", "untapped.2"}, variant
    (run_dir,) = tmp_path.glob("run-*")
    phases = [line.removeprefix(PHASE) for line in (run_dir / "00-ort" / "stdout.txt").read_text().splitlines()
              if line.startswith(PHASE)]
    assert [p for p in phases if "open" in p] == ["open", "session 2 open", "session 3 open"]
    assert report.determinism["ort"]["runs"] == 5 and report.determinism["ort"]["distinct_outputs"] == 1
    assert report.passed
