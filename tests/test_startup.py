"""Startup stays cheap: importing the package, `infercmp --help` and `infercmp backends` import no inference
framework (frameworks are imported only inside worker processes)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

FRAMEWORKS = ("onnxruntime", "torch", "tensorflow", "tvm", "jax", "keras")

PROBE = """
import json, sys
{body}
print("\\nLOADED=" + json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""

CLI = """
sys.argv = ["infercmp", *{args!r}]
from comparator.cli import main
try:
    main()
    print("EXIT=0")
except SystemExit as exc:
    print("EXIT=" + str(exc.code or 0))
"""


def loaded_after(body):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    marker = proc.stdout.rindex("LOADED=")
    return proc.stdout[:marker], set(json.loads(proc.stdout[marker + len("LOADED="):]))


def test_import_loads_no_framework():
    _, modules = loaded_after("import comparator, comparator.cli, comparator.api\n"
                              "from comparator import compare, Variant, Report, Tolerance, InfercmpError")
    assert "comparator" in modules
    assert not modules & set(FRAMEWORKS), modules & set(FRAMEWORKS)


def test_backend_modules_load_no_framework():
    from comparator import backends

    body = "import comparator.backends as b\nfor n in b.names(): b.get(n).available()"
    _, modules = loaded_after(body)
    assert set(backends.names()) >= {"ort", "ref"}
    assert not modules & set(FRAMEWORKS), modules & set(FRAMEWORKS)


@pytest.mark.parametrize("args", [["--help"], ["backends"], ["compare", "--help"]])
def test_cli_commands_load_no_framework(args):
    out, modules = loaded_after(CLI.format(args=args))
    assert "EXIT=0" in out, out
    assert not modules & set(FRAMEWORKS), modules & set(FRAMEWORKS)
    if args == ["backends"]:
        assert "ort:" in out and "ref:" in out


BLAS = """
import os
try:  # every core: a test that ran TVM in this pytest process left it pinned to one, and the probe inherits that
    os.sched_setaffinity(0, range(os.cpu_count()))
except OSError:
    pass
{call}
import numpy
print(os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task")), len(os.sched_getaffinity(0)))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or len(os.sched_getaffinity(0)) < 2,
                    reason="counts the threads numpy's OpenBLAS starts, on Linux with two cores or more")
def test_commands_import_numpy_with_one_blas_thread():
    """The parent multiplies no matrices: its OpenBLAS pool has no threads of its own (they would spin on the
    cores the workers start on), and the environment the workers inherit is the user's, unchanged."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
                                                            "OMP_NUM_THREADS")}

    def probe(call):
        proc = subprocess.run([sys.executable, "-c", BLAS.format(call=call)], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        value, threads, cores = proc.stdout.split()
        if int(cores) < 2:
            pytest.skip(f"the probe may use {cores} core: OpenBLAS starts no thread of its own")
        return value, int(threads)

    quiet = "from comparator.cli.app import quiet_blas\nquiet_blas()"
    value, threads = probe("")  # numpy alone: OpenBLAS starts a thread per core
    assert value == "None" and threads > 1
    assert probe(quiet) == ("None", 1)
    env["OPENBLAS_NUM_THREADS"] = "2"  # the user's setting stands
    assert probe(quiet) == ("2", 2)
