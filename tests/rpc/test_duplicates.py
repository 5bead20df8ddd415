"""A request sent again (same client id and request id) is never executed twice.

A raw DEALER resends labwire's own compact calls, byte for byte, to a real server: once the
first has been answered, the copy gets the same reply from the server's table; while the first
is still running (on a runner that handed the socket over), the copy is refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import zmq

from labwire.wire.rpc import encode_call
from tests.rpc.conftest import wait_for
from tests.rpc.devices import Camera

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def dealer(camera: Camera) -> Iterator[zmq.Socket[Any]]:
    context = zmq.Context.instance()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 5000)
    socket.connect(camera.endpoint)
    yield socket
    socket.close()


def call(camera: Camera, method: str, args: list[Any], rid: int) -> bytes:
    """labwire's compact request for ``method(*args)``, as a client of ``camera`` writes it."""
    frame = encode_call(
        method, args, {}, "d0d0", rid, 5000, time.monotonic() + 5, camera._server_id
    )
    assert frame is not None
    return frame


def reply(socket: zmq.Socket[Any]) -> Any:
    return msgspec.json.decode(socket.recv())


def test_a_resent_call_gets_the_first_reply_without_running_again(
    camera: Camera, dealer: zmq.Socket[Any]
) -> None:
    request = call(camera, "add", [2, 3], rid=1)
    dealer.send(request)
    first = reply(dealer)
    dealer.send(request)
    assert reply(dealer) == first
    assert first[0] == 1 and first[2] == 5
    assert camera._executed == 1
    assert camera.stats.duplicates == 1
    dealer.send(call(camera, "add", [2, 3], rid=2))  # a new request id runs again
    assert reply(dealer)[2] == 5
    assert camera._executed == 2


def test_a_call_resent_while_it_runs_is_refused_not_run_twice(
    camera: Camera, dealer: zmq.Socket[Any]
) -> None:
    request = call(camera, "sleep", [0.5], rid=7)
    dealer.send(request)
    wait_for(lambda: camera._executed == 1)
    # The watchdog hands the socket to another runner, marking the call as running.
    wait_for(lambda: ("d0d0", 7) in camera._answered)
    dealer.send(request)
    refusal = reply(dealer)
    assert refusal["success"] is False
    assert "already executed" in refusal["error"]
    assert refusal["lw"]["rid"] == 7 and refusal["lw"]["code"] == "bad_request"
    answer = reply(dealer)  # the first call's own reply, once it has slept
    assert answer[0] == 7 and answer[2] == 0.5
    assert camera._executed == 1
    dealer.send(request)  # and now the table holds its reply
    assert reply(dealer) == answer
    assert camera._executed == 1
