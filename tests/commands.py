"""Running ``python -m labwire`` as a user runs it: to completion, or as a long-running command."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO


def environment(registry_url: str | None) -> dict[str, str]:
    """This process's environment without LABWIRE_* settings, plus LABWIRE_REGISTRY."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABWIRE_")}
    env["COLUMNS"] = "200"  # wide tables: a test reads phrases that a narrow one would wrap
    if registry_url is not None:
        env["LABWIRE_REGISTRY"] = registry_url
    return env


def labwire(
    *args: str, registry: str | None = None, cwd: Path | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m labwire ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "labwire", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(registry),
        cwd=cwd,
    )


class Running:
    """A long-running ``python -m labwire ...``; its output is read line by line."""

    def __init__(self, *args: str, registry: str | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labwire", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(registry),
        )
        self.stdout: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.stderr: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.seen: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, lines: queue.SimpleQueue[str | None]) -> None:
        assert stream is not None
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def line(
        self, stream: str = "stdout", match: Callable[[str], bool] = bool, timeout: float = 10
    ) -> str:
        """The next line of ``stream`` for which ``match`` is true."""
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                message = f"no matching {stream} line in {timeout} s; saw {self.seen}"
                raise AssertionError(message) from None
            if line is None:
                lines.put(None)
                raise AssertionError(f"{stream} closed; saw {self.seen}")
            self.seen.append(line)
            if match(line):
                return line

    def wait(self, timeout: float = 10) -> int:
        return self.process.wait(timeout)

    def stop(self) -> int:
        """Terminate (SIGTERM), then kill if needed; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode
