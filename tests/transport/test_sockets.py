"""The socket factory on real sockets: binding, addresses, error translation and prompt close."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zmq

from labwire.config import Settings
from labwire.errors import (
    ClosedError,
    ConfigurationError,
    EndpointError,
    LabwireError,
    TransportError,
    Unavailable,
)
from labwire.transport import Poller, Socket, SocketType, Transport, translate_errors
from labwire.wire.limits import Limits

pytestmark = pytest.mark.timeout(30)

SETTINGS = Settings()


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    """A private context; teardown fails the test if a socket was left open."""
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    finisher = threading.Thread(target=ctx.term, name="term")
    finisher.start()
    finisher.join(timeout=2)
    if finisher.is_alive():
        ctx.destroy(linger=0)
        finisher.join()
        pytest.fail("a socket was left open: context.term() did not return")


@pytest.fixture
def transport(context: zmq.Context[Any]) -> Transport:
    return Transport(context, SETTINGS)


def exchange(server: Socket, client: Socket) -> None:
    """One request/reply round trip between a bound REP and a connected REQ."""
    assert client.send([b"ping", b"2"])
    request = server.recv(timeout_ms=5000)
    assert request is not None
    assert [bytes(frame) for frame in request] == [b"ping", b"2"]
    assert server.send([b"pong"])
    reply = client.recv(timeout_ms=5000)
    assert reply is not None
    assert [bytes(frame) for frame in reply] == [b"pong"]


def free_tcp_port() -> int:
    """A port nothing listens on (the kernel just handed it out and it was released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def ipv6_loopback_unavailable() -> str:
    """Why ::1 cannot be used here, or "" when it can."""
    if not socket.has_ipv6:
        return "Python was built without IPv6 support"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        return f"the IPv6 loopback address ::1 cannot be bound here: {exc}"
    return ""


# --------------------------------------------------------------------------- binding


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:0", "tcp://127.0.0.1:*", "tcp://127.0.0.1"])
def test_bind_port_zero_reports_the_real_endpoint(transport: Transport, url: str) -> None:
    server = transport.bind(SocketType.REP, url)
    try:
        assert server.port > 0
        assert server.endpoint == f"tcp://127.0.0.1:{server.port}"
        client = transport.connect(SocketType.REQ, server.endpoint)
        try:
            assert client.endpoint == server.endpoint
            exchange(server, client)
        finally:
            client.close()
    finally:
        server.close()


def test_bind_wildcard(transport: Transport) -> None:
    server = transport.bind(SocketType.REP, "tcp://*:0")
    try:
        assert server.endpoint == f"tcp://0.0.0.0:{server.port}"
        client = transport.connect(SocketType.REQ, f"tcp://127.0.0.1:{server.port}")
        try:
            exchange(server, client)
        finally:
            client.close()
    finally:
        server.close()


def test_bind_ipc(transport: Transport, tmp_path: Path) -> None:
    url = f"ipc://{tmp_path / 'cam.sock'}"
    server = transport.bind(SocketType.REP, url)
    try:
        assert server.endpoint == url
        assert server.port == 0
        client = transport.connect(SocketType.REQ, url)
        try:
            exchange(server, client)
        finally:
            client.close()
    finally:
        server.close()


@pytest.mark.skipif(bool(ipv6_loopback_unavailable()), reason=ipv6_loopback_unavailable())
def test_bind_ipv6_loopback(transport: Transport) -> None:
    server = transport.bind(SocketType.REP, "tcp://[::1]:0")
    try:
        assert server.port > 0
        assert server.endpoint == f"tcp://[::1]:{server.port}"
        client = transport.connect(SocketType.REQ, server.endpoint)
        try:
            exchange(server, client)
        finally:
            client.close()
    finally:
        server.close()


def test_bind_inproc(transport: Transport) -> None:
    url = Transport.unique_inproc("test")
    assert url != Transport.unique_inproc("test")
    server = transport.bind(SocketType.REP, url)
    try:
        assert server.endpoint == url
        client = transport.connect(SocketType.REQ, url)
        try:
            exchange(server, client)
        finally:
            client.close()
    finally:
        server.close()


def test_sockets_get_the_settings(context: zmq.Context[Any]) -> None:
    settings = Settings(
        linger_ms=42,
        heartbeat_ivl_ms=700,
        heartbeat_timeout_ms=2100,
        reconnect_ivl_ms=50,
        reconnect_ivl_max_ms=800,
        limits=Limits(max_frame_bytes=12345),
    )
    transport = Transport(context, settings)
    tcp = transport.bind(SocketType.ROUTER, "tcp://127.0.0.1:0", sndhwm=77)
    inproc = transport.bind(SocketType.PAIR, Transport.unique_inproc("opts"))
    try:
        raw = tcp.fileno()
        assert raw.getsockopt(zmq.LINGER) == 42
        assert raw.getsockopt(zmq.MAXMSGSIZE) == 12345
        assert raw.getsockopt(zmq.HEARTBEAT_IVL) == 700
        assert raw.getsockopt(zmq.HEARTBEAT_TIMEOUT) == 2100
        assert raw.getsockopt(zmq.RECONNECT_IVL) == 50
        assert raw.getsockopt(zmq.RECONNECT_IVL_MAX) == 800
        assert raw.getsockopt(zmq.SNDHWM) == 77
        assert inproc.fileno().getsockopt(zmq.LINGER) == 42
        assert inproc.fileno().getsockopt(zmq.MAXMSGSIZE) == -1
    finally:
        tcp.close()
        inproc.close()


def test_oversized_frame_is_dropped_with_its_connection(context: zmq.Context[Any]) -> None:
    transport = Transport(context, Settings(limits=Limits(max_frame_bytes=100)))
    sink = transport.bind(SocketType.PULL, "tcp://127.0.0.1:0")
    source = context.socket(zmq.PUSH)
    source.linger = 0
    try:
        source.connect(sink.endpoint)
        source.send(b"x" * 1000)
        deadline = time.monotonic() + 10
        received = None
        while received is None and time.monotonic() < deadline:
            source.send(b"small", zmq.NOBLOCK)
            received = sink.recv(timeout_ms=100)
        assert received is not None, "the sink stopped receiving after an oversized frame"
        assert [bytes(frame) for frame in received] == [b"small"]
    finally:
        source.close()
        sink.close()


def test_peer_address(transport: Transport) -> None:
    sink = transport.bind(SocketType.PULL, "tcp://127.0.0.1:0")
    source = transport.connect(SocketType.PUSH, sink.endpoint)
    try:
        source.send([b"hello"])
        frames = sink.recv_frames(timeout_ms=5000)
        assert frames is not None
        assert Socket.peer_address(frames[0]) == "127.0.0.1"
    finally:
        source.close()
        sink.close()


def test_recv_timeout_returns_none(transport: Transport) -> None:
    sink = transport.bind(SocketType.PULL, "tcp://127.0.0.1:0")
    try:
        assert sink.recv() is None
        started = time.monotonic()
        assert sink.recv(timeout_ms=100) is None
        assert 0.09 <= time.monotonic() - started < 1
        assert not sink.poll(0)
    finally:
        sink.close()


def test_poller_returns_ready_sockets(transport: Transport) -> None:
    quiet = transport.bind(SocketType.PULL, "tcp://127.0.0.1:0")
    busy = transport.bind(SocketType.PULL, "tcp://127.0.0.1:0")
    source = transport.connect(SocketType.PUSH, busy.endpoint)
    poller = Poller()
    try:
        poller.register(quiet)
        poller.register(busy)
        assert poller.poll(0) == []
        source.send([b"x"])
        assert poller.poll(5000) == [busy]
        poller.unregister(busy)
        assert poller.poll(0) == []
    finally:
        source.close()
        quiet.close()
        busy.close()


def test_send_nowait_reports_a_full_queue(transport: Transport) -> None:
    dead = transport.connect(SocketType.PUSH, f"tcp://127.0.0.1:{free_tcp_port()}", sndhwm=1)
    try:
        results = [dead.send([b"x"], nowait=True) for _ in range(100)]
        assert results[0] is True
        assert results[-1] is False
    finally:
        dead.close()


# --------------------------------------------------------------------------- errors


def _assert_translated(exc: LabwireError) -> None:
    assert not isinstance(exc, zmq.ZMQError)
    assert isinstance(exc.__cause__, zmq.ZMQError)


def test_address_in_use(transport: Transport) -> None:
    first = transport.bind(SocketType.REP, "tcp://127.0.0.1:0")
    try:
        with pytest.raises(EndpointError, match="address already in use") as caught:
            transport.bind(SocketType.REP, first.endpoint)
        _assert_translated(caught.value)
    finally:
        first.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("tcp://192.0.2.1:0", "Cannot assign requested address"),
        ("tcp://no-such-host.invalid:0", "No such device"),
        ("tcp://127.0.0.1:1:2", "more than one ':'"),
        ("udp://127.0.0.1:0", "unsupported scheme"),
    ],
)
def test_bind_errors_are_endpoint_errors(transport: Transport, url: str, words: str) -> None:
    with pytest.raises(EndpointError, match=words):
        transport.bind(SocketType.REP, url)


