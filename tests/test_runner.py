"""Crash isolation with real worker processes: a worker killed by a signal, one that hangs past the timeout,
one whose interpreter cannot start, and a backend lacking an op; the other variants finish and are compared."""
import os
import signal
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest

import comparator
from comparator.fileio import read_json
from comparator.graph import model as model_mod
from comparator.graph import tap
from comparator.run import runner
from comparator.run.runner import run_all, run_variant
from comparator.variant import Variant
from conftest import loop_model, pid_alive, worker_pid


def prepare(model_path, folder):
    """What compare() hands the runner: the two model copies and the feeds."""
    folder.mkdir(parents=True, exist_ok=True)
    loaded = model_mod.load(model_path)
    plan = tap.plan(loaded, "all")
    untapped, tapped = tap.write_copies(loaded, plan, folder)
    feeds = {i.name: np.zeros(i.shape, np.float32)[None] for i in loaded.inputs}
    np.savez(folder / "feeds.npz", **feeds)
    return {"model": str(untapped), "tapped_model": str(tapped), "feeds": str(folder / "feeds.npz"),
            "outputs": {"untapped": loaded.outputs,
                        "tapped": loaded.outputs + [n for n in plan.names if n not in loaded.outputs]}}


def test_healthy_run_writes_record_and_tensors(tmp_path, models):
    run = run_variant(Variant.parse("ort:opt=disable"), {}, prepare(models.small, tmp_path), tmp_path / "v", 60)
    assert run.ok and run.error is None
    assert set(run.tensors) == {"untapped", "tapped"}
    assert set(run.tensors["tapped"]) == {"mm", "y"} and set(run.tensors["untapped"]) == {"y"}
    y = np.load(run.path("untapped", "y"), allow_pickle=False)
    assert y.shape == (1, 1, 4) and y.dtype == np.float32
    assert run.provenance["options"]["opt"] == "disable" and "onnxruntime" in run.provenance
    assert run.provenance["environment"]["cores"] == os.cpu_count()
    assert run.timings["untapped"]["run_s"] >= 0


@pytest.mark.parametrize("signum, faulthandler", [(signal.SIGSEGV, True), (signal.SIGTERM, False)])
def test_crash_by_signal(tmp_path, models, signum, faulthandler):
    folder = tmp_path / "crash"
    request = prepare(models.slow, tmp_path)
    # faulthandler makes the dying interpreter print where it was, then re-raise the same signal
    environment = {"PYTHONFAULTHANDLER": "1"} if faulthandler else {}
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_variant, Variant.parse("ref"), environment, request, folder, 120)
        pid = worker_pid(str(folder))
        time.sleep(1.0)  # let it get into the model
        os.kill(pid, signum)
        run = future.result(timeout=60)
    assert run.status == "crashed"
    assert run.error == f"the worker died from {signal.Signals(signum).name}"
    if faulthandler:  # the report's head survives however deep the stack: header first, innermost frames next
        tail = run.stderr_tail.splitlines()
        assert tail[0] == "Fatal Python error: Segmentation fault"
        assert len(tail) <= runner.STDERR_TAIL_LINES
    assert not (folder / "record.json").exists()
    assert run.wall_s < 30


def test_stderr_tail_keeps_the_fatal_error_header(tmp_path):
    frames = [f'  File "deep.py", line {i} in f{i}' for i in range(60)]
    noise = [f"log line {i}" for i in range(30)]
    path = tmp_path / "stderr.txt"
    path.write_text("\n".join(noise + ["Fatal Python error: Aborted", "",
                                       "Current thread 0x1 (most recent call first):"] + frames) + "\n")
    tail = runner._tail(path, lines=10).splitlines()
    assert tail[:4] == ["Fatal Python error: Aborted", "", "Current thread 0x1 (most recent call first):",
                        '  File "deep.py", line 0 in f0']
    assert tail[-1] == "... (54 more lines)" and len(tail) == 10
    path.write_text("\n".join(noise) + "\n")  # no fatal error: the plain last lines
    assert runner._tail(path, lines=3).splitlines() == ["log line 27", "log line 28", "log line 29"]


