"""Wire compatibility with the deployed registry protocol, both directions.

The deployed peers are the independent stand-ins of ``tests/legacy.py`` (written from
WIRE-COMPAT.md only, plain pyzmq + json).
"""

from __future__ import annotations

import time

from labwire.registry import (
    AliveCheckState,
    RegistrationKeeper,
    register_device,
    send_alive_check,
    unregister_device,
)
from tests.legacy import LegacyRegistry, legacy_check_alive, legacy_register, legacy_unregister
from tests.registry.conftest import TTL, restart_registry, wait_for

# ----------------------------------------------------------------------------- deployed devices


def test_deployed_device_registers_renews_and_unregisters(registry):
    name, uuid = legacy_register(registry.url, "camera", "tcp://10.0.0.5:5000", "rpi-cam")
    assert name == "rpi-cam"
    assert registry.get_devices() == {"rpi-cam": ("camera", "tcp://10.0.0.5:5000")}
    assert legacy_check_alive(registry.url, uuid, alive_timeout=30) == "ok"
    assert legacy_check_alive(registry.url, uuid) == "ok"
    assert legacy_unregister(registry.url, uuid) is True
    assert registry.get_devices() == {}
    assert legacy_unregister(registry.url, uuid) is False
    assert legacy_check_alive(registry.url, uuid) == "unknown"


def test_deployed_devices_follow_the_name_rule(registry):
    url = registry.url
    assert legacy_register(url, "camera", "tcp://h:1", "cam")[0] == "cam"
    assert legacy_register(url, "camera", "tcp://h:2", "cam")[0] == "cam-1"
    assert legacy_register(url, "camera", "tcp://h:3", "cam", overwrite=True)[0] == "cam"
    assert legacy_register(url, "camera", "tcp://h:4", "")[0] == "camera-1"


def test_deployed_device_expires_on_its_own_alive_timeout(registry):
    _name, uuid = legacy_register(registry.url, "camera", "tcp://h:1", "cam")
    assert legacy_check_alive(registry.url, uuid, alive_timeout=TTL) == "ok"
    wait_for(lambda: "cam" not in registry.get_devices(), timeout=TTL + 1)
    # and re-registers when it hears "unknown", as deployed devices do
    assert legacy_check_alive(registry.url, uuid) == "unknown"
    assert legacy_register(registry.url, "camera", "tcp://h:1", "cam")[0] == "cam"


def test_deployed_device_re_registers_after_labwire_registry_restart(registry):
    port = registry.port
    _name, uuid = legacy_register(registry.url, "camera", "tcp://h:1", "cam")
    registry.stop()
    assert legacy_check_alive(registry.url, uuid, timeout=0.3) == "unreachable"
    with restart_registry(port) as second:
        assert legacy_check_alive(second.url, uuid) == "unknown"
        assert legacy_register(second.url, "camera", "tcp://h:1", "cam")[0] == "cam"


# ----------------------------------------------------------------------------- deployed registry


def test_labwire_device_calls_against_a_deployed_registry():
    with LegacyRegistry() as legacy:
        url = legacy.endpoint
        name, uuid = register_device(None, "camera", "tcp://h:1", "cam", url)
        assert name == "cam"
        assert register_device(None, "camera", "tcp://h:2", "cam", url)[0] == "cam-1"
        assert send_alive_check(None, uuid, url, alive_timeout=5) == "ok"
        assert legacy.devices["cam"]["addr"] == "tcp://h:1"
        assert unregister_device(None, uuid, url) is True
        assert send_alive_check(None, uuid, url) == "unknown"
        assert unregister_device(None, uuid, url) is False
        # what the deployed registry received is the deployed message shape
        first = legacy.requests[0]
        assert first["event"] == "REGISTER"
        assert {"device_type", "addr", "name", "overwrite"} <= set(first["payload"])


def test_alive_check_states_are_the_deployed_names(registry):
    """Deployed servers compare send_alive_check's result with AliveCheckState members."""
    _, uuid = register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    state = send_alive_check(None, uuid, registry.url)
    assert state is AliveCheckState.OK and state == "ok"
    assert send_alive_check(None, "no-such-uuid", registry.url) == AliveCheckState.UNKNOWN
    silent = "tcp://127.0.0.1:9"  # nothing listens on the discard port
    assert send_alive_check(None, uuid, silent, timeout=0.3) == AliveCheckState.UNREACHABLE
    assert [s.value for s in AliveCheckState] == ["ok", "unknown", "unreachable"]


def test_keeper_against_a_deployed_registry_renews_and_re_registers():
    with LegacyRegistry(alive_timeout=TTL) as legacy:
        kept = RegistrationKeeper(
            None, "camera", "cam", "tcp://h:1", legacy.endpoint, alive_timeout=TTL
        )
        try:
            assert kept.start() == "cam"
            wait_for(
                lambda: sum(r and r.get("event") == "CHECK_ALIVE" for r in legacy.requests) >= 3,
                timeout=3 * TTL,
            )
            assert "cam" in legacy.devices
            # the deployed registry forgets the device (as after a restart)
            assert legacy_unregister(legacy.endpoint, kept.uuid)
            wait_for(lambda: "cam" in legacy.devices, timeout=2 * TTL)
        finally:
            started = time.monotonic()
            kept.stop()
            assert time.monotonic() - started < 1.0
        assert "cam" not in legacy.devices
