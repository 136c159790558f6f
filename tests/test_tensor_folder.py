"""Where the workers write their tensor files: in a memory-backed folder (run/variants.MEMORY_DIR, /dev/shm on
Linux) when every tapped tensor's size is known before the run (graph/sizes.py) and they take at most half its
free space and a quarter of the available memory, else in each variant's folder; `--workdir` keeps them there.
The memory folder is removed when compare (or capture, check, agree, the model gate) returns, whatever happens."""
from __future__ import annotations

from pathlib import Path

import pytest

import comparator
from comparator import api
from comparator.errors import UsageError
from comparator.run import variants
from comparator.variant import parse_list

VARIANTS = ["ort", "ort:opt=disable"]


@pytest.fixture
def memory(tmp_path, monkeypatch) -> Path:
    """MEMORY_DIR in a folder of the test's own, so that what is left in it can be seen."""
    folder = tmp_path / "shm"
    folder.mkdir()
    monkeypatch.setattr(variants, "MEMORY_DIR", folder)
    return folder


def tensor_files(rs: api.RunSet) -> list[Path]:
    return [p for r in rs.runs for kind, files in r.tensors.items() for name in files
            if (p := r.path(kind, name)) is not None]


def test_tensors_that_fit_go_to_the_memory_folder_and_compare_the_same(models, tmp_path, memory):
    scratch = variants.memory_scratch()
    assert scratch is not None and scratch.parent == memory
    rs = api.run_variants(models.cnn, parse_list(VARIANTS), tmp_path / "run", scratch=scratch)
    files = tensor_files(rs)
    assert files and all(p.is_relative_to(scratch) and p.is_file() for p in files)
    assert not list((tmp_path / "run").rglob("*.npy"))  # the logs and manifests stay in the run's folder
    on_disk = api.run_variants(models.cnn, parse_list(VARIANTS), tmp_path / "disk")
    assert all(p.is_relative_to(tmp_path / "disk") for p in tensor_files(on_disk))
    for a, b in zip(tensor_files(rs), tensor_files(on_disk)):
        assert a.read_bytes() == b.read_bytes()


def test_tensors_over_a_quarter_of_the_available_memory_stay_on_disk(models, tmp_path, memory, monkeypatch):
    rs = api.run_variants(models.cnn, parse_list(VARIANTS), tmp_path / "a", scratch=variants.memory_scratch())
    need = sum(p.stat().st_size for p in tensor_files(rs))
    monkeypatch.setattr(variants, "available_memory", lambda: 4 * need // 2)  # a quarter of it: half of what's needed
    rs = api.run_variants(models.cnn, parse_list(VARIANTS), tmp_path / "b", scratch=variants.memory_scratch())
    assert all(p.is_relative_to(tmp_path / "b") for p in tensor_files(rs))
    assert variants.memory_folder(None, 1) is None  # no scratch (--workdir): the run's folder


def test_dynamic_dims_the_feeds_fix_go_to_memory_and_sizes_that_depend_on_data_stay_on_disk(models, tmp_path,
                                                                                             memory):
    # The feeds fix z's dynamic dim, so every tensor's size is known before the run (graph/sizes.py).
    rs = api.run_variants(models.dynamic, parse_list(VARIANTS), tmp_path / "run", shapes={"z": (2, 4096)},
                          scratch=variants.memory_scratch())
    assert any(not all(isinstance(d, int) for d in t.shape or [None]) for t in rs.plan.tapped)
    assert all(p.is_relative_to(memory) for p in tensor_files(rs))
    # NonZero's output has as many columns as its input has non-zero elements: unknown before the run.
    rs = api.run_variants(models.nonzero, parse_list(VARIANTS), tmp_path / "nz", shapes={"x": (64,)},
                          scratch=variants.memory_scratch())
    assert all(p.is_relative_to(tmp_path / "nz") for p in tensor_files(rs))


def test_compare_leaves_nothing_in_the_memory_folder(models, memory):
    report = comparator.compare(models.cnn, VARIANTS)
    assert report.exit_code == 0 and report.tensors
    assert not list(memory.iterdir())
    with pytest.raises(UsageError):
        comparator.compare(models.cnn, VARIANTS, shapes={"nope": (1,)})
    assert not list(memory.iterdir())


def test_a_workdir_keeps_the_tensors(models, tmp_path, memory):
    comparator.compare(models.cnn, VARIANTS, workdir=tmp_path / "wd")
    assert list((tmp_path / "wd").rglob("*.npy")) and not list(memory.iterdir())


def test_no_memory_folder_where_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(variants, "MEMORY_DIR", tmp_path / "absent")
    assert variants.memory_scratch() is None


def test_capture_check_agree_and_the_model_gate_use_the_memory_folder_and_leave_nothing(models, tmp_path, memory,
                                                                                        monkeypatch):
    from comparator.gate import capture, check

    given = []  # every folder memory_folder gave a run (None: the run's folder on disk)

    def watched(scratch, need):
        given.append(folder := real(scratch, need))
        return folder

    real = variants.memory_folder
    monkeypatch.setattr(variants, "memory_folder", watched)
    bundle = tmp_path / "base.icmp"
    capture.capture(models.cnn, parse_list(VARIANTS), bundle, tap_spec="all")
    assert check.check(models.cnn, bundle).passed
    assert check.agree(models.cnn, VARIANTS).passed
    assert check.compare_models(models.cnn, models.cnn, "ort").passed
    assert len(given) == 5 and all(f is not None and f.is_relative_to(memory) for f in given)
    assert not list(memory.iterdir())