def test_connect_errors_are_endpoint_errors(transport: Transport) -> None:
    with pytest.raises(EndpointError, match="port 0 or \\* can only be bound"):
        transport.connect(SocketType.REQ, "tcp://127.0.0.1:0")
    with pytest.raises(EndpointError, match="unknown socket option 'no_such_option'"):
        transport.connect(SocketType.REQ, "tcp://127.0.0.1:5555", no_such_option=1)
    with pytest.raises(EndpointError, match="unknown socket option"):
        transport.bind(SocketType.REP, "tcp://127.0.0.1:0", no_such_option=1)


def test_unroutable_message_is_unavailable(transport: Transport) -> None:
    router = transport.bind(SocketType.ROUTER, "tcp://127.0.0.1:0", router_mandatory=1)
    try:
        with pytest.raises(Unavailable, match="peer is not connected") as caught:
            router.send([b"nobody", b"", b"hello"])
        _assert_translated(caught.value)
    finally:
        router.close()


def test_wrong_state_is_a_transport_error(transport: Transport) -> None:
    server = transport.bind(SocketType.REP, "tcp://127.0.0.1:0")
    try:
        with pytest.raises(TransportError) as caught:
            server.send([b"reply before request"])
        _assert_translated(caught.value)
    finally:
        server.close()


