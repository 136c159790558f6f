"""Tapping in windows when one pass would not fit the disk budget: every window fits, the windows cover the plan
in graph order, and what node-by-node variants report is what one pass reports. Real workers, real ONNX Runtime,
PyTorch and the float64 reference."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

import comparator
from comparator import windows
from comparator.errors import UsageError
from comparator.graph import model as model_mod, sizes, tap
from comparator.run import variants
from comparator.run.worker import DONE, PHASE
from comparator.variant import Variant
from conftest import MODELS, make_model, vi

CNN = MODELS / "cnn.onnx"
EXACT = ["ref:dtype=float64", "ort:opt=disable", "torch"]  # none fuses: a tensor's value is the same in any window


def one_pass_need(path, variant_list, kinds=("untapped", "tapped")):
    loaded = model_mod.load(path)
    plan = tap.plan(loaded, "all")
    first, once, _ = variants.run_kinds(loaded, plan, [Variant.parse(v) for v in variant_list], kinds, 1, 0)
    outputs = sum(sizes.tensor_bytes(t) for t in loaded.tensors if t.is_output)
    return loaded, plan, outputs, lambda per_sample, first_window: variants.disk_need(
        per_sample, outputs, len(variant_list), 1, 1, first if first_window else ("tapped",),
        once=len(once) if first_window else 0)


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.25])
def test_every_window_fits_the_budget_and_the_windows_cover_the_plan_in_order(tmp_path, fraction):
    loaded, plan, outputs, need = one_pass_need(CNN, EXACT)
    whole = need(sum(sizes.tensor_bytes(t) for t in plan.tapped), True)
    budget = int(whole * fraction)
    cut = windows.split(loaded, plan, [Variant.parse(v) for v in EXACT], 1, 1, ("untapped", "tapped"), 0, tmp_path,
                        budget)
    assert cut is not None and cut.need == whole and cut.budget == budget and len(cut.slices) >= 2
    assert [t for s in cut.slices for t in s] == plan.tapped
    for i, own in enumerate(cut.slices):
        held = outputs + sum(sizes.tensor_bytes(t) for t in own if not t.is_output)
        assert need(held, i == 0) <= budget
        if i + 1 < len(cut.slices):  # the next window's first tensor did not fit this one
            extra = cut.slices[i + 1][0]
            assert need(held + (0 if extra.is_output else sizes.tensor_bytes(extra)), i == 0) > budget
    compared = [t.name for i in range(len(cut.slices)) for t in cut.catalogue(i, loaded.tensors)]
    assert sorted(compared) == sorted(t.name for t in plan.tapped)  # each tensor compared once


def test_one_pass_that_fits_or_a_budget_too_small_for_any_window_is_not_cut(tmp_path):
    loaded, plan, outputs, need = one_pass_need(CNN, EXACT)
    chosen = [Variant.parse(v) for v in EXACT]
    whole = need(sum(sizes.tensor_bytes(t) for t in plan.tapped), True)
    assert windows.split(loaded, plan, chosen, 1, 1, ("untapped", "tapped"), 0, tmp_path, whole) is None
    biggest = max(sizes.tensor_bytes(t) for t in plan.tapped)
    assert windows.split(loaded, plan, chosen, 1, 1, ("untapped", "tapped"), 0, tmp_path,
                         need(outputs + biggest, True) - 1) is None
    with pytest.raises(UsageError, match=r"need at least .* over the budget"):  # one pass then refuses, with its need
        comparator.compare(CNN, EXACT, max_disk=need(outputs + biggest, True) - 1)


def test_windows_report_what_one_pass_reports_and_keep_no_tensor(tmp_path):
    one = comparator.compare(CNN, EXACT)
    _, plan, _, need = one_pass_need(CNN, EXACT)
    budget = need(sum(sizes.tensor_bytes(t) for t in plan.tapped), True) // 3
    work = tmp_path / "w"
    cut = comparator.compare(CNN, EXACT, max_disk=budget, workdir=work)
    notes = cut.model["notes"]
    assert any(n.startswith("tapped in ") and "windows (--max-disk)" in n for n in notes), notes
    assert [t.name for t in cut.tensors] == [t.name for t in one.tensors]
    assert [t.metrics for t in cut.tensors] == [t.metrics for t in one.tensors]
    assert cut.first_divergence == one.first_divergence and cut.first_beyond_tolerance == one.first_beyond_tolerance
    assert cut.equivalence_classes == one.equivalence_classes and cut.label_flips == one.label_flips
    assert cut.observer_effect == one.observer_effect and cut.exit_code == one.exit_code
    assert [v.status for v in cut.variants] == ["ok"] * 3
    assert not list(work.rglob("*.npy")) and list(work.rglob("window-2/*/record.json"))  # logs stay, tensors go
    # one worker per variant served every window: its logs are in the first window's folder, and it said DONE once a
    # window; no worker started for a later window
    count = int(next(n for n in notes if n.startswith("tapped in ")).split()[2])
    logs = list(work.rglob("stdout.txt"))
    assert len(logs) == 3 and not list(work.rglob("window-*/*/stdout.txt"))
    for log in logs:
        assert log.read_text().splitlines().count(PHASE + DONE) == count


def cancelling(path):
    """y = x + 0 * sum(x + [1e8, 0, -1e8]): in float32 the sum loses x's first element to rounding, in float64 it
    does not, so the middle deviates far beyond any tolerance while y stays bit-identical."""
    big = helper.make_tensor("big", T.FLOAT, [1, 3], [1e8, 0.0, -1e8])
    zero = helper.make_tensor("zero", T.FLOAT, [1], [0.0])
    axes = helper.make_tensor("axes", T.INT64, [1], [1])
    model = make_model([helper.make_node("Add", ["x", "big"], ["shifted"]),
                        helper.make_node("ReduceSum", ["shifted", "axes"], ["total"], keepdims=1),
                        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
                        helper.make_node("Add", ["x", "nothing"], ["y"])],
                       [vi("x", T.FLOAT, [1, 3])], [vi("y", T.FLOAT, [1, 3])], [big, zero, axes])
    onnx.save(model, str(path))
    return path


def two_maxima(path):
    """y = x + 0 * (x + [1e8, 1] - [0, 1]): in float32 the first element is off by 0.75 on 1e8 (a large abs error,
    a small relative one) and the second, 1e-9 + 1 - 1, by 1e-9 on 1e-9 (a small abs error, a relative one of 1):
    the maxima make the middle a candidate, and no element is far beyond its own tolerance."""
    shift = helper.make_tensor("shift", T.FLOAT, [1, 2], [1e8, 1.0])
    back = helper.make_tensor("back", T.FLOAT, [1, 2], [0.0, 1.0])
    zero = helper.make_tensor("zero", T.FLOAT, [1], [0.0])
    model = make_model([helper.make_node("Add", ["x", "shift"], ["shifted"]),
                        helper.make_node("Sub", ["shifted", "back"], ["total"]),
                        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
                        helper.make_node("Add", ["x", "nothing"], ["y"])],
                       [vi("x", T.FLOAT, [1, 2])], [vi("y", T.FLOAT, [1, 2])], [shift, back, zero])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("build,feed,broken", [(cancelling, [[0.75, 0.5, -0.25]], True),
                                               (two_maxima, [[0.75, 1e-9]], False)],
                         ids=["far", "maxima-only"])
def test_the_broken_middle_is_judged_window_by_window(tmp_path, build, feed, broken):
    """Each window reads its candidates' files again before they are deleted (windows.far_elements)."""
    path = build(tmp_path / "m.onnx")
    feeds = {"x": np.array(feed, np.float32)}
    chosen = ["ref:dtype=float64", "ort:opt=disable"]
    one = comparator.compare(path, chosen, inputs=feeds)
    assert one.passed and (one.broken_middle["ort:opt=disable"]["first"] == "total" if broken
                           else one.broken_middle == {})
    m = next(t.metrics["ort:opt=disable"] for t in one.tensors if t.name == "total")
    assert m["max_abs"] > 1000 * 1e-5 and m["max_rel"] > 1000 * 1e-5  # a candidate either way
    _, plan, _, need = one_pass_need(path, chosen)
    cut = comparator.compare(path, chosen, inputs=feeds,
                             max_disk=need(sum(sizes.tensor_bytes(t) for t in plan.tapped), True) - 1)
    assert any(n.startswith("tapped in ") for n in cut.model["notes"])
    assert cut.broken_middle == one.broken_middle and cut.passed


