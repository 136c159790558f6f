"""Comparing ahead (measure/ahead.py): what is compared while runs go on is what gather computes itself, it is used
only for the files it was computed from, and a run that fails later keeps nothing of it."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest

from comparator import api, assemble
from comparator.measure.ahead import Ahead
from comparator.measure.metrics import Tolerance
from comparator.variant import Variant

VARIANTS = [Variant.parse(v) for v in ("ort", "ort:opt=disable", "ort:threads=1")]
TOLERANCE = Tolerance()


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory):
    """Three ORT variants of the shipped CNN, run once (nothing compared ahead)."""
    return api.run_variants(models.cnn, VARIANTS, tmp_path_factory.mktemp("ahead") / "run")


def _drained(rs, tolerance=TOLERANCE, order=VARIANTS, tolerance_for=None):
    """An Ahead told of every variant's written tapped run, in `order`, once it has compared all it can."""
    ahead = Ahead(VARIANTS[0], tolerance, hashing=True, tolerance_for=tolerance_for)
    ahead.begin(rs.plan.tapped)
    folders = {r.variant: r.folder for r in rs.runs}
    for v in order:
        ahead.written(v, folders[v])
    inner = [t for t in rs.plan.tapped if not t.is_output and not t.scope]
    deadline = time.monotonic() + 60
    while len(ahead.known.pairs) < 2 * len(inner) and time.monotonic() < deadline:
        time.sleep(0.01)
    return ahead, inner


def _tensors(report):
    return [dataclasses.asdict(t) for t in report.tensors]


def test_every_worker_writes_its_tapped_manifest_first(runs):
    twice = 0
    for r in runs.runs:
        written = json.loads((r.folder / "tapped.json").read_text())
        assert written == r.tensors["tapped"]
        phases = [line.split(": ", 1)[1] for line in (r.folder / "stdout.txt").read_text().splitlines()
                  if line.startswith("infercmp-phase: ")]
        assert phases[:3] == ["tapped open", "tapped run", "tapped written"]
        if not r.one_run:  # ort:opt=disable runs every node as it stands: once, tapped
            twice += 1
            assert phases[3:6] == ["untapped open", "untapped run", "untapped written"]
        assert phases[-1] == "done"  # the record is written
    assert twice == 2


def test_what_is_compared_ahead_is_what_gather_finds(runs):
    plain, plain_facts = assemble.analyse(runs.model, runs.plan, runs.runs, VARIANTS[0], TOLERANCE, runs.feed_info)
    ahead, inner = _drained(runs)
    assert len(ahead.known.pairs) == 2 * len(inner)  # both variants against the reference, every inner tensor
    assert len(ahead.known.digests) == 2 * len(inner)  # three variants: each value beside the reference hashed
    used, used_facts = assemble.analyse(runs.model, runs.plan, runs.runs, VARIANTS[0], TOLERANCE, runs.feed_info,
                                        ahead=ahead)
    assert _tensors(used) == _tensors(plain)
    assert used.equivalence_classes == plain.equivalence_classes
    assert used.first_divergence == plain.first_divergence and used.exit_code == plain.exit_code
    assert [t.digests for t in used_facts.tensors] == [t.digests for t in plain_facts.tensors]


def test_the_reference_written_last_starts_every_pair(runs):
    ahead, inner = _drained(runs, order=VARIANTS[::-1])
    assert len(ahead.known.pairs) == 2 * len(inner)
    ahead.close()


def test_a_result_is_used_only_under_its_own_tolerance(runs):
    ahead, inner = _drained(runs, tolerance=Tolerance(0.0, 0.0))
    strict = assemble.analyse(runs.model, runs.plan, runs.runs, VARIANTS[0], Tolerance(0.0, 0.0),
                              runs.feed_info)[0]
    loose = assemble.analyse(runs.model, runs.plan, runs.runs, VARIANTS[0], TOLERANCE, runs.feed_info,
                             ahead=ahead)[0]
    plain = assemble.analyse(runs.model, runs.plan, runs.runs, VARIANTS[0], TOLERANCE, runs.feed_info)[0]
    assert _tensors(loose) == _tensors(plain)
    assert _tensors(strict) != _tensors(plain)  # the tolerance matters here, so a wrong reuse would show


def test_a_variant_that_fails_after_its_tapped_run_keeps_nothing(runs):
    ahead, _ = _drained(runs)
    failed = [dataclasses.replace(r, status="crashed", error="the worker died") if r.variant == VARIANTS[1] else r
              for r in runs.runs]
    report = assemble.analyse(runs.model, runs.plan, failed, VARIANTS[0], TOLERANCE, runs.feed_info, ahead=ahead)[0]
    assert report.exit_code == 3
    assert all(str(VARIANTS[1]) not in t.metrics for t in report.tensors)
    assert all(str(VARIANTS[2]) in t.metrics for t in report.tensors)


def test_a_tapped_run_heard_of_after_finish_is_ignored(runs):
    ahead = Ahead(VARIANTS[0], TOLERANCE, hashing=False)
    ahead.begin(runs.plan.tapped)
    ahead.finish()
    for r in runs.runs:
        ahead.written(r.variant, r.folder)
    assert ahead.known.pairs == {}


def test_the_reference_runs_first_and_the_report_keeps_the_order_as_listed(models):
    heard = []
    listed = ["ort:threads=1", "ort:opt=disable", "ort"]
    report = api.compare(models.cnn, listed, reference="ort", jobs=1,
                         events=lambda e: heard.append(e.variant) if e.phase == "variant" else None)
    assert heard[0] == "ort" and heard.index("ort:threads=1") > heard.index("ort")
    assert [v.name for v in report.variants] == listed
    assert report.exit_code in (0, 1)
