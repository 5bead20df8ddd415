"""asyncio waits on labwire's synchronous sockets: wake on readiness, then drain what waits.

Theory of operation
-------------------
A ZeroMQ socket has a file descriptor that signals "the socket's state may have changed"
(edge-triggered: it is re-armed by reading the socket's ``EVENTS``). A :class:`Waker` registers
that descriptor with the event loop once; each signal reads ``EVENTS`` (which re-arms it) and
wakes the coroutines waiting in :meth:`Waker.wait`. A reader then takes every message already
queued with :func:`recv_waiting` (non-blocking receives on the synchronous socket) and waits
again only when the socket is empty. Any other use of the socket (a send from another
coroutine) processes the socket's pending commands, which can consume the descriptor's signal
of a message that arrived meanwhile: call :meth:`Waker.kick` after it, so the waiting reader
looks again. Compared with awaiting a ``zmq.asyncio`` receive per
message, this pays the event loop's cost once per burst, and the sends and receives use the
socket factory's fast paths.

The socket stays owned by the event loop's thread: only coroutines and callbacks of that loop
may use it while the waker is open. Close the waker before the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import zmq

from labwire.transport.sockets import Socket, translate_errors

__all__ = ["POLLIN", "POLLOUT", "Waker", "recv_waiting"]

#: :meth:`Waker.wait` flag: a message can be received.
POLLIN = int(zmq.POLLIN)
#: :meth:`Waker.wait` flag: a message can be sent.
POLLOUT = int(zmq.POLLOUT)
_EVENTS = int(zmq.EVENTS)


class Waker:
    """Lets coroutines of one event loop wait until a socket can be read or written.

    Args:
        sock: The socket (used from now on by this loop only).
        loop: The event loop (default: the running one).
    """

    def __init__(self, sock: Socket, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._raw: Any = sock.fileno()
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        with translate_errors("watch socket"):
            self._fd = int(self._raw.getsockopt(zmq.FD))
        self._waiters: list[asyncio.Future[None]] = []
        self._loop.add_reader(self._fd, self._on_signal)
        self._closed = False

    def events(self) -> int:
        """The socket's current ``POLLIN``/``POLLOUT`` flags (reading them re-arms the wake)."""
        try:
            return int(self._raw.getsockopt(_EVENTS))
        except zmq.ZMQError as exc:
            with translate_errors("read socket events"):
                raise exc
        return 0

    def kick(self) -> None:
        """Let waiters look again, after the socket was used outside :meth:`wait`.

        A send processes the socket's pending commands; when one of them was "a message
        arrived", the descriptor's signal is consumed and would never wake the reader.
        """
        if self._waiters:
            self._on_signal()

    def _on_signal(self) -> None:
        if self._raw.closed:
            return
        self.events()  # re-arms the descriptor (it is edge-triggered)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, flag: int, timeout: float | None = None) -> bool:
        """Wait until the socket has ``flag`` (:data:`POLLIN` or :data:`POLLOUT`).

        Args:
            flag: What to wait for.
            timeout: Seconds to wait at most (None: no limit).

        Returns:
            True when the socket has ``flag``; False after ``timeout``.

        Raises:
            ClosedError: The waker or the socket was closed.
        """
        deadline = None if timeout is None else self._loop.time() + timeout
        while not self.events() & flag:
            timer = None
            waiter: asyncio.Future[None] = self._loop.create_future()
            if deadline is not None:
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    return False
                timer = self._loop.call_later(remaining, _release, waiter)
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
        return True

    def close(self) -> None:
        """Stop watching the socket; pending waits end with ``ClosedError`` (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError, OSError, RuntimeError):  # loop or fd already gone
            self._loop.remove_reader(self._fd)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)  # the next events() read raises ClosedError


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def recv_waiting(sock: Socket, limit: int) -> list[list[memoryview]]:
    """Up to ``limit`` messages already queued on ``sock``, each as its frames; never waits.

    Args:
        sock: The socket.
        limit: The most messages to take (so one busy peer cannot hold the loop).

    Returns:
        The messages, oldest first (empty when none is waiting).

    Raises:
        ClosedError: The socket is closed.
    """
    messages: list[list[memoryview]] = []
    while len(messages) < limit:
        frames = sock.recv(0)
        if frames is None:
            break
        messages.append(frames)
    return messages
