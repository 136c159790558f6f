"""What a run writes and reads back: each run in its own folder under --workdir (a stale or concurrent run is
never read), an unreadable tensor file fails its variant only, bundle writers that race (capture -o, --update-
baseline) lose nothing, and reports go to `-`, devices and links without replacing them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import comparator
from comparator import api, assemble, workspace
from comparator.errors import UsageError
from comparator.gate import bundle
from comparator.variant import parse_list

from conftest import ROOT, after_progress, assert_clean_error


def infercmp(*args, env=None, **kw):
    """A real `infercmp` process, started now (not waited for)."""
    return subprocess.Popen([sys.executable, "-m", "comparator.cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# -- --workdir ------------------------------------------------------------------------------------------------------

def test_each_run_gets_its_own_folder_and_a_stale_one_is_never_read(models, tmp_path, cli, monkeypatch):
    work = tmp_path / "work"
    code, out, err = cli("compare", models.small, "-b", "ort", "-q", "--workdir", work, "--json", tmp_path / "a.json")
    assert code == 0, err
    assert (work / workspace.WORKDIR_MARKER).is_file()
    (first,) = work.glob("run-*")
    assert (first / "00-ort" / "record.json").is_file()
    # The second run's worker dies before writing a record: it must not read the first run's.
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "nowhere"))
    code, out, err = cli("compare", models.small, "-b", "ort", "-q", "--workdir", work, "--json", tmp_path / "b.json")
    assert code == 3, out
    assert "ort: crashed" in out and "without a result" in out
    assert len(list(work.glob("run-*"))) == 2
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["variants"][0]["status"] == "crashed"
    note = next(n for n in report["model"]["notes"] if n.startswith("--workdir"))
    assert note.endswith(next(str(p) for p in work.glob("run-*") if p != first))


def test_runs_sharing_a_workdir_never_see_each_others_files(models, tmp_path):
    work = tmp_path / "work"
    procs = {name: infercmp("compare", getattr(models, name), "-b", "ort,ref", "-q", "--workdir", work, "--json",
                            tmp_path / f"{name}.json") for name in ("small", "exp_chain", "conv_bn")}
    for name, proc in procs.items():
        code, _, err = finish(proc)
        assert code in (0, 1), err
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["model"]["path"] == str(getattr(models, name))
        assert [v["status"] for v in report["variants"]] == ["ok", "ok"]
        assert {t["name"] for t in report["tensors"]} == {t.name for t in
                                                           comparator.graph.model.load(getattr(models, name)).tensors}
    assert len(list(work.glob("run-*"))) == 3


def test_a_workdir_that_is_a_file_or_holds_user_files_is_refused(models, tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(UsageError, match="holds 1 entry infercmp did not create"):
        comparator.compare(models.small, ["ort"], workdir=tmp_path)
    with pytest.raises(UsageError, match="is a file, not a folder"):
        comparator.compare(models.small, ["ort"], workdir=tmp_path / "mine.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_a_refused_argument_leaves_no_run_folder(models, tmp_path):
    with pytest.raises(UsageError, match="--tap"):
        comparator.compare(models.small, ["ort"], workdir=tmp_path / "w", tap_spec="nothing*")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [workspace.WORKDIR_MARKER]


def test_run_variants_refuses_a_folder_holding_a_run(models, tmp_path):
    api.run_variants(models.small, parse_list(["ort"]), tmp_path, kinds=("untapped",))
    with pytest.raises(UsageError, match="already holds a run"):
        api.run_variants(models.small, parse_list(["ort"]), tmp_path, kinds=("untapped",))


# -- an unreadable tensor file is that variant's failure ----------------------------------------------------------

@pytest.mark.parametrize("damage, why", [(lambda p: p.write_bytes(p.read_bytes()[:-8]), "is truncated"),
                                         (lambda p: p.write_bytes(p.read_bytes()[:20]), "not a readable .npy"),
                                         (lambda p: p.unlink(), "cannot be opened")])
def test_a_damaged_tensor_file_fails_its_variant_only(models, tmp_path, damage, why):
    ref = parse_list(["ort"])[0]
    rs = api.run_variants(models.small, parse_list(["ort", "ort:opt=disable", "ref"]), tmp_path)
    victim = rs.runs[1]
    damage(victim.path("tapped", "mm"))
    report = assemble.build_report(rs.model, rs.plan, rs.runs, ref, comparator.Tolerance(), rs.feed_info)
    statuses = {v.name: v.status for v in report.variants}
    assert statuses == {"ort": "ok", "ort:opt=disable": "failed", "ref": "ok"}
    failed = report.variants[1]
    assert why in failed.error and str(victim.path("tapped", "mm")) in failed.error
    assert report.exit_code == 3 and "ref" in report.tensor("y").metrics
    assert "ort:opt=disable" not in report.tensor("y").metrics


def test_a_damaged_reference_file_leaves_nothing_to_compare(models, tmp_path):
    rs = api.run_variants(models.small, parse_list(["ort", "ref"]), tmp_path)
    rs.runs[0].path("untapped", "y").write_bytes(b"")
    report = assemble.build_report(rs.model, rs.plan, rs.runs, rs.runs[0].variant, comparator.Tolerance(),
                              rs.feed_info)
    assert [v.status for v in report.variants] == ["failed", "ok"] and report.exit_code == 3


# -- writers that race ----------------------------------------------------------------------------------------------

def test_two_captures_to_one_file_the_second_refuses(models, tmp_path):
    target = tmp_path / "same.icmp"
    procs = [infercmp("capture", models.small, "-b", "ort", "-o", target, "--seed", str(seed)) for seed in (1, 2)]
    results = [finish(p) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert_clean_error(after_progress(loser), "same.icmp already exists")  # it ran, then found the file taken
    winner_seed = next(seed for (code, _, _), seed in zip(results, (1, 2)) if code == 0)
    assert bundle.Bundle.open(target).meta["inputs"]["seed"] == winner_seed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.icmp"]


@pytest.fixture(scope="module")
def digits_base(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("race")
    base = folder / "base.icmp"
    code, _, err = finish(infercmp("capture", models.digits, "-b", "ort", "--inputs", models.digits_npz, "-o", base))
    assert code == 0, err
    return base


def test_an_update_that_lost_the_race_keeps_both_baselines(models, digits_base, tmp_path):
    base = tmp_path / "base.icmp"
    original = digits_base.read_bytes()
    base.write_bytes(original)
    opened = bundle.Bundle.open(base)
    theirs = tmp_path / "theirs.icmp"
    code, _, err = finish(infercmp("capture", models.digits, "-b", "ort", "--inputs", models.digits_npz, "-o",
                                   theirs))
    assert code == 0, err
    os.replace(theirs, base)  # another --update-baseline finished first
    replaced = base.read_bytes()
    from comparator.gate import check

    result = check.check(models.digits, opened, update_baseline=True)
    assert result.updated is None and "replaced by another process" in result.not_updated
    assert result.exit_code == 2 and not result.passed
    assert base.read_bytes() == replaced and not (tmp_path / "base.icmp.prev").exists()


def test_two_baseline_updates_at_once_lose_nothing(models, digits_base, tmp_path):
    """Two checks that both read the original baseline and then update it: the second to commit finds it
    replaced and keeps it. The folder's lock is held here until both have written their new bundle (its temporary
    file is there), so that both have read the original before either commits, however the machine schedules
    them: run one after the other, each would update the other's baseline, as it should."""
    import time

    from comparator.fileio import folder_lock

    base = tmp_path / "base.icmp"
    original = digits_base.read_bytes()
    base.write_bytes(original)
    with folder_lock(tmp_path):
        procs = [infercmp("check", models.digits, "--baseline", base, "-q", "--update-baseline") for _ in range(2)]
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob(".base.icmp.*.tmp"))) < 2 and all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "the two checks did not both get to write their bundle"
            time.sleep(0.02)
    results = [finish(p) for p in procs]
    assert sorted(code for code, _, _ in results) == [0, 2], results
    assert sum("baseline updated" in out for _, out, _ in results) == 1
    assert sum("replaced by another process" in out for _, out, _ in results) == 1
    assert (tmp_path / "base.icmp.prev").read_bytes() == original  # the original is kept
    bundle.Bundle.open(base)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.icmp", "base.icmp.prev"]


