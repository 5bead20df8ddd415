"""Signals over the network: selective subscription, sequencing, slow and late subscribers."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from labwire.rpc import RPCSignal, RPCSignalReceiver
from tests.rpc.conftest import wait_for
from tests.rpc.devices import Camera, CameraClient

pytestmark = pytest.mark.timeout(30)


def _wait_subscribed(server: Camera, proxy: CameraClient, signal: str = "counterChanged") -> None:
    """Subscriptions travel asynchronously: probe until one emission arrives, then reset."""

    def probe() -> bool:
        before = proxy.signal_stats()["received"]
        getattr(server, signal).emit(*([0] if signal == "counterChanged" else ["STILL"]))
        time.sleep(0.02)
        return proxy.signal_stats()["received"] > before

    wait_for(probe)


def test_client_receives_only_signals_it_has_slots_for(camera: Camera) -> None:
    with CameraClient(None, camera.endpoint) as proxy:
        modes: list[str] = []
        counters: list[int] = []
        proxy.modeChanged.connect(modes.append)
        _wait_subscribed(camera, proxy, "modeChanged")
        modes.clear()
        camera.counterChanged.emit(1)
        proxy.mode = "VIDEO"
        wait_for(lambda: modes == ["VIDEO"])
        assert counters == []
        receiver = proxy._subscriptions.receiver
        assert receiver is not None
        assert receiver._subscribed == {"modeChanged"}


def test_signal_arguments_are_coerced_to_declared_types(camera: Camera) -> None:
    with CameraClient(None, camera.endpoint) as proxy:
        got: list[object] = []
        proxy.pointsChanged.connect(got.append)
        wait_for(
            lambda: (camera.pointsChanged.emit([1, 2]), time.sleep(0.02), bool(got))[-1]  # type: ignore[func-returns-value]
        )
        assert got[0] == [1, 2]


def test_one_publication_per_emit_whatever_the_number_of_clients(camera: Camera) -> None:
    clients = [CameraClient(None, camera.endpoint) for _ in range(3)]
    try:
        received = [[] for _ in clients]  # type: list[list[int]]
        for proxy, box in zip(clients, received, strict=True):
            proxy.counterChanged.connect(box.append)
            _wait_subscribed(camera, proxy)
        before = camera._publisher.seq.get("counterChanged", 0)
        for box in received:
            box.clear()
        clients[0].emit_many(10)
        assert camera._publisher.seq.get("counterChanged", 0) == before + 10
        wait_for(lambda: all(len(box) == 10 for box in received))
        assert all(box == received[0] for box in received)
        assert all(c.signal_stats()["gaps"] == 0 for c in clients)
    finally:
        for proxy in clients:
            proxy.close()


def test_a_raising_slot_does_not_stop_delivery(camera: Camera) -> None:
    with CameraClient(None, camera.endpoint) as proxy:
        good: list[int] = []

        def broken(value: int) -> None:
            raise RuntimeError("bad slot")

        proxy.counterChanged.connect(broken)
        proxy.counterChanged.connect(good.append)
        _wait_subscribed(camera, proxy)
        good.clear()
        proxy.emit_many(3)
        wait_for(lambda: len(good) == 3)
        assert proxy.signal_stats()["slot_errors"] >= 3


def test_slow_subscriber_sees_gaps_and_never_blocks_publisher_or_fast_subscriber() -> None:
    from labwire.config import Settings

    server = Camera(None, "tcp://127.0.0.1:0", settings=Settings(signal_hwm=200)).start()
    fast = CameraClient(None, server.endpoint)
    slow = CameraClient(None, server.endpoint, settings=Settings(signal_hwm=10))
    release = threading.Event()
    try:
        fast_seen: list[int] = []
        fast.blobReady.connect(lambda blob: fast_seen.append(len(blob)))
        slow.blobReady.connect(lambda blob: release.wait(30))
        for proxy in (fast, slow):
            wait_for(
                lambda p=proxy: (
                    server.blobReady.emit(""),
                    time.sleep(0.02),
                    p.signal_stats()["received"] > 0,
                )[-1]
            )
        fast_seen.clear()
        # ~40 MB of signals: more than the frozen subscriber's socket buffers can absorb.
        batch, batches, size = 100, 20, 20_000
        start = time.monotonic()
        for round_ in range(1, batches + 1):
            assert fast.emit_blobs(batch, size) == batch  # the publisher never waits
            wait_for(lambda n=round_: len(fast_seen) == n * batch, timeout=10)
        assert time.monotonic() - start < 20
        assert fast.signal_stats()["gaps"] == 0
        release.set()
        # A gap shows when the next message after it arrives.
        wait_for(
            lambda: (server.blobReady.emit(""), time.sleep(0.05), slow.signal_stats()["gaps"])[-1],
            timeout=10,
        )
    finally:
        release.set()
        fast.close()
        slow.close()
        server.close()


def test_late_joiner_reads_current_property_values(camera: Camera) -> None:
    camera.mode = "VIDEO"
    camera.emit_many(4)
    with CameraClient(None, camera.endpoint) as late:
        assert late.get_properties() == {"mode": "VIDEO", "counter": 4}
        assert late.mode == "VIDEO"


def test_standalone_receiver_as_in_the_seed(camera: Camera) -> None:
    counter = RPCSignal(int)
    got: list[int] = []
    counter.connect(got.append)
    receiver = RPCSignalReceiver(None, camera.signal_endpoint, {"counterChanged": counter})
    receiver.start()
    try:
        wait_for(lambda: (camera.counterChanged.emit(7), time.sleep(0.02), bool(got))[-1])  # type: ignore[func-returns-value]
        assert got[0] == 7
    finally:
        receiver.stop()
        receiver.join(2)
    assert not receiver.is_alive()
    with pytest.raises(TypeError):
        RPCSignalReceiver(None, camera.signal_endpoint, {"x": 1})  # type: ignore[dict-item]


def test_an_emission_right_after_connect_is_never_lost(camera: Camera) -> None:
    for attempt in range(20):
        with CameraClient(None, camera.endpoint) as proxy:
            modes: queue.SimpleQueue[str] = queue.SimpleQueue()
            proxy.modeChanged.connect(modes.put)
            camera.modeChanged.emit(f"mode {attempt}")  # at once: no call in between
            assert modes.get(timeout=5) == f"mode {attempt}"


def test_a_second_signal_connected_later_is_in_place_on_return_too(camera: Camera) -> None:
    with CameraClient(None, camera.endpoint) as proxy:
        proxy.modeChanged.connect(lambda mode: None)
        counters: list[int] = []
        proxy.counterChanged.connect(counters.append)
        camera.counterChanged.emit(7)
        wait_for(lambda: counters == [7])
