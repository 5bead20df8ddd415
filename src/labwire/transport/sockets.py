"""The socket factory: every ZeroMQ socket labwire opens is made and configured here.

Each socket gets a bounded LINGER (so ``close()`` is prompt whatever the peer state), ZMTP
heartbeats on TCP (so a vanished peer is noticed in seconds, not kernel minutes), a per-frame
``MAXMSGSIZE`` from the limits, and short reconnection delays. Security settings, when present,
are applied here too, so that no part of labwire can open an unprotected TCP socket by
accident. ZeroMQ errors are translated into :mod:`labwire.errors` before they leave this module.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import zmq

from labwire.config import Settings, default_settings
from labwire.errors import (
    ClosedError,
    EndpointError,
    LabwireError,
    TransportError,
    Unavailable,
)
from labwire.transport.endpoints import Endpoint, parse_endpoint

__all__ = [
    "Context",
    "Poller",
    "Socket",
    "SocketType",
    "Transport",
    "default_context",
    "translate_errors",
]

Context = zmq.Context

Buffer = bytes | bytearray | memoryview


class SocketType(enum.Enum):
    """The socket patterns labwire uses."""

    REQ = zmq.REQ
    REP = zmq.REP
    DEALER = zmq.DEALER
    ROUTER = zmq.ROUTER
    PUB = zmq.PUB
    SUB = zmq.SUB
    XPUB = zmq.XPUB
    XSUB = zmq.XSUB
    PUSH = zmq.PUSH
    PULL = zmq.PULL
    PAIR = zmq.PAIR


def default_context() -> zmq.Context[Any]:
    """The process-wide ZeroMQ context (used when ``context=None`` is passed)."""
    return zmq.Context.instance()


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Translate ZeroMQ errors raised inside the block into labwire errors.

    Args:
        what: A short description of the operation, used in error messages.
    """
    try:
        yield
    except zmq.ZMQError as exc:
        if exc.errno == zmq.ETERM:
            raise ClosedError(f"{what}: the ZeroMQ context was terminated") from exc
        if exc.errno == zmq.ENOTSOCK:
            raise ClosedError(f"{what}: the socket is closed") from exc
        if exc.errno == zmq.EADDRINUSE:
            raise EndpointError(f"{what}: address already in use") from exc
        if exc.errno in (zmq.EINVAL, zmq.EPROTONOSUPPORT, errno.ENODEV, zmq.EADDRNOTAVAIL):
            raise EndpointError(f"{what}: {exc.strerror}") from exc
        if exc.errno == zmq.EHOSTUNREACH:
            raise Unavailable(f"{what}: peer is not connected") from exc
        raise TransportError(f"{what}: {exc.strerror}") from exc


