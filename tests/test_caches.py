"""Caches: one root under the platform's cache directory (XDG_CACHE_HOME honoured), `infercmp cache info|clear`,
and the TVM compile cache's size cap with least-recently-used eviction (on real compiled entries)."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest

from conftest import ROOT, assert_clean_error, small_model
from comparator import caches
from comparator.errors import UsageError

HAS_TVM = importlib.util.find_spec("tvm") is not None


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("INFERCMP_CACHE_DIR", "INFERCMP_NO_CACHE", "INFERCMP_REAL_MODELS_CACHE", "INFERCMP_TVM_CACHE_MAX",
                 "INFERCMP_DIGESTS_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_every_cache_lives_under_xdg_cache_home(clean_env):
    from comparator.backends.tvm.cache import cache_root

    sys.path.insert(0, str(ROOT / "models"))
    try:
        import real
    finally:
        sys.path.remove(str(ROOT / "models"))
    base = clean_env / "xdg" / "infercmp"
    assert caches.root() == base
    assert cache_root() == base / "tvm"
    assert real.default_cache() == base / "real-models"
    assert {caches.folder(n) for n in caches.CACHES} == {base / n for n in caches.CACHES}


def test_overrides(clean_env, monkeypatch):
    from comparator.backends.tvm.cache import cache_root

    monkeypatch.setenv("INFERCMP_CACHE_DIR", str(clean_env / "mine"))
    monkeypatch.setenv("INFERCMP_REAL_MODELS_CACHE", str(clean_env / "wheels"))
    monkeypatch.setenv("INFERCMP_DIGESTS_CACHE", str(clean_env / "sums"))
    assert cache_root() == clean_env / "mine" / "tvm"
    assert caches.folder("real-models") == clean_env / "wheels"
    assert caches.folder("digests") == clean_env / "sums"
    monkeypatch.setenv("INFERCMP_NO_CACHE", "1")
    assert cache_root() is None and caches.disabled()
    with pytest.raises(UsageError, match="unknown cache 'nope'"):
        caches.folder("nope")


def test_size_parsing():
    assert caches.parse_size("2G", "X") == 2 << 30
    assert caches.parse_size("500MiB", "X") == 500 << 20
    assert caches.parse_size("1.5k", "X") == 1536
    assert caches.parse_size("0", "X") == 0
    for bad in ("", "-1", "2x", "inf", "nan"):
        with pytest.raises(UsageError, match="X="):
            caches.parse_size(bad, "X")


def fill(path, files):
    for rel, size in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(b"x" * size)


def test_info_and_clear(clean_env, cli):
    base = clean_env / "xdg" / "infercmp"
    fill(base / "tvm", {"a.so": 1000, "a.json": 10, "b.so": 2000, "b.json": 10, ".b.123.tmp.so": 5})
    fill(base / "real-models", {"wheels/w.whl": 300, "light/m.onnx": 200})
    code, out, err = cli("cache", "info")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"cache root: {base}")
    tvm = next(line for line in lines if line.startswith("tvm "))
    assert "3.0 KiB" in tvm and " 2 entries" in tvm and str(base / "tvm") in tvm
    assert any("capped at 2.0 GiB ($INFERCMP_TVM_CACHE_MAX, default)" in line for line in lines)
    assert "2 entries" in next(line for line in lines if line.startswith("real-models"))
    assert "(not created yet)" in next(line for line in lines if line.startswith("bench"))
    assert max(len(line) for line in lines if str(base) not in line) <= 100

    code, out, _ = cli("cache", "info", "--json")
    data = json.loads(out)
    by_name = {c["name"]: c for c in data["caches"]}
    assert data["root"] == str(base) and by_name["tvm"]["bytes"] == 3025 and by_name["tvm"]["entries"] == 2
    assert by_name["tvm"]["cap_bytes"] == 2 << 30 and by_name["real-models"]["bytes"] == 500

    code, out, _ = cli("cache", "clear", "tvm")
    assert code == 0 and out.startswith(f"cleared tvm: 2 entries, 3.0 KiB ({base / 'tvm'})")
    assert (base / "tvm").is_dir() and not any((base / "tvm").iterdir())
    assert (base / "real-models" / "wheels" / "w.whl").exists()

    code, _, err = cli("cache", "clear", "tvm", "nope")
    assert code == 2
    assert_clean_error(err, "unknown cache 'nope'")

    code, out, _ = cli("cache", "clear")
    assert code == 0 and "cleared real-models: 2 entries" in out and "bench: empty" in out
    assert not any((base / "real-models").iterdir())


def test_clear_refuses_the_home_folder(clean_env, monkeypatch, cli):
    monkeypatch.setenv("INFERCMP_REAL_MODELS_CACHE", str(clean_env / "home"))
    monkeypatch.setenv("HOME", str(clean_env / "home"))
    fill(clean_env / "home", {"keep.txt": 3})
    code, _, err = cli("cache", "clear", "real-models")
    assert code == 2
    assert_clean_error(err, "refusing to clear")
    assert (clean_env / "home" / "keep.txt").exists()


def test_bad_cap_is_a_usage_error(clean_env, monkeypatch, cli):
    monkeypatch.setenv("INFERCMP_TVM_CACHE_MAX", "lots")
    code, _, err = cli("cache", "info")
    assert code == 2
    assert_clean_error(err, "INFERCMP_TVM_CACHE_MAX='lots' is not a size")


def test_cli_cache_info_in_a_real_process(clean_env):
    env = dict(os.environ, XDG_CACHE_HOME=str(clean_env / "xdg"))
    proc = subprocess.run([sys.executable, "-m", "comparator.cli", "cache", "info"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"cache root: {clean_env / 'xdg' / 'infercmp'}" in proc.stdout


# The TVM compile cache on real compiled entries ---------------------------------------------------------------

needs_tvm = pytest.mark.skipif(not HAS_TVM, reason="apache-tvm is not installed")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """One real compiled entry (library + sidecar) of a tiny model, and the model."""
    root = tmp_path_factory.mktemp("tvmcache")
    path = root / "small.onnx"
    onnx.save(small_model(), str(path))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFERCMP_CACHE_DIR", str(root / "seed"))
        mp.delenv("INFERCMP_NO_CACHE", raising=False)
        mp.delenv("INFERCMP_TVM_CACHE_MAX", raising=False)
        session, info = open_tvm(path)
    key = info["key"]
    return type("Compiled", (), {"model": path, "dir": root / "seed" / "tvm", "key": key,
                                 "size": sum((root / "seed" / "tvm" / f"{key}{s}").stat().st_size
                                             for s in (".so", ".json"))})


def open_tvm(path, raw=None):
    from comparator.backends import get
    from comparator.backends.options import resolve

    backend = get("tvm")
    options = resolve("tvm", backend.options, raw or {})
    backend.validate(options)
    session = backend.open(str(path), options)
    out = session.run({"x": np.ones((1, 4), np.float32)})
    assert np.isfinite(out["y"]).all()
    return session, session.provenance()["cache"]


def copies(compiled, folder, keys):
    """Whole entries under other keys (the key is only a file name: each is a valid entry), oldest first."""
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i, key in enumerate(keys):
        for suffix in (".so", ".json"):
            target = folder / f"{key}{suffix}"
            shutil.copyfile(compiled.dir / f"{compiled.key}{suffix}", target)
            os.utime(target, (now - 1000 + i * 10, now - 1000 + i * 10))


@needs_tvm
def test_eviction_drops_the_least_recently_used(compiled, tmp_path):
    from comparator.backends.tvm.cache import CompileCache

    keys = [f"{c * 40}" for c in "abcd"]
    copies(compiled, tmp_path, keys)
    cache = CompileCache(tmp_path, cap=int(compiled.size * 2.5))
    assert [k for _, _, k in cache.entries()] == keys
    assert cache.load(keys[0]) is not None  # a hit: a is now the most recently used
    assert cache.evict(keep=keys[3]) == [keys[1], keys[2]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{k}{s}" for k in (keys[0], keys[3])
                                                                 for s in (".so", ".json"))
    assert CompileCache(tmp_path, cap=0).evict() == []  # 0: no limit


@needs_tvm
def test_the_newest_entry_stays_even_over_the_cap(compiled, tmp_path):
    from comparator.backends.tvm.cache import CompileCache

    copies(compiled, tmp_path, ["a" * 40, "b" * 40])
    assert CompileCache(tmp_path, cap=1).evict(keep="b" * 40) == ["a" * 40]
    assert [k for _, _, k in CompileCache(tmp_path).entries()] == ["b" * 40]


@needs_tvm
def test_leftovers_of_dead_writers_go_after_a_day(compiled, tmp_path):
    from comparator.backends.tvm.cache import CompileCache

    copies(compiled, tmp_path, ["a" * 40])
    old = time.time() - 2 * 86400
    for name in (".k.1.tmp.so", ".k.2.tmp.json", "orphan.so", ".young.3.tmp.so", "young.so"):
        (tmp_path / name).write_bytes(b"x")
    for name in (".k.1.tmp.so", ".k.2.tmp.json", "orphan.so"):
        os.utime(tmp_path / name, (old, old))
    CompileCache(tmp_path).evict()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".young.3.tmp.so", "young.so", "a" * 40 + ".so",
                                                                "a" * 40 + ".json"])


@needs_tvm
def test_a_compile_over_the_cap_evicts_through_the_backend(compiled, tmp_path, monkeypatch):
    from comparator.backends.tvm.cache import CompileCache

    monkeypatch.setenv("INFERCMP_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("INFERCMP_NO_CACHE", raising=False)
    keys = ["a" * 40, "b" * 40]
    copies(compiled, tmp_path / "tvm", keys)
    monkeypatch.setenv("INFERCMP_TVM_CACHE_MAX", str(int(compiled.size * 2.5)))
    _, info = open_tvm(compiled.model, {"approx": "on"})  # another key: compiled and stored
    assert info["hit"] is False and info["stored"] is True and info["evicted"] == 1
    left = {k for _, _, k in CompileCache(tmp_path / "tvm").entries()}
    assert left == {keys[1], info["key"]}
    _, again = open_tvm(compiled.model, {"approx": "on"})
    assert again["hit"] is True


@needs_tvm
def test_concurrent_evictions_and_loads_never_fail(compiled, tmp_path):
    """Two processes evict to a tight cap while a third loads every entry: nobody raises, and what is left
    fits."""
    keys = [f"{i:040d}" for i in range(12)]
    copies(compiled, tmp_path, keys)
    cap = int(compiled.size * 3.5)
    evict = ("import sys\nfrom pathlib import Path\nfrom comparator.backends.tvm.cache import CompileCache\n"
             f"c = CompileCache(Path(sys.argv[1]), cap={cap})\n"
             "for _ in range(20): c.evict()\n")
    load = ("import sys\nfrom pathlib import Path\nfrom comparator.backends.tvm.cache import CompileCache\n"
            "c = CompileCache(Path(sys.argv[1]), cap=0)\n"
            f"keys = {keys!r}\n"
            "hits = sum(c.load(k) is not None for k in keys)\nprint('hits', hits)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for code in (evict, evict, load)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    from comparator.backends.tvm.cache import CompileCache

    assert sum(size for _, size, _ in CompileCache(tmp_path).entries()) <= cap
