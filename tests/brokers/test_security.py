"""CurveZMQ on broker sockets when labwire security is on."""

from __future__ import annotations

from typing import Any

import pytest
import zmq

from labwire.brokers import STREAMER, ProcessDevice, ThreadDevice
from labwire.config import Settings
from labwire.errors import ConfigurationError
from labwire.transport.security import Security
from tests.brokers.conftest import Peers, wait_for


def keypair() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


CLIENT = keypair()


def curve_client(peers: Peers, kind: int, url: str, server: str) -> zmq.Socket[Any]:
    public, secret = CLIENT
    sock = peers.context.socket(kind)
    sock.linger = 0
    sock.rcvtimeo = 5000
    sock.curve_serverkey = server.encode()
    sock.curve_publickey = public.encode()
    sock.curve_secretkey = secret.encode()
    sock.connect(url)
    peers.sockets.append(sock)
    return sock


@pytest.mark.parametrize("launcher", ["thread", "spawn"])
def test_only_allowed_keys_get_through_a_secured_broker(launcher: str, peers: Peers) -> None:
    server_public, server_secret = keypair()
    security = Security(secret_key=server_secret, allowed_keys=frozenset({CLIENT[0]}))
    settings = Settings(security=security)
    if launcher == "thread":
        device = ThreadDevice(STREAMER, zmq.PULL, zmq.PUSH, settings=settings)
    else:
        device = ProcessDevice(STREAMER, zmq.PULL, zmq.PUSH, settings=settings)
        device.start_method = launcher
    device.bind_in("tcp://127.0.0.1:0")
    device.bind_out("tcp://127.0.0.1:0")
    with device:
        plain = peers.connect(zmq.PUSH, device.in_endpoints[0])
        plain.send(b"from a stranger", zmq.NOBLOCK)
        producer = curve_client(peers, zmq.PUSH, device.in_endpoints[0], server_public)
        consumer = curve_client(peers, zmq.PULL, device.out_endpoints[0], server_public)
        producer.send(b"from a friend")
        assert consumer.recv() == b"from a friend"
        wait_for(lambda: device.statistics().out_side.frames_sent == 1)
        assert device.statistics().in_side.frames_received == 1


def test_security_refuses_a_side_that_binds_and_connects() -> None:
    _, server_secret = keypair()
    settings = Settings(security=Security(secret_key=server_secret, allow_any_client=True))
    device = ThreadDevice(STREAMER, zmq.PULL, zmq.PUSH, settings=settings)
    device.bind_in("tcp://127.0.0.1:0")
    device.connect_in("tcp://127.0.0.1:9")
    device.bind_out("tcp://127.0.0.1:0")
    with pytest.raises(ConfigurationError, match=r"either binds .* or connects"):
        device.start()