class Socket:
    """A configured ZeroMQ socket, used by one thread at a time.

    Attributes:
        kind: The socket pattern.
        endpoint: The real endpoint: for a bound socket, the address it listens on (port 0
            resolved to the real port); for a connected socket, the address it connects to.
    """

    __slots__ = ("_raw", "endpoint", "kind")

    def __init__(self, raw: zmq.Socket[Any], kind: SocketType, endpoint: str) -> None:
        self._raw = raw
        self.kind = kind
        self.endpoint = endpoint

    @property
    def closed(self) -> bool:
        """Whether the socket is closed."""
        return bool(self._raw.closed)

    @property
    def port(self) -> int:
        """The TCP port of :attr:`endpoint` (0 for ipc/inproc)."""
        parsed = parse_endpoint(self.endpoint, for_bind=True)
        return parsed.port or 0

    def send(self, frames: Sequence[Buffer], *, nowait: bool = False) -> bool:
        """Send a multi-frame message.

        Args:
            frames: The frames; large buffers are sent without copying.
            nowait: Return False instead of blocking when the message cannot be queued.

        Returns:
            True when the message was queued.
        """
        try:
            self._raw.send_multipart(frames, flags=zmq.NOBLOCK if nowait else 0, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            with translate_errors("send"):
                raise exc
        return True

    def recv(self, timeout_ms: int | None = 0) -> list[memoryview] | None:
        """Receive one multi-frame message as zero-copy memoryviews.

        Args:
            timeout_ms: How long to wait; 0 returns at once, None waits forever.

        Returns:
            The frames, or None when nothing arrived in time.
        """
        frames = self.recv_frames(timeout_ms)
        return None if frames is None else [frame.buffer for frame in frames]

    def recv_frames(self, timeout_ms: int | None = 0) -> list[zmq.Frame] | None:
        """Receive one message as ZeroMQ frames (which also carry connection metadata)."""
        if self._raw.closed:
            raise ClosedError("receive: the socket is closed")
        with translate_errors("receive"):
            if timeout_ms != 0 and not self._raw.poll(timeout_ms):
                return None
            try:
                return self._raw.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return None

    def poll(self, timeout_ms: int | None, *, writable: bool = False) -> bool:
        """Wait until the socket can be read (or written, with ``writable``)."""
        if self._raw.closed:
            raise ClosedError("poll: the socket is closed")
        with translate_errors("poll"):
            return bool(self._raw.poll(timeout_ms, zmq.POLLOUT if writable else zmq.POLLIN))

    def subscribe(self, prefix: bytes) -> None:
        """Subscribe a SUB socket to messages starting with ``prefix``."""
        self._raw.setsockopt(zmq.SUBSCRIBE, prefix)

    def unsubscribe(self, prefix: bytes) -> None:
        """Undo one :meth:`subscribe` of ``prefix``."""
        self._raw.setsockopt(zmq.UNSUBSCRIBE, prefix)

    def connect(self, url: str) -> None:
        """Connect to one more endpoint."""
        with translate_errors(f"connect to {url}"):
            self._raw.connect(str(parse_endpoint(url)))

    def disconnect(self, url: str) -> None:
        """Disconnect from an endpoint given to :meth:`connect`."""
        with contextlib.suppress(zmq.ZMQError):
            self._raw.disconnect(str(parse_endpoint(url)))

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket; pending output is kept at most ``linger_ms`` (default: settings)."""
        if not self._raw.closed:
            self._raw.close(linger=linger_ms)

    @staticmethod
    def peer_address(frame: zmq.Frame) -> str:
        """The IP address of the peer that sent ``frame`` ("" when unknown, e.g. ipc)."""
        try:
            return str(frame.get("Peer-Address"))
        except (zmq.ZMQError, UnicodeDecodeError):
            return ""

    def fileno(self) -> Any:
        """The underlying ZeroMQ socket (for :class:`Poller`)."""
        return self._raw


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


class Transport:
    """Makes configured sockets for one set of settings.

    Args:
        context: The ZeroMQ context, or None for the process-wide one.
        settings: Transport settings, or None for :func:`~labwire.config.default_settings`.
    """

    _counter = 0
    _counter_lock = threading.Lock()

    def __init__(self, context: zmq.Context[Any] | None = None, settings: Settings | None = None):
        self.context: zmq.Context[Any] = context if context is not None else default_context()
        self.settings = settings if settings is not None else default_settings()

    @classmethod
    def unique_inproc(cls, label: str) -> str:
        """A fresh ``inproc://`` endpoint name, unique within this process."""
        with cls._counter_lock:
            cls._counter += 1
            return f"inproc://labwire-{label}-{cls._counter}"

    def _make(self, kind: SocketType, endpoint: Endpoint | None) -> zmq.Socket[Any]:
        settings = self.settings
        with translate_errors(f"create {kind.name} socket"):
            raw: zmq.Socket[Any] = self.context.socket(kind.value)
        try:
            raw.setsockopt(zmq.LINGER, settings.linger_ms)
            if endpoint is None or endpoint.scheme != "inproc":
                raw.setsockopt(zmq.MAXMSGSIZE, settings.limits.max_frame_bytes)
            if endpoint is not None and endpoint.is_tcp:
                raw.setsockopt(zmq.HEARTBEAT_IVL, settings.heartbeat_ivl_ms)
                raw.setsockopt(zmq.HEARTBEAT_TIMEOUT, settings.heartbeat_timeout_ms)
                raw.setsockopt(zmq.HEARTBEAT_TTL, settings.heartbeat_timeout_ms)
                raw.setsockopt(zmq.RECONNECT_IVL, settings.reconnect_ivl_ms)
                raw.setsockopt(zmq.RECONNECT_IVL_MAX, settings.reconnect_ivl_max_ms)
                if endpoint.is_ipv6:
                    raw.setsockopt(zmq.IPV6, 1)
        except zmq.ZMQError as exc:
            raw.close(linger=0)
            raise TransportError(f"cannot configure {kind.name} socket: {exc}") from exc
        return raw

    def bind(self, kind: SocketType, url: str, **options: Any) -> Socket:
        """Create a socket of ``kind`` bound to ``url`` (port 0 or none: any free port).

        Args:
            kind: Socket pattern.
            url: Where to listen.
            **options: Extra ZeroMQ socket options by name (e.g. ``sndhwm=1000``).

        Returns:
            The socket; its ``endpoint`` is the real bound address.

        Raises:
            EndpointError: ``url`` is invalid or cannot be bound (the message says why).
        """
        endpoint = parse_endpoint(url, for_bind=True)
        raw = self._make(kind, endpoint)
        try:
            self._apply(raw, options)
            with translate_errors(f"bind {url}"):
                raw.bind(str(endpoint))
            last = raw.getsockopt(zmq.LAST_ENDPOINT)
            real = last.decode() if isinstance(last, bytes) else str(last)
        except LabwireError:
            raw.close(linger=0)
            raise
        return Socket(raw, kind, real)

    def connect(self, kind: SocketType, url: str, **options: Any) -> Socket:
        """Create a socket of ``kind`` connected to ``url``.

        Args:
            kind: Socket pattern.
            url: The peer's endpoint.
            **options: Extra ZeroMQ socket options by name (e.g. ``immediate=1``).

        Raises:
            EndpointError: ``url`` is invalid.
        """
        endpoint = parse_endpoint(url)
        raw = self._make(kind, endpoint)
        try:
            self._apply(raw, options)
            with translate_errors(f"connect to {url}"):
                raw.connect(str(endpoint))
        except LabwireError:
            raw.close(linger=0)
            raise
        return Socket(raw, kind, str(endpoint))

    def unconnected(self, kind: SocketType, **options: Any) -> Socket:
        """Create a socket of ``kind`` that is neither bound nor connected yet.

        It gets the TCP options (heartbeats, reconnection delays) in case it connects over TCP.
        """
        raw = self._make(kind, Endpoint("tcp", "*", 0))
        self._apply(raw, options)
        return Socket(raw, kind, "")

    @staticmethod
    def _apply(raw: zmq.Socket[Any], options: dict[str, Any]) -> None:
        for name, value in options.items():
            option = getattr(zmq, name.upper(), None)
            if not isinstance(option, int):
                raise EndpointError(f"unknown socket option {name!r}")
            with translate_errors(f"set socket option {name}"):
                raw.setsockopt(option, value)
