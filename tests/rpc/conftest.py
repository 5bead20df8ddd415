from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.rpc.devices import Camera, CameraClient

ROOT = Path(__file__).resolve().parents[2]


def wait_for(
    condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.005
) -> None:
    """Wait until ``condition()`` is truthy, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def process_fds(pid: int) -> int:
    """Number of open file descriptors of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def process_threads(pid: int) -> int:
    """Number of threads of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/task"))


class DeviceProcess:
    """A Camera served by a real subprocess, killed by its own PID."""

    def __init__(
        self, url: str = "tcp://127.0.0.1:0", *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.rpc.devices", url, *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        self.endpoint = self.process.stdout.readline().strip()
        assert self.endpoint, "device process did not report its endpoint"

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def camera() -> Iterator[Camera]:
    server = Camera(None, "tcp://127.0.0.1:0").start()
    yield server
    server.close()


@pytest.fixture
def client(camera: Camera) -> Iterator[CameraClient]:
    with CameraClient(None, camera.endpoint) as proxy:
        yield proxy


@pytest.fixture
def device_process() -> Iterator[Callable[..., DeviceProcess]]:
    started: list[DeviceProcess] = []

    def start(url: str = "tcp://127.0.0.1:0", *extra: str) -> DeviceProcess:
        device = DeviceProcess(url, *extra)
        started.append(device)
        return device

    yield start
    for device in started:
        device.close()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and t.name.startswith("labwire")
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"