def test_hang_past_timeout_is_killed_fast(tmp_path, models):
    folder = tmp_path / "hang"
    request = prepare(models.slow, tmp_path)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_variant, Variant.parse("ref"), {}, request, folder, 1.5)
        pid = worker_pid(str(folder))
        run = future.result(timeout=60)
    assert run.status == "timeout"
    assert "no result after 1.5 s" in run.error and "killed" in run.error
    assert "--timeout" in run.hint
    assert 1.5 <= run.wall_s < 10
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


def test_worker_that_cannot_start(tmp_path, models):
    # A broken environment (here: no standard library) ends the interpreter before any record is written.
    run = run_variant(Variant.parse("ort"), {"PYTHONHOME": str(tmp_path / "nowhere")},
                      prepare(models.small, tmp_path), tmp_path / "v", 60)
    assert run.status == "crashed"
    assert run.error.startswith("the worker exited with code ") and run.error.endswith("without a result")
    assert run.stderr_tail  # what Python said on its way out


def test_run_all_keeps_order_and_reports_progress(tmp_path, models):
    request = prepare(models.small, tmp_path)
    jobs = [(Variant.parse(s), {}, request, tmp_path / s.replace(":", "_")) for s in ["ort", "ref", "ort:opt=basic"]]
    seen = []
    runs = run_all(jobs, timeout=60, parallel=2, on_done=lambda r: seen.append(str(r.variant)))
    assert [str(r.variant) for r in runs] == ["ort", "ref", "ort:opt=basic"]
    assert sorted(seen) == ["ort", "ort:opt=basic", "ref"]
    assert all(r.ok for r in runs)


def test_each_worker_phase_is_heard_as_it_starts(tmp_path, models):
    request = prepare(models.small, tmp_path)
    heard = []
    run = run_all([(Variant.parse("ort"), {}, request, tmp_path / "ort")], timeout=60,
                  on_phase=lambda v, what: heard.append((str(v), what)))[0]
    assert run.ok
    phases = [f"{kind} {what}" for kind in ("untapped", "tapped") for what in ("open", "run", "written")]
    assert heard == [("ort", phase) for phase in phases]


def run_folder(workdir, timeout=30.0):
    """The folder compare() makes for its run under `workdir`, once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(workdir.glob("run-*"))
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no run folder appeared in {workdir}")


@pytest.fixture(scope="module")
def killed_report(tmp_path_factory):
    """compare() with three variants, the middle one's worker SIGKILLed while it runs."""
    folder = tmp_path_factory.mktemp("killed")
    path = folder / "loop.onnx"
    onnx.save(loop_model(200_000), str(path))  # ~5 s in onnx.reference, ~0.2 s in onnxruntime
    seen = []
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(comparator.compare, path, ["ort", "ref", "ort:opt=disable"], workdir=folder / "work",
                             jobs=2, progress=lambda r: seen.append(str(r.variant)))
        os.kill(worker_pid(str(run_folder(folder / "work") / "01-ref")), signal.SIGKILL)
        report = future.result(timeout=120)
    return report, seen


def test_killed_variant_is_reported_and_the_others_compared(killed_report):
    report, seen = killed_report
    statuses = {v.name: v.status for v in report.variants}
    assert statuses == {"ort": "ok", "ref": "crashed", "ort:opt=disable": "ok"}
    ref = report.variant("ref")
    assert ref.error == "the worker died from SIGKILL" and "out-of-memory" in ref.hint
    assert report.exit_code == 3 and report.passed is False
    assert sorted(seen) == ["ort", "ort:opt=disable", "ref"]
    # the healthy variant is still compared, tensor by tensor
    assert [t.name for t in report.tensors] == ["loop", "y"]
    for t in report.tensors:
        assert set(t.metrics) == {"ort:opt=disable"}
        assert t.metrics["ort:opt=disable"]["bit_identical"] is True
    assert report.first_divergence == {"ort:opt=disable": None}
    assert report.equivalence_classes == [["ort", "ort:opt=disable"]]
    assert "ref" not in report.observer_effect


@pytest.fixture(scope="module")
def unsupported_report(models, ort_lacks_tan_float64):
    return comparator.compare(models.unsupported, ["ref", "ort", "ref:dtype=float64"], jobs=2)


