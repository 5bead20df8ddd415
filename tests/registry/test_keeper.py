"""RegistrationKeeper: register, renew, re-register, unregister (tier 2, in-process)."""

from __future__ import annotations

import threading
import time

import pytest

from labwire.errors import ClosedError, RegistryError, Unavailable
from labwire.registry import (
    DeviceRegistry,
    RegistrationKeeper,
    RegistryClient,
    WatchEventKind,
    register_device,
)
from tests.registry.conftest import TTL, restart_registry, wait_for


def keeper(registry_url, name="cam", address="tcp://127.0.0.1:5000", **options):
    options.setdefault("alive_timeout", TTL)
    return RegistrationKeeper(None, "camera", name, address, registry_url, **options)


def test_start_returns_the_accepted_name_and_keeps_the_lease(registry):
    register_device(None, "camera", "tcp://h:1", "cam", registry.url)  # expires after 20 s
    with keeper(registry.url) as kept:
        assert kept.name == "cam-1" and kept.uuid and kept.registry_url == registry.url
        assert kept.renew_interval == TTL / 4
        with RegistryClient(registry.url) as client:
            registered = client.lookup("cam-1")
            # outlive several leases: still there, renewed all along
            wait_for(
                lambda: client.lookup("cam-1").last_seen > registered.last_seen + 2 * TTL,
                timeout=4 * TTL,
            )
        assert registry.get_devices()["cam-1"] == ("camera", "tcp://127.0.0.1:5000")
    assert "cam-1" not in registry.get_devices()


def test_keyword_construction_as_the_rpc_server_does_it(registry):
    kept = RegistrationKeeper(
        None,
        device_type="stage",
        name="",
        address="tcp://127.0.0.1:5001",
        registry_url=registry.url,
        overwrite=True,
        alive_timeout=TTL,
    )
    try:
        assert kept.start() == "stage-1"
    finally:
        kept.stop()


def test_stop_unregisters_promptly_and_is_idempotent(registry):
    kept = keeper(registry.url)
    kept.start()
    started = time.monotonic()
    kept.stop()
    assert time.monotonic() - started < 1.0
    assert registry.get_devices() == {}
    kept.stop()
    with pytest.raises(ClosedError):
        kept.start()


def test_stop_is_prompt_when_the_registry_is_gone(registry):
    kept = keeper(registry.url, alive_timeout=20)
    kept.start()
    registry.stop()
    started = time.monotonic()
    kept.stop()
    assert time.monotonic() - started < 1.0


def test_start_fails_within_bounded_time_when_registry_is_down():
    registry = DeviceRegistry(None, "127.0.0.1", "0")
    registry.stop()
    kept = keeper(registry.url, register_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        kept.start()
    assert time.monotonic() - started < 1.5


def test_start_waits_for_a_registry_that_comes_up(registry):
    port = registry.port
    registry.stop()
    kept = keeper(f"tcp://127.0.0.1:{port}", register_timeout=5.0)
    result: list[str] = []
    starter = threading.Thread(target=lambda: result.append(kept.start()))
    starter.start()
    try:
        with restart_registry(port):
            starter.join(6)
            assert result == ["cam"]
    finally:
        starter.join(6)
        kept.stop()


def test_refused_registration_raises_registry_error():
    with DeviceRegistry(None, "127.0.0.1", "0", max_devices=1) as registry:
        register_device(None, "camera", "tcp://h:1", "a", registry.url)
        with pytest.raises(RegistryError, match="full"):
            keeper(registry.url).start()


def test_re_registers_by_itself_after_a_registry_restart(registry):
    port = registry.port
    with keeper(registry.url, name="") as kept:
        assert kept.name == "camera-1"
        registry.stop()
        with restart_registry(port) as second:
            # within 3 renewals + backoff, with nobody doing anything
            wait_for(
                lambda: second.get_devices() == {"camera-1": ("camera", "tcp://127.0.0.1:5000")},
                timeout=3 * kept.renew_interval + 2.0,
            )
            assert kept.name == "camera-1"


def test_names_stay_stable_across_a_registry_restart(registry):
    port = registry.port
    with (
        keeper(registry.url) as first,
        keeper(registry.url, address="tcp://127.0.0.1:5001") as second,
    ):
        assert (first.name, second.name) == ("cam", "cam-1")
        registry.stop()
        with restart_registry(port) as restarted:
            wait_for(lambda: len(restarted.get_devices()) == 2, timeout=4.0)
            assert restarted.get_devices() == {
                "cam": ("camera", "tcp://127.0.0.1:5000"),
                "cam-1": ("camera", "tcp://127.0.0.1:5001"),
            }


def test_health_check_failing_lets_the_lease_lapse_then_recovers(registry):
    healthy = threading.Event()
    healthy.set()
    with RegistryClient(registry.url) as client, client.watch() as watch:
        watch.next_event(5)
        with keeper(registry.url, health_check=healthy.is_set) as kept:
            assert watch.next_event(5).kind == WatchEventKind.ADDED
            healthy.clear()
            removed = watch.next_event(TTL + 2)
            assert (removed.kind, removed.reason) == (WatchEventKind.REMOVED, "expired")
            healthy.set()
            added = watch.next_event(3)
            assert (added.kind, added.device.name) == (WatchEventKind.ADDED, kept.name)
            assert kept.name == "cam"


def test_raising_health_check_counts_as_unhealthy(registry, caplog):
    def broken() -> bool:
        raise RuntimeError("probe bug")

    with keeper(registry.url, health_check=broken):
        wait_for(lambda: "cam" not in registry.get_devices(), timeout=TTL + 2)
    assert "probe bug" in caplog.text


def test_overwrite_takeover_then_the_displaced_one_yields(registry):
    renamed: list[str] = []
    with RegistryClient(registry.url) as client, client.watch() as watch:
        watch.next_event(5)
        with (
            keeper(registry.url, on_name_change=renamed.append) as first,
            keeper(registry.url, address="tcp://127.0.0.1:5001", overwrite=True) as second,
        ):
            events = [watch.next_event(5) for _ in range(4)]
            assert [(e.kind.value, e.device.name, e.device.address[-4:]) for e in events] == [
                ("added", "cam", "5000"),
                ("removed", "cam", "5000"),
                ("added", "cam", "5001"),
                ("added", "cam-1", "5000"),
            ]
            assert events[1].reason == "replaced"
            # The registry publishes the change before its reply reaches the keeper.
            wait_for(lambda: first.name == "cam-1" and renamed == ["cam-1"], timeout=2)
            assert second.name == "cam"
            assert watch.next_event(3 * TTL) is None  # no flapping afterwards


def test_wildcard_address_is_replaced_by_the_route_to_the_registry(registry):
    with keeper(registry.url, address="tcp://*:5000") as kept:
        assert kept.address == "tcp://127.0.0.1:5000"
        assert registry.get_devices()["cam"][1] == "tcp://127.0.0.1:5000"


def test_unreachable_registry_is_retried_with_backoff(registry):
    port = registry.port
    with keeper(registry.url) as kept:
        registry.stop()
        with restart_registry(port) as second:
            wait_for(lambda: "cam" in second.get_devices(), timeout=3 * kept.renew_interval + 2.0)
