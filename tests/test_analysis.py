"""The facts pass (measure/facts.py) and the analyses over its facts (measure/analysis.py), on hand-written
tensor files and hand-built facts. No backend runs: every value below is worked out by hand."""
from __future__ import annotations

import builtins
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from comparator.errors import UsageError
from comparator.graph.model import TensorInfo
from comparator.measure import analysis, facts as facts_mod, metrics
from comparator.measure.facts import Facts, OutputFacts, RunFacts, gather
from comparator.run.record import VariantRun
from comparator.variant import Variant

F32_ULP_AT_1 = 2.0 ** -23  # spacing of float32 in [1, 2)
F32_ULP_AT_2 = 2.0 ** -22  # in [2, 4)


def up(x: float, n: int = 1) -> np.float32:
    """The float32 `n` steps above x."""
    v = np.float32(x)
    for _ in range(n):
        v = np.nextafter(v, np.float32(np.inf))
    return v


def f32(*values: float) -> np.ndarray:
    return np.array([values], np.float32)  # one sample


def make_run(folder: Path, spec: str, kinds: dict[str, dict[str, np.ndarray]], status: str = "ok") -> VariantRun:
    """A run whose worker left `kinds` (run kind -> tensor -> array) as .npy files."""
    variant = Variant.parse(spec)
    tensors: dict[str, dict[str, dict[str, str]]] = {}
    for kind, arrays in kinds.items():
        for i, (name, arr) in enumerate(arrays.items()):
            rel = Path(variant.slug) / kind / f"{i:05d}.npy"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / rel, arr)
            tensors.setdefault(kind, {})[name] = {"file": str(rel), "dtype": str(arr.dtype)}
    return VariantRun(variant, folder, status=status, tensors=tensors)


def info(name: str, index: int, is_output: bool = False) -> TensorInfo:
    return TensorInfo(name, "Op", f"n{index}", index, (2,), 1, is_output)


CHAIN = [info("a", 0), info("b", 1), info("y", 2, is_output=True)]


def chain_run(folder: Path, spec: str, a: np.ndarray, b: np.ndarray, y: np.ndarray, *, status: str = "ok",
              tapped_y: np.ndarray | None = None, **repeats: dict[str, np.ndarray]) -> VariantRun:
    """Intermediates a, b in the tapped run; the output y in both runs (same value unless `tapped_y`); `repeats`:
    more run kinds (`untapped.1`...)."""
    kinds = {"untapped": {"y": y}, "tapped": {"a": a, "b": b, "y": y if tapped_y is None else tapped_y}, **repeats}
    return make_run(folder, spec, kinds, status)


def report_of(runs: list[VariantRun], catalogue=CHAIN, outputs=("y",), tolerance=metrics.Tolerance()):
    fx = gather(catalogue, list(outputs), runs, runs[0], tolerance)
    return fx, analysis.tensor_reports(catalogue, fx)


# -- first divergence, beyond tolerance -------------------------------------------------------------------------

def test_first_divergence_and_first_beyond_tolerance(tmp_path):
    ref = chain_run(tmp_path, "ref", f32(1, 2), f32(1, 2), f32(1, 2))
    # a: identical. b: 1.0 -> one float32 step up: 1 ULP, |diff| 2**-23 = 1.19e-7 <= 1e-5 + 1e-5 * 1 (within).
    # y: 2.0 -> 2.001: |diff| 1e-3 > 1e-5 + 1e-5 * 2 = 3e-5 (beyond).
    got = chain_run(tmp_path, "ort", f32(1, 2), np.array([[up(1), 2]], np.float32), f32(1, 2.001))
    fx, tensors = report_of([ref, got])
    assert [t.name for t in tensors] == ["a", "b", "y"]
    assert tensors[0].metrics["ort"]["bit_identical"]
    b = tensors[1].metrics["ort"]
    assert (b["bit_identical"], b["max_ulp"], b["max_abs"], b["violations"]) == (False, 1, F32_ULP_AT_1, 0)
    assert tensors[2].metrics["ort"]["violations"] == 1
    assert analysis.first(tensors, "ort", analysis.diverges) == "b"
    assert analysis.first(tensors, "ort", analysis.beyond_tolerance) == "y"
    assert analysis.first(tensors, "ref", analysis.diverges) is None  # the reference has no metrics


