from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from labwire.transport import SocketType, Transport, default_context

LOOPBACK = "127.0.0.0/8"
BEACON = 0.05  # beacon interval used by the tests, in seconds
EXPIRY = 0.6  # peer expiry used by the tests, in seconds


async def until(condition: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Wait (on the running loop) until ``condition()`` is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout} s")
        await asyncio.sleep(0.01)


def wait_for(condition: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Wait (in this thread) until ``condition()`` is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout} s")
        time.sleep(0.01)


@pytest.fixture
def group() -> str:
    """A group name of its own for each test (its own UDP port, almost surely)."""
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture(scope="session", autouse=True)
def _zmq_context() -> None:
    # start the context's I/O and reaper threads before any baseline is taken
    Transport(default_context()).bind(SocketType.ROUTER, "tcp://127.0.0.1:0").close()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves threads or file descriptors behind."""
    threads = set(threading.enumerate())
    fds = len(os.listdir("/proc/self/fd"))
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
        grown = len(os.listdir("/proc/self/fd")) - fds
        if not leaked and grown <= 2:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"leaked threads {leaked} / {grown} file descriptors")
        time.sleep(0.01)
