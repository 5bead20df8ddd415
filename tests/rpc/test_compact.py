"""One request path: plain calls travel as one compact frame each way, the rest as frames.

Whatever a call carries (scalars, dicts, lists, strings, keyword arguments, buffers, numpy
arrays), the server runs it through the same checks and handler; only the layout differs.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from labwire.rpc import NoResult, RPCClient
from labwire.wire.limits import Limits
from labwire.wire.rpc import (
    NOT_PLAIN,
    CompactCall,
    decode_compact,
    decode_plain_reply,
    encode_call,
)
from tests.rpc.devices import Camera, CameraClient

pytestmark = pytest.mark.timeout(30)

LIMITS = Limits()


@pytest.fixture
def entered(camera: Camera) -> Iterator[list[Any]]:
    """The requests the server received, each as its list of parts."""
    seen: list[Any] = []
    pool = camera._pool
    receive = pool._handle

    def recording(identity: bytes, parts: list[Any], origin: Any) -> None:
        seen.append(parts)
        receive(identity, parts, origin)

    pool._handle = recording
    yield seen
    pool._handle = receive


PLAIN = [
    1,
    {"a": 1, "b": "text"},
    [float(i) / 3 for i in range(100)],
    "x" * 1000,
    [1, {"nested": [True, None, -(2**62)]}],
    (1, 2),  # a tuple arrives as a list, as JSON carries it
]


def test_plain_calls_are_one_compact_frame(client: CameraClient, entered: list[Any]) -> None:
    for value in PLAIN:
        expected = list(value) if isinstance(value, tuple) else value
        assert client.echo(value) == expected
    assert client.add(1, b=5) == 6
    assert len(entered) == len(PLAIN) + 1
    for parts in entered:
        assert len(parts) == 1
        assert type(decode_compact(bytes(parts[0]), LIMITS)) is CompactCall


def test_a_plain_result_comes_back_as_one_compact_frame(camera: Camera) -> None:
    context = zmq.Context()
    try:
        with context.socket(zmq.DEALER) as dealer:
            dealer.connect(camera.endpoint)
            with CameraClient(None, camera.endpoint) as client:
                server_id = client.server_id
            value = {"a": [1, 2.5, "three"], "b": {"c": None}}
            frame = encode_call(
                "echo", [value], {}, "raw-dealer", 7, 5000, time.monotonic() + 5, server_id
            )
            assert frame is not None
            dealer.send(frame)
            assert dealer.poll(5000)
            reply = dealer.recv_multipart()
            assert len(reply) == 1
            assert decode_plain_reply(reply[0], 7, server_id, LIMITS) == value
            assert decode_plain_reply(reply[0], 8, server_id, LIMITS) is NOT_PLAIN
    finally:
        context.term()


@pytest.mark.parametrize(
    "value",
    [b"\x00\x01", {"image": memoryview(b"abc")}, [1.0, math.nan], {1: "not a str key"}],
    ids=["bytes", "buffer-in-dict", "nan-in-list", "int-key"],
)
def test_what_json_cannot_carry_as_it_is_is_not_compact(value: Any) -> None:
    assert encode_call("echo", [value], {}, "c", 1, 1000, 1.0, "s") is None


def test_calls_that_need_frames_take_the_same_path(
    client: CameraClient, entered: list[Any]
) -> None:
    assert client.sum_buffer(b"\x01\x02\x03") == 6  # a buffer argument: a frame of its own
    array = client.make_array(2, 3)  # a numpy result: the general reply layout
    assert isinstance(array, np.ndarray) and array.shape == (2, 3)
    failed = client.fail("broken lens")
    assert isinstance(failed, NoResult) and failed.error_type == "ValueError"
    unsent = client.unserialisable()
    assert isinstance(unsent, NoResult) and "cannot be sent" in unsent.error
    assert client.echo({"after": "all that"}) == {"after": "all that"}
    assert [len(parts) for parts in entered] == [2, 1, 1, 1, 1]


def test_buffer_arguments_follow_a_compact_call_as_frames(
    client: CameraClient, entered: list[Any]
) -> None:
    assert client.sum_buffer(b"\x01\x02\x03") == 6
    assert client.call("sum_buffer", data=np.arange(4, dtype=np.uint8)) == 6
    assert client.call("sum_buffer", memoryview(bytearray(b"\x05" * 100_000))) == 500_000
    assert [len(parts) for parts in entered] == [2, 2, 2]
    for parts in entered:
        assert type(decode_compact(bytes(parts[0]), LIMITS, parts[1:])) is CompactCall


@pytest.mark.parametrize("version", [1, 2])
def test_buffer_arguments_go_compact_only_to_servers_that_read_them(version: int) -> None:
    """A server of protocol version 1 refuses a compact call with frames: it gets objects."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    received: list[list[bytes]] = []

    def serve() -> None:  # an older labwire server, as the protocol describes it
        for _ in range(2):
            identity, *parts = router.recv_multipart()
            envelope = parts[:1] if parts[0] == b"" else []
            body = parts[len(envelope) :]
            received.append(body)
            head = json.loads(body[0])
            rid = head[5] if isinstance(head, list) else head["lw"]["rid"]
            reply = {"success": True, "lw": {"v": version, "rid": rid, "sid": "old"}}
            if isinstance(head, dict) and head["event"] == "GET_INVENTORY":
                reply |= {"json_methods": {"take": 2000}, "buffer_methods": {}, "name": "old"}
            else:
                reply |= {"result": len(body[-1])}
            router.send_multipart([identity, *envelope, json.dumps(reply).encode()])

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with RPCClient(context, f"tcp://127.0.0.1:{port}", timeout=5000) as client:
            assert client.call("take", b"x" * 100) == 100
        server.join(5)
        call = received[-1]
        assert len(call) == 2 and call[1] == b"x" * 100
        assert call[0].startswith(b"[" if version >= 2 else b"{"), call[0]
    finally:
        router.close(0)
        context.term()
