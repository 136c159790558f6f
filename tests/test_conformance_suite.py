"""Conformance is locked: the whole ONNX node suite runs through ref, torch, tf (eager) and tvm, and each case must
end as tests/conformance/<backend>.txt says: a case not listed must pass; a listed one must end with one of its
listed statuses (so an expected failure that now passes fails here too, asking for its line to go).

Each backend's suite is split into shards (every n-th case of the name-sorted suite, so each shard is a similar
mix of ops) that pytest-xdist spreads over workers. Marked `conformance`: `pytest -m conformance -n 2` runs just
these (about 3 minutes on 2 cores), `-m "not conformance"` leaves them out.

Update a list after a deliberate change: `infercmp conformance -b torch --write-expected tests/conformance/torch.txt`
(see the file's header), then give every new case a reason.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from comparator.run import conformance
from comparator.variant import Variant

LISTS = Path(__file__).resolve().parent / "conformance"
# Shards per backend, sized from wall times measured on 2 cores (whole suite, one process: ref 21 s, torch 22 s,
# tf 28 s, tvm 237 s with a cold compile cache, 20 s warm); each shard also pays a worker start and a collection of
# the suite (a few seconds). With `-n 2` the 11 shards take about 3 minutes.
# The two float64 oracles (every float tensor computed in float64, outputs rounded to the case's types) have lists
# of their own: tests/conformance/ref-dtype-float64.txt and torch-dtype-float64.txt (about 10 s each).
SHARDS = {"ref": 1, "torch": 2, "tf": 2, "tvm": 6, "ref:dtype=float64": 1, "torch:dtype=float64": 1}
FRAMEWORK = {"ref": "onnx", "torch": "torch", "tf": "tensorflow", "tvm": "tvm"}


def list_path(variant: str) -> Path:
    """tests/conformance/<variant with ':' and '=' as '-'>.txt"""
    return LISTS / (variant.replace(":", "-").replace("=", "-") + ".txt")

pytestmark = pytest.mark.conformance


def suite_version(path: Path) -> str:
    """The onnx version whose node suite the list was made from (its `# suite: onnx X.Y.Z` header line)."""
    found = re.search(r"^# suite: onnx (\S+),", path.read_text(encoding="utf-8"), re.M)
    assert found, f"{path}: no '# suite: onnx X.Y.Z, N cases' header line"
    return found.group(1)


def skip_unless_same_suite(path: Path) -> None:
    """The lists name cases of one onnx release's suite; another release adds, renames and fixes cases, so the
    list says nothing about it. Same major.minor is taken to be the same suite."""
    import onnx

    made = suite_version(path)
    if made.split(".")[:2] != onnx.__version__.split(".")[:2]:
        pytest.skip(f"{path.name} lists onnx {made}'s node suite; onnx {onnx.__version__} is installed "
                    "(regenerate the lists for it)")


@pytest.mark.parametrize("backend, shard", [(b, k) for b, n in SHARDS.items() for k in range(n)],
                         ids=[f"{b}-{k + 1}of{n}" for b, n in SHARDS.items() for k in range(n)])
def test_suite_matches_expected_failures(backend: str, shard: int) -> None:
    framework = FRAMEWORK[Variant.parse(backend).backend]
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    path = list_path(backend)
    skip_unless_same_suite(path)
    expected = conformance.read_expected(path)
    result = conformance.run(Variant.parse(backend), shard=(shard, SHARDS[backend]))
    assert result.cases
    problems = conformance.check_expected(result.cases, expected)
    assert not problems, (f"{len(problems)} case(s) of {backend} depart from {path.relative_to(LISTS.parent.parent)}:"
                          "\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("backend", list(SHARDS))
def test_expected_lists_name_cases_of_the_suite(backend: str) -> None:
    """Every listed case exists in the suite: a stale name would go unchecked for ever."""
    path = list_path(backend)
    skip_unless_same_suite(path)
    names = {c.name for c in conformance.collect()}
    stale = sorted(set(conformance.read_expected(path)) - names)
    assert not stale, f"{path.name} lists cases the suite does not have: {stale}"
