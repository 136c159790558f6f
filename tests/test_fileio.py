"""Where writes land: a symlink is followed, a device or FIFO is written through, `-` is stdout, an existing file
is never replaced by an exclusive write, write errors are one line; outputs are checked against inputs by identity."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from comparator import fileio
from comparator.errors import InfercmpError, UsageError

from conftest import ROOT


def test_a_symlink_to_a_regular_file_is_followed_not_replaced(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to("real.json")
    fileio.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_a_dangling_symlink_creates_the_file_it_names(tmp_path):
    (tmp_path / "out").mkdir()
    link = tmp_path / "link.json"
    link.symlink_to("out/r.json")
    fileio.write_text(link, "x")
    assert link.is_symlink() and (tmp_path / "out" / "r.json").read_text() == "x"


def test_a_device_is_written_through_never_replaced():
    before = os.stat("/dev/null")
    fileio.write_text("/dev/null", "nothing")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    fileio.write_text(fifo, "through the pipe")
    reader.join(10)
    assert got == ["through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_dev_stdout_stays_a_link_and_gets_the_text(tmp_path):
    # Run as root, the atomic rename used to replace the /dev/stdout symlink with a regular file.
    out = tmp_path / "out.txt"
    code = "from comparator import fileio; fileio.write_text('/dev/stdout', 'through stdout\\n')"
    with out.open("w") as fh:
        subprocess.run([sys.executable, "-c", code], stdout=fh, check=True, cwd=ROOT, timeout=60)
    assert out.read_text() == "through stdout\n"
    assert os.path.islink("/dev/stdout")
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                           timeout=60)
    assert piped.stdout == "through stdout\n"


def test_dash_is_stdout(capsys):
    fileio.write_text("-", "to stdout")
    assert capsys.readouterr().out == "to stdout"


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(fileio.WriteError, match="it is a folder"):
        fileio.write_text(tmp_path, "x")


def test_a_file_where_a_folder_should_be_is_one_line(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(fileio.WriteError, match="is a file, not a folder"):
        fileio.write_text(tmp_path / "f" / "r.json", "x")


def test_a_full_device_is_one_line():
    with pytest.raises(fileio.WriteError, match=r"/dev/full: no space left on the device\n"):
        fileio.write_text("/dev/full", "x" * 100)


def test_an_exclusive_write_never_replaces(tmp_path):
    target = tmp_path / "b.icmp"
    with fileio.atomic_path(target, exclusive=True, lock=True) as tmp:
        tmp.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        with fileio.atomic_path(target, exclusive=True, lock=True) as tmp:
            tmp.write_bytes(b"second")
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["b.icmp"]


def test_an_exclusive_write_loses_to_a_file_that_appears_meanwhile(tmp_path):
    target = tmp_path / "b.icmp"
    with pytest.raises(FileExistsError):
        with fileio.atomic_path(target, exclusive=True) as tmp:
            tmp.write_bytes(b"mine")
            target.write_bytes(b"theirs")  # another writer got there first
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["b.icmp"]


def test_the_folder_lock_waits_for_the_holder(tmp_path):
    with fileio.folder_lock(tmp_path):
        with pytest.raises(fileio.WriteError, match="another process has been writing"):
            # a second open file description of the same folder: what another process would hold
            with fileio.folder_lock(tmp_path, wait=0.2):
                pass
    with fileio.folder_lock(tmp_path, wait=0.2):
        pass


def test_an_error_in_the_body_leaves_the_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("kept")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert target.read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("x")
    target.chmod(0o640)
    fileio.write_text(target, "y")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


# -- outputs against inputs -----------------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model")
    os.link(model, tmp_path / "hard.onnx")
    (tmp_path / "sym.onnx").symlink_to("model.onnx")
    return tmp_path


@pytest.mark.parametrize("output, needle", [
    ("model.onnx", "--json model.onnx is the model"),
    ("sym.onnx", "--json sym.onnx is the model"),
    ("hard.onnx", "--json hard.onnx is the model"),
    ("./sub/../model.onnx", "is the model"),
])
def test_an_output_that_is_an_input_is_refused(files, output, needle, monkeypatch):
    monkeypatch.chdir(files)
    with pytest.raises(UsageError, match=needle.replace(".", r"\.")):
        fileio.check_outputs({"--json": output}, {"the model": "model.onnx"})


def test_outputs_that_clash_with_each_other_are_refused(tmp_path):
    with pytest.raises(UsageError, match="--html .* is also written by --json"):
        fileio.check_outputs({"--json": tmp_path / "r", "--html": tmp_path / "r"}, {})
    with pytest.raises(UsageError, match="--json and --html both write to standard output"):
        fileio.check_outputs({"--json": "-", "--html": "-"}, {})
    fileio.check_outputs({"--json": "/dev/null", "--html": "/dev/null", "--junit": "-"}, {})  # streams may share


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.parent.joinpath("f").write_text(""), "is a file, not a folder"),
])
def test_outputs_that_cannot_be_written_are_refused_up_front(tmp_path, make, needle):
    target = tmp_path / "out"
    make(target)
    path = target if needle == "is a folder" else tmp_path / "f" / "r.json"
    with pytest.raises(UsageError, match=needle):
        fileio.check_outputs({"--json": path}, {})


def test_write_errors_are_infercmp_errors():
    assert issubclass(fileio.WriteError, InfercmpError) and fileio.WriteError("x").exit_code == 2


def test_read_only_file_system(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "none", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only file system here (needs root)")
    try:
        with pytest.raises(UsageError, match="is on a read-only file system"):
            fileio.check_outputs({"--json": ro / "r.json"}, {})
        with pytest.raises(fileio.WriteError, match="the file system is read-only"):
            fileio.write_text(ro / "r.json", "x")
    finally:
        subprocess.run(["umount", str(ro)], check=False)
    assert Path(ro).is_dir()
