"""``labwire cluster ls / echo / request`` against a device in another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import LOOPBACK, wait_for
from tests.cluster.peer import Peer
from tests.commands import ROOT

ECHO = ("--count", "1", "--json", "--network", LOOPBACK)
ENV = {k: v for k, v in os.environ.items() if not k.startswith("LABWIRE_")}


def labwire(
    *argv: str, network: str = LOOPBACK, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labwire", "cluster", *argv, "--network", network],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def nav(group: str) -> Iterator[Peer]:
    peer = Peer(["--name", "nav", "--group", group, "--subscribe", "*/GPSPosition"])
    try:
        peer.expect("READY")
        yield peer
    finally:
        peer.close()


def test_ls_lists_devices_subscriptions_and_endpoints(group: str, nav: Peer) -> None:
    result = labwire("ls", group, "--wait", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    (device,) = json.loads(result.stdout)
    assert device["name"] == "nav" and device["address"] == "127.0.0.1"
    assert device["subscriptions"] == ["*/GPSPosition"]
    assert device["requests"] == ["add", "whoami"]
    table = labwire("ls", group, "--wait", "0.5")
    assert table.returncode == 0 and "nav" in table.stdout and "*/GPSPosition" in table.stdout
    empty = labwire("ls", f"{group}-empty", "--wait", "0.2")
    assert empty.returncode == 0 and "no devices heard" in empty.stderr


def test_request_prints_the_result_or_a_clear_error(group: str, nav: Peer) -> None:
    result = labwire("request", group, "nav", "add", "1", "2", "39")
    assert (result.returncode, result.stdout.strip()) == (0, "42"), result.stderr
    missing = labwire("request", group, "nav", "steer")
    assert missing.returncode == 3 and "no request endpoint 'steer'" in missing.stderr
    ghost = labwire("request", group, "ghost", "add", "--wait", "0.3")
    assert ghost.returncode == 3 and "no member named 'ghost'" in ghost.stderr
    bad = labwire("ls", group, network="not-a-network")
    assert bad.returncode == 2 and "not an IPv4 network" in bad.stderr


def test_echo_prints_matching_events(group: str) -> None:
    gps = Peer(["--name", "gps", "--group", group])
    echo = subprocess.Popen(
        [sys.executable, "-m", "labwire", "cluster", "echo", group, "GPSPosition", *ECHO],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        gps.expect("READY")
        wait_for(
            lambda: any(name.startswith("labwire-cli-") for name in gps.peers()),
            timeout=10,
            what="the echo command joined",
        )
        gps.send("publish Speed 3")
        gps.send('publish GPSPosition {"lat": 1.5, "note": "[bold]x[/bold]"}')
        out, err = echo.communicate(timeout=15)
        assert echo.returncode == 0, err
        record = json.loads(out)
        assert record["event"] == "gps/GPSPosition"
        assert record["data"] == {"lat": 1.5, "note": "[bold]x[/bold]"}
    finally:
        if echo.poll() is None:
            echo.kill()
            echo.communicate()
        gps.close()


def test_key_file_joins_a_keyed_group(group: str, tmp_path: Path) -> None:
    keyed = Peer(["--name", "vault", "--group", group, "--key", "s3cret"])
    try:
        keyed.expect("READY")
        (tmp_path / "group.key").write_text("s3cret\n")
        found = labwire(
            "request", group, "vault", "add", "2", "--key-file", str(tmp_path / "group.key")
        )
        assert (found.returncode, found.stdout.strip()) == (0, "2"), found.stderr
        outside = labwire("request", group, "vault", "add", "--wait", "0.3")
        assert outside.returncode == 3 and "no member named 'vault'" in outside.stderr
        missing = labwire("ls", group, "--key-file", str(tmp_path / "nope.key"))
        assert missing.returncode == 2 and "cannot read the group key file" in missing.stderr
    finally:
        keyed.close()
