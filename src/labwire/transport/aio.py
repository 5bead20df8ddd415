"""asyncio sockets: the same factory as :class:`~labwire.transport.sockets.Transport`, awaited.

An :class:`AsyncTransport` makes sockets with exactly the options the synchronous factory
applies (LINGER, heartbeats, MAXMSGSIZE, reconnection delays), on a ``zmq.asyncio`` shadow of
the same ZeroMQ context, so sync and async parts of one program share one context. An
:class:`AsyncSocket` belongs to the event loop that first awaits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, cast

import zmq
import zmq.asyncio

from labwire.config import Settings
from labwire.errors import AuthenticationError
from labwire.transport.sockets import Socket, SocketType, Transport, translate_errors

__all__ = ["AsyncSocket", "AsyncTransport", "ReadWatch"]

Buffer = bytes | bytearray | memoryview


class AsyncSocket:
    """A configured ZeroMQ socket driven by asyncio.

    Attributes:
        kind: The socket pattern.
        endpoint: The real bound address, or the address connected to.
    """

    __slots__ = ("_raw", "_socket", "endpoint", "kind")

    def __init__(self, socket: Socket) -> None:
        raw = socket.fileno()
        assert isinstance(raw, zmq.asyncio.Socket)
        # The synchronous wrapper keeps the security state (handshake watcher, authenticator
        # lease) and releases it on close; the asyncio socket is the same ZeroMQ socket.
        self._socket = socket
        self._raw = raw
        self.kind = socket.kind
        self.endpoint = socket.endpoint

    @property
    def is_secure(self) -> bool:
        """Whether the socket runs CurveZMQ."""
        return self._socket.is_secure

    def handshake_error(self) -> AuthenticationError | None:
        """The latest security handshake failure (see :meth:`Socket.handshake_error`)."""
        return self._socket.handshake_error()

    def check_handshake(self, *, retry: bool) -> None:
        """Raise this socket's security handshake failure, if any.

        Args:
            retry: Start a new handshake instead of raising, when the retry interval allows
                (so callers that check before every request cannot make a tight loop).

        Raises:
            AuthenticationError: The handshake failed and no new attempt was started.
        """
        self._socket.check_handshake(retry=retry)

    def retry_handshake(self) -> bool:
        """Start a new handshake after a failure, at a bounded rate (see :class:`Socket`)."""
        return self._socket.retry_handshake()

    @property
    def closed(self) -> bool:
        """Whether the socket is closed."""
        return bool(self._raw.closed)

    async def send(self, frames: Sequence[Buffer]) -> None:
        """Send a multi-frame message (waits while the socket cannot queue it)."""
        with translate_errors("send"):
            await self._raw.send_multipart(frames, copy=False)

    def send_nowait(self, frames: Sequence[Buffer]) -> bool:
        """Queue a message without waiting.

        Returns:
            False when the message cannot be queued now (no connection, or queue full).
        """
        # The asyncio socket's own send, which completes at once with NOBLOCK (no other send
        # of ours ever waits): unlike the synchronous base method, it then wakes the receives
        # waiting on this socket, whose readiness edge the send may have consumed (else a
        # reply that arrived meanwhile would wait unnoticed).
        with translate_errors("send"):
            sent = cast(
                "asyncio.Future[Any]",
                self._raw.send_multipart(list(frames), flags=zmq.NOBLOCK, copy=False),
            )
        if not sent.done():  # queued behind another send: not "without waiting"
            sent.cancel()
            return False
        error = sent.exception()
        if isinstance(error, zmq.Again):
            return False
        if isinstance(error, zmq.ZMQError):
            with translate_errors("send"):
                raise error
        if error is not None:
            raise error
        return True

    async def poll(self, timeout_ms: int | None, *, writable: bool = False) -> bool:
        """Wait until the socket can be read (or written, with ``writable``)."""
        # pyzmq's stub gives the socket the Poller's poll() signature; the real one takes flags.
        raw: Any = self._raw
        with translate_errors("poll"):
            events = await raw.poll(timeout_ms, zmq.POLLOUT if writable else zmq.POLLIN)
        return bool(events)

    async def recv(self, timeout_ms: int | None = None) -> list[memoryview] | None:
        """Receive one multi-frame message as memoryviews.

        Args:
            timeout_ms: How long to wait; None waits until a message arrives.

        Returns:
            The frames, or None when nothing arrived in time.
        """
        if timeout_ms is not None and not await self.poll(timeout_ms):
            return None
        with translate_errors("receive"):
            frames = await self._raw.recv_multipart(copy=False)
        return [frame.buffer for frame in frames]

    def subscribe(self, prefix: bytes) -> None:
        """Subscribe a SUB socket to messages starting with ``prefix``."""
        self._raw.setsockopt(zmq.SUBSCRIBE, prefix)

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket; pending output is kept at most ``linger_ms`` (default: settings)."""
        self._socket.close(linger_ms)


