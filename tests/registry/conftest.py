from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from labwire.errors import EndpointError
from labwire.registry import DeviceRegistry
from labwire.transport import SocketType, Transport, default_context
from tests.registry.procs import ProcessPool

TTL = 1.0  # lease length used by the tests, in seconds
HEARTBEAT = 0.2  # registry event heartbeat used by the tests


def wait_for(
    condition: Callable[[], object], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Wait until ``condition()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.005)


def restart_registry(port: str, timeout: float = 5.0, **options: Any) -> DeviceRegistry:
    """A new registry on ``port``, once the previous one's listener is really gone.

    ZeroMQ closes listening sockets asynchronously, so the port may stay busy for a moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return DeviceRegistry(None, "127.0.0.1", port, **options)
        except EndpointError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="session", autouse=True)
def _zmq_context() -> None:
    # start the context's I/O and reaper threads before any baseline is taken
    transport = Transport(default_context())
    transport.bind(SocketType.ROUTER, "tcp://127.0.0.1:0").close()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves threads or sockets behind."""
    threads = set(threading.enumerate())
    fds = open_fds()
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
        grown = open_fds() - fds
        if not leaked and grown <= 2:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"leaked threads {leaked} / {grown} file descriptors")
        time.sleep(0.01)


@pytest.fixture
def registry() -> Iterator[DeviceRegistry]:
    service = DeviceRegistry(None, "127.0.0.1", "0", heartbeat_interval=HEARTBEAT)
    service.start()
    yield service
    service.stop()


@pytest.fixture
def processes() -> Iterator[ProcessPool]:
    pool = ProcessPool()
    try:
        yield pool
    finally:
        pool.close()
