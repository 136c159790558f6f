"""`infercmp conformance`: the ONNX backend node test suite (onnx.backend.test.case.node) through any backend.

Cases run in a worker process (the variant's environment set before import) that appends one JSON line per
case. A case that crashes the worker or hangs past the per-case timeout is recorded as `crashed`/`timeout` and
the worker restarts after it, so the runner itself never dies. Statuses: passed, failed (wrong numbers, with
the case's own rtol/atol), unsupported (the backend declares the op/dtype unsupported), error (load or run
failure), crashed, timeout.
"""
from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable

import numpy as np

from ..fileio import read_json, write_json
from ..variant import Variant

STATUSES = ("passed", "failed", "unsupported", "error", "crashed", "timeout")
EXPANDED = "(expanded function)"


def collect(ops: Iterable[str] | None = None, name_filter: str | None = None) -> list[Any]:
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    wanted = set(ops or ())
    out = [c for c in cases if (not wanted or op_of(c) in wanted) and (not name_filter or name_filter in c.name)]
    return sorted(out, key=lambda c: c.name)


def op_of(case: Any) -> str:
    nodes = case.model.graph.node
    return nodes[0].op_type if len(nodes) == 1 else EXPANDED


def _array(value: Any) -> Any:
    from onnx import TensorProto, numpy_helper

    if isinstance(value, TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        return [_array(v) for v in value]
    return value


def _check(expected: Any, actual: Any, rtol: float, atol: float) -> str | None:
    """None when they match (onnx's backend-test rule: assert_allclose with the case's tolerances), else why."""
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return "sequence output differs in length or kind"
        for e, a in zip(expected, actual):
            why = _check(e, a, rtol, atol)
            if why:
                return why
        return None
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.dtype.kind in "OUS":
        return None if expected.shape == actual.shape and (expected.astype(str) == actual.astype(str)).all() \
            else "string output differs"
    if expected.dtype != actual.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    if expected.shape != actual.shape:
        return f"shape {actual.shape}, expected {expected.shape}"
    if expected.dtype.name == "bfloat16":  # onnx's own runner allows two bfloat16 ULPs
        actual, expected, rtol = actual.astype(np.float64), expected.astype(np.float64), max(rtol, 2.0**-6)
    try:
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
    except AssertionError as exc:
        lines = [ln for ln in str(exc).splitlines() if "Max absolute" in ln or "Mismatched" in ln]
        return "values differ: " + "; ".join(ln.strip() for ln in lines)[:300]
    except TypeError as exc:
        return f"cannot compare: {exc}"
    return None


def _rounded(actual: Any, expected: Any) -> Any:
    """A float64 result rounded to the expected float type (element by element for sequences)."""
    if isinstance(actual, list) and isinstance(expected, list):
        return [_rounded(a, e) for a, e in zip(actual, expected)]
    a, e = np.asarray(actual), np.asarray(expected)
    wide = a.dtype == np.float64 and e.dtype != np.float64
    return a.astype(e.dtype) if wide and (e.dtype.kind == "f" or e.dtype.name == "bfloat16") else actual


def run_case(backend: Any, options: dict[str, Any], case: Any, folder: Path) -> dict[str, Any]:
    import onnx

    from ..errors import InfercmpError, UnsupportedError

    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    path = folder / "case.onnx"
    onnx.save(model, str(path))
    init = {i.name for i in model.graph.initializer}
    input_names = [i.name for i in model.graph.input if i.name not in init]
    output_names = [o.name for o in model.graph.output]
    # A float64 oracle computes every float tensor in float64; its outputs are judged rounded to the case's types.
    rounded = options.get("dtype") == "float64"
    try:
        session = backend.open(str(path), options)
        for inputs, expected in case.data_sets:
            feeds = dict(zip(input_names, (_array(v) for v in inputs)))
            got = session.run(feeds)
            for name, want in zip(output_names, expected):
                if name not in got:
                    return {"status": "error", "detail": f"no value for output {name!r}"}
                want = _array(want)
                why = _check(want, _rounded(got[name], want) if rounded else got[name], case.rtol, case.atol)
                if why:
                    return {"status": "failed", "detail": f"{name}: {why}"}
    except UnsupportedError as exc:
        return {"status": "unsupported", "detail": exc.message[:300]}
    except InfercmpError as exc:
        return {"status": "error", "detail": exc.message[:300]}
    except Exception as exc:  # noqa: BLE001 - every backend failure is a case result
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"status": "error", "detail": f"{type(exc).__name__}: {first}"[:300]}
    return {"status": "passed", "detail": ""}