def test_recv_head_then_tail_reads_a_message_part_by_part(transport: Transport) -> None:
    server = transport.bind(SocketType.PAIR, "tcp://127.0.0.1:0")
    client = transport.connect(SocketType.PAIR, server.endpoint)
    try:
        assert client.recv_head(timeout_ms=20) is None  # nothing yet: it waited, then gave up
        assert server.send([b"head", b"one", b"two"])
        assert client.recv_head(timeout_ms=5000) == b"head"
        assert [frame.bytes for frame in client.recv_tail()] == [b"one", b"two"]
        assert client.recv_tail() == []  # the message has ended
        assert server.send([b"alone"]) and server.send([b"next", b"part"])
        assert client.recv_head(timeout_ms=5000) == b"alone"
        assert client.recv_tail() == []
        received = client.recv(timeout_ms=5000)  # the next message starts where it should
        assert received is not None and [bytes(f) for f in received] == [b"next", b"part"]
    finally:
        client.close()
        server.close()


def test_request_sends_and_returns_the_replys_first_part(transport: Transport) -> None:
    server = transport.bind(SocketType.ROUTER, "tcp://127.0.0.1:0")
    client = transport.connect(SocketType.DEALER, server.endpoint)
    try:
        assert client.request(b"first", timeout_ms=20) is None  # sent; no reply in time
        received = server.recv_routed(timeout_ms=5000)
        assert received is not None
        identity, parts, _ = received
        assert [bytes(part) for part in parts] == [b"first"]
        assert server.send([identity, b"head", b"tail"])
        assert client.request(b"second", timeout_ms=5000) == b"head"
        assert [frame.bytes for frame in client.recv_tail()] == [b"tail"]
        received = server.recv_routed(timeout_ms=5000)
        assert received is not None and [bytes(part) for part in received[1]] == [b"second"]
        big = b"x" * (1 << 17)  # past the direct calls' size: sent the general way
        assert client.request(big, timeout_ms=20) is None
        received = server.recv_routed(timeout_ms=5000)
        assert received is not None and bytes(received[1][0]) == big
    finally:
        client.close()
        server.close()


