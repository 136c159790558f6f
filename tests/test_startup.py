"""Startup stays cheap: importing the package, `infercmp --help` and `infercmp backends` import no inference
framework (frameworks are imported only inside worker processes)."""
import json
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