def _worker(request_path: str) -> int:
    """Run cases[start:] and append one JSON line per case to the results file."""
    import json

    from .. import backends

    request = read_json(request_path)
    variant = Variant.parse(request["variant"])
    backend, options = backends.resolve_variant(variant)
    cases = collect(request.get("ops"), request.get("name_filter"))
    names = request["names"]
    by_name = {c.name: c for c in cases}
    with open(request["results"], "a", encoding="utf-8") as out, tempfile.TemporaryDirectory() as tmp:
        for name in names[request["start"]:]:
            result = run_case(backend, options, by_name[name], Path(tmp))
            out.write(json.dumps({"name": name, **result}) + "\n")
            out.flush()
    return 0


@dataclass
class ConformanceResult:
    variant: str
    cases: list[dict[str, Any]] = field(default_factory=list)  # name, op, status, detail
    wall_s: float = 0.0

    def counts(self) -> dict[str, int]:
        c = collections.Counter(r["status"] for r in self.cases)
        return {s: c.get(s, 0) for s in STATUSES}

    def per_op(self) -> dict[str, dict[str, int]]:
        table: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for r in self.cases:
            table[r["op"]][r["status"]] += 1
        return {op: {s: c.get(s, 0) for s in STATUSES} for op, c in sorted(table.items())}

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "variant": self.variant, "total": len(self.cases), "counts": self.counts(),
                "per_op": self.per_op(), "cases": self.cases, "wall_s": self.wall_s}


def run(variant: Variant, ops: Iterable[str] | None = None, name_filter: str | None = None,
        case_timeout: float = 60.0, progress: Callable[[int, int], None] | None = None,
        shard: tuple[int, int] | None = None) -> ConformanceResult:
    """`shard=(k, n)` runs every n-th case from the k-th (0-based) of the name-sorted selection, so n calls
    cover it once, each a similar mix of ops."""
    from .. import backends

    backend, options = backends.resolve_variant(variant)
    cases = collect(ops, name_filter)
    if shard is not None:
        k, n = shard
        if not 0 <= k < n:
            raise ValueError(f"shard {k}/{n}: need 0 <= k < n")
        cases = cases[k::n]
    names = [c.name for c in cases]
    ops_by_name = {c.name: op_of(c) for c in cases}
    result = ConformanceResult(str(variant))
    started = time.perf_counter()
    env = dict(os.environ)
    env.update(backend.environment(options))
    with tempfile.TemporaryDirectory(prefix="infercmp-conf-") as tmp:
        results, stderr = Path(tmp) / "results.jsonl", Path(tmp) / "stderr.txt"
        results.touch()
        done: dict[str, dict[str, Any]] = {}
        while len(done) < len(names):
            start = len(done)
            write_json(Path(tmp) / "request.json", {"variant": str(variant), "ops": list(ops or []),
                                                   "name_filter": name_filter, "names": names, "start": start,
                                                   "results": str(results)})
            with stderr.open("wb") as err:
                proc = subprocess.Popen([sys.executable, "-m", "comparator.run.conformance",
                                         str(Path(tmp) / "request.json")],
                                        stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
                status = _watch(proc, results, done, case_timeout, progress, len(names))
            if status is not None and len(done) < len(names):
                name = names[len(done)]
                tail = stderr.read_text(errors="replace").strip().splitlines()[-1:] or [""]
                done[name] = {"name": name, "status": status, "detail": tail[0][:300]}
        for name in names:
            result.cases.append({"op": ops_by_name[name], **done[name]})
    result.wall_s = time.perf_counter() - started
    return result


# Expected-outcome lists: a text file per variant names every case of the suite that does not pass, the status it
# ends with and a one-line reason, the way onnx's own BackendTest exclude lists do; a run is then checked
# against it case by case. Format: `# comment`; `[reason]` starts a group; `CASE  STATUS[|STATUS...]` lines follow.
# A status list that includes `passed` marks a case whose outcome is chance or the environment (its reason says so).
TODO_REASON = "TODO reason"


@dataclass(frozen=True)
class Expectation:
    statuses: tuple[str, ...]
    reason: str


def read_expected(path: str | Path) -> dict[str, Expectation]:
    """case name -> Expectation; ValueError (naming the line) for anything malformed."""
    out: dict[str, Expectation] = {}
    reason: str | None = None
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line, where = raw.strip(), f"{path}:{number}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if not line.endswith("]") or not line[1:-1].strip():
                raise ValueError(f"{where}: a reason line is [text]: {raw!r}")
            reason = line[1:-1].strip()
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{where}: expected 'CASE  STATUS[|STATUS...]': {raw!r}")
        name, statuses = parts[0], tuple(parts[1].split("|"))
        if any(s not in STATUSES for s in statuses) or statuses == ("passed",):
            raise ValueError(f"{where}: statuses are {', '.join(STATUSES)} (not passed alone): {raw!r}")
        if reason is None:
            raise ValueError(f"{where}: {name} has no [reason] line above it")
        if name in out:
            raise ValueError(f"{where}: {name} is listed twice")
        out[name] = Expectation(statuses, reason)
    return out


