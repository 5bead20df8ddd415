"""labwire.transport._direct: the direct libzmq calls behind Socket's small-message paths.

Socket's own behaviour is tested over both paths (tests/transport/test_sockets.py runs each test
with and without these calls); these tests pin the module's contract on real sockets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from labwire.transport import sockets

pytestmark = pytest.mark.timeout(30)

_direct: Any = sockets._DIRECT


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[Any], zmq.Socket[Any]]]:
    """A ROUTER bound on TCP loopback and a DEALER connected to it."""
    context: zmq.Context[Any] = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.rcvtimeo = 5000
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.rcvtimeo = 5000
    dealer.connect(f"tcp://127.0.0.1:{port}")
    yield router, dealer
    router.close()
    dealer.close()
    context.term()


def test_the_calls_are_built_and_bound() -> None:
    assert _direct is not None, "labwire.transport._direct is missing: install with a C compiler"


def test_recv_routed_reads_the_id_the_first_part_more_and_the_address(pair: Any) -> None:
    router, dealer = pair
    assert _direct.send(dealer, [b"first", b"second"], 0, 1 << 16) is True
    identity, first, more, address = _direct.recv_routed(router, 0)
    assert (first, more, address) == (b"first", True, "127.0.0.1")
    assert identity and _direct.rcvmore(router) is True
    assert _direct.recv(router, 0) == b"second"
    assert _direct.rcvmore(router) is False
    assert _direct.send(router, (identity, b"reply"), 0, 1 << 16) is True
    assert _direct.recv(dealer, 0) == b"reply"
    assert _direct.rcvmore(dealer) is False


def test_nothing_waiting_is_none(pair: Any) -> None:
    router, dealer = pair
    assert _direct.recv(dealer, zmq.NOBLOCK) is None
    assert _direct.recv_routed(router, zmq.NOBLOCK) is None


def test_a_message_that_cannot_be_queued_is_false() -> None:
    context: zmq.Context[Any] = zmq.Context()
    dealer = context.socket(zmq.DEALER)  # no peer at all: nothing can be queued
    dealer.linger = 0
    try:
        assert _direct.send(dealer, [b"x"], zmq.NOBLOCK, 1 << 16) is False
    finally:
        dealer.close()
        context.term()


@pytest.mark.parametrize(
    "parts",
    [
        [memoryview(b"x")],
        [bytearray(b"x")],
        [b"ok", memoryview(b"x")],
        [b"x" * (1 << 16)],
        [],
        iter([b"x"]),
    ],
    ids=["memoryview", "bytearray", "mixed", "large", "empty", "iterator"],
)
def test_send_declines_all_but_small_bytes_and_sends_nothing(pair: Any, parts: Any) -> None:
    router, dealer = pair
    assert _direct.send(dealer, parts, 0, 1 << 16) is NotImplemented
    assert _direct.recv_routed(router, zmq.NOBLOCK) is None


def test_request_sends_then_returns_the_first_part_of_the_reply(pair: Any) -> None:
    router, dealer = pair
    dealer.rcvtimeo = 200
    assert _direct.request(dealer, b"ask", 1 << 16) is None  # sent; no reply in time
    identity, first, more, _ = _direct.recv_routed(router, 0)
    assert (first, more) == (b"ask", False)
    assert _direct.send(router, (identity, b"head", b"tail"), 0, 1 << 16) is True
    assert _direct.request(dealer, b"again", 1 << 16) == b"head"
    assert _direct.rcvmore(dealer) is True and _direct.recv(dealer, 0) == b"tail"
    assert _direct.recv_routed(router, 0)[1] == b"again"


def test_request_that_cannot_be_queued_is_false_and_odd_parts_are_declined(pair: Any) -> None:
    router, dealer = pair
    for part in (memoryview(b"x"), bytearray(b"x"), b"x" * (1 << 16), [b"x"]):
        assert _direct.request(dealer, part, 1 << 16) is NotImplemented
    assert _direct.recv_routed(router, zmq.NOBLOCK) is None  # nothing was sent
    context: zmq.Context[Any] = zmq.Context()
    lonely = context.socket(zmq.DEALER)  # no peer at all: nothing can be queued
    lonely.linger = 0
    try:
        assert _direct.request(lonely, b"x", 1 << 16) is False
    finally:
        lonely.close()
        context.term()


def test_closed_socket_raises_pyzmqs_error(pair: Any) -> None:
    _, dealer = pair
    dealer.close()
    for operation in (
        lambda: _direct.recv(dealer, 0),
        lambda: _direct.rcvmore(dealer),
        lambda: _direct.send(dealer, [b"x"], 0, 1 << 16),
        lambda: _direct.request(dealer, b"x", 1 << 16),
    ):
        with pytest.raises(zmq.ZMQError) as caught:
            operation()
        assert caught.value.errno == zmq.ENOTSOCK


def test_wrong_state_raises_pyzmqs_error() -> None:
    context: zmq.Context[Any] = zmq.Context()
    req = context.socket(zmq.REQ)
    req.linger = 0
    try:
        with pytest.raises(zmq.ZMQError) as caught:
            _direct.recv(req, zmq.NOBLOCK)  # a REQ must send first
        assert caught.value.errno == zmq.EFSM
    finally:
        req.close()
        context.term()


def test_a_blocked_receive_runs_python_signal_handlers(pair: Any) -> None:
    router, _ = pair
    router.rcvtimeo = -1  # wait forever: only the signal handler can end it

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        with pytest.raises(Interrupted):
            _direct.recv_routed(router, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_wrong_arguments_are_type_errors(pair: Any) -> None:
    router, _ = pair
    with pytest.raises(TypeError, match="takes 2 arguments"):
        _direct.recv(router)
    with pytest.raises(TypeError):
        _direct.recv(router, "flags")
    with pytest.raises(TypeError, match="takes 4 arguments"):
        _direct.send(router, [b"x"], 0)
    with pytest.raises(TypeError, match="takes 3 arguments"):
        _direct.request(router, b"x")


def test_labwire_direct_0_turns_the_calls_off() -> None:
    code = "from labwire.transport import sockets; print(sockets._DIRECT is None)"
    for value, off in (("0", "True"), ("1", "False")):
        env = {**os.environ, "LABWIRE_DIRECT": value}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == off
