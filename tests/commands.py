"""Test programs as real processes: ``python -m labwire`` as a user runs it (to completion, or as
a long-running command), and helper modules driven line by line (:class:`LineProcess`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
_KILL = signal.SIGKILL  # read here: LineProcess.signal, a method, hides the module there


def is_stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped (SIGSTOP takes effect per thread)."""
    tasks = Path(f"/proc/{pid}/task")
    states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks.iterdir()]
    return all(state == "T" for state in states)


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


class LineProcess:
    """``python -m MODULE ARGV`` that reports one fact per stdout line and reads commands on stdin.

    A thread reads its output. Lines a wait skips stay available to later waits, in order, so
    no fact is lost between two waits. ``prefix`` runs it inside something else (e.g. a
    network namespace: ``["ip", "netns", "exec", NAME]``).
    """

    def __init__(self, module: str, argv: Sequence[str], prefix: Sequence[str] = ()) -> None:
        self.argv = [*prefix, sys.executable, "-m", module, *argv]
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.history: list[str] = []
        self._unread: list[str] = []
        self._reader = threading.Thread(target=self._read, name="line-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def next_line(self, words: Sequence[str], timeout: float) -> str:
        """The next unread line whose first word is one of ``words``, whole."""
        deadline = time.monotonic() + timeout
        while True:
            for index, line in enumerate(self._unread):
                if line.partition(" ")[0] in words:
                    del self._unread[index]
                    return line
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"{self.argv[-8:]}: no {words} line within {timeout} s; saw {self.history}"
                ) from None
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"process exited before {words}; saw {self.history}")
            self.history.append(line)
            self._unread.append(line)

    def drain(self) -> list[str]:
        """Forget unread lines (returned), e.g. before waiting for a fresh one."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self.lines.put(None)
                break
            self.history.append(line)
            self._unread.append(line)
        dropped, self._unread = self._unread, []
        return dropped

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)

    def kill(self, signum: int = _KILL) -> None:
        """Send ``signum`` (``kill -9`` by default) and reap."""
        self.signal(signum)
        self.process.wait(5)

    def ask_to_stop(self) -> None:
        """How :meth:`close` asks the process to end (default: SIGCONT, then SIGTERM)."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)

    def close(self) -> None:
        """Ask the process to end, kill it if it does not within 3 s, and release its pipes."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.ask_to_stop()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._reader.join(2)