def check_expected(cases: Iterable[dict[str, Any]], expected: dict[str, Expectation]) -> list[str]:
    """One line per case of `cases` (a run's records) whose status the list does not allow, naming the case;
    listed cases that were not run are not judged."""
    problems = []
    for case in cases:
        name, status, detail = case["name"], case["status"], case.get("detail") or ""
        want = expected.get(name)
        if want is None:
            if status != "passed":
                problems.append(f"{name}: {status}, expected to pass ({detail}); fix it, or list it with a reason")
        elif status not in want.statuses:
            listed = "|".join(want.statuses)
            problems.append(f"{name}: now passes, listed as {listed}; remove it from the list" if status == "passed"
                            else f"{name}: {status}, listed as {listed} ({detail})")
        elif want.reason.startswith(TODO_REASON):
            problems.append(f"{name}: listed without a reason; replace [{want.reason}]")
    return problems


def format_expected(cases: Iterable[dict[str, Any]], previous: dict[str, Expectation], header: str) -> str:
    """The list for a run: cases that did not pass, keeping the reason (and allowed statuses, if they still hold)
    of those already in `previous`; a new one goes under a [TODO reason: detail] group to be written."""
    groups: dict[str, list[tuple[str, tuple[str, ...]]]] = {e.reason: [] for e in previous.values()}
    todo: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for case in cases:
        name, status = case["name"], case["status"]
        old = previous.get(name)
        if old is not None and status in old.statuses:
            groups[old.reason].append((name, old.statuses))
        elif old is not None and status != "passed":
            groups[old.reason].append((name, (status,)))
        elif old is None and status != "passed":
            key = f"{TODO_REASON}: {case.get('op', '')}: {case.get('detail') or status}"
            todo.setdefault(" ".join(key.split())[:200], []).append((name, (status,)))
    groups.update(sorted(todo.items()))
    entries = [e for members in groups.values() for e in members]
    width = max((len(name) for name, _ in entries), default=0)
    lines = [header.rstrip("\n"), ""]
    for reason, members in groups.items():
        if members:
            lines += [f"[{reason}]", *(f"{name:<{width}}  {'|'.join(st)}" for name, st in sorted(members)), ""]
    return "\n".join(lines)


def expected_header(variant: str, total: int, path: str | Path) -> str:
    import onnx

    return (f"# Cases of the ONNX node test suite that `infercmp conformance -b {variant}` does not pass.\n"
            f"# suite: onnx {onnx.__version__}, {total} cases\n"
            f"# Checked by `infercmp conformance -b {variant} --expected {path}` (and the project's tests): a case\n"
            "# not listed must pass; a listed case must end with one of its listed statuses, so one that now passes\n"
            "# fails the check until its line is removed.\n"
            "# Format: [reason] starts a group; each line under it is CASE  STATUS[|STATUS...]. A status list with\n"
            "# `passed` in it is for a case whose outcome is chance or the environment, as its reason says.\n"
            f"# Update: infercmp conformance -b {variant} --write-expected {path}, then review the diff:\n"
            "# listed cases keep their reasons, cases that now pass are dropped, new ones arrive under\n"
            "# [TODO reason: ...] headers (the runner's detail), which the check rejects until they say why.\n")


def _read_new(results: Path, done: dict[str, dict[str, Any]]) -> None:
    import json

    with results.open(encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                rec = json.loads(line)
                done[rec["name"]] = rec


def _watch(proc: subprocess.Popen[bytes], results: Path, done: dict[str, dict[str, Any]], case_timeout: float,
           progress: Callable[[int, int], None] | None, total: int, startup_s: float = 120.0) -> str | None:
    """Wait for the worker; return None if it finished, 'crashed' or 'timeout' for the case it was on.
    The first case of each worker also gets `startup_s` for the framework import and the suite's collection."""
    import signal

    last_count, last_change = len(done), time.monotonic() + startup_s
    while True:
        code = proc.poll()
        _read_new(results, done)
        if len(done) != last_count:
            last_count, last_change = len(done), time.monotonic()
            if progress is not None:
                progress(len(done), total)
        if code is not None:
            return None if code == 0 and len(done) == total else "crashed"
        if time.monotonic() - last_change > case_timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            _read_new(results, done)
            return "timeout"
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