def test_each_window_is_a_phase_of_the_progress(tmp_path):
    """A log shows the windows' count and budget, then each window, its runs and its comparisons."""
    events = []
    _, plan, _, need = one_pass_need(CNN, ["ort", "torch"])
    budget = need(sum(sizes.tensor_bytes(t) for t in plan.tapped), True) // 2
    report = comparator.compare(CNN, ["ort", "torch"], max_disk=budget, events=events.append)
    outer = [e for e in events if e.phase == "windows"]
    count = outer[0].total
    assert count >= 2 and outer[0].text.startswith(f"tapping in {count} windows: one pass needs ")
    assert [(e.done, e.end) for e in outer] == [(0, False)] + [(i, False) for i in range(1, count + 1)] + [
        (count, True)]
    windows_seen = [e for e in events if e.phase == "window"]
    assert [e.text.split(" (")[0] for e in windows_seen if not e.end] == [f"window {i} of {count}"
                                                                          for i in range(1, count + 1)]
    compared = sum(int(e.text.split("(")[1].split()[0]) for e in windows_seen if not e.end)
    assert compared == len(report.tensors)
    assert sum(e.phase == "run" and e.end for e in events) == count


def test_a_worker_holding_one_sample_over_the_memory_budget_taps_in_windows(tmp_path):
    """A backend returns a run's outputs together: with --max-memory under one sample's tapped tensors, each window
    holds at most that much, and the report is the one pass's."""
    loaded, plan, outputs, _ = one_pass_need(CNN, EXACT)
    per_sample = sum(sizes.tensor_bytes(t) for t in plan.tapped)
    memory = per_sample // 3
    cut = windows.split(loaded, plan, [Variant.parse(v) for v in EXACT], 1, 1, ("untapped", "tapped"), 0, tmp_path,
                        None, memory)
    assert cut is not None and len(cut.slices) >= 3 and cut.held == per_sample
    assert cut.reason().startswith("one pass holds ") and "over the memory budget of" in cut.reason()
    for own in cut.slices:
        assert outputs + sum(sizes.tensor_bytes(t) for t in own if not t.is_output) <= memory
    assert windows.split(loaded, plan, [Variant.parse(v) for v in EXACT], 1, 1, ("untapped", "tapped"), 0,
                         tmp_path, None, per_sample) is None
    one = comparator.compare(CNN, EXACT)
    windowed = comparator.compare(CNN, EXACT, max_memory=memory)
    assert any(n.startswith(f"tapped in {len(cut.slices)} windows (--max-memory): one pass holds ")
               for n in windowed.model["notes"]), windowed.model["notes"]
    assert [t.metrics for t in windowed.tensors] == [t.metrics for t in one.tensors]


@pytest.mark.parametrize("isolate", [False, True])
def test_a_memory_budget_no_window_fits_is_refused_before_running(tmp_path, isolate):
    """--max-memory given and no window fits it (or --isolate, which feeds every tensor at once): exit 2 before
    any worker runs, with what one sample takes; the default budget is a guess, and does not refuse."""
    _, plan, outputs, _ = one_pass_need(CNN, EXACT)
    per_sample = sum(sizes.tensor_bytes(t) for t in plan.tapped)
    budget = outputs if not isolate else per_sample // 2
    with pytest.raises(UsageError, match=r"^one sample's tapped tensors take .* over the budget of .* "
                                         r"\(--max-memory\), and cannot be tapped in windows") as info:
        comparator.compare(CNN, EXACT, max_memory=budget, isolate=isolate, workdir=tmp_path / "w")
    assert ("--isolate" in info.value.message) == isolate
    assert not list((tmp_path / "w").rglob("record.json"))
