"""How a device runs: its plan of sockets, the relay in a thread of this process or in a child.

:class:`~labwire.brokers.device.Device` and its variants make a plan, open it here (or in a
child process, which gets the plan and makes its own context) and stop it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from labwire.config import Settings
from labwire.errors import LabwireError, TransportError
from labwire.transport import SocketType, Transport
from labwire.transport.proxy import (
    Relay,
    RelayStatistics,
    SideConfig,
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything needed to open a device's sockets, picklable for a spawned process."""

    in_side: SideConfig
    out_side: SideConfig | None
    capture: SideConfig | None
    tags: tuple[bytes, bytes] | None
    settings: Settings


class _Side:
    """The queued actions for one socket of a device."""

    def __init__(self, kind: SocketType) -> None:
        self.kind = kind
        self.binds: list[str] = []
        self.connects: list[str] = []
        self.options: list[tuple[int, int | bytes]] = []

    def config(self, merged: _Side | None = None) -> SideConfig:
        sides = (self,) if merged is None else (self, merged)
        return SideConfig(
            self.kind,
            tuple(url for side in sides for url in side.binds),
            tuple(url for side in sides for url in side.connects),
            tuple(option for side in sides for option in side.options),
        )


class _Runner:
    """A running relay in this process: in the caller's thread, or in a thread of its own."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.endpoints = relay.endpoints
        self.thread: threading.Thread | None = None

    def statistics(self) -> RelayStatistics:
        return self.relay.statistics()

    def stop(self, timeout: float) -> RelayStatistics:
        deadline = time.monotonic() + timeout
        final = self.relay.stop(timeout)
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        return final

    def join(self, timeout: float | None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
        elif not self.relay.is_finished:
            self.relay.wait(timeout)

    @property
    def is_finished(self) -> bool:
        return self.relay.is_finished and (self.thread is None or not self.thread.is_alive())


class _ChildRunner:
    """A relay in a child process, driven over a pipe."""

    def __init__(self, process: Any, pipe: Connection, endpoints: dict[str, list[str]]) -> None:
        self.process = process
        self.pipe = pipe
        self.endpoints = endpoints
        self._lock = threading.Lock()
        self._final: RelayStatistics | None = None

    def statistics(self) -> RelayStatistics:
        with self._lock:
            if self._final is not None:
                return self._final
            try:
                self.pipe.send("statistics")
                if self.pipe.poll(1.0):
                    reply = self.pipe.recv()
                    if isinstance(reply, RelayStatistics):
                        return reply
            except (OSError, EOFError):
                pass
            raise TransportError("the broker process did not report its statistics")

    def stop(self, timeout: float) -> RelayStatistics:
        """Ask the child to stop; past 80% of ``timeout`` terminate it, past 90% kill it."""
        with self._lock:
            if self._final is not None:
                return self._final
            start = time.monotonic()
            final = RelayStatistics()
            try:
                self.pipe.send("stop")
                if self.pipe.poll(timeout * 0.6):
                    reply = self.pipe.recv()
                    if isinstance(reply, RelayStatistics):
                        final = reply
            except (OSError, EOFError):
                pass
            self._final = final
            process = self.process
            process.join(max(0.0, start + timeout * 0.8 - time.monotonic()))
            if process.is_alive():
                _log.warning("broker process %s did not stop; terminating it", process.pid)
                process.terminate()
                process.join(max(0.0, start + timeout * 0.9 - time.monotonic()))
            if process.is_alive():
                process.kill()  # also ends a stopped (SIGSTOP) process
                process.join(1.0)
            self.pipe.close()
            return final

    def join(self, timeout: float | None) -> None:
        self.process.join(timeout)

    @property
    def is_finished(self) -> bool:
        return not self.process.is_alive()


def _serve_in_child(plan: _Plan, context_factory: Callable[[], Any], pipe: Connection) -> None:
    """The body of a process device: open the relay, report, relay until told to stop."""
    context = context_factory()
    relay: Relay | None = None
    thread: threading.Thread | None = None
    try:
        try:
            relay = Relay.open(
                Transport(context, plan.settings),
                plan.in_side,
                plan.out_side,
                plan.capture,
                tags=plan.tags,
            )
        except LabwireError as exc:
            pipe.send(("error", exc))
            return
        thread = threading.Thread(target=relay.run, name="labwire-broker", daemon=True)
        thread.start()
        pipe.send(("ready", relay.endpoints))
        while True:
            command = pipe.recv()
            if command == "statistics":
                pipe.send(relay.statistics())
            elif command == "stop":
                pipe.send(relay.stop())
                return
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the parent went away (or the terminal's Ctrl-C): stop below
    finally:
        if relay is not None:
            relay.stop()
        if thread is not None:
            thread.join(1.0)
        pipe.close()
        context.term()
