"""Rig services by registry name, the command line, and what close() leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from labwire.errors import NotFound
from labwire.registry import DeviceRegistry
from labwire.rigs import Auxiliaries, RigService
from labwire.sim.rig import SimRig
from tests.rigs.conftest import ROOT, Proc


@pytest.fixture
def registry():
    service = DeviceRegistry(None, "127.0.0.1", "0", heartbeat_interval=0.2)
    service.start()
    yield service
    service.stop()


def test_a_rig_found_by_its_registry_name(registry):
    with SimRig("cam-left", registry_url=registry.url) as rig:
        assert rig.name == "cam-left"
        clients = {"left": "cam-left", "ghost": "cam-ghost"}
        with Auxiliaries(clients, registry_url=registry.url, timeout=2) as rigs:
            results = rigs.push_results("EXPINIT")
    assert results["left"].data == [10]
    assert isinstance(results["ghost"].error, NotFound)


def test_a_service_needs_a_link_and_registers_only_with_one():
    with pytest.raises(ValueError, match="udp=, url= or both"):
        RigService("x", udp=None, url=None)
    with RigService("x", udp="udp://127.0.0.1:0", url=None) as rig, pytest.raises(ValueError):
        rig.register("tcp://127.0.0.1:5555")


def test_a_taken_udp_port_is_a_clear_error():
    with SimRig("a", url=None) as first, pytest.raises(ValueError, match="cannot listen on"):
        SimRig("b", udp=first.udp_endpoint, url=None).start()


def _labwire(*args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labwire", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cli_sim_rig_and_rigs_push(free_udp_port):
    rig = Proc(
        [
            sys.executable,
            "-m",
            "labwire",
            "sim",
            "rig",
            "cam-left",
            "--bind",
            f"udp://127.0.0.1:{free_udp_port}",
            "--no-register",
            "--json",
            "--stop-on-eof",
        ]
    )
    try:
        ready = rig.record(timeout=20)
        assert ready["role"] == "rig" and ready["name"] == "cam-left"
        assert ready["udp"] == f"udp://127.0.0.1:{free_udp_port}"
        done = _labwire(
            "rigs",
            "push",
            f"left=127.0.0.1:{free_udp_port}",
            f"again={ready['endpoint']}",
            "EXPINFO",
            "CONNECTED",
            '{"subject": "[red]mouse[/red]"}',
            "--json",
        )
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        assert [(r["rig"], r["outcome"]) for r in rows] == [("left", "reply"), ("again", "reply")]
        assert rows[0]["reply"][1]["name"] == "cam-left"
        table = _labwire("rigs", "push", f"udp://127.0.0.1:{free_udp_port}", "EXPSTART", "r")
        assert table.returncode == 1  # not initialised: the rig refuses, the table says so
        assert "IllegalTransition" in table.stdout and "[red]" not in table.stdout
        bad = _labwire("rigs", "push", "udp://127.0.0.1:9", "EXPSTATUS", "DANCING")
        assert bad.returncode == 2 and "unknown experiment status" in bad.stderr
        none = _labwire("rigs", "push", "udp://127.0.0.1:9")
        assert none.returncode == 2 and "no experiment message" in none.stderr
    finally:
        rig.kill()


def test_close_leaves_no_threads_or_sockets_behind():
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    threads, before = set(threading.enumerate()), fds()
    for _ in range(10):
        with SimRig("a") as rig, Auxiliaries({"u": rig.udp_endpoint, "z": rig.endpoint}) as rigs:
            assert rigs.push_results("EXPSTATUS", 0).ok
    deadline = time.monotonic() + 3
    while True:
        leaked = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
        grown = fds() - before
        if (not leaked and grown <= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked and grown <= 2, (leaked, grown)