class ReadWatch:
    """Calls ``on_readable`` in the running event loop whenever ``socket`` may have input.

    A synchronous :class:`Socket` read from an event loop with no task in between: the
    loop watches the socket's file descriptor itself (``add_reader``), and ``on_readable``
    receives without waiting. On a loop that cannot watch descriptors (the proactor loop on
    Windows), a task waits on pyzmq's asyncio poll instead and calls ``on_readable`` in turn.

    ZeroMQ signals its descriptor on edges, not levels: ``on_readable`` must receive until
    :meth:`Socket.readable` is False, and whoever sends on the socket must call :meth:`kick`
    afterwards (a send may consume the edge of a message that arrived meanwhile). Close the
    watch before the socket.

    Args:
        socket: The socket to watch.
        on_readable: Receives whatever waits on ``socket``.

    Attributes:
        loop: The event loop that watches (the one running when the watch was made).
    """

    def __init__(self, socket: Socket, on_readable: Callable[[], None]) -> None:
        self._socket = socket
        self._on_readable = on_readable
        self.loop = asyncio.get_running_loop()
        raw = socket.fileno()
        self._fd: int | None = raw.get(zmq.FD)
        self._task: asyncio.Task[None] | None = None
        try:
            self.loop.add_reader(self._fd, on_readable)
        except NotImplementedError:
            self._fd = None
            shadow = zmq.asyncio.Socket.shadow(raw.underlying)
            self._task = self.loop.create_task(self._poll(shadow))

    async def _poll(self, shadow: zmq.asyncio.Socket) -> None:
        # pyzmq's stub gives the socket the Poller's poll() signature; the real one takes flags.
        poll: Any = shadow.poll
        while True:
            # pyzmq's poll gives up after the socket's RCVTIMEO, if one is set: look anyway.
            with contextlib.suppress(zmq.Again):
                await poll(None, zmq.POLLIN)
            self._on_readable()

    def kick(self) -> None:
        """Receive what arrived while a send took the descriptor's edge."""
        if self._socket.readable():
            self._on_readable()

    def close(self) -> None:
        """Stop watching (before the socket closes)."""
        if self._fd is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                self.loop.remove_reader(self._fd)
            self._fd = None
        if self._task is not None:
            self._task.cancel()
            self._task = None


class AsyncTransport:
    """Makes asyncio sockets for one set of settings.

    Args:
        context: The (synchronous) ZeroMQ context to share, or None for the process-wide one.
        settings: Transport settings, or None for the defaults.

    Attributes:
        context: The synchronous context the sockets live in.
        settings: The settings applied to every socket.
    """

    def __init__(
        self, context: zmq.Context[Any] | None = None, settings: Settings | None = None
    ) -> None:
        sync = Transport(context, settings)
        self.context = sync.context
        self.settings = sync.settings
        # Same factory, but on an asyncio shadow of the same context: sockets come out async.
        self._factory = Transport(
            zmq.asyncio.Context(shadow=self.context.underlying), self.settings
        )

    @classmethod
    def from_transport(cls, transport: Transport) -> AsyncTransport:
        """An asyncio factory sharing ``transport``'s context and settings."""
        return cls(transport.context, transport.settings)

    def connect(self, kind: SocketType, url: str, **options: Any) -> AsyncSocket:
        """Create an asyncio socket of ``kind`` connected to ``url``.

        Args:
            kind: Socket pattern.
            url: The peer's endpoint.
            **options: Extra ZeroMQ socket options by name (e.g. ``immediate=1``).

        Raises:
            EndpointError: ``url`` is invalid.
        """
        return AsyncSocket(self._factory.connect(kind, url, **options))

    def bind(self, kind: SocketType, url: str, **options: Any) -> AsyncSocket:
        """Create an asyncio socket of ``kind`` bound to ``url`` (port 0: any free port).

        Raises:
            EndpointError: ``url`` is invalid or cannot be bound.
        """
        return AsyncSocket(self._factory.bind(kind, url, **options))
