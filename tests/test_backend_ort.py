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


def test_numpy_blas_gets_one_thread_in_workers_of_frameworks_that_do_not_compute_with_it(monkeypatch):
    """NumPy's OpenBLAS threads spin idle after its import: ORT, TF and TVM workers compute nothing with them; the
    reference computes with NumPy and PyTorch's own BLAS may be OpenBLAS, so theirs are left alone."""
    from comparator import backends
    from comparator.variant import Variant

    def env(spec):
        backend, options = backends.resolve_variant(Variant.parse(spec))
        return backend.environment(options)

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    for spec in ("ort", "tf", "tvm"):
        assert env(spec)["OPENBLAS_NUM_THREADS"] == "1"
    for spec in ("ref", "torch"):
        assert "OPENBLAS_NUM_THREADS" not in env(spec)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")  # the user's choice stands
    assert "OPENBLAS_NUM_THREADS" not in env("ort")
