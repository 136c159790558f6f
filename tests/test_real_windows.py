"""Tapping in windows on trained models: silero_vad (tensors inside If branches, recorded by the variants that can)
and magika, with a budget of half what one pass needs. The variants that run every node as it stands report what
one pass reports; ONNX Runtime's optimizing one may fuse differently around a window's taps."""
from __future__ import annotations

from pathlib import Path

import pytest

import real_models_table as table

pytestmark = pytest.mark.real_models

real = table.load_real()
VARIANTS = ["ref:dtype=float64", "ort", "ort:opt=disable", "torch"]


@pytest.mark.parametrize("name", [n for n in ("silero_vad", "magika") if table.TABLE[n].fetched])
def test_windows_on_a_real_model_report_what_one_pass_does(name: str, tmp_path: Path) -> None:
    import comparator
    from comparator import api
    from comparator.graph import model as model_mod, sizes, tap

    path = table.model_or_skip(name, real.default_cache(), tmp_path)
    feeds = real.feeds(name)
    one = comparator.compare(path, VARIANTS, feeds)
    loaded = model_mod.load(path)
    plan = tap.plan(loaded, "all")
    shapes = sizes.run_shapes(loaded, sizes.per_sample(api.resolve_feeds(loaded, feeds, {}, 0, 1).arrays))
    half = sizes.bytes_of(plan.tapped, shapes) * len(VARIANTS)  # half of two runs a variant
    cut = comparator.compare(path, VARIANTS, feeds, max_disk=half)
    assert any(n.startswith("tapped in ") for n in cut.model["notes"]), cut.model["notes"]
    assert [v.status for v in cut.variants] == ["ok"] * len(VARIANTS)
    assert [t.name for t in cut.tensors] == [t.name for t in one.tensors]
    for v in ("ort:opt=disable", "torch"):
        assert [t.metrics.get(v) for t in cut.tensors] == [t.metrics.get(v) for t in one.tensors], v
    assert all("ort" in t.metrics or "ort" not in o.metrics for t, o in zip(cut.tensors, one.tensors))
    assert {v: cut.first_divergence[v] for v in ("ort:opt=disable", "torch")} == {
        v: one.first_divergence[v] for v in ("ort:opt=disable", "torch")}
    assert cut.untapped_subgraphs == one.untapped_subgraphs and cut.exit_code == one.exit_code


@pytest.mark.parametrize("name", [n for n, entry in table.TABLE.items() if entry.fetched])
def test_the_sizes_known_before_a_run_are_the_sizes_it_writes(name: str, tmp_path: Path) -> None:
    import numpy as np

    from comparator import api
    from comparator.graph import sizes
    from comparator.variant import parse_list

    path = table.model_or_skip(name, real.default_cache(), tmp_path)
    rs = api.run_variants(path, parse_list(["ort:opt=disable"]), tmp_path / "run", real.feeds(name))
    shapes = sizes.run_shapes(rs.model, sizes.per_sample(rs.feeds))
    run = rs.runs[0]
    written = {n: np.load(run.path("tapped", n), mmap_mode="r") for n in run.tensors["tapped"]}
    main = [t for t in rs.plan.tapped if not t.scope]
    unknown = {t.name for t in main if t.name not in shapes}
    # silero_vad's outputs come from an If whose branch the value of its `sr` input picks (the If-less variant
    # keeps one inside); every other size is known, PaddleOCR's Reshapes by shapes computed from Shape included
    assert unknown == {"silero_vad": {"If_0_outputs_0", "If_0_outputs_1", "output", "stateN"},
                       "silero_vad_ifless": {"output", "stateN"}}.get(name, set())
    main = [t for t in main if t.name not in unknown]
    # The sizes known are right. The workers store a 0-d value as one element of shape (1,): its bytes are the same.
    assert {t.name: sizes.tensor_bytes(t, shapes) for t in main} == {t.name: written[t.name][0].nbytes for t in main}
    assert {t.name: shapes[t.name] for t in main if shapes[t.name]} == {
        t.name: written[t.name].shape[1:] for t in main if shapes[t.name]}
