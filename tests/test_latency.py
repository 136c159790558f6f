"""`compare(time=N)` / `infercmp compare --time N`: each variant's untapped session, warmed up by its own run, runs
N more times on the first sample's feeds; the median, min and max land in `timings["latency"]` and the views show
them beside the deviation. Real ONNX Runtime workers throughout."""
from __future__ import annotations

import json

import pytest

import comparator
from comparator.errors import UsageError
from comparator.report import console as console_report, html, text
from comparator.result import Report
from conftest import assert_clean_error

VARIANTS = ["ort", "ort:opt=disable"]


@pytest.fixture(scope="module")
def timed(models) -> tuple[Report, list]:
    events: list = []
    return comparator.compare(models.cnn, VARIANTS, time=5, events=events.append), events


@pytest.fixture(scope="module")
def untimed(models) -> Report:
    return comparator.compare(models.cnn, VARIANTS)


def test_every_variant_is_timed(timed) -> None:
    report, _ = timed
    for name in VARIANTS:
        lat = report.latency(name)
        assert lat is not None, name
        assert lat is report.variant(name).timings["latency"]
        assert lat["runs"] == 5 and lat["warmup"] == 1 and lat["sample"] == 0
        assert 0 < lat["min_s"] <= lat["median_s"] <= lat["max_s"]
    assert report.latency_ratio("ort") == 1.0
    ratio = report.latency_ratio("ort:opt=disable")
    assert ratio is not None and ratio > 0
    assert ratio == pytest.approx(report.latency("ort:opt=disable")["median_s"] / report.latency("ort")["median_s"])
    assert report.latency("no such variant") is None


def test_timing_changes_no_tensor(timed, untimed: Report) -> None:
    """The timed runs write nothing: the same tensors, files and verdict as without --time."""
    report, _ = timed
    assert report.exit_code == untimed.exit_code and report.first_divergence == untimed.first_divergence
    for a, b in zip(report.tensors, untimed.tensors):
        assert a.name == b.name and a.metrics == b.metrics
    for name in VARIANTS:
        assert set(report.variant(name).timings) == {"framework", "untapped", "tapped", "latency"}


def test_timed_variants_run_one_at_a_time(timed) -> None:
    """Without `jobs`, a timed variant's worker starts only when the previous one has finished."""
    _, events = timed
    order = [e.variant for e in events if e.phase == "variant"]
    assert order == sorted(order, key=VARIANTS.index), order
    texts = {(e.variant, e.text) for e in events if e.phase == "variant"}
    assert {(v, "untapped time") for v in VARIANTS} <= texts


def test_no_time_no_latency(untimed: Report) -> None:
    for name in VARIANTS:
        assert untimed.latency(name) is None and "latency" not in untimed.variant(name).timings
        assert untimed.latency_ratio(name) is None
    text = "\n".join(line for line, _ in console_report.summary_lines(untimed, 100))
    assert "latency" not in text
    assert ">latency</th>" not in html.render(untimed)


@pytest.mark.parametrize("value, error", [(-1, UsageError), (True, TypeError), ("3", TypeError), (2.0, TypeError)])
def test_bad_time_is_refused_before_any_worker(models, value, error) -> None:
    with pytest.raises(error, match="time"):
        comparator.compare(models.small, ["ort"], time=value)


def test_json_round_trip(timed, tmp_path) -> None:
    from comparator.report import json as json_report

    report, _ = timed
    path = tmp_path / "r.json"
    json_report.write(report, path)
    data = json.loads(path.read_text())
    assert data["variants"][1]["timings"]["latency"]["runs"] == 5
    back = json_report.read(path)
    assert back.latency("ort:opt=disable") == report.latency("ort:opt=disable")


def test_views_show_the_latency(timed) -> None:
    report, _ = timed
    lines = [line for line, _ in console_report.summary_lines(report, 80)]
    assert all(len(line) <= 80 for line in lines)
    ref = text.ms_text(report.latency("ort")["median_s"])
    assert f"ort (reference): latency {ref} ms median of 5" in lines
    ratio = report.latency_ratio("ort:opt=disable")
    assert any(line.strip().startswith("latency ")
               and line.endswith(f"median of 5 ({text.ratio_text(ratio)} the reference)")
               for line in lines), lines
    page = html.render(report)
    assert ">latency</th>" in page and f"({text.ratio_text(ratio)})" in page


def test_cli_time(models, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = cli("compare", str(models.cnn), "-b", "ort,ort:opt=disable", "--time", "3")
    assert code == 0, err
    assert "ort (reference): latency " in out and "median of 3 (" in out
    assert all(len(line) <= 100 for line in out.splitlines())


def test_cli_negative_time_is_a_usage_error(models, cli) -> None:
    code, out, err = cli("compare", str(models.small), "-b", "ort", "--time", "-1")
    assert code == 2 and out == ""
    assert_clean_error(err, "--time must be an integer >= 0, got -1")
