"""The legacy peer follows WIRE-COMPAT.md: its client against its server, its helpers against
its registry, and its command line. Compatibility tests rest on these checks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.legacy import (
    ALIVE_TIMEOUT,
    LegacyRegistry,
    LegacyRemoteError,
    LegacyRPCClient,
    LegacyRPCServer,
    LegacySignalSubscriber,
    legacy_check_alive,
    legacy_register,
    legacy_unregister,
)

pytestmark = pytest.mark.timeout(30)

LEGACY = Path(__file__).with_name("legacy.py")


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.term()


@pytest.fixture
def server(context: zmq.Context[Any]) -> Iterator[LegacyRPCServer]:
    with LegacyRPCServer(name="cam-1", context=context) as running:
        yield running


@pytest.fixture
def client(server: LegacyRPCServer, context: zmq.Context[Any]) -> Iterator[LegacyRPCClient]:
    with LegacyRPCClient(server.endpoint, timeout=5, context=context) as legacy_client:
        yield legacy_client


@pytest.fixture
def registry(context: zmq.Context[Any]) -> Iterator[LegacyRegistry]:
    with LegacyRegistry(context=context) as running:
        yield running


def _raw_exchange(client: LegacyRPCClient, message: dict[str, Any]) -> list[Any]:
    return [
        json.loads(frame) if i == 0 else frame for i, frame in enumerate(client.request(message))
    ]


# --------------------------------------------------------------------------- RPC


def test_server_reports_real_endpoint(server: LegacyRPCServer) -> None:
    assert server.endpoint == f"tcp://127.0.0.1:{server.port}"
    assert server.port > 0
    assert server.signal_port > 0
    assert server.signal_port != server.port


def test_inventory_has_exactly_the_documented_fields(client: LegacyRPCClient) -> None:
    [reply] = _raw_exchange(client, {"event": "GET_INVENTORY"})
    assert set(reply) == {"json_methods", "buffer_methods", "signals", "properties", "name"}
    assert reply["json_methods"] == {"add": None, "echo": None, "sleep": 60000, "fail": None}
    assert reply["buffer_methods"] == {"get_image": 5000}
    assert reply["signals"] == ["modeChanged", "frameReady"]
    assert reply["properties"] == ["mode", "exposure_ms"]
    assert reply["name"] == "cam-1"


def test_json_method_reply(client: LegacyRPCClient) -> None:
    message = {"event": "METHOD_CALL", "method": "add", "params": {"args": [2, 3], "kwargs": {}}}
    assert _raw_exchange(client, message) == [{"success": True, "result": 5}]
    assert client.call("add", a=1.5, b=2) == 3.5
    assert client.call("echo", {"nested": [1, "two", None]}) == {"nested": [1, "two", None]}


def test_ignores_extra_request_fields(client: LegacyRPCClient) -> None:
    message = {
        "event": "METHOD_CALL",
        "method": "echo",
        "params": {"args": ["x"], "kwargs": {}},
        "lw": {"v": 1, "rid": 7},
    }
    assert _raw_exchange(client, message) == [{"success": True, "result": "x"}]


def test_failure_reply_has_error_and_traceback(client: LegacyRPCClient) -> None:
    message = {"event": "METHOD_CALL", "method": "fail", "params": {"args": [], "kwargs": {}}}
    [reply] = _raw_exchange(client, message)
    assert set(reply) == {"success", "error", "traceback"}
    assert reply["success"] is False
    assert reply["error"] == "legacy failure"
    assert "RuntimeError" in reply["traceback"]
    with pytest.raises(LegacyRemoteError, match="legacy failure") as caught:
        client.call("fail")
    assert "RuntimeError" in caught.value.traceback


def test_buffer_method_replies_with_two_frames(
    client: LegacyRPCClient, server: LegacyRPCServer
) -> None:
    message = {"event": "METHOD_CALL", "method": "get_image", "params": {"args": [], "kwargs": {}}}
    info, data = _raw_exchange(client, message)
    assert info == {"dtype": "uint8", "shape": [48, 64], "lores": False}
    assert len(data) == 48 * 64
    lores_info, lores_data = client.call("get_image", lores=True)
    assert lores_info["shape"] == [12, 16]
    assert lores_data == bytes(i % 251 for i in range(12 * 16))
    assert server.executed == ["get_image", "get_image"]


def test_buffer_method_failure_is_one_frame(client: LegacyRPCClient) -> None:
    frames = client.request(
        {"event": "METHOD_CALL", "method": "get_image", "params": {"args": [1, 2, 3], "kwargs": {}}}
    )
    assert len(frames) == 1
    assert json.loads(frames[0])["success"] is False
    with pytest.raises(LegacyRemoteError, match="argument"):
        client.call("get_image", 1, 2, 3)


def test_properties(client: LegacyRPCClient) -> None:
    assert _raw_exchange(client, {"event": "PROPERTY_GET", "property": "mode"}) == [
        {"success": True, "value": "idle"}
    ]
    assert _raw_exchange(
        client, {"event": "PROPERTY_SET", "property": "mode", "value": "capture"}
    ) == [{"success": True}]
    assert client.get_property("mode") == "capture"
    client.set_property("exposure_ms", 2.5)
    assert client.get_property("exposure_ms") == 2.5
    with pytest.raises(LegacyRemoteError, match="mode must be one of"):
        client.set_property("mode", "warp")
    with pytest.raises(LegacyRemoteError, match="no property"):
        client.get_property("endpoint")


@pytest.mark.parametrize(
    "message",
    [
        {"event": "METHOD_CALL", "method": "_handle", "params": {"args": [], "kwargs": {}}},
        {"event": "METHOD_CALL", "method": "get_property", "params": {"args": ["mode"]}},
        {"event": "EMIT_SIGNAL", "signal": "modeChanged", "args": []},
        {"event": "NOT_AN_EVENT"},
        {"no": "event"},
    ],
)
def test_unknown_requests_get_an_error_object(
    client: LegacyRPCClient, message: dict[str, Any]
) -> None:
    [reply] = _raw_exchange(client, message)
    assert reply["success"] is False
    assert reply["error"]
    assert client.call("add", 1, 1) == 2


def test_signals_are_single_documented_frames(
    client: LegacyRPCClient, server: LegacyRPCServer, context: zmq.Context[Any]
) -> None:
    port = client.init_signals()
    assert port == server.signal_port
    assert _raw_exchange(client, {"event": "INIT_SIGNALS_HANDLING"}) == [
        {"success": True, "signal_port": port}
    ]
    raw = context.socket(zmq.SUB)
    raw.linger = 0
    raw.subscribe(b"")
    raw.connect(f"tcp://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 10
        modes = ["preview", "capture"]
        frames = None
        while frames is None and time.monotonic() < deadline:
            client.set_property("mode", modes[0])
            modes.reverse()
            if raw.poll(100):
                frames = raw.recv_multipart()
        assert frames is not None, "no signal within 10 s"
        assert len(frames) == 1
        assert frames[0].startswith(b'{"event": "EMIT_SIGNAL", "signal": "modeChanged"')
        message = json.loads(frames[0])
        assert message == {
            "event": "EMIT_SIGNAL",
            "signal": "modeChanged",
            "args": [message["args"][0]],
            "blocking": False,
        }
        assert message["args"][0] in ("preview", "capture")
    finally:
        raw.close()


def test_subscriber_reads_every_signal(
    client: LegacyRPCClient, server: LegacyRPCServer, context: zmq.Context[Any]
) -> None:
    with LegacySignalSubscriber(f"tcp://127.0.0.1:{server.signal_port}", context) as subscriber:
        deadline = time.monotonic() + 10
        first = None
        while first is None and time.monotonic() < deadline:
            client.call("get_image", lores=True)
            first = subscriber.recv(0.1)
        assert first is not None, "no signal within 10 s"
        assert first["signal"] == "frameReady"
        while subscriber.recv(0.2) is not None:
            pass
        client.set_property("mode", "preview")
        client.call("get_image")
        received = [subscriber.recv(5), subscriber.recv(5)]
    assert [(m["signal"], m["args"]) for m in received] == [
        ("modeChanged", ["preview"]),
        ("frameReady", [server.frames_taken]),
    ]


def test_timeout_wedges_the_client_and_blocks_the_server(
    server: LegacyRPCServer, context: zmq.Context[Any]
) -> None:
    with LegacyRPCClient(server.endpoint, timeout=0.1, context=context) as impatient:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            impatient.call("sleep", 0.5)
        assert time.monotonic() - started < 0.4
        with pytest.raises(zmq.ZMQError):
            impatient.call("add", 1, 2)
    with LegacyRPCClient(server.endpoint, timeout=5, context=context) as patient:
        assert patient.call("add", 1, 2) == 3
        assert time.monotonic() - started >= 0.5
    assert server.executed == ["sleep", "add"]


def test_stop_server_replies_then_stops(server: LegacyRPCServer, client: LegacyRPCClient) -> None:
    assert _raw_exchange(client, {"event": "STOP_SERVER"}) == [{"success": True}]
    assert server._thread is not None
    server._thread.join(timeout=5)
    assert not server._thread.is_alive()


# --------------------------------------------------------------------------- registry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_register_dedups_names(registry: LegacyRegistry, context: zmq.Context[Any]) -> None:
    url = registry.endpoint
    names = [
        legacy_register(url, "camera", f"tcp://10.0.0.{i}:5000", "cam", context=context)[0]
        for i in range(3)
    ]
    assert names == ["cam", "cam-1", "cam-2"]
    devices = registry.devices
    assert set(devices) == {"cam", "cam-1", "cam-2"}
    assert devices["cam-1"]["addr"] == "tcp://10.0.0.1:5000"
    assert devices["cam-1"]["device_type"] == "camera"


def test_register_overwrite_takes_the_name(
    registry: LegacyRegistry, context: zmq.Context[Any]
) -> None:
    url = registry.endpoint
    _, old_uuid = legacy_register(url, "camera", "tcp://10.0.0.1:5000", "cam", context=context)
    name, new_uuid = legacy_register(
        url, "camera", "tcp://10.0.0.2:5000", "cam", overwrite=True, context=context
    )
    assert name == "cam"
    assert new_uuid != old_uuid
    assert registry.devices["cam"]["addr"] == "tcp://10.0.0.2:5000"
    assert legacy_check_alive(url, old_uuid, context=context) == "unknown"
    assert legacy_check_alive(url, new_uuid, context=context) == "ok"


def test_register_reply_format(registry: LegacyRegistry, context: zmq.Context[Any]) -> None:
    request = {
        "event": "REGISTER",
        "payload": {"device_type": "camera", "addr": "tcp://10.0.0.1:5000", "name": "cam"},
    }
    req = context.socket(zmq.REQ)
    req.linger = 0
    try:
        req.connect(registry.endpoint)
        req.send_json(request)
        assert req.poll(5000)
        reply = req.recv_json()
        assert isinstance(reply, dict)
        assert reply["event"] == "REGISTER_ACK"
        assert set(reply["payload"]) == {"name", "uuid"}
        assert reply["payload"]["name"] == "cam"
        assert isinstance(reply["payload"]["uuid"], str)
        for event in ("REGISTER_ACK", "ACK", "LIST", 42):
            req.send_json({"event": event, "payload": {}})
            assert req.poll(5000)
            assert req.recv_json() == {"event": "UNSUPPORTED", "payload": {"req_event": event}}
    finally:
        req.close()


def test_unregister(registry: LegacyRegistry, context: zmq.Context[Any]) -> None:
    url = registry.endpoint
    _, device_uuid = legacy_register(url, "camera", "tcp://10.0.0.1:5000", "cam", context=context)
    assert legacy_unregister(url, device_uuid, context=context) is True
    assert registry.devices == {}
    assert legacy_unregister(url, device_uuid, context=context) is False
    assert legacy_check_alive(url, device_uuid, context=context) == "unknown"


def test_check_alive_moves_expiry(context: zmq.Context[Any]) -> None:
    clock = FakeClock()
    with LegacyRegistry(context=context, clock=clock) as registry:
        url = registry.endpoint
        _, device_uuid = legacy_register(
            url, "camera", "tcp://10.0.0.1:5000", "cam", context=context
        )
        assert registry.devices["cam"]["expiry"] == clock.now + ALIVE_TIMEOUT
        clock.now += ALIVE_TIMEOUT - 1
        assert legacy_check_alive(url, device_uuid, alive_timeout=5, context=context) == "ok"
        assert registry.devices["cam"]["expiry"] == clock.now + 5
        clock.now += 4
        assert legacy_check_alive(url, device_uuid, context=context) == "ok"
        assert registry.devices["cam"]["expiry"] == clock.now + ALIVE_TIMEOUT
        clock.now += ALIVE_TIMEOUT
        assert registry.devices == {}
        assert legacy_check_alive(url, device_uuid, context=context) == "unknown"
        name, _ = legacy_register(url, "camera", "tcp://10.0.0.1:5000", "cam", context=context)
        assert name == "cam"


def test_check_alive_unreachable(context: zmq.Context[Any]) -> None:
    registry = LegacyRegistry(context=context)
    url = registry.endpoint
    registry.stop()
    started = time.monotonic()
    assert legacy_check_alive(url, "0" * 32, timeout=0.2, context=context) == "unreachable"
    assert time.monotonic() - started < 1
    with pytest.raises(TimeoutError):
        legacy_register(url, "camera", "tcp://10.0.0.1:5000", "cam", timeout=0.2, context=context)


# --------------------------------------------------------------------------- as processes


def _spawn(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(LEGACY), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    endpoint = process.stdout.readline().strip()
    return process, endpoint


def _reap(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


def test_server_process_stops_on_request(context: zmq.Context[Any]) -> None:
    process, endpoint = _spawn("server", "tcp://127.0.0.1:0", "--name", "cam-7")
    try:
        assert endpoint.startswith("tcp://127.0.0.1:")
        with LegacyRPCClient(endpoint, timeout=10, context=context) as client:
            assert client.inventory()["name"] == "cam-7"
            assert client.call("add", 20, 22) == 42
            client.stop_server()
        assert process.wait(timeout=5) == 0
    finally:
        _reap(process)


@pytest.mark.parametrize("role", ["server", "registry"])
def test_process_stops_on_sigterm(role: str, context: zmq.Context[Any]) -> None:
    process, endpoint = _spawn(role, "tcp://127.0.0.1:0")
    try:
        if role == "registry":
            name, _ = legacy_register(endpoint, "camera", "tcp://10.0.0.1:1", "c", context=context)
            assert name == "c"
        else:
            with LegacyRPCClient(endpoint, timeout=10, context=context) as client:
                assert client.call("echo", "hi") == "hi"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        _reap(process)