# -- where reports go -----------------------------------------------------------------------------------------------

def test_json_dash_is_the_only_thing_on_stdout(models, cli):
    code, out, err = cli("compare", models.small, "-b", "ort,ref", "--json", "-")
    assert code in (0, 1), err
    report = json.loads(out)
    assert report["reference"] == "ort"
    assert "y (output)" in err and "JSON report" not in err + out  # the table went to stderr


def test_diff_and_check_json_dash(digits_base, models, cli):
    code, out, err = cli("diff", digits_base, digits_base, "--json", "-", "-q")
    assert code == 0, err
    assert json.loads(out)["passed"]
    code, out, err = cli("check", models.digits, "--baseline", digits_base, "--json", "-", "-q")
    assert code == 0, err
    assert json.loads(out)["format"] == "infercmp-gate" and "GATE PASS" in err


def test_html_dash_and_junit_to_a_link(models, tmp_path, cli):
    real = tmp_path / "real.xml"
    real.write_text("old")
    (tmp_path / "link.xml").symlink_to("real.xml")
    code, out, err = cli("compare", models.small, "-b", "ort", "-q", "--html", "-", "--junit", tmp_path / "link.xml")
    assert code == 0, err
    assert out.lstrip().startswith("<!DOCTYPE html>")
    assert (tmp_path / "link.xml").is_symlink() and real.read_text().startswith("<?xml")


