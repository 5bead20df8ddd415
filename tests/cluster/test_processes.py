"""Devices in separate processes on one machine, over loopback only."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.cluster.conftest import EXPIRY
from tests.cluster.peer import Peer

Start = Callable[..., Peer]


@pytest.fixture
def start(group: str) -> Iterator[Start]:
    peers: list[Peer] = []

    def launch(name: str, *options: str) -> Peer:
        peer = Peer(["--name", name, "--group", group, *options])
        peers.append(peer)
        peer.expect("READY")
        return peer

    try:
        yield launch
    finally:
        for peer in peers:
            peer.close()


def test_processes_discover_each_other_publish_and_request(start: Start) -> None:
    # Requests wait up to 5 s (not the peers' usual 1 s): three processes starting at once on
    # a loaded host can take longer than a second to answer their first request.
    gps = start("gps", "--timeout", "5")
    nav = start("nav", "--timeout", "5", "--subscribe", "*/GPSPosition")
    joystick = start("joystick", "--timeout", "5", "--subscribe", "gps/*")
    nav.wait_peers({"gps", "joystick"})
    gps.wait_peers({"nav", "joystick"})
    joystick.wait_peers({"gps", "nav"})
    assert nav.request("gps whoami") == ("RESULT", json.dumps(["gps", gps.pid]))
    assert joystick.request("nav add [1, 2, 3]") == ("RESULT", "6")
    gps.send('publish GPSPosition {"lat": 52.1}')
    assert nav.expect("EVENT") == 'gps/GPSPosition {"lat": 52.1}'
    assert joystick.expect("EVENT") == 'gps/GPSPosition {"lat": 52.1}'
    joystick.send("publish Buttons [1]")  # nobody subscribed to it
    gps.send("publish Fix 3")
    assert joystick.expect("EVENT") == "gps/Fix 3"
    assert json.loads(nav.ask("stats", "STATS")).get("unhandled", 0) == 0
    kind, text = nav.request("gps nothing")
    assert kind == "ERROR" and text.startswith("NotFound")


def test_killed_peer_expires_fails_fast_and_returns(start: Start) -> None:
    nav = start("nav")
    gps = start("gps")
    nav.wait_peers({"gps"})
    gps.kill(signal.SIGKILL)
    nav.wait_peers(set(), timeout=EXPIRY + 10)
    kind, text = nav.request("gps whoami", timeout=2)
    assert kind == "ERROR" and text.startswith("UnknownPeer")
    again = start("gps")
    nav.wait_peers({"gps"})
    assert nav.request("gps whoami") == ("RESULT", json.dumps(["gps", again.pid]))


def test_frozen_peer_expires_and_comes_back(start: Start) -> None:
    nav = start("nav")
    gps = start("gps")
    nav.wait_peers({"gps"})
    gps.process.send_signal(signal.SIGSTOP)
    try:
        nav.wait_peers(set(), timeout=EXPIRY + 5)
    finally:
        gps.process.send_signal(signal.SIGCONT)
    nav.wait_peers({"gps"})
    assert nav.request("gps whoami") == ("RESULT", json.dumps(["gps", gps.pid]))


def test_peer_restarted_at_once_takes_its_name_back_before_expiry(start: Start) -> None:
    nav = start("nav", "--expiry", "30")  # nobody expires during this test
    gps = start("gps", "--expiry", "30")
    nav.wait_peers({"gps"})
    gps.kill(signal.SIGKILL)
    again = start("gps", "--expiry", "30")
    deadline = time.monotonic() + 10
    while nav.request("gps whoami", timeout=5) != ("RESULT", json.dumps(["gps", again.pid])):
        assert time.monotonic() < deadline, "the restarted gps never took its name back"
        time.sleep(0.05)
