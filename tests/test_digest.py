"""The model digest: sha256 over the model's files, remembered under their identity (graph/digest.py)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from comparator.graph import digest


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INFERCMP_DIGESTS_CACHE", str(tmp_path / "cache" / "digests"))
    monkeypatch.delenv("INFERCMP_NO_CACHE", raising=False)
    # A file's change time cannot be set back: these files, written just now, count as settled at once.
    monkeypatch.setattr(digest, "SETTLE_S", 0.0)
    return tmp_path / "cache" / "digests"


def _settled(path: Path, data: bytes) -> Path:
    """A file last modified a minute ago, as a model on disk usually is."""
    path.write_bytes(data)
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def test_a_settled_model_s_digest_is_remembered_and_read_back_for_the_same_files_only(tmp_path: Path, cache: Path):
    model = _settled(tmp_path / "m.onnx", b"graph" * 1000)
    data = _settled(tmp_path / "w.bin", bytes(range(256)) * 5000)
    files = [model, data]
    expected = hashlib.sha256(model.read_bytes() + data.read_bytes()).hexdigest()
    assert digest.FileDigest(files).value == expected
    entries = list(cache.glob("*.json"))
    assert len(entries) == 1
    # What is read back is the entry: make it say something else, for the same identity, and it is believed.
    stored = json.loads(entries[0].read_text())
    assert stored["sha256"] == expected and [row[0] for row in stored["files"]] == [str(model), str(data)]
    entries[0].write_text(json.dumps(dict(stored, sha256="f" * 64)))
    assert digest.FileDigest(files).value == "f" * 64
    # Rewriting a file with the same bytes count and an old mtime still changes its change time: hashed again.
    data.write_bytes(bytes(reversed(range(256))) * 5000)
    os.utime(data, (time.time() - 60, time.time() - 60))
    changed = hashlib.sha256(model.read_bytes() + data.read_bytes()).hexdigest()
    assert digest.FileDigest(files).value == changed != expected
    # Another list of files (the model alone) is another entry.
    assert digest.FileDigest([model]).value == hashlib.sha256(model.read_bytes()).hexdigest()
    assert len(list(cache.glob("*.json"))) == 2


def test_a_file_modified_just_now_is_hashed_but_not_remembered(tmp_path: Path, cache: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(digest, "SETTLE_S", 2.0)
    fresh = tmp_path / "fresh.onnx"
    fresh.write_bytes(b"x" * 4096)
    assert digest.FileDigest([fresh]).value == hashlib.sha256(b"x" * 4096).hexdigest()
    assert not cache.exists() or not list(cache.glob("*.json"))


def test_no_cache_neither_reads_nor_writes(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
    model = _settled(tmp_path / "m.onnx", b"abc" * 100)
    digest.FileDigest([model]).value  # noqa: B018 - remembered
    entry = next(cache.glob("*.json"))
    entry.write_text(json.dumps(dict(json.loads(entry.read_text()), sha256="0" * 64)))
    monkeypatch.setenv("INFERCMP_NO_CACHE", "1")
    assert digest.FileDigest([model]).value == hashlib.sha256(b"abc" * 100).hexdigest()
    other = _settled(tmp_path / "n.onnx", b"def")
    digest.FileDigest([other]).value  # noqa: B018
    assert len(list(cache.glob("*.json"))) == 1


def test_an_unreadable_cache_entry_is_ignored_and_a_missing_file_is_a_model_error(tmp_path: Path, cache: Path):
    model = _settled(tmp_path / "m.onnx", b"abc")
    digest.FileDigest([model]).value  # noqa: B018
    next(cache.glob("*.json")).write_text("{not json")
    assert digest.FileDigest([model]).value == hashlib.sha256(b"abc").hexdigest()
    from comparator.errors import ModelError

    with pytest.raises(ModelError, match="could not be read"):
        digest.FileDigest([tmp_path / "gone.onnx"]).value  # noqa: B018


def test_a_new_entry_removes_those_of_files_that_no_longer_exist(tmp_path: Path, cache: Path):
    gone = _settled(tmp_path / "gone.onnx", b"old")
    kept = _settled(tmp_path / "kept.onnx", b"kept")
    digest.FileDigest([gone]).value  # noqa: B018
    digest.FileDigest([kept]).value  # noqa: B018
    assert len(list(cache.glob("*.json"))) == 2
    gone.unlink()
    (cache / "junk.json").write_text("{not json")
    new = _settled(tmp_path / "new.onnx", b"new")
    digest.FileDigest([new]).value  # noqa: B018
    left = sorted(json.loads(p.read_text())["files"][0][0] for p in cache.glob("*.json"))
    assert left == [str(kept), str(new)]
