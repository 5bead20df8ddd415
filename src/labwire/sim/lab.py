"""A simulated lab in separate processes: a registry, a camera and a stage.

Theory of operation
-------------------
:class:`SimLab` starts each part as ``python -m labwire registry|sim ... --json --stop-on-eof``
in its own process (and its own session, so a Ctrl-C in the terminal reaches only the parent,
which then stops the children in order). Each child prints one JSON line when it is ready (the
registry its real endpoint, a device its endpoint and accepted name once registered); a reader
thread per child collects those lines. Every child watches its standard input: when the
parent closes the pipe, or dies and the kernel closes it, the child stops cleanly, so no
process outlives the lab. :meth:`SimLab.close` closes the pipes, waits, and only then escalates
to SIGTERM and SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Self

from labwire.errors import LabwireError

__all__ = ["ChildProcess", "SimLab", "SimProcessError"]

_log = logging.getLogger(__name__)


class SimProcessError(LabwireError):
    """A simulated lab process failed to start, or died."""


class ChildProcess:
    """One ``python -m labwire ...`` child that reports readiness as a JSON line.

    Args:
        role: A short label for messages (``"registry"``, ``"camera"``...).
        argv: Arguments after ``python -m labwire``.
        python: The interpreter to run.
        env: Environment of the child (None: inherit).

    Attributes:
        role: The label.
        process: The :class:`subprocess.Popen` object.
    """

    def __init__(
        self,
        role: str,
        argv: Sequence[str],
        *,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.role = role
        # Closed in stop(), after the child is gone (kept for the error message until then).
        self._stderr: IO[bytes] = tempfile.TemporaryFile(prefix=f"labwire-{role}-")  # noqa: SIM115
        self._lines: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.process = subprocess.Popen(
            [python, "-m", "labwire", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"labwire-lab-{role}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for raw in stream:
            try:
                message = json.loads(raw)
            except ValueError:
                _log.debug("%s: %s", self.role, raw.decode(errors="replace").rstrip())
                continue
            if isinstance(message, dict):
                self._lines.put(message)
        self._lines.put(None)

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Wait for the child's ``{"event": "ready", ...}`` line and return it.

        Raises:
            SimProcessError: The child exited first, or said nothing within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = self._lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise SimProcessError(
                    f"the {self.role} process did not get ready within {timeout:g} s"
                    f"{self._stderr_tail()}"
                ) from None
            if message is None:
                code = self.process.wait()
                raise SimProcessError(
                    f"the {self.role} process exited with code {code} before it was ready"
                    f"{self._stderr_tail()}"
                )
            if message.get("event") == "ready":
                return message

    def _stderr_tail(self, lines: int = 12) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        if not text:
            return ""
        return ":\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the child: close its stdin, then SIGTERM, then SIGKILL; returns its exit code."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        steps = ((None, timeout * 0.6), (self.process.terminate, timeout * 0.3))
        for action, wait in steps:
            if action is not None and self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    action()
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.process.poll() is None:
            _log.warning("the %s process (pid %d) did not stop; killing it", self.role, self.pid)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()
        self._reader.join(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
        return self.process.returncode


class SimLab:
    """A registry, a simulated camera and a simulated stage, each in its own process.

    The camera sees the plant from the stage's position (it reads it from the stage). Use it
    as a context manager; :meth:`start` returns once both devices are registered.

    Args:
        secure: A key folder: run every process with CurveZMQ security (keys generated into
            the folder on first use), as ``labwire ... --secure FOLDER``.
        camera: The camera's registry name.
        stage: The stage's registry name.
        stage_speed: The stage's speed in mm/s.
        python: The interpreter for the children.
        startup_timeout: Seconds each process may take to get ready.

    Attributes:
        registry_url: The registry's endpoint (after :meth:`start`).
        devices: ``{name: address}`` of the camera and the stage (after :meth:`start`).
        processes: The children, in start order.
    """

    def __init__(
        self,
        *,
        secure: str | os.PathLike[str] | None = None,
        camera: str = "camera",
        stage: str = "stage",
        stage_speed: float = 1000.0,
        python: str = sys.executable,
        startup_timeout: float = 30.0,
    ) -> None:
        self.secure = None if secure is None else Path(secure)
        self.camera_name = camera
        self.stage_name = stage
        self.stage_speed = stage_speed
        self.python = python
        self.startup_timeout = startup_timeout
        self.registry_url = ""
        self.devices: dict[str, str] = {}
        self.processes: list[ChildProcess] = []

    def _spawn(self, role: str, argv: list[str]) -> ChildProcess:
        if self.secure is not None:
            argv = [*argv, "--secure", str(self.secure)]
        child = ChildProcess(role, [*argv, "--json", "--stop-on-eof"], python=self.python)
        self.processes.append(child)
        return child

    def start(self) -> Self:
        """Start the registry, then the stage and the camera; wait until they are registered.

        Raises:
            SimProcessError: A process failed to start (its last error lines are included).
        """
        try:
            registry = self._spawn("registry", ["registry", "--bind", "tcp://127.0.0.1:0"])
            self.registry_url = str(registry.wait_ready(self.startup_timeout)["url"])
            common = ["--registry", self.registry_url, "--bind", "tcp://127.0.0.1:0"]
            stage = self._spawn(
                "stage",
                [
                    "sim",
                    "stage",
                    "--name",
                    self.stage_name,
                    "--speed",
                    str(self.stage_speed),
                    *common,
                ],
            )
            camera = self._spawn(
                "camera",
                ["sim", "camera", "--name", self.camera_name, "--stage", self.stage_name, *common],
            )
            # Both start at once; the registry is fresh, so the names are accepted as asked.
            for child in (stage, camera):
                ready = child.wait_ready(self.startup_timeout)
                self.devices[str(ready["name"])] = str(ready["endpoint"])
        except BaseException:
            self.close()
            raise
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop every process, devices first and the registry last (idempotent)."""
        for child in reversed(self.processes):
            child.stop(timeout)
        self.processes = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
