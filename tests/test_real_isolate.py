"""--isolate on every fetched real model: each node of the trained graphs is replayed alone on the reference's
inputs, whatever shape inference said of them (Paddle's exports type a scalar Constant that ONNX Runtime returns
with shape [1], and leave tensors without a shape)."""
from __future__ import annotations

from pathlib import Path

import pytest

import real_models_table as table

pytestmark = pytest.mark.real_models

real = table.load_real()
FETCHED = [name for name, entry in table.TABLE.items() if entry.fetched]


@pytest.mark.parametrize("name", FETCHED)
def test_isolate_replays_every_node_of_a_real_model(name: str, tmp_path: Path) -> None:
    import comparator

    path = table.model_or_skip(name, real.default_cache(), tmp_path)
    report = comparator.compare(path, ["ort", "ort:opt=disable"], real.feeds(name), isolate=True)
    assert all(v.status == "ok" for v in report.variants), [(v.name, v.error) for v in report.variants]
    fed = [n for n in report.model["notes"] if n.startswith("--isolate fed")]
    assert fed and "could not be fed" not in fed[0] and not [n for n in report.model["notes"]
                                                              if n.startswith("--isolate: ")], report.model["notes"]
    local = [t for t in report.tensors if "ort:opt=disable" in t.local]
    assert local, "no tensor has a local error measured"
    assert all("error" not in t.local["ort:opt=disable"] for t in local), \
        [(t.name, t.local["ort:opt=disable"]) for t in local if "error" in t.local["ort:opt=disable"]][:3]
