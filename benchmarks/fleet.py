"""Groups of benchmark processes (subscribers, callers) driven over their stdin and stdout."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


class _Process:
    """One ``python -m benchmarks.peers ROLE TARGET`` process, read line by line."""

    def __init__(self, role: str, target: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.peers", role, target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.popen.stdout is not None
        self.fd = self.popen.stdout.fileno()
        self.pending = b""

    def line(self, deadline: float) -> str | None:
        """The next line, or None if none is complete by ``deadline``."""
        while b"\n" not in self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise RuntimeError(f"{self.popen.args} exited (status {self.popen.wait()})")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def send(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def hang_up(self) -> None:
        if self.popen.stdin is not None:
            self.popen.stdin.close()

    def stop(self) -> None:
        self.hang_up()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class Fleet:
    """Processes of one role that print ``ready`` and then one JSON line per command or burst.

    Args:
        role: The role in :mod:`benchmarks.peers` (e.g. ``"worker-labwire"``).
        target: Its argument (a URL or a port).
    """

    def __init__(self, role: str, target: str) -> None:
        self.role = role
        self.target = target
        self.members: list[_Process] = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def grow(self, size: int, probe: Callable[[], Any] | None = None, timeout: float = 120) -> None:
        """Start members until there are ``size``; wait until each is ready.

        Args:
            size: The number of members wanted.
            probe: Called every 50 ms while waiting (subscribers get ready on a signal).
            timeout: Seconds to wait for the new members.
        """
        new = [_Process(self.role, self.target) for _ in range(size - len(self.members))]
        self.members += new
        deadline = time.monotonic() + timeout
        waiting = list(new)
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} {self.role} processes never became ready")
            if probe is not None:
                probe()
            step = time.monotonic() + 0.05
            waiting = [member for member in waiting if member.line(step) != "ready"]

    def command(self, text: str, size: int) -> None:
        """Send ``text`` as one line to the first ``size`` members."""
        for member in self.members[:size]:
            member.send(text)

    def reports(self, size: int, timeout: float = 120) -> list[dict[str, Any]]:
        """One JSON report from each of the first ``size`` members."""
        deadline = time.monotonic() + timeout
        reports = []
        for member in self.members[:size]:
            line = member.line(deadline)
            if line is None:
                raise RuntimeError(f"a {self.role} process did not report in {timeout} s")
            reports.append(json.loads(line))
        return reports

    def close(self) -> None:
        """End every member (each ends once its stdin closes)."""
        for member in self.members:
            member.hang_up()
        for member in self.members:
            member.stop()
        self.members = []