@contextmanager
def _watching_pair(context: zmq.Context[Any], spin_us: int) -> Iterator[tuple[Socket, Socket]]:
    """A ROUTER and a DEALER connected to it that watches ``spin_us`` for replies."""
    transport = Transport(context, Settings(reply_spin_us=spin_us))
    server = transport.bind(SocketType.ROUTER, "tcp://127.0.0.1:0")
    client = transport.connect(SocketType.DEALER, server.endpoint)
    try:
        yield server, client
    finally:
        client.close()
        server.close()


def test_request_keeps_watching_while_replies_come_within_the_spin_time(
    context: zmq.Context[Any],
) -> None:
    with _watching_pair(context, 5_000_000) as (server, client):  # 5 s: every reply in time
        assert client.send([b"hello"])
        received = server.recv_routed(timeout_ms=5000)
        assert received is not None
        for _ in range(3):  # the replies are on their way before the requests
            assert server.send([received[0], b"ok"])
        for _ in range(3):
            assert client.spinning
            assert client.request(b"call", timeout_ms=5000) == b"ok"
        assert client.spinning


def test_request_stops_watching_for_a_while_after_a_reply_outlasts_the_spin_time(
    context: zmq.Context[Any],
) -> None:
    with _watching_pair(context, 1000) as (server, client):
        # A zero-copy send starts pyzmq's tracking thread, which does not stop the watching.
        assert client.send([bytes(1 << 17)])
        assert server.recv_routed(timeout_ms=5000) is not None
        assert client.spinning
        assert client.request(b"unanswered", timeout_ms=20) is None  # watched 1 ms in vain
        assert client.spinning  # one late reply is no reason to stop
        received = server.recv_routed(timeout_ms=5000)
        assert received is not None
        assert server.send([received[0], b"ok"])  # a reply in time (queued before the request)
        assert client.request(b"call", timeout_ms=5000) == b"ok"
        assert client.request(b"unanswered", timeout_ms=20) is None
        assert client.spinning  # not two in a row
        assert client.request(b"unanswered", timeout_ms=20) is None  # two in a row are
        assert not client.spinning, threading.enumerate()
        waits = []
        for _ in range(2):  # a few requests wait without watching, then it watches again
            waited = 0
            while not client.spinning:
                assert client.request(b"unanswered", timeout_ms=1) is None
                waited += 1
                assert waited < 1000
            waits.append(waited)
            assert client.request(b"unanswered", timeout_ms=1) is None  # in vain once more
        assert 1 < waits[0] < waits[1]  # a second miss in a row: a longer pause


def test_request_does_not_watch_while_another_python_thread_runs(
    context: zmq.Context[Any],
) -> None:
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        with _watching_pair(context, 1000) as (_, client):
            for _ in range(2):  # two late replies in a row would stop a watching socket
                assert client.request(b"unanswered", timeout_ms=20) is None
            assert client.spinning  # it never watched, so no reply outlasted a watch
    finally:
        release.set()
        other.join()


def test_reply_watching_is_a_setting_and_off_on_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env({"LABWIRE_REPLY_SPIN_US": "0"}).reply_spin_us == 0
    assert Settings.from_env({"LABWIRE_REPLY_SPIN_US": "250"}).reply_spin_us == 250
    with pytest.raises(ConfigurationError, match="LABWIRE_REPLY_SPIN_US"):
        Settings.from_env({"LABWIRE_REPLY_SPIN_US": "fast"})
    with pytest.raises(ConfigurationError, match="reply_spin_us"):
        Settings(reply_spin_us=-1)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert Settings().reply_spin_us == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert Settings().reply_spin_us > 0


