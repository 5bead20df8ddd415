"""Tier 3: a coordinator and two rigs on three hosts (network namespaces); a link cut and healed."""

from __future__ import annotations

import json
import time


def test_rigs_on_other_hosts_with_a_link_cut_and_healed(network, procs):
    boss_host = network.add_host("boss")
    cams_host = network.add_host("cams")
    ephys_host = network.add_host("ephys")
    _, cams = procs.rig(
        "cams", "--udp", f"udp://{cams_host.address}:11001", prefix=cams_host.prefix
    )
    _, ephys = procs.rig(
        "ephys", "--url", f"tcp://{ephys_host.address}:0", prefix=ephys_host.prefix
    )
    assert cams["udp"] == f"udp://{cams_host.address}:11001"
    boss = procs.start(
        "coordinator",
        f"cams={cams_host.address}",  # a bare host: the deployed protocol on port 11001
        f"ephys={ephys['url']}",
        "--timeout",
        "1.5",
        prefix=boss_host.prefix,
    )
    assert boss.record()["event"] == "ready"

    def push(line: str) -> dict[str, list]:
        boss.send(line)
        return boss.record(timeout=15)

    assert push("EXPINIT") == {"cams": ["reply", [10]], "ephys": ["reply", [10]]}
    cams_host.cut()
    cut = push('EXPSTART ["2024-01-01_1_m"]')
    assert cut["cams"][0] == "timeout"
    assert cut["ephys"] == ["reply", ["2024-01-01_1_m", 20]]
    cams_host.heal()
    deadline = time.monotonic() + 10
    while True:  # the cams rig never saw EXPSTART: it may start now
        healed = push('EXPSTART ["2024-01-01_1_m"]')
        if healed["cams"][0] == "reply" or time.monotonic() > deadline:
            break
    assert healed["cams"] == ["reply", ["2024-01-01_1_m", 20]], json.dumps(healed)
    assert healed["ephys"][0] == "error"  # already running: an illegal transition, reported
    assert push("EXPEND") == {"cams": ["reply", [30]], "ephys": ["reply", [30]]}