def test_op_the_backend_lacks(unsupported_report):
    report = unsupported_report
    ort = report.variant("ort")
    assert ort.status == "unsupported"
    assert "Tan" in ort.error and "\n" not in ort.error
    assert report.variant("ref").status == "ok" and report.variant("ref:dtype=float64").status == "ok"
    assert report.exit_code == 3 and not report.passed
    for t in report.tensors:
        assert set(t.metrics) == {"ref:dtype=float64"}
        assert t.metrics["ref:dtype=float64"]["bit_identical"] is True  # a float64 model already
    assert report.first_divergence == {"ref:dtype=float64": None}


def test_failed_reference_leaves_nothing_to_compare(models, ort_lacks_tan_float64):
    # the reference itself cannot run: no tensors to compare, still a report with exit code 3
    report = comparator.compare(models.unsupported, ["ort", "ref"])
    assert [v.status for v in report.variants] == ["unsupported", "ok"]
    assert report.tensors == [] and report.exit_code == 3
    assert report.equivalence_classes == [["ref"]]


def test_a_worker_that_fills_the_disk_says_so(tmp_path):
    """A 200 KiB tmpfs as --workdir (root only): the workers fill it, and cannot even write their stderr."""
    import subprocess as sp

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or sp.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                                   capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        report = comparator.compare(Path(__file__).parents[1] / "models" / "cnn.onnx", ["ort"],
                                    workdir=disk / "w", max_disk=1 << 40)
        (run,) = report.variants
        assert run.status == "failed" and run.error.startswith("the disk filled up while the worker wrote"), run
        assert "--workdir on a bigger disk" in run.hint
    finally:
        sp.run(["umount", str(disk)], check=True)


def _maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps", encoding="utf-8") as fh:
        return fh.read()


def test_a_worker_started_ahead_imports_its_framework_then_waits_for_its_request(tmp_path, models):
    from comparator.run import spawn

    folder = tmp_path / "ort"
    worker = spawn.start(Variant.parse("ort"), {}, folder)
    deadline = time.monotonic() + 60
    while "onnxruntime_pybind11_state" not in _maps(worker.proc.pid):  # ONNX Runtime's library, loaded by its import
        assert time.monotonic() < deadline, "the worker did not import onnxruntime before its request"
        time.sleep(0.02)
    time.sleep(0.3)
    assert worker.proc.poll() is None and not (folder / "record.json").exists()  # waiting: no request yet
    run = run_variant(Variant.parse("ort"), {}, prepare(models.small, tmp_path), folder, 60, started=worker)
    assert run.ok, run.error
    assert run.timings["framework"]["import_s"] > 0
    assert set(run.timings) == {"framework", "untapped", "tapped"}


def test_a_worker_that_gets_no_request_exits_and_leaves_nothing(tmp_path):
    from comparator.run import spawn

    # The parent goes away (its end of the pipe closes): the worker exits on its own, writing no record.
    worker = spawn.start(Variant.parse("ref"), {}, tmp_path / "gone")
    assert spawn.finish(worker) == 0
    assert not (tmp_path / "gone" / "record.json").exists()
    # The run is refused before it runs: Ready.close() stops its workers and removes their folders.
    ready = spawn.Ready()
    ready.start(Variant.parse("ort"), {}, tmp_path / "refused")
    pid = worker_pid(str(tmp_path / "refused"))
    ready.close()
    assert not pid_alive(pid) and not (tmp_path / "refused").exists()


def test_a_worker_reuses_freed_memory_and_a_malloc_setting_the_user_gave_wins(tmp_path, monkeypatch):
    from comparator.run import spawn

    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=4096:glibc.cpu.x86_shstk=off")
    worker = spawn.start(Variant.parse("ref"), {}, tmp_path / "w")
    try:
        deadline = time.monotonic() + 30
        while "libc.so" not in _maps(worker.proc.pid):  # the loader reads the variable before it maps libc
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.005)
        items = Path(f"/proc/{worker.proc.pid}/environ").read_bytes().split(b"\0")
    finally:
        spawn.finish(worker)
    # glibc reads the variable in place, cutting it at its colons
    start = next(i for i, item in enumerate(items) if item.startswith(b"GLIBC_TUNABLES="))
    assert items[start:start + 3] == [b"GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4096", b"glibc.cpu.x86_shstk=off",
                                      b"glibc.malloc.trim_threshold=1073741824"]
    assert spawn.malloc_tunables(None) == "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
    assert b"NUMPY_MADVISE_HUGEPAGE=0" in items  # NumPy's huge-page advice is off in workers


