"""Wire compatibility with the deployed plant-imaging peers, in both directions.

The deployed side is played by ``tests/legacy.py``, an independent implementation of
WIRE-COMPAT.md (plain pyzmq and ``json``, no labwire): a labwire client drives a lock-step
legacy server, and a legacy REQ client (with a legacy subscriber) drives a labwire server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from labwire.errors import CallTimeout, RemoteError
from labwire.rpc import AsyncRPCClient, NoResult, RPCClient, RPCSignal
from tests.legacy import (
    LegacyRemoteError,
    LegacyRPCClient,
    LegacyRPCServer,
    LegacySignalSubscriber,
)
from tests.rpc.conftest import wait_for
from tests.rpc.devices import Camera

pytestmark = pytest.mark.timeout(60)

SLACK = 0.25


class LegacyCameraInterface:
    """The legacy camera of ``tests/legacy.py``, as a labwire interface."""

    modeChanged = RPCSignal(str)
    frameReady = RPCSignal(int)

    def add(self, a: Any, b: Any) -> Any: ...

    def echo(self, x: Any) -> Any: ...

    def sleep(self, seconds: float) -> float: ...

    def fail(self) -> None: ...

    def get_image(self, lores: bool = False) -> Any: ...

    @property
    def mode(self) -> str: ...

    @property
    def exposure_ms(self) -> float: ...


@RPCClient.register_interface(LegacyCameraInterface)
class LegacyCameraClient(LegacyCameraInterface, RPCClient):
    """A labwire client for the legacy camera."""


@pytest.fixture
def legacy_server() -> Iterator[LegacyRPCServer]:
    with LegacyRPCServer() as server:
        yield server


@pytest.fixture
def legacy_camera(legacy_server: LegacyRPCServer) -> Iterator[LegacyCameraClient]:
    with LegacyCameraClient(None, legacy_server.endpoint) as proxy:
        yield proxy


def legacy_image(lores: bool) -> bytes:
    """The pixels the legacy camera returns (its documented deterministic pattern)."""
    rows, cols = (12, 16) if lores else (48, 64)
    return bytes(i % 251 for i in range(rows * cols))


# --------------------------------------------------------------------------- (a) labwire client


def test_labwire_client_reads_a_deployed_inventory(
    legacy_server: LegacyRPCServer, legacy_camera: LegacyCameraClient
) -> None:
    assert not legacy_camera.is_labwire_server
    assert legacy_camera.server_id == ""
    inventory = legacy_camera.inventory()
    assert inventory["json_methods"] == dict(LegacyRPCServer.JSON_METHODS)
    assert inventory["buffer_methods"] == {"get_image": 5000}
    assert inventory["properties"] == ["mode", "exposure_ms"]
    assert inventory["signals"] == ["modeChanged", "frameReady"]
    assert [request["event"] for request in legacy_server.requests] == ["GET_INVENTORY"]


def test_labwire_client_calls_json_and_buffer_methods_of_a_deployed_server(
    legacy_server: LegacyRPCServer, legacy_camera: LegacyCameraClient
) -> None:
    assert legacy_camera.add(2, 3) == 5
    assert legacy_camera.add(a="x", b="y") == "xy"
    assert legacy_camera.echo({"nested": [1, 2.5, None, True]}) == {"nested": [1, 2.5, None, True]}
    assert legacy_camera.execute("add", {"args": [1, 1]}) == (2, None)

    buffer, info = legacy_camera.get_image(lores=True)
    assert isinstance(buffer, memoryview)
    assert bytes(buffer) == legacy_image(lores=True)
    assert info == {"dtype": "uint8", "shape": [12, 16], "lores": True}
    buffer, info = legacy_camera.get_image()
    assert bytes(buffer) == legacy_image(lores=False) and info["shape"] == [48, 64]

    with pytest.raises(TypeError, match="labwire servers"):
        legacy_camera.echo(b"raw bytes need a labwire server")
    assert legacy_server.executed == ["add", "add", "echo", "add", "get_image", "get_image"]


def test_deployed_remote_error_is_a_falsy_noresult(
    legacy_server: LegacyRPCServer, legacy_camera: LegacyCameraClient
) -> None:
    result = legacy_camera.fail()
    assert isinstance(result, NoResult) and not result
    assert result.error == "legacy failure"
    assert "RuntimeError: legacy failure" in result.traceback
    failure, info = legacy_camera.execute("nope", {})
    assert isinstance(failure, NoResult) and "no method 'nope'" in failure.error
    assert info is None
    assert legacy_camera.add(1, 1) == 2


def test_labwire_client_reads_and_writes_deployed_properties(
    legacy_server: LegacyRPCServer, legacy_camera: LegacyCameraClient
) -> None:
    assert legacy_camera.mode == "idle"
    legacy_camera.mode = "preview"
    assert legacy_camera.mode == "preview" == legacy_server.mode
    legacy_camera.exposure_ms = 25
    assert legacy_camera.exposure_ms == 25.0
    with pytest.raises(RemoteError, match="mode must be one of"):
        legacy_camera.mode = "infrared"
    assert legacy_camera.get_properties() == {"mode": "preview", "exposure_ms": 25.0}


def test_labwire_client_receives_signals_from_a_deployed_publisher(
    legacy_server: LegacyRPCServer, legacy_camera: LegacyCameraClient
) -> None:
    modes: list[str] = []
    frames: list[int] = []
    legacy_camera.modeChanged.connect(modes.append)
    legacy_camera.frameReady.connect(frames.append)
    toggle = iter(["preview", "idle"] * 100)

    def received() -> bool:  # subscriptions travel asynchronously: emit until one arrives
        legacy_camera.mode = next(toggle)
        time.sleep(0.02)
        return bool(modes)

    wait_for(received)
    modes.clear()
    legacy_camera.mode = "capture"
    legacy_camera.get_image(lores=True)
    legacy_camera.get_image(lores=True)
    wait_for(lambda: modes == ["capture"] and len(frames) == 2)
    assert frames[1] == frames[0] + 1 == legacy_server.frames_taken
    stats = legacy_camera.signal_stats()
    assert stats["gaps"] == stats["restarts"] == stats["stale"] == 0  # unsequenced: no verdicts


def test_lazy_pirate_after_a_timeout_on_a_lock_step_server(
    legacy_server: LegacyRPCServer, legacy_camera: LegacyCameraClient
) -> None:
    for round_ in range(2):
        start = time.monotonic()
        with legacy_camera.override_timeout(300), pytest.raises(CallTimeout):
            legacy_camera.sleep(0.6)
        assert 0.3 <= time.monotonic() - start <= 0.3 + SLACK
        # The server is still asleep: this call waits for it, then gets its own reply and
        # never the late one (the socket that would have received it was dropped).
        assert legacy_camera.add(round_, 10) == round_ + 10
        assert legacy_camera.echo("own reply") == "own reply"
    assert legacy_camera.late_replies == 0
    assert legacy_server.executed == ["sleep", "add", "echo"] * 2


def test_asyncio_client_calls_a_deployed_server_and_recovers_after_a_timeout(
    legacy_server: LegacyRPCServer,
) -> None:
    async def main() -> None:
        async with AsyncRPCClient(None, legacy_server.endpoint) as client:
            assert not client.is_labwire_server
            assert await client.call("add", 2, 3) == 5
            assert await client.get_property("mode") == "idle"
            results = await asyncio.gather(*(client.call("echo", i) for i in range(5)))
            assert results == list(range(5))  # one at a time, each its own reply
            start = time.monotonic()
            with client.override_timeout(300), pytest.raises(CallTimeout):
                await client.call("sleep", 0.6)
            assert 0.3 <= time.monotonic() - start <= 0.3 + SLACK
            # Lazy Pirate: a new socket, so the late reply never answers this call.
            assert await client.call("echo", "own reply") == "own reply"
            assert client.late_replies == 0

    asyncio.run(main())


def test_method_declared_without_timeout_gets_the_client_deadline(
    legacy_server: LegacyRPCServer,
) -> None:
    """A deployed server cannot be pinged, so "no timeout" must not mean "wait forever"."""
    with LegacyCameraClient(None, legacy_server.endpoint, timeout=300) as proxy:
        assert proxy.inventory()["json_methods"]["add"] is None
        blocker = LegacyRPCClient(legacy_server.endpoint, timeout=5)
        busy = threading.Thread(target=blocker.call, args=("sleep", 0.8), daemon=True)
        try:
            busy.start()
            wait_for(lambda: "sleep" in legacy_server.executed)
            start = time.monotonic()
            with pytest.raises(CallTimeout):
                proxy.add(1, 1)
            assert time.monotonic() - start <= 0.3 + SLACK
            busy.join(5)
        finally:
            blocker.close()
        assert proxy.add(1, 1) == 2


def test_labwire_client_stops_a_deployed_server() -> None:
    server = LegacyRPCServer(name="cam-1")
    server.start()
    try:
        with LegacyCameraClient(None, server.endpoint) as proxy:
            assert proxy.name == "cam-1"
            assert proxy.add(1, 2) == 3
            assert proxy.stop_server() is True
        assert server.requests[-1]["event"] == "STOP_SERVER"
        wait_for(lambda: _refuses_connections(server.port))
    finally:
        server.stop()


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:  # accepted while the listener closes: not refusing yet
        return False
    return False


# --------------------------------------------------------------------------- (b) legacy client


@pytest.fixture
def legacy_client(camera: Camera) -> Iterator[LegacyRPCClient]:
    with LegacyRPCClient(camera.endpoint, timeout=2) as client:
        yield client


def _frames(client: LegacyRPCClient, event: str, **fields: Any) -> list[bytes]:
    return client.request({"event": event, **fields})


def _method(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"method": name, "params": {"args": list(args), "kwargs": kwargs}}


def test_deployed_client_gets_the_documented_inventory(legacy_client: LegacyRPCClient) -> None:
    frames = _frames(legacy_client, "GET_INVENTORY")
    assert len(frames) == 1
    inventory = json.loads(frames[0])
    assert set(inventory) == {"json_methods", "buffer_methods", "signals", "properties", "name"}
    assert inventory["json_methods"]["add"] == 2000
    assert inventory["json_methods"]["sleep"] == 500
    assert inventory["json_methods"]["echo"] == 10000
    assert "get_image" not in inventory["json_methods"]
    assert inventory["buffer_methods"] == {"get_image": 5000}
    assert set(inventory["signals"]) == {
        "modeChanged",
        "counterChanged",
        "pointsChanged",
        "blobReady",
    }
    assert sorted(inventory["properties"]) == ["counter", "mode"]
    assert inventory["name"] == ""


def test_deployed_client_calls_json_and_buffer_methods(
    camera: Camera, legacy_client: LegacyRPCClient
) -> None:
    reply = _frames(legacy_client, "METHOD_CALL", **_method("add", 2, b=5))
    assert len(reply) == 1 and json.loads(reply[0]) == {"success": True, "result": 7}
    assert legacy_client.call("echo", {"k": [1, "x", None]}) == {"k": [1, "x", None]}

    reply = _frames(legacy_client, "METHOD_CALL", **_method("get_image", lores=True))
    assert len(reply) == 2  # exactly two frames: json(buffer_info), raw bytes
    assert json.loads(reply[0]) == {"format": "raw", "size": 4096, "lores": True}
    assert reply[1] == bytes(range(256)) * 16
    info, data = legacy_client.call("get_image")
    assert info["size"] == len(data) == 256 * 64
    assert camera.executed() == 4


def test_deployed_client_gets_error_objects(camera: Camera, legacy_client: LegacyRPCClient) -> None:
    for fields, message in [
        (_method("fail", "broken lens"), "broken lens"),
        (_method("nope"), "method 'nope' not implemented: no method named 'nope'"),
        (_method("_count"), "is private"),
        (_method("get_image", bogus=True), "unexpected keyword argument 'bogus'"),
        ({"property": "counter", "value": 3}, "read-only"),
    ]:
        event = "PROPERTY_SET" if "property" in fields else "METHOD_CALL"
        reply = _frames(legacy_client, event, **fields)
        assert len(reply) == 1, fields  # one frame, even for a buffer method
        error = json.loads(reply[0])
        assert set(error) == {"success", "error", "traceback"}
        assert error["success"] is False
        assert message in error["error"]
    with pytest.raises(LegacyRemoteError) as info:
        legacy_client.call("fail", "broken lens")
    assert "raise ValueError(message)" in info.value.traceback
    assert camera.executed() == 2  # only the two calls of fail() ran


def test_deployed_client_reads_and_writes_properties(
    camera: Camera, legacy_client: LegacyRPCClient
) -> None:
    reply = _frames(legacy_client, "PROPERTY_GET", property="mode")
    assert json.loads(reply[0]) == {"success": True, "value": "STILL"}
    reply = _frames(legacy_client, "PROPERTY_SET", property="mode", value="VIDEO")
    assert json.loads(reply[0]) == {"success": True}
    assert legacy_client.get_property("mode") == "VIDEO" == camera.mode
    with pytest.raises(LegacyRemoteError, match="unknown mode"):
        legacy_client.set_property("mode", "INFRARED")
    assert legacy_client.get_property("counter") == 0


def test_deployed_subscriber_receives_one_frame_signals(
    camera: Camera, legacy_client: LegacyRPCClient
) -> None:
    reply = json.loads(_frames(legacy_client, "INIT_SIGNALS_HANDLING")[0])
    assert set(reply) == {"success", "signal_port"} and reply["success"] is True
    with LegacySignalSubscriber(f"tcp://127.0.0.1:{reply['signal_port']}") as subscriber:

        def toggle_mode() -> str:  # "mode" notifies only when its value changes
            mode = "VIDEO" if legacy_client.get_property("mode") == "STILL" else "STILL"
            legacy_client.set_property("mode", mode)
            return mode

        def received() -> Any:  # subscriptions travel asynchronously: emit until one arrives
            toggle_mode()
            return subscriber.recv(0.02)

        wait_for(received)
        while subscriber.recv(0.05) is not None:  # the rest of the probing
            pass
        mode = toggle_mode()
        message = subscriber.recv(2)
        assert message is not None
        assert message["args"] == [mode]
        assert subscriber._sub.get(zmq.RCVMORE) == 0  # one frame per emission
        assert message["event"] == "EMIT_SIGNAL"
        assert message["signal"] == "modeChanged"
        assert message["blocking"] is False

        legacy_client.call("emit_many", 3)
        counters = []
        while len(counters) < 3:
            message = subscriber.recv(2)
            assert message is not None, counters
            if message["signal"] == "counterChanged":
                counters.append(message["args"][0])
        assert counters == [1, 2, 3]


def test_deployed_client_stops_a_labwire_server(
    camera: Camera, legacy_client: LegacyRPCClient
) -> None:
    assert legacy_client.call("add", 1) == 2
    legacy_client.stop_server()
    assert camera.wait_stopped(2)
