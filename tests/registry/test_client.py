"""Remote discovery: RegistryClient, its watch, and the asyncio twins (tier 2)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from labwire.errors import ClosedError, NotFound, RegistryError, Unavailable
from labwire.registry import (
    AsyncRegistryClient,
    DeviceRegistry,
    RegistryClient,
    WatchEventKind,
    register_device,
    send_alive_check,
    unregister_device,
)
from tests.legacy import LegacyRegistry
from tests.registry.conftest import HEARTBEAT, TTL, restart_registry, wait_for


def test_list_lookup_find(registry):
    before = time.time()
    register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    register_device(None, "stage", "tcp://h:2", "cnc", registry.url)
    with RegistryClient(registry.url) as client:
        devices = client.list_devices()
        assert [(d.name, d.device_type, d.address) for d in devices] == [
            ("cam", "camera", "tcp://h:1"),
            ("cnc", "stage", "tcp://h:2"),
        ]
        cam = client.lookup("cam")
        assert before - 1 <= cam.registered_since <= cam.last_seen <= time.time() + 1
        assert [d.name for d in client.find("stage")] == ["cnc"]
        assert client.find("robot") == []
        with pytest.raises(NotFound) as info:
            client.lookup("ghost")
        assert isinstance(info.value, LookupError)


def test_last_seen_moves_with_renewals(registry):
    _name, uuid = register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    with RegistryClient(registry.url) as client:
        first = client.lookup("cam")
        wait_for(lambda: time.time() > first.last_seen + 0.01)
        send_alive_check(None, uuid, registry.url)
        second = client.lookup("cam")
    assert second.registered_since == pytest.approx(first.registered_since, abs=0.01)
    assert second.last_seen > first.last_seen


def test_client_is_shared_by_threads(registry):
    for i in range(5):
        register_device(None, "camera", f"tcp://h:{i}", f"cam{i}", registry.url)
    errors = []
    with RegistryClient(registry.url) as client:

        def worker():
            try:
                for i in range(50):
                    assert client.lookup(f"cam{i % 5}").address == f"tcp://h:{i % 5}"
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert errors == []


def test_unreachable_registry_fails_fast():
    registry = DeviceRegistry(None, "127.0.0.1", "0")
    registry.stop()
    with RegistryClient(registry.url, timeout=3.0) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            client.list_devices()
        assert time.monotonic() - started < 1.0


def test_client_recovers_after_registry_restart_on_same_port():
    first = DeviceRegistry(None, "127.0.0.1", "0")
    first.start()
    register_device(None, "camera", "tcp://h:1", "cam", first.url)
    client = RegistryClient(first.url)
    try:
        assert client.get_devices() == {"cam": ("camera", "tcp://h:1")}
        first.stop()
        with pytest.raises(Unavailable):
            client.list_devices()
        with restart_registry(first.port) as second:
            assert client.get_devices() == {}
            register_device(None, "camera", "tcp://h:2", "cam", second.url)
            assert client.get_devices() == {"cam": ("camera", "tcp://h:2")}
    finally:
        client.close()


def test_deployed_registry_cannot_list():
    with LegacyRegistry() as legacy, RegistryClient(legacy.endpoint) as client:
        with pytest.raises(RegistryError, match="cannot list"):
            client.list_devices()
        with pytest.raises(RegistryError):
            client.watch()


def test_closed_client_refuses(registry):
    client = RegistryClient(registry.url)
    client.close()
    with pytest.raises(ClosedError):
        client.list_devices()


# ----------------------------------------------------------------------------- watch


def kinds(watch, count, timeout=5.0):
    events = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        event = watch.next_event(max(0.0, deadline - time.monotonic()))
        if event is None:
            raise AssertionError(f"only {events} within {timeout} s")
        events.append(event)
    return events


def test_watch_starts_with_snapshot_then_numbered_changes(registry):
    register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    with RegistryClient(registry.url) as client, client.watch() as watch:
        (snapshot,) = kinds(watch, 1)
        assert snapshot.kind == WatchEventKind.SNAPSHOT
        assert [d.name for d in snapshot.devices] == ["cam"]
        _name, uuid = register_device(None, "stage", "tcp://h:2", "cnc", registry.url)
        unregister_device(None, uuid, registry.url)
        added, removed = kinds(watch, 2)
        assert (added.kind, added.device.name) == (WatchEventKind.ADDED, "cnc")
        assert (removed.kind, removed.device.name, removed.reason) == (
            WatchEventKind.REMOVED,
            "cnc",
            "unregistered",
        )
        assert removed.seq == added.seq + 1 == snapshot.seq + 2
        assert set(watch.devices) == {"cam"}
        assert watch.next_event(0.3) is None  # heartbeats are not events


def test_watch_misses_nothing_registered_right_after_it_starts(registry):
    with RegistryClient(registry.url) as client:
        for round_ in range(5):
            with client.watch() as watch:
                register_device(None, "camera", f"tcp://h:{round_}", f"cam{round_}", registry.url)
                events = kinds(watch, 2)
                assert events[0].kind == WatchEventKind.SNAPSHOT
                assert round_ == len(events[0].devices) or events[1].device.name == f"cam{round_}"
                assert f"cam{round_}" in watch.devices


def test_watch_sees_expiry_within_ttl(registry):
    _name, uuid = register_device(None, "camera", "tcp://h:1", "cam", registry.url)
    with RegistryClient(registry.url) as client, client.watch() as watch:
        kinds(watch, 1)
        send_alive_check(None, uuid, registry.url, alive_timeout=TTL)
        renewed = time.monotonic()
        (removed,) = kinds(watch, 1, timeout=TTL + 2)
        assert (removed.kind, removed.reason) == (WatchEventKind.REMOVED, "expired")
        assert time.monotonic() - renewed <= TTL + HEARTBEAT + 0.25


def test_watch_resyncs_after_registry_restart_and_reports_lost(registry):
    port = registry.port
    register_device(None, "camera", "tcp://h:1", "old", registry.url)
    with RegistryClient(registry.url, timeout=1.0) as client, client.watch() as watch:
        assert kinds(watch, 1)[0].kind == WatchEventKind.SNAPSHOT
        registry.stop()
        (lost,) = kinds(watch, 1, timeout=5 * HEARTBEAT + 2)
        assert lost.kind == WatchEventKind.LOST
        with restart_registry(port, heartbeat_interval=HEARTBEAT) as second:
            register_device(None, "camera", "tcp://h:2", "new", second.url)
            event = kinds(watch, 1, timeout=5)[0]
            assert event.kind == WatchEventKind.SNAPSHOT
            assert event.registry_id == second.registry_id
            assert [d.name for d in event.devices] == ["new"]
            assert set(watch.devices) == {"new"}
            assert watch.resyncs >= 1
            _name, _uuid = register_device(None, "camera", "tcp://h:3", "newer", second.url)
            assert kinds(watch, 1)[0].device.name == "newer"


def test_watch_close_from_another_thread_ends_iteration(registry):
    client = RegistryClient(registry.url)
    watch = client.watch()
    seen = []
    consumer = threading.Thread(target=lambda: seen.extend(watch))
    consumer.start()
    wait_for(lambda: seen)
    started = time.monotonic()
    watch.close()
    consumer.join(2)
    assert not consumer.is_alive()
    assert time.monotonic() - started < 1.0
    client.close()
    with pytest.raises(ClosedError):
        watch.next_event(0)


def test_watch_on_unreachable_registry_raises():
    registry = DeviceRegistry(None, "127.0.0.1", "0")
    registry.stop()
    with RegistryClient(registry.url, timeout=0.5) as client, pytest.raises(Unavailable):
        client.watch()


# ----------------------------------------------------------------------------- asyncio


def test_async_twin(registry):
    register_device(None, "camera", "tcp://h:1", "cam", registry.url)

    async def scenario():
        async with AsyncRegistryClient(registry.url) as client:
            assert [d.name for d in await client.list_devices()] == ["cam"]
            assert (await client.lookup("cam")).address == "tcp://h:1"
            assert await client.find("stage") == []
            assert await client.get_devices() == {"cam": ("camera", "tcp://h:1")}
            with pytest.raises(NotFound):
                await client.lookup("ghost")
            async with await client.watch() as watch:
                snapshot = await watch.next_event(5)
                assert snapshot.kind == WatchEventKind.SNAPSHOT
                loop = asyncio.get_running_loop()
                _name, uuid = await loop.run_in_executor(
                    None, register_device, None, "stage", "tcp://h:2", "cnc", registry.url
                )
                added = await watch.next_event(5)
                assert (added.kind, added.device.name) == (WatchEventKind.ADDED, "cnc")
                await loop.run_in_executor(None, unregister_device, None, uuid, registry.url)
                async for event in watch:
                    assert (event.kind, event.device.name) == (WatchEventKind.REMOVED, "cnc")
                    break
                assert await watch.next_event(0.3) is None

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_async_unreachable_and_deployed():
    registry = DeviceRegistry(None, "127.0.0.1", "0")
    registry.stop()

    async def scenario():
        async with AsyncRegistryClient(registry.url, timeout=0.5) as client:
            with pytest.raises(Unavailable):
                await client.list_devices()
        with LegacyRegistry() as legacy:
            async with AsyncRegistryClient(legacy.endpoint) as client:
                with pytest.raises(RegistryError):
                    await client.watch()

    asyncio.run(asyncio.wait_for(scenario(), 20))