def test_request_that_cannot_be_queued_is_false(transport: Transport) -> None:
    dead = transport.connect(
        SocketType.DEALER, f"tcp://127.0.0.1:{free_tcp_port()}", immediate=1
    )  # no peer, and no queue before one connects
    try:
        assert dead.request(b"x", timeout_ms=20) is False
    finally:
        dead.close()


def test_closed_socket_raises_closed_error(transport: Transport) -> None:
    sock = transport.bind(SocketType.PAIR, "tcp://127.0.0.1:0")
    sock.close()
    sock.close()
    assert sock.closed
    with pytest.raises(ClosedError):
        sock.send([b"x"])
    with pytest.raises(ClosedError):
        sock.recv()
    with pytest.raises(ClosedError):
        sock.recv(timeout_ms=10)
    with pytest.raises(ClosedError):
        sock.recv_head(timeout_ms=10)
    with pytest.raises(ClosedError):
        sock.request(b"x", timeout_ms=10)
    with pytest.raises(ClosedError):
        sock.recv_tail()
    with pytest.raises(ClosedError):
        sock.poll(10)


def test_terminated_context_raises_closed_error(context: zmq.Context[Any]) -> None:
    transport = Transport(context, SETTINGS)
    sock = transport.bind(SocketType.PULL, "tcp://127.0.0.1:0")
    outcome: list[BaseException] = []
    started = threading.Event()

    def block() -> None:
        started.set()
        try:
            sock.recv(timeout_ms=None)
        except LabwireError as exc:
            outcome.append(exc)
        finally:
            sock.close()

    reader = threading.Thread(target=block, name="blocked-reader")
    reader.start()
    started.wait(5)
    terminator = threading.Thread(target=context.term, name="terminator")
    terminator.start()
    reader.join(5)
    terminator.join(5)
    assert not reader.is_alive()
    assert not terminator.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClosedError)
    assert "terminated" in str(outcome[0])


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (zmq.ETERM, ClosedError),
        (zmq.ENOTSOCK, ClosedError),
        (zmq.EADDRINUSE, EndpointError),
        (zmq.EINVAL, EndpointError),
        (zmq.EPROTONOSUPPORT, EndpointError),
        (errno.ENODEV, EndpointError),
        (zmq.EADDRNOTAVAIL, EndpointError),
        (zmq.EHOSTUNREACH, Unavailable),
        (zmq.EFSM, TransportError),
        (zmq.ENOTSUP, TransportError),
        (zmq.EMTHREAD, TransportError),
    ],
)
def test_translate_errors_table(code: int, error: type[LabwireError]) -> None:
    with pytest.raises(error, match="doing it") as caught, translate_errors("doing it"):
        raise zmq.ZMQError(code)
    assert type(caught.value) is error
    _assert_translated(caught.value)


def test_translate_errors_lets_other_errors_through() -> None:
    with pytest.raises(KeyError), translate_errors("doing it"):
        raise KeyError("x")


# --------------------------------------------------------------------------- prompt close


@pytest.mark.parametrize("kind", [SocketType.DEALER, SocketType.PUSH, SocketType.REQ])
def test_close_with_pending_message_to_never_started_peer(kind: SocketType) -> None:
    """RELIABILITY row L1: close + context term within 1 s whatever the peer state."""
    context: zmq.Context[Any] = zmq.Context()
    transport = Transport(context, SETTINGS)
    sock = transport.connect(kind, f"tcp://127.0.0.1:{free_tcp_port()}")
    assert sock.send([b"pending", b"x" * 100_000], nowait=True)
    started = time.monotonic()
    sock.close()
    context.term()
    assert time.monotonic() - started < 1.0


def test_close_with_many_pending_messages_and_unresponsive_peer() -> None:
    """A peer that accepted the TCP connection but never reads must not hold close() up."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        context: zmq.Context[Any] = zmq.Context()
        transport = Transport(context, SETTINGS)
        sock = transport.connect(SocketType.DEALER, f"tcp://127.0.0.1:{port}")
        queued = sum(sock.send([b"x" * 10_000], nowait=True) for _ in range(200))
        assert queued > 0
        started = time.monotonic()
        sock.close()
        context.term()
        assert time.monotonic() - started < 1.0
