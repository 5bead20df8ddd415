"""The RPC rows of the fault matrix, injected for real.

Servers run in subprocesses and are crashed (``SIGKILL``), frozen (``SIGSTOP``/``SIGCONT``) and
restarted on the same endpoint; a dying client is a subprocess too. Every process is signalled
by its own PID and cleaned up by the ``device_process`` fixture or a ``finally``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import zmq

from labwire.config import Settings
from labwire.errors import CallTimeout, ClosedError, Unavailable
from tests.commands import is_stopped
from tests.rpc.conftest import ROOT, DeviceProcess, process_fds, process_threads, wait_for
from tests.rpc.devices import Camera, CameraClient

pytestmark = pytest.mark.timeout(60)

StartDevice = Callable[..., DeviceProcess]

#: The contract's tolerance on every deadline.
SLACK = 0.25


def _received(proxy: CameraClient, box: list[Any]) -> bool:
    """Emit one ``counterChanged`` from the server; True once a new emission reached ``box``."""
    before = len(box)
    proxy.emit_many(1)
    deadline = time.monotonic() + 0.1
    while time.monotonic() < deadline:
        if len(box) > before:
            return True
        time.sleep(0.005)
    return False


def _freeze(device: DeviceProcess) -> None:
    device.process.send_signal(signal.SIGSTOP)
    wait_for(lambda: is_stopped(device.pid))


@contextmanager
def _frozen(device: DeviceProcess) -> Iterator[None]:
    """Keep ``device`` stopped (SIGSTOP) for the duration of the block."""
    _freeze(device)
    try:
        yield
    finally:
        device.process.send_signal(signal.SIGCONT)


class _Call(threading.Thread):
    """Run ``function`` in a thread and record how it ended and how long it took."""

    def __init__(self, function: Callable[[], Any]) -> None:
        super().__init__(name="test-call", daemon=True)
        self._function = function
        self.result: Any = None
        self.error: BaseException | None = None
        self.ended_at = 0.0

    def run(self) -> None:
        try:
            self.result = self._function()
        except BaseException as exc:
            self.error = exc
        self.ended_at = time.monotonic()


def test_r1_idle_crash_fails_fast_then_same_client_follows_the_restart(
    device_process: StartDevice,
) -> None:
    first = device_process()
    with CameraClient(None, first.endpoint) as proxy:
        counters: list[int] = []
        proxy.counterChanged.connect(counters.append)
        wait_for(lambda: _received(proxy, counters))
        old_server = proxy.server_id

        first.kill()
        crashed = time.monotonic()
        for _ in range(2):
            start = time.monotonic()
            with pytest.raises(Unavailable):
                proxy.echo("down")  # declared timeout: 10 s
            assert time.monotonic() - start < 1.0

        time.sleep(max(0.0, crashed + 1.0 - time.monotonic()))  # the scenario: down for 1 s
        second = device_process(first.endpoint)
        assert second.endpoint == first.endpoint
        assert proxy.add(1, 2) == 3  # the first call after the restart
        assert proxy.server_id and proxy.server_id != old_server
        assert "emit_many" in proxy.inventory()["json_methods"]

        counters.clear()
        wait_for(lambda: _received(proxy, counters))
        assert counters[-1] == proxy.counter  # emitted by the new server
        assert proxy.signal_stats()["restarts"] == 1


def test_r1_first_call_after_restart_does_not_wait_out_the_reconnection_backoff(
    device_process: StartDevice,
) -> None:
    # After 2 s down, ZeroMQ's next reconnection attempt (100 ms doubling, capped at 10 s)
    # is more than 3 s after the crash: the first call must not depend on it.
    settings = Settings(reconnect_ivl_ms=100, reconnect_ivl_max_ms=10_000)
    first = device_process()
    with CameraClient(None, first.endpoint, settings=settings) as proxy:
        old_server = proxy.server_id
        first.kill()
        crashed = time.monotonic()
        with pytest.raises(Unavailable):
            proxy.add(1)
        time.sleep(max(0.0, crashed + 2.0 - time.monotonic()))  # the scenario: down for 2 s
        device_process(first.endpoint)
        start = time.monotonic()
        assert proxy.add(1) == 2
        assert time.monotonic() - start < settings.connect_grace_ms / 1000
        assert proxy.server_id != old_server


def test_r2_crash_mid_call_ends_by_the_deadline_and_next_call_works(
    device_process: StartDevice,
) -> None:
    first = device_process()
    with (
        CameraClient(None, first.endpoint) as proxy,
        CameraClient(None, first.endpoint) as observer,
    ):
        entered = observer.executed()

        def slow_call() -> Any:
            with proxy.override_timeout(3000):
                return proxy.sleep(30)

        call = _Call(slow_call)
        start = time.monotonic()
        call.start()
        wait_for(lambda: observer.executed() == entered + 1)
        first.kill()
        crashed = time.monotonic()
        call.join(5)
        assert not call.is_alive()
        assert isinstance(call.error, (CallTimeout, Unavailable)), call.error
        assert call.ended_at - start <= 3.0 + SLACK
        # The connection that carried the request is gone: no need to wait for the deadline.
        assert isinstance(call.error, Unavailable)
        assert call.ended_at - crashed < 1.0

        device_process(first.endpoint)
        assert proxy.add(2, 3) == 5
        assert proxy.echo("after") == "after"


def test_r5_frozen_server_times_out_on_time_and_never_runs_expired_requests(
    device_process: StartDevice,
) -> None:
    device = device_process()
    with CameraClient(None, device.endpoint) as proxy:
        entered = proxy.executed()
        late = proxy.late_replies
        with _frozen(device):
            frozen_at = time.monotonic()
            for value in range(3):
                start = time.monotonic()
                with proxy.override_timeout(300), pytest.raises(CallTimeout):
                    proxy.echo(value)
                assert 0.3 <= time.monotonic() - start <= 0.3 + SLACK
            time.sleep(max(0.0, frozen_at + 2.0 - time.monotonic()))  # the scenario: 2 s frozen

        # The three requests reached the server before this one on the same connection, so
        # they have been refused by the time it answers: their replies arrive first, as late
        # replies, and none of them entered the handler.
        assert proxy.executed() == entered
        assert proxy.late_replies == late + 3
        assert proxy.echo("thawed") == "thawed"
        assert proxy.executed() == entered + 1


def test_r6_client_killed_before_its_reply_leaves_the_server_healthy(
    device_process: StartDevice,
) -> None:
    device = device_process()
    with CameraClient(None, device.endpoint) as proxy:
        proxy.sleep(0.05)  # warm up: a slow call makes the server start its second runner
        base_fds, base_threads = process_fds(device.pid), process_threads(device.pid)
        entered = proxy.executed()
        script = textwrap.dedent(
            f"""
            from tests.rpc.devices import CameraClient
            client = CameraClient(None, {device.endpoint!r})
            with client.override_timeout(10_000):
                client.sleep(0.5)
            """
        )
        dying = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
        try:
            wait_for(lambda: proxy.executed() == entered + 1)
            dying.kill()
            killed = time.monotonic()
            dying.wait(5)
        finally:
            if dying.poll() is None:
                dying.kill()
                dying.wait(5)

        with proxy.override_timeout(1000):
            assert proxy.add(1) == 2
        assert time.monotonic() - killed < 1.0
        assert device.process.poll() is None

        def at_baseline() -> bool:
            fds, threads = process_fds(device.pid), process_threads(device.pid)
            return abs(fds - base_fds) <= 2 and abs(threads - base_threads) <= 2

        wait_for(at_baseline)
        # The scenario: outlive the dead client's handler, whose reply has nowhere to go.
        time.sleep(max(0.0, killed + 0.6 - time.monotonic()))
        assert proxy.echo("still here") == "still here"
        assert at_baseline()


def test_r7_late_reply_is_counted_dropped_and_never_returned(
    device_process: StartDevice,
) -> None:
    device = device_process()
    with CameraClient(None, device.endpoint) as proxy:
        start = time.monotonic()
        with pytest.raises(CallTimeout):
            proxy.sleep(0.8)  # declared timeout: 500 ms
        assert 0.5 <= time.monotonic() - start <= 0.5 + SLACK
        assert proxy.late_replies == 0
        assert proxy.add(40, 2) == 42
        values = []

        def late_reply_seen() -> bool:
            values.append(proxy.echo(len(values)))
            return proxy.late_replies == 1

        wait_for(late_reply_seen, timeout=3)
        assert values == list(range(len(values)))  # every call got its own result
        assert proxy.late_replies == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("peer", ["never_started", "killed", "frozen"])
def test_l1_close_and_context_term_are_prompt_with_a_dead_peer(
    device_process: StartDevice, peer: str
) -> None:
    context: zmq.Context[Any] = zmq.Context()
    terminator = threading.Thread(target=context.term, name="test-term", daemon=True)
    pending: _Call | None = None
    device: DeviceProcess | None = None
    proxy: CameraClient | None = None
    try:
        if peer == "never_started":
            with pytest.raises(Unavailable):
                CameraClient(context, f"tcp://127.0.0.1:{_free_port()}")
            start = time.monotonic()
        else:
            device = device_process()
            proxy = client = CameraClient(context, device.endpoint)
            entered = client.executed()

            def wait_forever() -> Any:
                with client.override_timeout(None):
                    if peer == "killed":
                        return client.sleep(30)
                    # Too large for the socket buffers: part of it stays queued in the client.
                    return client.echo(b"\0" * 8_000_000)

            pending = _Call(wait_forever)
            if peer == "killed":
                pending.start()
                wait_for(lambda: client.executed() == entered + 1)
                device.kill()
            else:
                _freeze(device)
                pending.start()
                pending.join(0.2)
                assert pending.is_alive()  # the call is pending, its request undelivered
            start = time.monotonic()
            client.close()
        terminator.start()
        terminator.join(2)
        assert not terminator.is_alive(), "context.term() blocked"
        assert time.monotonic() - start <= 1.0
        if pending is not None:
            pending.join(2)
            assert not pending.is_alive()
            assert isinstance(pending.error, (ClosedError, Unavailable)), pending.error
    finally:
        if proxy is not None:
            proxy.close()
        if device is not None and peer == "frozen":
            device.process.send_signal(signal.SIGCONT)
            device.kill()


@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_call_without_deadline_ends_when_the_server_dies_or_freezes(
    device_process: StartDevice, fault: str
) -> None:
    settings = Settings(heartbeat_ivl_ms=500, heartbeat_timeout_ms=1000)
    device = device_process()
    try:
        with CameraClient(None, device.endpoint, settings=settings) as proxy:
            entered = proxy.executed()

            def wait_forever() -> Any:
                with proxy.override_timeout(None):
                    return proxy.sleep(30)

            call = _Call(wait_forever)
            call.start()
            wait_for(lambda: proxy.executed() == entered + 1)
            # Longer than the heartbeat timeout: pings are answered while the handler runs.
            call.join(1.5)
            assert call.is_alive()
            if fault == "kill":
                device.kill()
            else:
                _freeze(device)
            faulted = time.monotonic()
            call.join(5)
            assert not call.is_alive()
            assert isinstance(call.error, Unavailable), call.error
            assert call.ended_at - faulted <= settings.heartbeat_timeout_ms / 1000 + SLACK
    finally:
        if fault == "stop":
            device.process.send_signal(signal.SIGCONT)
        device.kill()


def test_p2_subscriber_reports_a_publisher_restart_and_keeps_receiving(
    device_process: StartDevice,
) -> None:
    first = device_process()
    with CameraClient(None, first.endpoint) as proxy:
        counters: list[int] = []
        proxy.counterChanged.connect(counters.append)
        wait_for(lambda: _received(proxy, counters))
        assert proxy.signal_stats()["restarts"] == 0

        first.kill()
        device_process(first.endpoint)
        wait_for(lambda: _received(proxy, counters))
        assert proxy.signal_stats()["restarts"] == 1

        counters.clear()
        last = proxy.emit_many(5)
        wait_for(lambda: len(counters) == 5)
        assert counters == list(range(last - 4, last + 1))
        assert proxy.signal_stats()["gaps"] == 0


# ------------------------------------------------------- the program's own context, terminated


def _term_returns(context: zmq.Context[Any]) -> bool:
    """Whether ``context.term()`` returns (in 10 s; it hangs while a socket is open)."""
    terminating = threading.Thread(target=context.term, daemon=True)
    terminating.start()
    terminating.join(10)
    return not terminating.is_alive()


def test_a_dropped_client_with_a_slot_lets_its_context_terminate() -> None:
    with Camera(None, "tcp://127.0.0.1:0") as camera:
        context: zmq.Context[Any] = zmq.Context()
        client = CameraClient(context, camera.endpoint)
        modes: list[str] = []
        client.modeChanged.connect(modes.append)
        camera.modeChanged.emit("VIDEO")
        wait_for(lambda: modes == ["VIDEO"])
        del client  # as deployed programs do: no close(), the client is collected
        assert _term_returns(context)
        wait_for(lambda: not [t for t in threading.enumerate() if t.name == "labwire-signals"])


def test_a_context_terminated_under_a_live_client_and_server_lets_term_return() -> None:
    context: zmq.Context[Any] = zmq.Context()
    camera = Camera(context, "tcp://127.0.0.1:0").start()
    client = CameraClient(context, camera.endpoint)
    client.modeChanged.connect(lambda mode: None)
    assert client.add(1, 2) == 3
    assert _term_returns(context)  # the client's signal thread and the server let go
    wait_for(lambda: camera.wait_stopped(0))
    with pytest.raises(ClosedError):
        client.add(1, 2)
    client.close()
    camera.stop_server()
