"""Tier 3: devices on several hosts (network namespaces on one bridge).

Discovery on the LAN, glob subscriptions and requests across hosts, a member with the wrong
key ignored and counted, a device killed (it expires) and started again (it returns), a host's
link cut (its devices expire) and healed (they come back); discovery by broadcast alone and by
multicast alone.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest

from labwire.testing import NamespaceNetwork
from tests.cluster.conftest import EXPIRY, wait_for
from tests.cluster.peer import Peer
from tests.conftest import namespace_network

SUBNET = "10.78.0.0/24"


@pytest.fixture
def network() -> Iterator[NamespaceNetwork]:
    with namespace_network(SUBNET) as net:
        yield net


def rejected(peer: Peer) -> int:
    stats: dict[str, int] = json.loads(peer.ask("stats", "STATS"))
    return stats.get("rejected_beacons", 0)


def test_group_across_hosts_with_key_cut_and_heal(network: NamespaceNetwork, group: str) -> None:
    gps_host, nav_host, stranger_host = (network.add_host(n) for n in ("gps", "nav", "stranger"))
    peers: list[Peer] = []

    def start(host_prefix: list[str], name: str, *options: str, key: str = "rover") -> Peer:
        argv = ["--name", name, "--group", group, "--network", SUBNET, "--key", key, *options]
        peer = Peer(argv, prefix=host_prefix)
        peers.append(peer)
        peer.expect("READY")
        return peer

    try:
        gps = start(gps_host.prefix, "gps")
        nav = start(nav_host.prefix, "nav", "--subscribe", "*/GPSPosition")
        logger = start(nav_host.prefix, "logger", "--subscribe", "gps/*")
        stranger = start(stranger_host.prefix, "stranger", "--subscribe", "*/*", key="guess")

        nav.wait_peers({"gps", "logger"})
        gps.wait_peers({"nav", "logger"})
        assert nav.request("gps whoami") == ("RESULT", json.dumps(["gps", gps.pid]))
        assert gps.request("logger add [2, 3]") == ("RESULT", "5")

        gps.send('publish GPSPosition {"lat": 52.13, "lon": -106.63}')
        assert nav.expect("EVENT") == 'gps/GPSPosition {"lat": 52.13, "lon": -106.63}'
        assert logger.expect("EVENT") == 'gps/GPSPosition {"lat": 52.13, "lon": -106.63}'

        assert stranger.peers() == []
        wait_for(lambda: rejected(stranger) > 0, what="the stranger rejects our beacons")
        wait_for(lambda: rejected(nav) > 0, what="nav rejects the stranger's beacons")

        imu = start(stranger_host.prefix, "imu")  # a keyed device next to the stranger
        nav.wait_peers({"gps", "logger", "imu"})
        imu.kill(signal.SIGKILL)
        nav.wait_peers({"gps", "logger"}, timeout=EXPIRY + 10)
        kind, text = nav.request("imu whoami", timeout=3)
        assert kind == "ERROR" and text.startswith("UnknownPeer"), text
        imu = start(stranger_host.prefix, "imu")
        nav.wait_peers({"gps", "logger", "imu"})
        assert nav.request("imu whoami") == ("RESULT", json.dumps(["imu", imu.pid]))
        imu.close()
        nav.wait_peers({"gps", "logger"}, timeout=EXPIRY + 10)

        gps_host.cut()
        nav.wait_peers({"logger"}, timeout=EXPIRY + 5)
        kind, text = nav.request("gps whoami", timeout=3)
        assert kind == "ERROR" and text.startswith("UnknownPeer"), text
        gps_host.heal()
        nav.wait_peers({"gps", "logger"})
        assert nav.request("gps whoami") == ("RESULT", json.dumps(["gps", gps.pid]))
        gps.wait_peers({"nav", "logger"})  # gps knows nav's subscriptions again
        gps.send("publish GPSPosition 2")
        assert nav.expect("EVENT") == "gps/GPSPosition 2"
    finally:
        for peer in peers:
            peer.close()


@pytest.mark.parametrize("discovery", ["multicast", "broadcast"])
def test_discovery_by_one_way_alone(network: NamespaceNetwork, group: str, discovery: str) -> None:
    hosts = [network.add_host(label) for label in ("left", "right")]
    argv = ["--group", group, "--network", SUBNET, "--discovery", discovery]
    left = Peer(["--name", "left", *argv], prefix=hosts[0].prefix)
    right = Peer(["--name", "right", *argv, "--subscribe", "left/*"], prefix=hosts[1].prefix)
    try:
        left.expect("READY")
        right.expect("READY")
        left.wait_peers({"right"})
        assert right.request("left whoami") == ("RESULT", json.dumps(["left", left.pid]))
        left.send("publish ping 1")
        assert right.expect("EVENT") == "left/ping 1"
    finally:
        left.close()
        right.close()


def test_a_network_that_comes_up_later_is_used(network: NamespaceNetwork, group: str) -> None:
    early_host, late_host = network.add_host("early"), network.add_host("late")
    assert late_host.run(["ip", "link", "set", "eth0", "down"]).returncode == 0
    argv = ["--group", group, "--network", SUBNET, "--discovery", "multicast"]
    late = Peer(["--name", "late", *argv], prefix=late_host.prefix)  # starts with no LAN
    early = Peer(["--name", "early", *argv], prefix=early_host.prefix)
    try:
        late.expect("READY")
        early.expect("READY")
        assert late_host.run(["ip", "link", "set", "eth0", "up"]).returncode == 0
        early.wait_peers({"late"}, timeout=15)
        late.wait_peers({"early"}, timeout=15)
    finally:
        late.close()
        early.close()
