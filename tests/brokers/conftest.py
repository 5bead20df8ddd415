from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` is truthy, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.005)


class Peers:
    """Raw pyzmq sockets for the far ends of a broker, all closed at teardown."""

    def __init__(self) -> None:
        self.context = zmq.Context.instance()
        self.sockets: list[zmq.Socket[Any]] = []

    def connect(self, kind: int, url: str, **options: Any) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self.context.socket(kind)
        sock.linger = 0
        sock.rcvtimeo = 5000
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name.upper()), value)
        sock.connect(url)
        self.sockets.append(sock)
        return sock

    def bind(self, kind: int, url: str = "tcp://127.0.0.1:0") -> tuple[zmq.Socket[Any], str]:
        sock: zmq.Socket[Any] = self.context.socket(kind)
        sock.linger = 0
        sock.rcvtimeo = 5000
        sock.bind(url)
        self.sockets.append(sock)
        return sock, sock.last_endpoint.decode()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(0)


@pytest.fixture
def peers() -> Iterator[Peers]:
    made = Peers()
    yield made
    made.close()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    wait_for(
        lambda: (
            not [
                t
                for t in threading.enumerate()
                if t.ident not in before and t.name.startswith("labwire-broker")
            ]
        ),
        timeout=2.0,
    )
