"""``labwire broker`` as a subprocess: traffic, registration, statistics, errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import zmq

from labwire.registry import DeviceRegistry, RegistryClient
from tests.brokers.conftest import Peers, wait_for
from tests.brokers.devices import Thermometer, ThermometerClient
from tests.commands import Running, labwire


@pytest.fixture
def registry() -> Iterator[DeviceRegistry]:
    service = DeviceRegistry(None, "127.0.0.1", "0", heartbeat_interval=0.2)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def test_streamer_broker_registers_relays_and_reports(
    registry: DeviceRegistry, running: Callable[..., Running], peers: Peers
) -> None:
    broker = running(
        "broker",
        "streamer",
        "--in",
        "tcp://127.0.0.1:0",
        "--out",
        "tcp://127.0.0.1:0",
        "--register",
        "belt",
        "--json",
        "--stop-on-eof",
        registry=registry.url,
    )
    ready = json.loads(broker.line(timeout=20))
    assert ready["event"] == "ready"
    assert ready["registered"] == {"in": "belt.in", "out": "belt.out"}
    with RegistryClient(registry.url) as client:
        assert client.lookup("belt.in").address == ready["in"][0]
        assert client.lookup("belt.out").device_type == "streamer-broker"
    producer = peers.connect(zmq.PUSH, ready["in"][0])
    consumer = peers.connect(zmq.PULL, ready["out"][0])
    for number in range(10):
        producer.send(b"item %d" % number)
    assert [consumer.recv() for _ in range(10)] == [b"item %d" % n for n in range(10)]
    assert broker.process.stdin is not None
    broker.process.stdin.close()
    stopped = json.loads(broker.line(timeout=10))
    assert stopped["event"] == "stopped"
    assert stopped["statistics"]["in_side"]["frames_received"] == 10
    assert stopped["statistics"]["out_side"]["frames_sent"] == 10
    assert broker.wait() == 0
    with RegistryClient(registry.url) as client:
        assert "belt.in" not in client.get_devices()


def test_signal_broker_stops_on_sigterm(running: Callable[..., Running]) -> None:
    broker = running("broker", "signals", "--in", "tcp://127.0.0.1:0", "--out", "tcp://127.0.0.1:0")
    line = broker.line(timeout=20)
    assert "publishers connect to tcp://127.0.0.1:" in line
    assert broker.stop() == 0
    assert "signals broker stopped: 0 frames" in broker.line(match=lambda text: "stopped" in text)


def test_bad_addresses_are_reported(peers: Peers) -> None:
    result = labwire("broker", "queue", "--in", "tcp://127.0.0.1:1:2", "--out", "tcp://127.0.0.1:0")
    assert result.returncode == 2
    assert "tcp://127.0.0.1:1:2" in result.stderr
    _, taken = peers.bind(zmq.PULL)
    result = labwire("broker", "queue", "--in", "tcp://127.0.0.1:0", "--out", taken)
    assert result.returncode == 1
    assert "address already in use" in result.stderr


def test_unreachable_registry_is_reported() -> None:
    result = labwire(
        "broker",
        "signals",
        "--in",
        "tcp://127.0.0.1:0",
        "--out",
        "tcp://127.0.0.1:0",
        "--register",
        "lab",
        "--registry",
        "tcp://127.0.0.1:1",
        "--timeout",
        "0.5",
    )
    assert result.returncode == 4
    assert "did not answer" in result.stderr


def test_device_signals_reach_a_client_through_the_command_line_broker(
    running: Callable[..., Running],
) -> None:
    broker = running(
        "broker", "signals", "--in", "tcp://127.0.0.1:0", "--out", "tcp://127.0.0.1:0", "--json"
    )
    ready = json.loads(broker.line(timeout=20))
    device = Thermometer(None, "tcp://127.0.0.1:0", signal_broker=ready["in"][0]).start()
    client = ThermometerClient(None, device.endpoint, signal_url=ready["out"][0])
    readings: list[float] = []
    try:
        client.temperatureChanged.connect(readings.append)
        wait_for(lambda: (device.temperatureChanged.emit(-1.0), readings)[1], timeout=10)
        device.temperatureChanged.emit(37.5)
        wait_for(lambda: readings[-1] == 37.5)
    finally:
        client.close()
        device.close()
    assert broker.stop() == 0
