"""RELIABILITY rows H1, H2, H3, H5 and the SIGSTOP promise, with real processes and signals."""

from __future__ import annotations

import signal
import time

import pytest

from labwire.registry import RegistryClient, WatchEventKind
from tests.registry.conftest import HEARTBEAT, TTL, wait_for
from tests.registry.procs import _probe_classes

RENEW = TTL / 4  # the keepers' renewal period ("one heartbeat" of a device)


def next_change(watch, timeout):
    """The next ADDED/REMOVED event of a watch (snapshots and heartbeats skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        event = watch.next_event(max(0.0, deadline - time.monotonic()))
        if event is None:
            raise AssertionError(f"no registry change within {timeout} s")
        if event.kind in (WatchEventKind.ADDED, WatchEventKind.REMOVED):
            return event


@pytest.fixture
def watch(registry):
    with RegistryClient(registry.url) as client, client.watch() as stream:
        assert stream.next_event(5).kind == WatchEventKind.SNAPSHOT
        yield stream


def test_h1_killed_device_is_removed_within_ttl(registry, watch, processes):
    device = processes.device(registry.url, "cam")
    assert device.expect("REGISTERED")[0] == "cam"
    assert next_change(watch, 5).kind == WatchEventKind.ADDED
    device.kill()
    killed = time.monotonic()
    removed = next_change(watch, TTL + 2)
    elapsed = time.monotonic() - killed
    assert (removed.kind, removed.device.name, removed.reason) == (
        WatchEventKind.REMOVED,
        "cam",
        "expired",
    )
    assert elapsed <= TTL + RENEW + 0.25, elapsed
    assert registry.get_devices() == {}


def test_h2_registry_killed_and_restarted_devices_come_back_rpc_unaffected(processes):
    registry = processes.registry()
    url, port, _ = registry.expect("READY")
    devices = [processes.device(url, "cam", "--rpc") for _ in range(2)]
    names = {device.expect("REGISTERED")[0]: device for device in devices}
    assert set(names) == {"cam", "cam-1"}
    with RegistryClient(url, timeout=1.0) as client:
        address = client.lookup("cam").address
        wait_for(lambda: len(client.list_devices()) == 2)
    _, client_class = _probe_classes()
    with client_class(None, address, 1000) as rpc:
        assert rpc.whoami()["pid"] == names["cam"].pid
        registry.kill()
        for _ in range(5):  # RPC between connected peers does not care about the registry
            assert rpc.whoami()["pid"] == names["cam"].pid
        restarted = processes.registry(port=int(port))
        restarted_url = restarted.expect("READY")[0]
        assert restarted_url == url
        ready = time.monotonic()
        with RegistryClient(url, timeout=1.0) as client:
            wait_for(
                lambda: {d.name for d in client.list_devices()} == {"cam", "cam-1"},
                timeout=3 * RENEW + 1.5,
            )
            back_after = time.monotonic() - ready
            assert client.lookup("cam").address == address  # same names, same devices
        assert rpc.whoami()["name"] == "cam"
    assert back_after <= 3 * RENEW + 1.5


def test_h3_hung_device_loop_is_removed_and_returns(registry, watch, processes):
    device = processes.device(registry.url, "cam")
    device.expect("REGISTERED")
    assert next_change(watch, 5).kind == WatchEventKind.ADDED
    device.send("hang")
    device.expect("HUNG")
    removed = next_change(watch, TTL + 2)
    assert (removed.kind, removed.device.name, removed.reason) == (
        WatchEventKind.REMOVED,
        "cam",
        "expired",
    )
    assert device.process.poll() is None  # the process is alive all along
    device.send("release")
    device.expect("RELEASED")
    added = next_change(watch, 2 * RENEW + 1)
    assert (added.kind, added.device.name) == (WatchEventKind.ADDED, "cam")
    assert registry.get_devices()["cam"] == ("camera", removed.device.address)


def test_paused_device_is_removed_then_re_registers_under_its_name(registry, watch, processes):
    device = processes.device(registry.url, "cam")
    device.expect("REGISTERED")
    first = next_change(watch, 5)
    device.signal(signal.SIGSTOP)
    removed = next_change(watch, TTL + 2)
    assert (removed.kind, removed.device.name) == (WatchEventKind.REMOVED, "cam")
    device.signal(signal.SIGCONT)
    added = next_change(watch, 2 * RENEW + 1.5)
    assert (added.kind, added.device.name, added.device.address) == (
        WatchEventKind.ADDED,
        "cam",
        first.device.address,
    )
    assert added.seq == removed.seq + 1  # removed, then added: never a silent swap


def test_h5_second_claimant_without_overwrite_gets_a_suffix(registry, processes):
    first = processes.device(registry.url, "cam")
    assert first.expect("REGISTERED")[0] == "cam"
    second = processes.device(registry.url, "cam")
    assert second.expect("REGISTERED")[0] == "cam-1"
    devices = registry.get_devices()
    assert devices["cam"][1].endswith(str(20000 + first.pid % 40000))
    assert devices["cam-1"][1].endswith(str(20000 + second.pid % 40000))


def test_h5_overwrite_takes_the_name_and_the_holder_yields_visibly(registry, watch, processes):
    first = processes.device(registry.url, "cam")
    assert first.expect("REGISTERED")[0] == "cam"
    assert next_change(watch, 5).kind == WatchEventKind.ADDED
    second = processes.device(registry.url, "cam", "--overwrite")
    assert second.expect("REGISTERED")[0] == "cam"
    assert first.expect("RENAMED", timeout=2 * RENEW + 1) == ["cam-1"]
    changes = [next_change(watch, 2) for _ in range(3)]
    first_port, second_port = str(20000 + first.pid % 40000), str(20000 + second.pid % 40000)
    assert [(c.kind.value, c.device.name, c.device.address.rsplit(":", 1)[1]) for c in changes] == [
        ("removed", "cam", first_port),
        ("added", "cam", second_port),
        ("added", "cam-1", first_port),
    ]
    assert changes[0].reason == "replaced"
    assert watch.next_event(6 * RENEW) is None  # stable: no tug of war over the name
    assert HEARTBEAT < RENEW * 6
