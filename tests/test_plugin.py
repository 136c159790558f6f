"""The plugin entry-point group `infercmp.backends`, end to end: the example plugin (examples/plugin/) is built and
installed offline, as docs/plugins.md says, and runs through `infercmp compare` in worker processes."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import MODELS, ROOT


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """A folder holding the installed plugin and its .dist-info (entry points), for PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(ROOT / "examples" / "plugin", src)  # the build writes into its source folder: not the repo's
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                           "--target", str(tmp / "site"), str(src)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp / "site" / "infercmp_halfref").is_dir()
    return tmp / "site"


def infercmp(plugin_path, *args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "comparator.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_plugin_is_listed_with_its_options(plugin_path, tmp_path):
    proc = infercmp(plugin_path, "backends", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("halfref:"))
    assert "onnx.reference with its results stored in float16 or bfloat16" in lines[at]
    options = "\n".join(lines[at + 1:at + 3])
    assert "round" in options and "none|float16|bfloat16" in options and "integer >= 0" in options


def test_plugin_runs_through_compare(plugin_path, tmp_path):
    out = tmp_path / "r.json"
    proc = infercmp(plugin_path, "compare", MODELS / "cnn.onnx", "-b",
                    "ref,halfref:round=none,halfref,halfref:round=bfloat16:threads=1", "--json", out, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # half precision is beyond the default tolerance
    data = json.loads(out.read_text())
    variants = {v["name"]: v for v in data["variants"]}
    assert all(v["status"] == "ok" for v in variants.values()), variants
    assert variants["halfref"]["provenance"]["round"] == "float16"
    assert variants["halfref:round=bfloat16:threads=1"]["provenance"]["backend"] == "halfref"
    # The same evaluator with nothing rounded is bit-identical to `ref`; rounding diverges at the first tensor.
    assert data["first_divergence"]["halfref:round=none"] is None
    first = data["tensors"][0]["name"]
    assert data["first_beyond_tolerance"]["halfref"] == first
    probs = next(t for t in data["tensors"] if t["name"] == "probs")["metrics"]
    assert 0 < probs["halfref"]["max_ulp"] < probs["halfref:round=bfloat16:threads=1"]["max_ulp"]


def test_a_wrong_plugin_option_is_a_usage_error(plugin_path, tmp_path):
    proc = infercmp(plugin_path, "compare", MODELS / "cnn.onnx", "-b", "ref,halfref:round=float8", cwd=tmp_path)
    assert proc.returncode == 2
    assert "round='float8'" in proc.stderr and "none|float16|bfloat16" in proc.stderr
