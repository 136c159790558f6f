"""ONNX Runtime knobs that select other kernels: each reaches the session, and its effect shows where it should."""
from pathlib import Path

import comparator

CNN = Path(__file__).resolve().parents[1] / "models" / "cnn.onnx"


def test_prepack_off_packs_the_gemm_weights_per_call_and_moves_its_sums():
    report = comparator.compare(CNN, ["ort", "ort:prepack=off"])
    assert report.variant("ort").provenance["prepacking"] is True
    assert report.variant("ort:prepack=off").provenance["prepacking"] is False  # read back from the session
    # Convolutions do not prepack: everything before the fully connected layer is bit for bit the same; its GEMM
    # blocks the sum over K differently when it packs per call.
    assert report.first_divergence == {"ort:prepack=off": "/fc/Gemm_output_0"}
    fc = report.tensor("/fc/Gemm_output_0").metrics["ort:prepack=off"]
    assert not fc["bit_identical"] and 0 < fc["max_ulp"] < 1000
