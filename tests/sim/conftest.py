from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from labwire.registry import DeviceRegistry
from labwire.sim import SimCamera, SimStage, StagePosition


def wait_for(
    condition: Callable[[], object], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Wait until ``condition()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 3.0
    while True:
        leaked = [
            t.name
            for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and t.name.startswith("labwire")
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def registry() -> Iterator[DeviceRegistry]:
    service = DeviceRegistry(None, "127.0.0.1", "0", heartbeat_interval=0.2)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def stage() -> Iterator[SimStage]:
    server = SimStage(None, "tcp://127.0.0.1:0", speed=20_000.0)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def camera(stage: SimStage) -> Iterator[SimCamera]:
    pose = StagePosition(stage.endpoint)
    server = SimCamera(None, "tcp://127.0.0.1:0", pose=pose)
    server.start()
    try:
        yield server
    finally:
        server.close()
        pose.close()
