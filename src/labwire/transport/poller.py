"""The :class:`Poller`: wait on several sockets and file descriptors at once."""

from __future__ import annotations

from typing import Any

import zmq

from labwire.transport.errors import translate_errors
from labwire.transport.socket import Socket

__all__ = ["Poller"]


class Poller:
    """Wait on several :class:`Socket` objects and plain file descriptors at once."""

    def __init__(self) -> None:
        self._poller = zmq.Poller()
        self._sockets: dict[Any, Socket | int] = {}

    def register(self, source: Socket | int) -> None:
        """Watch a socket (or a readable file descriptor) for incoming data."""
        raw = source.fileno() if isinstance(source, Socket) else source
        self._sockets[raw] = source
        self._poller.register(raw, zmq.POLLIN)

    def unregister(self, source: Socket | int) -> None:
        """Stop watching ``source``."""
        raw = source.fileno() if isinstance(source, Socket) else source
        if self._sockets.pop(raw, None) is not None:
            self._poller.unregister(raw)

    def poll(self, timeout_ms: int | None) -> list[Socket | int]:
        """Return the sources with data waiting (empty after ``timeout_ms``)."""
        with translate_errors("poll"):
            events = self._poller.poll(timeout_ms)
        return [self._sockets[raw] for raw, _ in events if raw in self._sockets]
