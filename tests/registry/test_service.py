"""DeviceRegistry and the seed's device calls, over real sockets (tier 2)."""

from __future__ import annotations

import inspect
import json
import threading
import time

import pytest
import zmq

from labwire.errors import ConfigurationError, EndpointError
from labwire.registry import (
    ALIVE_TIMEOUT,
    DeviceRegistry,
    EventType,
    RegistryClient,
    register_device,
    send_alive_check,
    unregister_device,
)
from labwire.transport import Transport, default_context
from tests.registry.conftest import TTL, restart_registry, wait_for


def raw_request(url: str, frames: list[bytes], *, kind: int = zmq.DEALER, timeout_ms: int = 2000):
    """Send frames on a raw pyzmq socket; return the reply frames (None if none came)."""
    sock = default_context().socket(kind)
    sock.linger = 0
    try:
        sock.connect(url)
        sock.send_multipart(frames)
        if not sock.poll(timeout_ms):
            return None
        return sock.recv_multipart()
    finally:
        sock.close()


def ask(url: str, message: object) -> dict:
    reply = raw_request(url, [b"", json.dumps(message).encode()])
    assert reply is not None and reply[0] == b""
    return json.loads(reply[1])


# ----------------------------------------------------------------------------- seed API


def test_seed_signature_and_attributes():
    registry = DeviceRegistry(None, "127.0.0.1", "0")
    try:
        assert isinstance(registry, threading.Thread)
        assert registry.addr == "127.0.0.1"
        assert registry.port.isdigit() and registry.port != "0"
        assert registry.context is default_context()
        assert registry.url == f"tcp://127.0.0.1:{registry.port}"
        assert registry.devices == {} and registry.get_devices() == {}
        assert ALIVE_TIMEOUT == 20
        assert [e.value for e in EventType] == [
            "REGISTER",
            "REGISTER_ACK",
            "UNREGISTER",
            "CHECK_ALIVE",
            "ACK",
            "UNSUPPORTED",
        ]
    finally:
        registry.stop()


def test_seed_defaults():
    parameters = inspect.signature(DeviceRegistry).parameters
    assert list(parameters)[:3] == ["context", "addr", "port"]
    assert (parameters["addr"].default, parameters["port"].default) == ("*", "5555")
    assert inspect.signature(register_device).parameters["overwrite"].default is False
    assert inspect.signature(send_alive_check).parameters["alive_timeout"].default == 20


def test_busy_port_fails_at_construction(registry):
    with pytest.raises(EndpointError, match="in use"):
        DeviceRegistry(None, "127.0.0.1", registry.port)


def test_register_renew_unregister(registry):
    name, uuid = register_device(None, "camera", "tcp://10.0.0.2:5000", "cam", registry.url)
    assert name == "cam" and uuid
    assert registry.get_devices() == {"cam": ("camera", "tcp://10.0.0.2:5000")}
    assert send_alive_check(None, uuid, registry.url, alive_timeout=5) == "ok"
    assert unregister_device(None, uuid, registry.url) is True
    assert registry.get_devices() == {}
    assert unregister_device(None, uuid, registry.url) is False
    assert send_alive_check(None, uuid, registry.url) == "unknown"


def test_get_devices_is_a_snapshot_copy(registry):
    register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    snapshot = registry.get_devices()
    snapshot["ghost"] = ("x", "y")
    snapshot.pop("cam")
    assert registry.get_devices() == {"cam": ("camera", "tcp://h:1")}
    assert registry.devices is not registry.devices


def test_name_rules_end_to_end(registry):
    url = registry.url
    assert register_device(None, "camera", "tcp://h:1", "cam", url)[0] == "cam"
    assert register_device(None, "camera", "tcp://h:2", "cam", url)[0] == "cam-1"
    assert register_device(None, "camera", "tcp://h:3", "cam", url)[0] == "cam-2"
    assert register_device(None, "camera", "tcp://h:4", "", url)[0] == "camera-1"
    assert register_device(None, "stage", "tcp://h:5", "", url)[0] == "stage-1"
    assert register_device(None, "camera", "tcp://h:6", "cam", url, overwrite=True)[0] == "cam"
    assert registry.get_devices()["cam"] == ("camera", "tcp://h:6")


