"""Tier 3: a device, a signal broker and a dashboard on three hosts (network namespaces)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from labwire.testing import NamespaceHost, NamespaceNetwork

ROOT = Path(__file__).resolve().parents[2]


def start(host: NamespaceHost, *args: str) -> subprocess.Popen[Any]:
    return host.popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def first_line(process: subprocess.Popen[Any], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no line starting with {prefix!r}")


def values(process: subprocess.Popen[Any], count: int) -> list[float]:
    return [float(first_line(process, "VALUE").split()[1]) for _ in range(count)]


def test_a_dashboard_gets_a_device_signals_from_another_host_through_the_broker(
    network: NamespaceNetwork,
) -> None:
    broker_host = network.add_host("broker")
    device_host = network.add_host("device")
    dashboard_host = network.add_host("dashboard")
    address = broker_host.address
    broker = start(
        broker_host,
        "-m",
        "labwire",
        "broker",
        "signals",
        "--in",
        f"tcp://{address}:0",
        "--out",
        f"tcp://{address}:0",
        "--json",
        "--stop-on-eof",
    )
    ready = json.loads(first_line(broker, "{"))
    device = start(
        device_host,
        "-m",
        "tests.brokers.devices",
        "device",
        f"tcp://{device_host.address}:0",
        ready["in"][0],
    )
    dashboard = start(dashboard_host, "-m", "tests.brokers.devices", "subscribe", ready["out"][0])
    try:
        assert first_line(device, "READY").startswith(f"READY tcp://{device_host.address}:")
        first_line(dashboard, "READY")
        got = values(dashboard, 5)
        assert got == sorted(got)  # in order, each count once
        assert len(set(got)) == 5
    finally:
        for process in (dashboard, device, broker):
            assert process.stdin is not None
            process.stdin.close()
        for process in (dashboard, device, broker):
            process.wait(10)
            assert process.stdout is not None
            process.stdout.close()
    assert broker.returncode == 0