def test_a_numpy_setting_the_user_gave_wins(tmp_path, monkeypatch):
    from comparator.run import spawn

    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    worker = spawn.start(Variant.parse("ref"), {}, tmp_path / "w")
    try:
        items = Path(f"/proc/{worker.proc.pid}/environ").read_bytes().split(b"\0")
    finally:
        spawn.finish(worker)
    assert b"NUMPY_MADVISE_HUGEPAGE=1" in items and b"NUMPY_MADVISE_HUGEPAGE=0" not in items


@pytest.mark.parametrize("refusal", ["model", "disk"])
def test_a_run_refused_after_the_workers_started_leaves_no_worker_and_no_run_folder(tmp_path, models, refusal):
    """compare() starts the workers before it loads the model: a model that fails to load, or a plan over the disk
    budget, stops them and removes the run folder."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    work = tmp_path / "work"
    model, budget, match = ((bad, None, "not a readable ONNX model") if refusal == "model"
                            else (models.small, 1, "over the budget"))
    with pytest.raises(comparator.InfercmpError, match=match):
        comparator.compare(model, ["ort", "ref"], workdir=work, max_disk=budget)
    assert sorted(p.name for p in work.iterdir()) == [".infercmp-workdir"]  # the run folder went with its workers
    with pytest.raises(AssertionError, match="no worker process"):
        worker_pid(str(work), timeout=0.5)


def test_a_kept_worker_serves_the_next_request_and_a_crash_in_it_is_reported(tmp_path, models):
    from comparator.run import spawn

    kept: list[spawn.Worker] = []
    first = tmp_path / "window-1" / "00-ref"
    one = run_variant(Variant.parse("ref"), {}, prepare(models.small, tmp_path / "a"), first, 60, keep=kept.append)
    assert one.ok, one.error
    (worker,) = kept
    assert worker.proc.poll() is None  # served, alive, waiting for the next request
    assert "framework" in one.timings and read_json(first / "request.json")["serving"] is True
    second = tmp_path / "window-2" / "00-ref"
    two = run_variant(Variant.parse("ref"), {}, prepare(models.small, tmp_path / "b"), second, 60, started=worker)
    assert two.ok, two.error
    assert "framework" not in two.timings  # imported once, for the first request
    assert worker.proc.poll() == 0  # its last request: it exited
    assert np.load(two.path("tapped", "mm")).tobytes() == np.load(one.path("tapped", "mm")).tobytes()
    assert not (second / "stdout.txt").exists()  # its logs stay in the folder it started for
    # a kept worker that dies in its next request: that request is reported crashed, with its reason
    kept.clear()
    third = tmp_path / "w3" / "00-ref"
    run_variant(Variant.parse("ref"), {}, prepare(models.small, tmp_path / "c"), third, 60, keep=kept.append)
    (worker,) = kept
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_variant, Variant.parse("ref"), {}, prepare(models.slow, tmp_path / "d"),
                             tmp_path / "w4" / "00-ref", 120, None, worker, kept.append)
        deadline = time.monotonic() + 60
        while not (tmp_path / "w4" / "00-ref" / "request.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(1.0)  # let it get into the model
        os.kill(worker.proc.pid, signal.SIGKILL)
        run = future.result(timeout=60)
    assert run.status == "crashed" and run.error == "the worker died from SIGKILL"
    assert len(kept) == 1  # not kept again


def test_a_scalar_is_stored_with_its_own_shape_and_every_backend_agrees_on_it(tmp_path):
    from onnx import TensorProto as T, helper

    from conftest import make_model, vi

    model = make_model([helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Neg", ["s"], ["y"])],
                       [vi("x", T.FLOAT, [3])], [vi("y", T.FLOAT, [])], opset=13)
    onnx.save(model, str(tmp_path / "scalar.onnx"))
    report = comparator.compare(tmp_path / "scalar.onnx", ["ref", "ort", "torch", "tf"], workdir=tmp_path / "w",
                                samples=2)
    assert [v.status for v in report.variants] == ["ok"] * 4
    assert report.passed  # a backend that gave shape (1,) for a scalar would be a shape mismatch here
    files = list((tmp_path / "w").rglob("*.npy"))
    assert files and {np.load(f).shape for f in files} == {(2,)}  # [samples] + (): one value per sample