BAD_NAMES = [
    pytest.param("cam\x1b[2J", id="escape-sequence"),
    pytest.param("cam\nera", id="newline"),
    pytest.param("cam\x00", id="nul"),
    pytest.param("\u202ecam", id="bidi-override"),
    pytest.param("lab/cam", id="slash"),
    pytest.param("lab\\cam", id="backslash"),
    pytest.param("..", id="dot-dot"),
    pytest.param(".", id="dot"),
    pytest.param("my cam", id="space"),
    pytest.param("c" * 257, id="too-long"),
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_that_breaks_the_rule_is_refused_and_the_registry_goes_on(registry, name):
    with pytest.raises(ConfigurationError, match="device name"):
        register_device(None, "camera", "tcp://h:2", name, registry.url)
    with pytest.raises(ConfigurationError, match="device type"):
        register_device(None, name, "tcp://h:2", "", registry.url)
    _name, uuid = register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    for payload in (
        {"device_type": "camera", "addr": "tcp://h:3", "name": name, "overwrite": False},
        {"device_type": name, "addr": "tcp://h:3", "name": "", "overwrite": False},
    ):
        reply = ask(registry.url, {"event": "REGISTER", "payload": payload})
        assert reply["event"] == "UNSUPPORTED"
        assert "device_type" in reply["payload"]["error"] or "name" in reply["payload"]["error"]
    assert registry.get_devices() == {"cam": ("camera", "tcp://h:1")}
    assert send_alive_check(None, uuid, registry.url) == "ok"


def test_names_in_any_script_with_dots_and_dashes_are_good(registry):
    for name in ("cam-1", "rig.2", "kamera_ü", "カメラ", "a" * 256):
        assert (
            register_device(None, "camera", f"tcp://h:{len(name)}", name, registry.url)[0] == name
        )


def test_lease_expires_after_alive_timeout_and_renewal_extends_it(registry):
    _name, uuid = register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    assert send_alive_check(None, uuid, registry.url, alive_timeout=TTL) == "ok"
    renewed_until = time.monotonic() + TTL
    assert "cam" in registry.get_devices()
    wait_for(lambda: "cam" not in registry.get_devices(), timeout=TTL + 1)
    assert time.monotonic() >= renewed_until - 0.05
    assert send_alive_check(None, uuid, registry.url) == "unknown"


def test_wall_clock_jump_changes_nothing(registry, monkeypatch):
    _name, uuid = register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    assert send_alive_check(None, uuid, registry.url, alive_timeout=30) == "ok"
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 7 * 24 * 3600)
    assert send_alive_check(None, uuid, registry.url, alive_timeout=30) == "ok"
    monkeypatch.setattr(time, "time", lambda: real_time() - 7 * 24 * 3600)
    assert send_alive_check(None, uuid, registry.url, alive_timeout=30) == "ok"
    assert "cam" in registry.get_devices()


def test_device_calls_are_bounded_when_registry_is_down():
    registry = DeviceRegistry(None, "127.0.0.1", "0")
    url = registry.url
    registry.stop()
    started = time.monotonic()
    assert register_device(None, "camera", "tcp://h:1", "cam", url, timeout=1.0) == ""
    assert send_alive_check(None, "u", url, timeout=1.0) == "unreachable"
    assert unregister_device(None, "u", url, timeout=1.0) is False
    assert time.monotonic() - started < 3 * 1.0 + 0.5


def test_device_calls_accept_a_transport(registry):
    transport = Transport()
    _name, uuid = register_device(transport, "camera", "tcp://h:1", "cam", registry.url)
    assert send_alive_check(transport, uuid, registry.url) == "ok"


def test_ipv6_and_hyphenated_addresses_are_stored_as_given(registry):
    register_device(None, "camera", "tcp://[fe80::1]:5000", "rpi-camera-2", registry.url)
    assert registry.get_devices() == {"rpi-camera-2": ("camera", "tcp://[fe80::1]:5000")}


# ----------------------------------------------------------------------------- callbacks


def test_callbacks_fire_in_order_and_a_failing_one_is_contained(registry, caplog):
    seen: list[tuple[str, str, str, str]] = []
    done = threading.Event()

    def broken(name, device_type, address):
        raise RuntimeError("callback bug")

    def added(name, device_type, address):
        seen.append(("added", name, device_type, address))

    def removed(name, device_type, address):
        seen.append(("removed", name, device_type, address))
        done.set()

    registry.add_new_device_callback(broken)
    registry.add_new_device_callback(added)
    registry.add_device_removed_callback(broken)
    registry.add_device_removed_callback(removed)
    _name, uuid = register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    unregister_device(None, uuid, registry.url)
    assert done.wait(5)
    assert seen == [
        ("added", "cam", "camera", "tcp://h:1"),
        ("removed", "cam", "camera", "tcp://h:1"),
    ]
    assert "callback bug" in caplog.text
    assert register_device(None, "camera", "tcp://h:2", "cam2", registry.url)[0] == "cam2"


def test_callbacks_do_not_run_under_the_lock_nor_stall_the_registry(registry):
    release = threading.Event()
    inside = threading.Event()
    views = []

    def slow(name, device_type, address):
        views.append(registry.get_devices())  # would deadlock under the registry's lock
        inside.set()
        release.wait(5)

    registry.add_new_device_callback(slow)
    _name, uuid = register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    assert inside.wait(5)
    # the callback is still blocked, yet the registry answers at once
    started = time.monotonic()
    assert send_alive_check(None, uuid, registry.url) == "ok"
    assert time.monotonic() - started < 0.5
    release.set()
    assert views == [{"cam": ("camera", "tcp://h:1")}]


# ----------------------------------------------------------------------------- lifecycle


def test_stop_is_prompt_and_leaves_nothing(registry):
    register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    started = time.monotonic()
    registry.stop()
    assert time.monotonic() - started < 1.0
    assert not registry.is_alive()
    registry.stop()  # idempotent


def test_stop_without_start_closes_sockets():
    registry = DeviceRegistry(None, "127.0.0.1", "0")
    registry.stop()
    restart_registry(registry.port).stop()  # the port is free again


