"""`infercmp matrix`: an N-way comparison of bundles from several machines, with what sets each class apart."""
from __future__ import annotations

import json
import shutil

import pytest

from comparator.errors import UsageError
from comparator.gate.matrix import distinct, matrix
from conftest import assert_clean_error
from test_bundle import run_cli


@pytest.fixture(scope="module")
def bundles(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    out = {}
    for name, variants, seed in (("m1", "ort,ort:opt=disable", "0"), ("m2", "ort,torch", "0"), ("other", "ort", "1")):
        out[name] = root / f"{name}.icmp"
        code, _, err = run_cli("capture", models.cnn, "-b", variants, "--tap", "all", "--seed", seed, "-o", out[name])
        assert code == 0, err
    return out


def test_classes_matrix_and_first_differences(bundles):
    m = matrix([bundles["m1"], bundles["m2"]])
    names = [r["name"] for r in m.runs]
    assert names == ["ort@m1", "ort:opt=disable@m1", "ort@m2", "torch@m2"]
    klass = {r["name"]: r["class"] for r in m.runs}
    assert klass["ort@m1"] == klass["ort@m2"]  # the same variant on the same machine: bit-identical
    assert sorted(n for c in m.classes for n in c["members"]) == sorted(names)
    ulp = m.report.pairwise["max_ulp"]
    assert all(ulp[i][i] == 0 and ulp[i][j] == ulp[j][i] for i in range(4) for j in range(4))
    assert m.first_difference["ort@m1"]["ort@m2"] is None
    for a in names:
        for b in names:
            if a != b and klass[a] != klass[b]:  # different final outputs: some tensor differs first
                assert m.first_difference[a][b] is not None
    text = "\n".join(m.lines())
    assert "4 runs from 2 bundles" in text and "max ULP between final outputs" in text
    assert all(len(line) <= 100 for line in m.lines())


def test_a_folder_stands_for_its_bundles(bundles, tmp_path):
    for name in ("m1", "m2"):
        shutil.copy(bundles[name], tmp_path / f"{name}.icmp")
    m = matrix([tmp_path])
    assert [r["bundle"] for r in m.runs] == [str(tmp_path / "m1.icmp")] * 2 + [str(tmp_path / "m2.icmp")] * 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="holds no .icmp bundle"):
        matrix([tmp_path / "m1.icmp", empty])


def test_bundles_of_other_inputs_are_refused(bundles):
    with pytest.raises(UsageError, match="captured on other inputs"):
        matrix([bundles["m1"], bundles["other"]])


def _run(name, flags, cpu="AMD EPYC", gpus=(), packages=None, variant="ort"):
    return {"name": name, "variant": variant, "machine": {"cpu_flags": list(flags), "cpu": cpu, "gpus": list(gpus),
                                                           "packages": packages or {"onnxruntime": "1.32.0"}}}


def test_what_sets_a_class_apart_comes_from_the_fingerprints():
    full = ["avx2", "avx512f", "fma"]
    servers = [_run("a", full), _run("b", full)]
    edge = [_run("c", ["avx2", "fma"]), _run("d", ["avx2", "fma"])]
    assert distinct(edge, servers) == ["without avx512f"]
    assert distinct(servers, edge) == ["avx512f"]
    gpu = [_run("g", full, gpus=["NVIDIA H100 (driver 550)"])]
    assert distinct(gpu, servers) == ["gpu NVIDIA H100 (driver 550)"]
    newer = [_run("n", full, packages={"onnxruntime": "1.33.0"})]
    assert distinct(newer, servers) == ["onnxruntime 1.33.0", "without onnxruntime 1.32.0"]
    assert distinct(servers, []) == []


def test_cli_json_html_and_errors(bundles, tmp_path):
    out, page = tmp_path / "m.json", tmp_path / "m.html"
    code, text, err = run_cli("matrix", bundles["m1"], bundles["m2"], "--json", out, "--html", page)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["format"] == "infercmp-matrix" and len(data["runs"]) == 4 and data["pairwise"]["max_ulp"]
    html = page.read_text()
    assert 'id="heatmap"' in html and 'id="dendrogram"' in html
    code, _, err = run_cli("matrix", bundles["m1"], bundles["other"])
    assert code == 2
    assert_clean_error(err, "captured on other inputs")
