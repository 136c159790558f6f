"""Fleet runs on a real local Ray cluster: a head and two worker nodes on the loopback, one CPU each, told apart
by labels. Every node binds 127.0.0.2: Ray replaces 127.0.0.1 by the machine's outward address
(ray._private.services.resolve_ip_for_localhost), and any other 127.x address keeps the traffic on the loopback.
Label selectors put each variant on its node, `all-nodes` runs on every node, a selector that matches nothing and a
node killed during its run are reported per task while the others finish; the cluster is stopped node by node."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from comparator.gate import bundle
from conftest import assert_clean_error
from test_bundle import run_cli

ray = pytest.importorskip("ray", reason="fleet runs need Ray: pip install 'infercmp[ray]'")
RAY = Path(sys.executable).parent / "ray"
LOOPBACK = "127.0.0.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _node(args: list[str]) -> subprocess.Popen[bytes]:
    """A Ray node in its own process group, so that killing the group kills the node."""
    return subprocess.Popen([str(RAY), "start", "--block", "--node-ip-address", LOOPBACK, "--num-cpus", "1",
                             "--disable-usage-stats", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _alive(address: str) -> list[dict]:
    ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    try:
        return [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()


def _wait_for(address: str, count: int, timeout: float = 90) -> list[dict]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            nodes = _alive(address)
            if len(nodes) >= count:
                return nodes
        except Exception:  # noqa: BLE001 - the head is still starting
            pass
        time.sleep(1)
    raise AssertionError(f"the local Ray cluster did not reach {count} nodes")


def _stop(proc: subprocess.Popen[bytes], crash: bool = False) -> None:
    """Stop one node: SIGTERM lets `ray start --block` stop its processes; `crash` kills the whole group at once."""
    try:
        os.killpg(proc.pid, signal.SIGKILL if crash else signal.SIGTERM)
        proc.wait(timeout=60)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster():
    port = _free_port()
    address = f"{LOOPBACK}:{port}"
    head = _node(["--head", "--port", str(port), "--include-dashboard=false", "--labels", "role=head"])
    workers = []
    try:
        _wait_for(address, 1)
        for k, isa in enumerate(("avx512", "sse")):  # one at a time: nodes starting together race for ports
            workers.append(_node(["--address", address, "--labels", f"cpu-isa={isa}"]))
            nodes = _wait_for(address, 2 + k)
        yield {"address": address, "nodes": {n["NodeID"]: n["Labels"] for n in nodes}}
    finally:
        for proc in workers + [head]:  # this cluster only: each node drains and stops at once
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in workers + [head]:
            _stop(proc)
    assert all(p.poll() is not None for p in workers + [head])


def test_label_selectors_place_each_variant_on_its_node(models, cluster, tmp_path):
    from comparator.fleet.cluster import fleet

    result = fleet(models.cnn, ["ort@cpu-isa=avx512", "ort:opt=disable@cpu-isa=sse", "ort@cpu-isa=avx9"],
                   cluster["address"], tmp_path / "out", tap_spec="all", timeout=120)
    ok, unplaced = [t for t in result.tasks if t.status == "ok"], [t for t in result.tasks if t.status != "ok"]
    assert [str(t.placement.variant) for t in ok] == ["ort", "ort:opt=disable"]
    for t, isa in zip(ok, ("avx512", "sse")):
        assert t.labels.get("cpu-isa") == isa and cluster["nodes"][t.node].get("cpu-isa") == isa
        b = bundle.Bundle.open(t.bundle)
        where = b.meta["runs"][0]["provenance"]["ray"]
        assert where["node_id"] == t.node and where["labels"]["cpu-isa"] == isa  # the bundle says where it ran
    assert ok[0].node != ok[1].node
    assert [t.status for t in unplaced] == ["unplaced"] and "no alive node matches" in unplaced[0].error
    assert result.exit_code == 3  # a task brought no bundle back
    assert result.matrix is not None and len(result.matrix.runs) == 2
    assert result.matrix.first_difference  # tapped bundles: where the two runs differ, if they do


def test_all_nodes_runs_the_variant_on_every_node(models, cluster, tmp_path):
    code, out, err = run_cli("fleet", models.cnn, "-b", "ort@all-nodes", "--cluster", cluster["address"], "-o",
                             tmp_path / "fleet", "--json", tmp_path / "f.json")
    assert code == 0, err
    data = json.loads((tmp_path / "f.json").read_text())
    assert {t["node"] for t in data["tasks"]} == set(cluster["nodes"])  # one task on each of the three nodes
    assert all(t["status"] == "ok" for t in data["tasks"])
    assert len(data["matrix"]["classes"]) == 1  # one machine, one variant: bit-identical everywhere
    assert len(list((tmp_path / "fleet").glob("*.icmp"))) == 3 and "3 brought a bundle back" in out


def test_a_node_killed_during_its_run_fails_its_variant_and_the_others_finish(models, cluster, tmp_path):
    from comparator.fleet.cluster import fleet

    doomed = _node(["--address", cluster["address"], "--labels", "role=doomed"])
    try:
        _wait_for(cluster["address"], 4)
        started = time.time()
        found: dict = {}
        thread = threading.Thread(target=lambda: found.update(result=fleet(
            models.cnn, ["torch@role=doomed", "ort@cpu-isa=sse"], cluster["address"], tmp_path / "out",
            tap_spec="all", timeout=120)))
        thread.start()
        # The task on the doomed node is running once its worker's request appears (same machine, same /tmp).
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            requests = [p for p in Path("/tmp").glob("infercmp-fleet-*/run/*-torch/request.json")
                        if p.stat().st_mtime >= started]
            if requests:
                break
            time.sleep(0.1)
        assert requests, "the task on the doomed node never started"
        _stop(doomed, crash=True)
        thread.join(timeout=240)
        assert not thread.is_alive()
    finally:
        _stop(doomed)
    result = found["result"]
    by_variant = {str(t.placement.variant): t for t in result.tasks}
    assert by_variant["ort"].status == "ok" and Path(by_variant["ort"].bundle).is_file()
    assert by_variant["torch"].status == "crashed" and "died" in by_variant["torch"].error, by_variant["torch"]
    assert result.exit_code == 3


def test_a_bad_address_and_a_missing_ray_are_one_line_errors(models, tmp_path):
    code, _, err = run_cli("fleet", models.cnn, "-b", "ort", "--cluster", f"{LOOPBACK}:{_free_port()}", "-o",
                           tmp_path / "x")
    assert code == 2
    assert_clean_error(err, "cannot reach a Ray cluster")
    hidden = ("import sys; sys.modules['ray'] = None; from comparator.cli import main; "
              f"sys.argv = ['infercmp', 'fleet', {str(models.cnn)!r}, '-b', 'ort', '--cluster', 'x:1', '-o', "
              f"{str(tmp_path / 'y')!r}]; main()")
    proc = subprocess.run([sys.executable, "-c", hidden], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert_clean_error(proc.stderr, "a fleet run needs Ray")
    assert "pip install 'infercmp[ray]'" in proc.stderr