def test_missing_and_mismatched_tensors_are_errors(tmp_path):
    ref = chain_run(tmp_path, "ref", f32(1, 2), f32(1, 2), f32(1, 2))
    got = make_run(tmp_path, "ort", {"untapped": {"y": np.zeros((1, 3), np.float32)},
                                     "tapped": {"a": f32(1, 2), "y": np.zeros((1, 3), np.float32)}})
    _, tensors = report_of([ref, got])
    assert tensors[1].metrics["ort"] == {"error": "not produced by this variant"}
    assert tensors[2].metrics["ort"] == {"error": "shape mismatch: ref has shape (1, 2), got has shape (1, 3)"}
    # an error counts as diverging and as beyond tolerance
    assert analysis.first(tensors, "ort", analysis.diverges) == "b"
    assert analysis.first(tensors, "ort", analysis.beyond_tolerance) == "b"


def test_metrics_are_those_of_metrics_compare_whatever_the_chunks(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    ref_y = rng.standard_normal((1, 2500)).astype(np.float32)
    got_y = (ref_y + rng.standard_normal((1, 2500)).astype(np.float32) * 1e-5).astype(np.float32)
    runs = [make_run(tmp_path, "ref", {"untapped": {"y": ref_y}}),
            make_run(tmp_path, "ort", {"untapped": {"y": got_y}})]
    monkeypatch.setattr(facts_mod, "CHUNK", 1000)  # 2.5 chunks
    fx = gather([TensorInfo("y", "Op", "n", 0, (2500,), 1, True)], ["y"], runs, runs[0], metrics.Tolerance())
    assert fx.tensors[0].metrics["ort"] == metrics.compare(ref_y, got_y, metrics.Tolerance(), chunk=1000)


def test_each_tensor_file_is_opened_once(tmp_path, monkeypatch):
    runs = [chain_run(tmp_path, spec, f32(1, 2), f32(1, 2), f32(1, 2), **{"untapped.1": {"y": f32(1, 2)}})
            for spec in ("ref", "ort", "ort:opt=disable")]
    opened: Counter[str] = Counter()
    real_open = builtins.open

    def counting(file, *args, **kwargs):
        opened[str(file)] += 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    fx, _ = report_of(runs)
    # 3 runs x (a, b, y tapped, y untapped, y untapped.1) = 15 files, each read for several facts: metrics,
    # digests, observer effect, pairwise distances, spread.
    assert len(opened) == 15 and set(opened.values()) == {1}
    assert fx.runs["ort"].outputs["y"].observer is not None and fx.distances[("ref", "ort")]["y"]["max_ulp"] == 0


# -- bit-identity classes ---------------------------------------------------------------------------------------

def test_tensor_classes_and_equivalence_classes(tmp_path):
    same, other = f32(1, 2), f32(1, 3)
    runs = [chain_run(tmp_path, "ref", same, same, same),
            chain_run(tmp_path, "ort", same, other, same),
            chain_run(tmp_path, "ort:opt=disable", same, other, other),
            # the same values in float64: not bit-identical (a digest covers the dtype)
            chain_run(tmp_path, "ref:dtype=float64", same.astype(np.float64), same, same),
            chain_run(tmp_path, "torch", same, same, same, status="failed")]
    fx, tensors = report_of(runs)
    classes = {t.name: t.classes for t in tensors}
    # a: float32 [1, 2] in ref, ort, ort:opt=disable; float64 in ref:dtype=float64; the failed run has no class.
    assert classes["a"] == [["ref", "ort", "ort:opt=disable"], ["ref:dtype=float64"]]
    # b: [1, 2] in ref and ref:dtype=float64, [1, 3] in ort and ort:opt=disable; ties sort by their names.
    assert classes["b"] == [["ort", "ort:opt=disable"], ["ref", "ref:dtype=float64"]]
    # y: only ort:opt=disable differs. Largest class first.
    assert classes["y"] == [["ref", "ort", "ref:dtype=float64"], ["ort:opt=disable"]]
    assert analysis.equivalence_classes(fx, ["y"]) == classes["y"]


def test_one_variant_beside_the_reference_is_classed_without_hashing(tmp_path, monkeypatch):
    """Its pair's pass says whether it holds the reference's very array: the classes need no digest. The same
    value in float64, or NaNs whose payloads differ, are bit_identical after rounding, yet not the same array."""
    def no_hashing(reader):
        raise AssertionError("a digest was computed")

    monkeypatch.setattr(facts_mod, "_digest", no_hashing)
    nan, other_nan = (np.array([[0x7FC00000, 0x40000000]], np.uint32).view(np.float32),
                      np.array([[0x7FC00001, 0x40000000]], np.uint32).view(np.float32))
    runs = [make_run(tmp_path, "ref", {"tapped": {"a": f32(1, 2), "b": nan, "c": f32(1, 2)}}),
            make_run(tmp_path, "ort", {"tapped": {"a": f32(1, 2).astype(np.float64), "b": other_nan,
                                                  "c": f32(1, 2)}})]
    # the intermediates alone: final outputs are hashed for the equivalence classes of whole runs
    fx, tensors = report_of(runs, catalogue=CHAIN[:2] + [TensorInfo("c", "Op", "n3", 3, (2,), 1)], outputs=())
    got = {t.name: (t.classes, t.metrics["ort"]["bit_identical"]) for t in tensors}
    assert got == {"a": ([["ort"], ["ref"]], True), "b": ([["ort"], ["ref"]], True), "c": ([["ref", "ort"]], True)}


def test_a_missing_output_is_its_own_class(tmp_path):
    runs = [make_run(tmp_path, "ref", {"untapped": {"y": f32(1), "z": f32(2)}}),
            make_run(tmp_path, "ort", {"untapped": {"y": f32(1)}}),
            make_run(tmp_path, "ort:opt=disable", {"untapped": {"y": f32(1), "z": f32(2)}})]
    fx = gather([], ["y", "z"], runs, runs[0], metrics.Tolerance())
    # y agrees everywhere; ort has no z: {y, z} sets [ref, ort:opt=disable] apart from [ort].
    assert analysis.equivalence_classes(fx, ["y", "z"]) == [["ref", "ort:opt=disable"], ["ort"]]
    assert analysis.equivalence_classes(fx, ["y"]) == [["ref", "ort", "ort:opt=disable"]]


# -- pairwise distances -----------------------------------------------------------------------------------------

def test_pairwise_distances_between_final_outputs(tmp_path):
    runs = [make_run(tmp_path, "ref", {"untapped": {"y": f32(1, 2)}}),
            make_run(tmp_path, "ort", {"untapped": {"y": np.array([[1, up(2, 2)]], np.float32)}}),
            make_run(tmp_path, "ort:opt=disable", {"untapped": {"y": f32(1.5, 2)}}),
            make_run(tmp_path, "torch", {}, status="failed")]
    fx = gather([], ["y"], runs, runs[0], metrics.Tolerance())
    found = analysis.pairwise(fx, ["y"])
    # ref-ort: 2 steps above 2.0 = 2 ULP, 2 * 2**-22. ref-opt: 1.0 -> 1.5 is 0.5 / 2**-23 = 2**22 ULP, abs 0.5.
    # ort-opt: the larger of the two elements' distances: 2**22 ULP (1 vs 1.5) and abs 0.5.
    assert found["variants"] == ["ref", "ort", "ort:opt=disable"]  # the failed run has no row
    assert found["max_ulp"] == [[0, 2, 2**22], [2, 0, 2**22], [2**22, 2**22, 0]]
    assert found["max_abs"] == [[0.0, 2 * F32_ULP_AT_2, 0.5], [2 * F32_ULP_AT_2, 0.0, 0.5], [0.5, 0.5, 0.0]]


def test_pairwise_marks_outputs_that_cannot_be_compared():
    # Hand-built facts: y compared fine, z missing from ort -> that pair is (None, inf) whatever y says.
    runs = {name: RunFacts(VariantRun(Variant.parse(name), Path("."), status="ok")) for name in ("ref", "ort")}
    fx = Facts("ref", runs, distances={("ref", "ort"): {"y": {"max_ulp": 3, "max_abs": 0.25},
                                                        "z": {"error": "not produced by this variant"}}})
    assert analysis.pairwise(fx, ["y"])["max_ulp"] == [[0, 3], [3, 0]]
    found = analysis.pairwise(fx, ["y", "z"])
    assert found["max_ulp"] == [[0, None], [None, 0]] and found["max_abs"] == [[0.0, float("inf")],
                                                                               [float("inf"), 0.0]]


# -- label flips ------------------------------------------------------------------------------------------------

LOGITS_REF = np.array([[[5, 0, 1], [0, 1, 2]],     # sample 0: rows -> classes 0, 2
                       [[0, 3, 1], [1, 4, 0]]], np.float32)  # sample 1: rows -> classes 1, 1
LOGITS_GOT = np.array([[[5, 0, 1], [0, 3, 2]],     # sample 0 row 1 flips 2 -> 1
                       [[0, 3, 1], [1, 4, 0]]], np.float32)


def test_label_flips(tmp_path, monkeypatch):
    monkeypatch.setattr(facts_mod, "CHUNK", 2)  # rows of 3 classes straddle the chunks
    runs = [make_run(tmp_path, "ref", {"untapped": {"p": LOGITS_REF}}),
            make_run(tmp_path, "ort", {"untapped": {"p": LOGITS_GOT}})]
    fx = gather([], ["p"], runs, runs[0], metrics.Tolerance(), classes=["p"])
    assert fx.runs["ref"].outputs["p"].top1.tolist() == [[0, 2], [1, 1]]
    # 4 rows, 1 flip: agreement 3/4.
    assert analysis.label_flips(fx.runs["ref"], fx.runs["ort"], ["p"]) == {
        "p": {"rows": 4, "agreement": 0.75, "flip_count": 1,
              "flips": [{"sample": 0, "row": 1, "reference": 2, "variant": 1}]}}


def test_labels_are_kept_only_for_class_outputs(tmp_path):
    runs = [make_run(tmp_path, "ref", {"untapped": {"p": LOGITS_REF}})]
    fx = gather([], ["p"], runs, runs[0], metrics.Tolerance())
    assert fx.runs["ref"].outputs["p"].top1 is None  # not named a class output: no labels, no flips


def test_label_flips_per_time_step(tmp_path):
    # [N, T, C] per sample (CTC logits): one label per row and step. Sample 0, row 0, step 1 flips 1 -> 0.
    ref = np.array([[[[3, 1], [0, 2]], [[1, 0], [0, 1]]]], np.float32)
    got = ref.copy()
    got[0, 0, 1] = [2, 0]
    runs = [make_run(tmp_path, "ref", {"untapped": {"c": ref}}), make_run(tmp_path, "ort", {"untapped": {"c": got}})]
    fx = gather([], ["c"], runs, runs[0], metrics.Tolerance(), classes=["c"])
    assert analysis.label_flips(fx.runs["ref"], fx.runs["ort"], ["c"]) == {
        "c": {"rows": 4, "agreement": 0.75, "flip_count": 1,
              "flips": [{"sample": 0, "row": 0, "step": 1, "reference": 1, "variant": 0}]}}


def test_label_flips_skip_outputs_that_cannot_be_compared():
    def run(name: str, **outputs: OutputFacts) -> RunFacts:
        return RunFacts(VariantRun(Variant.parse(name), Path("."), status="ok"), outputs=dict(outputs))

    labels = np.array([[0, 1]])
    ref = run("ref", p=OutputFacts((1, 2, 3), np.dtype(np.float32), top1=labels),
              s=OutputFacts((1, 2, 3), np.dtype(np.float32), top1=labels),
              u=OutputFacts((1, 2, 3), np.dtype(np.float32)))
    got = run("ort", p=OutputFacts((1, 2, 3), np.dtype(np.float32), top1=np.array([[1, 1]])),
              s=OutputFacts((1, 2, 4), np.dtype(np.float32), top1=labels),
              u=OutputFacts((1, 2, 3), np.dtype(np.float32)))
    # p: row 0 flips 0 -> 1. s: 3 vs 4 classes. t: absent. u: no labels kept.
    found = analysis.label_flips(ref, got, ["p", "s", "t", "u"])
    assert list(found) == ["p"] and found["p"]["flip_count"] == 1 and found["p"]["agreement"] == 0.5


def info(name: str, op: str, shape, elem: int = 1, output: bool = True) -> TensorInfo:
    return TensorInfo(name, op, name, 0, shape, elem, output)


def test_class_outputs_are_softmax_outputs_and_named_ones():
    tensors = [info("probs", "Softmax", (1, 10)), info("logp", "LogSoftmax", ("batch", "T", 37)),
               info("logits", "Gemm", (1, 10)), info("emb", "Div", (1, 384)),
               info("mid", "Softmax", (1, 10), 1, False), info("one", "Softmax", (1, 1)),
               info("ints", "Softmax", (1, 10), 7), info("img", "Softmax", (1, 3, 8, 8))]
    # A sentence embedding (Div) and raw logits (Gemm) are not called classifiers unless named.
    assert analysis.class_outputs(tensors) == ["probs", "logp"]
    assert analysis.class_outputs(tensors, ["logits"]) == ["probs", "logp", "logits"]
    with pytest.raises(UsageError, match="--classes mid: not a final output"):
        analysis.class_outputs(tensors, ["mid"])
    with pytest.raises(UsageError, match=r"--classes img: class scores are .*\[1, 3, 8, 8\]"):
        analysis.class_outputs(tensors, ["img"])


# -- determinism ------------------------------------------------------------------------------------------------

def test_determinism_and_spread(tmp_path):
    one, two = f32(1, 2), np.array([[1, up(2)]], np.float32)
    runs = [chain_run(tmp_path, "ref", one, one, one),
            # fresh session 1 agrees, same-session run 1 is one ULP off in y and in a (tapped repeats)
            chain_run(tmp_path, "ort", one, one, one, **{"untapped.1": {"y": one}, "untapped.same1": {"y": two},
                                                          "tapped.1": {"a": two, "b": one, "y": one}}),
            chain_run(tmp_path, "ort:opt=disable", one, one, one, **{"untapped.1": {"y": one}})]
    fx, tensors = report_of(runs)
    found = analysis.determinism(fx, ["y"])
    # ort: 3 runs (untapped, untapped.1, untapped.same1), 2 distinct outputs; the spread of y, 1 ULP at 2.0
    # (2**-22), is the tolerance that covers it. ort:opt=disable: 2 runs, 1 distinct output. ref: not repeated.
    assert found == {"ort": {"runs": 3, "distinct_outputs": 2,
                             "suggested_tolerance": {"atol": F32_ULP_AT_2, "max_ulp": 1}},
                     "ort:opt=disable": {"runs": 2, "distinct_outputs": 1, "suggested_tolerance": None}}
    spread = {t.name: t.spread for t in tensors}
    # a: the tapped repeat is one ULP off at 2.0; b: identical; y: from the untapped repeats.
    assert spread["a"]["ort"] == {"max_abs": F32_ULP_AT_2, "max_ulp": 1}
    assert spread["b"]["ort"] == {"max_abs": 0.0, "max_ulp": 0}
    assert spread["y"]["ort"] == {"max_abs": F32_ULP_AT_2, "max_ulp": 1}
    assert spread["y"]["ort:opt=disable"] == {"max_abs": 0.0, "max_ulp": 0}
    assert "ref" not in spread["y"]


# -- observer effect --------------------------------------------------------------------------------------------

def test_observer_effect(tmp_path):
    one = f32(1, 2)
    runs = [chain_run(tmp_path, "ref", one, one, one),
            chain_run(tmp_path, "ort", one, one, one, tapped_y=np.array([[1, up(2)]], np.float32)),
            make_run(tmp_path, "ort:opt=disable", {"untapped": {"y": one}})]  # not tapped
    fx, _ = report_of(runs)
    assert analysis.observer_effect(fx.runs["ref"], ["y"]) == (False, {})
    # tapping moved y[1] one step: 1 ULP, 2**-22.
    assert analysis.observer_effect(fx.runs["ort"], ["y"]) == (True, {"y": {"max_ulp": 1, "max_abs": F32_ULP_AT_2}})
    assert analysis.observer_effect(fx.runs["ort:opt=disable"], ["y"]) == (False, {})


# -- a failed reference, --isolate ------------------------------------------------------------------------------

def test_a_failed_reference_leaves_the_output_facts(tmp_path):
    runs = [make_run(tmp_path, "ref", {}, status="failed"),
            chain_run(tmp_path, "ort", f32(1, 2), f32(1, 2), f32(1, 2)),
            chain_run(tmp_path, "ort:opt=disable", f32(1, 2), f32(1, 2), f32(1, 2))]
    fx, tensors = report_of(runs)
    assert tensors == [] and fx.tensors == []  # nothing to compare with
    assert analysis.equivalence_classes(fx, ["y"]) == [["ort", "ort:opt=disable"]]
    assert analysis.pairwise(fx, ["y"])["max_ulp"] == [[0, 0], [0, 0]]


def test_isolated_runs_give_local_error(tmp_path):
    ref = chain_run(tmp_path, "ref", f32(1, 2), f32(1, 2), f32(1, 2))
    got = chain_run(tmp_path, "ort", f32(1, 3), f32(1, 3), f32(1, 3))
    iso = make_run(tmp_path / "isolate", "ort", {"tapped": {"a": f32(1, 2), "b": f32(1, 2.5), "y": f32(1, 2)}})
    fx = gather(CHAIN, ["y"], [ref, got], ref, metrics.Tolerance(), isolated=[iso])
    tensors = analysis.tensor_reports(CHAIN, fx)
    # Fed the reference's inputs, only b's node adds error (2 -> 2.5, 0.5 / 2**-22 = 2**21 ULP); y compares
    # the tapped values.
    assert fx.isolated == ["ort"]
    assert [t.local["ort"]["bit_identical"] for t in tensors] == [True, False, True]
    assert tensors[1].local["ort"]["max_ulp"] == 2**21
    assert [t.role("ort") for t in tensors] == ["propagated", "origin", "propagated"]


@pytest.mark.parametrize("shape", [(1, 2, 3), (2, 0, 4)])
def test_top1_of_any_chunking(tmp_path, monkeypatch, shape):
    monkeypatch.setattr(facts_mod, "CHUNK", 5)
    arr = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)[..., ::-1].copy()
    runs = [make_run(tmp_path, "ref", {"untapped": {"p": arr}})]
    fx = gather([], ["p"], runs, runs[0], metrics.Tolerance(), classes=["p"])
    # reversed ranges: the first class is the largest in every row
    assert np.array_equal(fx.runs["ref"].outputs["p"].top1, np.zeros(shape[:-1], np.intp))