def test_json_to_dev_stdout_writes_through_it(models, tmp_path):
    out = tmp_path / "out.json"
    with out.open("w") as fh:
        proc = subprocess.run([sys.executable, "-m", "comparator.cli", "compare", str(models.small), "-b", "ort",
                               "-q", "--json", "/dev/stdout"], stdout=fh, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert json.loads(text[text.index("{"):text.rindex("}") + 1])["reference"] == "ort"
    assert os.path.islink("/dev/stdout")


def test_a_bundle_to_a_link_follows_it(models, tmp_path, cli):
    (tmp_path / "store").mkdir()
    link = tmp_path / "b.icmp"
    link.symlink_to("store/b.icmp")
    code, _, err = cli("capture", models.small, "-b", "ort", "-o", link)
    assert code == 0, err
    assert link.is_symlink() and zipfile.is_zipfile(tmp_path / "store" / "b.icmp")


def test_error_lines_keep_square_brackets(models, cli):
    code, _, err = cli("compare", models.small, "-b", "ort", "--tap", "no[pe]")
    assert code == 2
    assert_clean_error(err, "--tap 'no[pe]' matches no tensor")


def test_printed_lines_keep_square_brackets():
    from rich.console import Console

    from comparator.cli.app import plain

    console = Console(record=True, width=200)
    plain(console, "hint: pip install 'infercmp[ort]'")
    assert "pip install 'infercmp[ort]'" in console.export_text()


def test_random_feeds_are_checked_against_memory_before_allocating(models):
    with pytest.raises(comparator.errors.InputError, match=r"the random feeds need .* of memory"):
        comparator.compare(models.small, ["ort"], samples=10**11)


def test_feed_file_type_is_read_from_its_bytes(models, tmp_path):
    # an .npz saved under a .npy name is read as what it is
    np.savez(tmp_path / "feeds.npy", x=np.ones((1, 4), np.float32))
    os.replace(tmp_path / "feeds.npy.npz", tmp_path / "feeds.npy")
    report = comparator.compare(models.small, ["ort"], inputs=tmp_path / "feeds.npy", tap_spec="outputs")
    assert report.variants[0].status == "ok"
