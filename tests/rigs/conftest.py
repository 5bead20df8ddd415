"""Rig processes started by the tests, killed by their own PIDs at teardown."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Proc:
    """A test process: JSON lines on stdout, stdin kept open (closing it stops the process)."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)

    def record(self, timeout: float = 10.0) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from {self.argv} within {timeout} s") from None
        value: dict[str, Any] = json.loads(line)
        return value

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGCONT)
                os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._reader.join(2)


class Procs:
    """Starts test processes and kills whatever is left at teardown."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, *args: str, prefix: Sequence[str] = ()) -> Proc:
        proc = Proc([*prefix, sys.executable, "-m", "tests.rigs.procs", *args])
        self.started.append(proc)
        return proc

    def rig(self, name: str, *args: str, prefix: Sequence[str] = ()) -> tuple[Proc, dict[str, Any]]:
        proc = self.start("rig", name, *args, prefix=prefix)
        return proc, proc.record()

    def close(self) -> None:
        for proc in self.started:
            proc.kill()


@pytest.fixture
def procs() -> Iterator[Procs]:
    pool = Procs()
    try:
        yield pool
    finally:
        pool.close()


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


@pytest.fixture
def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