def test_run_in_the_calling_thread_and_stop_from_another():
    registry = DeviceRegistry(None, "127.0.0.1", "0")
    timer = threading.Timer(0.2, registry.stop)
    timer.start()
    started = time.monotonic()
    registry.run()
    assert time.monotonic() - started < 1.5
    timer.join()


def test_context_manager():
    with DeviceRegistry(None, "127.0.0.1", "0") as registry:
        assert register_device(None, "camera", "tcp://h:1", "cam", registry.url)[0] == "cam"
    assert not registry.is_alive()


# ----------------------------------------------------------------------------- bad input


BAD_FRAMES = [
    pytest.param([b""], id="empty-body"),
    pytest.param([b"", b"not json"], id="malformed-json"),
    pytest.param([b"", b"\xff\xfe"], id="invalid-utf8"),
    pytest.param([b"", b"[1, 2]"], id="not-an-object"),
    pytest.param([b"", b'{"event": "REGISTER", "payload": {"name": 3}}'], id="wrong-types"),
    pytest.param(
        [b"", b'{"event": "CHECK_ALIVE", "payload": {"uuid": "u", "alive_timeout": NaN}}'], id="nan"
    ),
    pytest.param([b"", b'{"event": "UNREGISTER", "payload": {"uuid": "\\ud800"}}'], id="surrogate"),
    pytest.param([b"", b'{"a":' * 200 + b"1" + b"}" * 200], id="deep"),
    pytest.param(
        [
            b"",
            b'{"event": "CHECK_ALIVE", "payload": {"uuid": "u", "alive_timeout": '
            + b"9" * 400
            + b"}}",
        ],
        id="huge-int",
    ),
    pytest.param([b"", b'{"event": "ACK", "event": "REGISTER", "payload": {}}'], id="dup-keys"),
    pytest.param([b"", b"{}", b"{}"], id="two-frames"),
    pytest.param([b""] + [b"x"] * 5000, id="thousands-of-frames"),
    pytest.param([b"", b'{"event": "x' + b"y" * 3_000_000 + b'"}'], id="big-frame"),
]


@pytest.mark.parametrize("frames", BAD_FRAMES)
def test_bad_input_gets_unsupported_and_registry_keeps_devices(registry, frames):
    _name, uuid = register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    before = registry.rejected_requests
    reply = raw_request(registry.url, frames)
    assert reply is not None and reply[0] == b""
    message = json.loads(reply[1])
    assert message["event"] == "UNSUPPORTED"
    assert message["payload"].get("error")
    assert registry.rejected_requests == before + 1
    assert registry.get_devices() == {"cam": ("camera", "tcp://h:1")}
    assert send_alive_check(None, uuid, registry.url) == "ok"


def test_unknown_event_names_the_event(registry):
    assert ask(registry.url, {"event": "FROBNICATE", "payload": {}}) == {
        "event": "UNSUPPORTED",
        "payload": {"req_event": "FROBNICATE", "error": "unsupported registry event 'FROBNICATE'"},
    }


def test_dealer_without_delimiter_still_gets_an_answer(registry):
    reply = raw_request(registry.url, [b'{"event": "CHECK_ALIVE", "payload": {"uuid": "u"}}'])
    assert reply is not None
    assert json.loads(reply[0])["payload"] == {
        "req_event": "CHECK_ALIVE",
        "success": False,
        "reason": "unknown",
    }


def test_deployed_req_socket_gets_exactly_the_deployed_reply(registry):
    reply = raw_request(
        registry.url,
        [
            json.dumps(
                {
                    "event": "REGISTER",
                    "payload": {"device_type": "camera", "addr": "tcp://h:1", "name": "cam"},
                }
            ).encode()
        ],
        kind=zmq.REQ,
    )
    message = json.loads(reply[0])
    assert set(message) == {"event", "payload"}
    assert message["event"] == "REGISTER_ACK"
    assert set(message["payload"]) == {"name", "uuid"}


def test_a_peer_that_vanishes_before_the_reply_does_not_hurt(registry):
    for _ in range(20):
        sock = default_context().socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(registry.url)
        sock.send_multipart([b"", b'{"event": "LIST_DEVICES", "payload": {}}'])
        sock.close()
    assert register_device(None, "camera", "tcp://h:1", "cam", registry.url)[0] == "cam"


def test_full_registry_refuses_with_a_reason():
    with DeviceRegistry(None, "127.0.0.1", "0", max_devices=1) as registry:
        assert register_device(None, "camera", "tcp://h:1", "a", registry.url)[0] == "a"
        assert register_device(None, "camera", "tcp://h:2", "b", registry.url) == ""
        reply = ask(
            registry.url,
            {
                "event": "REGISTER",
                "payload": {"device_type": "camera", "addr": "tcp://h:2", "name": "b"},
            },
        )
        assert reply["event"] == "UNSUPPORTED" and "full" in reply["payload"]["error"]


def test_registry_client_sees_what_get_devices_sees(registry):
    register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    with RegistryClient(registry.url) as client:
        assert client.get_devices() == registry.get_devices()
