"""Bad configuration raises in the caller's thread: at the call, at construction or at start()."""

from __future__ import annotations

import pytest
import zmq

from labwire.brokers import (
    FORWARDER,
    QUEUE,
    STREAMER,
    MonitoredQueue,
    ProcessDevice,
    ThreadDevice,
    ThreadProxy,
)
from labwire.errors import ConfigurationError, EndpointError
from labwire.transport import SocketType
from tests.brokers.conftest import Peers


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1000", "takes an integer, got str"),
        (1.5, "takes an integer, got float"),
        (True, "takes an integer, got bool"),
        (-5, "refused on a PULL socket"),
    ],
)
def test_option_value_is_checked_at_the_call(value: object, message: str) -> None:
    device = ThreadDevice(STREAMER, zmq.PULL, zmq.PUSH)
    with pytest.raises(ConfigurationError, match=message) as caught:
        device.setsockopt_in(zmq.RCVHWM, value)
    assert "RCVHWM" in str(caught.value)


def test_bytes_options_and_refused_options() -> None:
    device = ThreadDevice(FORWARDER, zmq.SUB, zmq.PUB)
    device.setsockopt_in(zmq.SUBSCRIBE, b"topic")
    device.setsockopt_in(zmq.SUBSCRIBE, "text is sent as UTF-8")
    with pytest.raises(ConfigurationError, match="SUBSCRIBE takes bytes, got int"):
        device.setsockopt_in(zmq.SUBSCRIBE, 7)
    with pytest.raises(ConfigurationError, match="SUBSCRIBE=b'x' is refused on a PUB socket"):
        device.setsockopt_out(zmq.SUBSCRIBE, b"x")
    with pytest.raises(ConfigurationError, match="not a ZeroMQ socket option"):
        device.setsockopt_out(987654, 1)
    with pytest.raises(ConfigurationError, match="can only be read"):
        device.setsockopt_out(zmq.FD, 1)


@pytest.mark.parametrize(
    ("device_type", "in_type", "out_type", "message"),
    [
        (FORWARDER, zmq.PULL, zmq.PUSH, "FORWARDER relays from SUB/XSUB to PUB/XPUB"),
        (STREAMER, zmq.ROUTER, zmq.DEALER, "STREAMER relays from PULL to PUSH"),
        (QUEUE, zmq.PUB, zmq.SUB, "QUEUE relays from DEALER/ROUTER"),
        (STREAMER, zmq.PULL, -1, "one socket serving both sides"),
        (QUEUE, zmq.PUB, -1, "one socket serving both sides"),
        (QUEUE, 99, zmq.DEALER, "in_type 99 is not a socket type"),
        (QUEUE, "ROUTER", zmq.DEALER, "in_type must be a ZeroMQ socket type"),
        (7, zmq.ROUTER, zmq.DEALER, "device_type must be QUEUE, FORWARDER or STREAMER"),
    ],
)
def test_impossible_pairings_are_refused_at_construction(
    device_type: int, in_type: object, out_type: int, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ThreadDevice(device_type, in_type, out_type)  # type: ignore[arg-type]


def test_proxies_check_directions_only() -> None:
    ThreadProxy(zmq.PULL, zmq.PUSH, zmq.PUB)
    ThreadProxy(SocketType.ROUTER, SocketType.DEALER)
    MonitoredQueue(zmq.ROUTER, zmq.ROUTER)
    with pytest.raises(ConfigurationError, match="in socket receives: PUSH cannot"):
        ThreadProxy(zmq.PUSH, zmq.PUSH)
    with pytest.raises(ConfigurationError, match="out socket sends: PULL cannot"):
        ThreadProxy(zmq.PULL, zmq.PULL)
    with pytest.raises(ConfigurationError, match="monitor socket sends: SUB cannot"):
        ThreadProxy(zmq.PULL, zmq.PUSH, zmq.SUB)
    with pytest.raises(ConfigurationError, match="in_prefix must be bytes"):
        MonitoredQueue(zmq.ROUTER, zmq.DEALER, zmq.PUB, "in")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="out_type must be specified"):
        ThreadDevice(QUEUE, zmq.ROUTER)


def test_bad_addresses_are_refused_at_the_call() -> None:
    device = ThreadDevice(QUEUE, zmq.ROUTER, zmq.DEALER)
    with pytest.raises(EndpointError):
        device.bind_in("tcp://127.0.0.1:5555:5555")
    with pytest.raises(EndpointError):
        device.connect_out("carrier-pigeon://lab")
    with pytest.raises(ConfigurationError, match="address string"):
        device.bind_out(5555)  # type: ignore[arg-type]


@pytest.mark.parametrize("launcher", ["thread", "fork", "spawn"])
def test_unbindable_address_raises_from_start(launcher: str, peers: Peers) -> None:
    _, taken = peers.bind(zmq.PULL)
    if launcher == "thread":
        device = ThreadDevice(STREAMER, zmq.PULL, zmq.PUSH)
    else:
        device = ProcessDevice(STREAMER, zmq.PULL, zmq.PUSH)
        device.start_method = launcher
    device.bind_in("tcp://127.0.0.1:0")
    device.bind_out(taken)
    with pytest.raises(EndpointError, match="address already in use"):
        device.start()
    assert device.launcher is None or not device.launcher.is_alive()
    device.stop()


def test_a_side_without_address_raises_from_start() -> None:
    device = ThreadDevice(STREAMER, zmq.PULL, zmq.PUSH)
    device.bind_in("tcp://127.0.0.1:0")
    with pytest.raises(ConfigurationError, match="out socket has no address"):
        device.start()
