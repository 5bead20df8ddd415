"""The socket factory: every ZeroMQ socket labwire opens is made and configured here.

Each socket gets a bounded LINGER (so ``close()`` is prompt whatever the peer state), ZMTP
heartbeats on TCP (so a vanished peer is noticed in seconds, not kernel minutes), a per-frame
``MAXMSGSIZE`` from the limits, and short reconnection delays. Security settings, when present,
are applied here too, so that no part of labwire can open an unprotected TCP socket by
accident. ZeroMQ errors are translated into :mod:`labwire.errors` before they leave this module.

Everything goes through pyzmq: frames under 64 KiB are copied (cheaper than tracking them),
larger buffers are sent without copying, and the hot paths call pyzmq's backend send and
receive directly, with no poll before a receive (the wait is the socket's own RCVTIMEO).

Security (``Settings.security`` set; see :mod:`labwire.transport.security`): every socket that
is not ``inproc://`` runs CurveZMQ. ``bind()`` makes CURVE servers that only let in allowed
client keys (fail closed); ``connect()`` / ``unconnected()`` make CURVE clients.

How a client uses it (the RPC client, the registry client, subscribers)::

    sock = transport.connect(SocketType.DEALER, url, server_key=key_from_registry_or_None)
    poller.register(sock)
    if sock.handshake_events is not None:
        poller.register(sock.handshake_events)   # wakes the loop when a handshake ends
    ...
    # before sending a request:
    error = sock.handshake_error()               # latest failure, None when fine
    if error is not None and not sock.retry_handshake():
        raise error                              # refused recently: fail fast, no new attempt
    sock.send(frames)
    # in the wait loop, when sock.handshake_events is readable:
    error = sock.handshake_error()
    if error is not None:
        ...fail the pending calls on this socket with `error` (an AuthenticationError)

A handshake that failed is never retried by libzmq; ``retry_handshake()`` starts one new
attempt at most once per ``Settings.reconnect_ivl_max_ms``. How a server tells who called::

    frames = sock.recv_frames()
    client_key = Socket.peer_key(frames[-1])     # Z85 public key, None without security
    if security is not None and not security.is_admin(client_key): refuse
"""

from __future__ import annotations

import contextlib
import enum
import errno
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import zmq

from labwire.config import Settings, default_settings
from labwire.errors import (
    AuthenticationError,
    ClosedError,
    EndpointError,
    LabwireError,
    SecurityConfigError,
    TransportError,
    Unavailable,
)
from labwire.transport.endpoints import Endpoint, parse_endpoint
from labwire.transport.security import (
    AccessPolicy,
    Authenticator,
    AuthenticatorLease,
    HandshakeWatcher,
    Security,
    ephemeral_secret_key,
    is_key_text,
    new_zap_domain,
    secure_client_socket,
    secure_server_socket,
    shared_authenticator,
)

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

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_RCVTIMEO = int(zmq.RCVTIMEO)
# The hot paths call the backend's send and receive directly: pyzmq's Python-level wrapper of
# send (routing ids and groups of draft sockets, which labwire does not use) costs more than
# the send of a small message itself.
_SEND: Any = zmq.backend.Socket.send
_RECV: Any = zmq.backend.Socket.recv
#: Frames smaller than this are copied (cheaper than tracking a zero-copy frame).
_COPY_BELOW = 65536


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


def _parts(raw: zmq.Socket[Any], first: zmq.Frame) -> list[zmq.Frame]:
    """``first`` and the parts of its message after it, read while their "more" flag says so."""
    frames = [first]
    frame = first
    while frame.more:
        frame = _RECV(raw, 0, False)
        frames.append(frame)
    return frames


class Socket:
    """A configured ZeroMQ socket, used by one thread at a time.

    Attributes:
        kind: The socket pattern.
        endpoint: The real endpoint: for a bound socket, the address it listens on (port 0
            resolved to the real port); for a connected socket, the address it connects to.
        is_secure: Whether the socket runs CurveZMQ (as a server or as a client); False once
            it is closed.
    """

    __slots__ = (
        "_events",
        "_lease",
        "_raw",
        "_server_key",
        "_wait",
        "_watcher",
        "endpoint",
        "is_secure",
        "kind",
    )

    def __init__(
        self,
        raw: zmq.Socket[Any],
        kind: SocketType,
        endpoint: str,
        *,
        watcher: HandshakeWatcher | None = None,
        lease: AuthenticatorLease | None = None,
        server_key: str | None = None,
    ) -> None:
        self._raw = raw
        self.kind = kind
        self.endpoint = endpoint
        self._watcher = watcher
        self._lease = lease
        # A plain attribute, not a property: every call reads it.
        self.is_secure = watcher is not None or lease is not None
        self._server_key = server_key
        self._events = None if watcher is None else Socket(watcher.events, SocketType.PAIR, "")
        self._wait: int | None = None  # RCVTIMEO as last set; None is ZeroMQ's default, forever

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
        # Frame by frame with plain int flags: pyzmq's send_multipart spends more time on enum
        # arithmetic than on sending small messages. A multipart message is atomic: once the
        # first frame is accepted, the others are too.
        raw = self._raw
        flags = _NOBLOCK if nowait else 0
        try:
            if len(frames) == 1:  # most messages: no loop to set up
                frame = frames[0]
                _SEND(raw, frame, flags, len(frame) < _COPY_BELOW)
                return True
            last = len(frames) - 1
            for index in range(last):
                frame = frames[index]
                _SEND(raw, frame, flags | _SNDMORE, len(frame) < _COPY_BELOW)
            frame = frames[last]
            _SEND(raw, frame, flags, len(frame) < _COPY_BELOW)
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
        """Receive one message as ZeroMQ frames (which also carry connection metadata).

        Args:
            timeout_ms: How long to wait; 0 returns at once, None waits forever.

        Returns:
            The frames, or None when nothing arrived in time.
        """
        # The hot path of every call: the wait happens inside ZeroMQ's own receive (the
        # socket's RCVTIMEO, set only when it changes), with no poll before it, and the parts
        # are read while their "more" flag says so, with no RCVMORE query per part.
        raw = self._raw
        try:
            if timeout_ms != self._wait:
                self._wait_at_most(timeout_ms)
            first = _RECV(raw, 0, False)
            return _parts(raw, first) if first.more else [first]
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            with translate_errors("receive"):
                raise exc
        return None

    def recv_head(self, timeout_ms: int | None = 0) -> bytes | None:
        """Receive the first part of the next message as bytes, without asking what follows.

        Cheaper than :meth:`recv_frames` for a message that is one small part by its own
        layout (a compact reply): asking ZeroMQ whether parts follow costs more than such a
        receive. Unless the head is a whole message by its layout, read the parts after it
        with :meth:`recv_tail` before receiving anything else.

        Args:
            timeout_ms: How long to wait; 0 returns at once, None waits forever.

        Returns:
            The first part, or None when nothing arrived in time.
        """
        try:
            if timeout_ms != self._wait:
                self._wait_at_most(timeout_ms)
            data: bytes = _RECV(self._raw, 0, True)
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            with translate_errors("receive"):
                raise exc
        return data

    def request(self, frame: bytes, timeout_ms: int | None = 0) -> bytes | Literal[False] | None:
        """Send a one-part message without waiting, then receive the first part of the next.

        :meth:`send` (``nowait``) and :meth:`recv_head` in one step, for a client's small
        request and its reply.

        Args:
            frame: The message.
            timeout_ms: How long to wait for the reply; 0 returns at once, None waits forever.

        Returns:
            False when the message could not be queued (nothing was sent); None when it was
            sent and nothing arrived in time; else the first part received, as
            :meth:`recv_head` returns it.
        """
        if not self.send((frame,), nowait=True):
            return False
        return self.recv_head(timeout_ms)

    def recv_tail(self) -> list[zmq.Frame]:
        """The parts that follow the last one received (none if it ended its message)."""
        raw = self._raw
        with translate_errors("receive"):
            if not raw.get(zmq.RCVMORE):
                return []
            return _parts(raw, _RECV(raw, 0, False))

    def recv_routed(self, timeout_ms: int | None = 0) -> tuple[bytes, list[Buffer], Any] | None:
        """Receive one message on a ROUTER socket: the sender's routing id, then the rest.

        Args:
            timeout_ms: How long to wait; 0 returns at once, None waits forever.

        Returns:
            None when nothing arrived in time; else the routing id, the parts after it (at
            least one: a message of one part as bytes, the parts of a longer one as zero-copy
            memoryviews, its first part possibly as bytes), and the message's origin, which
            :meth:`peer_address` and :meth:`peer_key` read.
        """
        raw = self._raw
        try:
            if timeout_ms != self._wait:
                self._wait_at_most(timeout_ms)
            identity = _RECV(raw, 0, True)  # a ROUTER always has a part after the id
            first = _RECV(raw, 0, False)
            if not first.more:
                return identity, [first.bytes], first
            frames = _parts(raw, first)
            return identity, [frame.buffer for frame in frames], frames[-1]
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            with translate_errors("receive"):
                raise exc
        return None

    def _wait_at_most(self, timeout_ms: int | None) -> None:
        """Make receives wait up to ``timeout_ms`` (None: forever), via RCVTIMEO."""
        self._raw.setsockopt(_RCVTIMEO, -1 if timeout_ms is None else timeout_ms)
        self._wait = timeout_ms

    def recv_frames_nowait(self, limit: int) -> list[bytes]:
        """Receive up to ``limit`` frames that are already waiting, as bytes, without waiting.

        Meant for single-frame streams (signals): each frame counts as one message, so the
        parts of a multi-frame message arrive as separate items.
        """
        raw = self._raw
        received: list[bytes] = []
        try:
            for _ in range(limit):
                received.append(raw.recv(_NOBLOCK))
        except zmq.Again:
            pass
        except zmq.ZMQError as exc:
            with translate_errors("receive"):
                raise exc
        return received

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

    def connect(self, url: str, *, server_key: str | None = None) -> None:
        """Connect to one more endpoint.

        Args:
            url: The peer's endpoint.
            server_key: For a secured client socket: the public key of that peer (Z85 text),
                instead of the one the socket was made with.

        Raises:
            SecurityConfigError: A secured socket has no server key for ``url``.
        """
        endpoint = parse_endpoint(url)
        with translate_errors(f"connect to {url}"):
            if self._watcher is not None and endpoint.scheme != "inproc":
                key = _server_key_for(url, server_key or self._server_key)
                self._raw.setsockopt(zmq.CURVE_SERVERKEY, key.encode("ascii"))
                self._watcher.watch(str(endpoint), key)
            self._raw.connect(str(endpoint))

    def bind(self, url: str) -> str:
        """Listen on one more endpoint, next to the one the socket was made with.

        A secured socket stays secured on every TCP and ipc endpoint it listens on.

        Returns:
            The real endpoint (port 0 resolved to the real port).

        Raises:
            EndpointError: ``url`` is invalid or cannot be bound.
        """
        endpoint = parse_endpoint(url, for_bind=True)
        with translate_errors(f"bind {url}"):
            self._raw.bind(str(endpoint))
            last = self._raw.getsockopt(zmq.LAST_ENDPOINT)
        return last.decode() if isinstance(last, bytes) else str(last)

    def disconnect(self, url: str) -> None:
        """Disconnect from an endpoint given to :meth:`connect`."""
        endpoint = str(parse_endpoint(url))
        if self._watcher is not None:
            self._watcher.forget(endpoint)
        with contextlib.suppress(zmq.ZMQError):
            self._raw.disconnect(endpoint)

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket; pending output is kept at most ``linger_ms`` (default: settings).

        A secured server socket also gives back its hold on the authenticator.
        """
        self.is_secure = False
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if not self._raw.closed:
            self._raw.close(linger=linger_ms)
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    @property
    def handshake_events(self) -> Socket | None:
        """For a secured client socket: a socket that becomes readable when a handshake ends.

        Register it in a :class:`Poller` next to this socket and call :meth:`handshake_error`
        when it is readable. Do not read or close it yourself. None for other sockets.
        """
        return self._events

    def handshake_error(self, timeout_ms: int | None = 0) -> AuthenticationError | None:
        """The latest security handshake failure of this client socket, if unresolved.

        It stays reported until :meth:`retry_handshake` starts a new attempt or a later
        handshake with that endpoint succeeds.

        Args:
            timeout_ms: How long to wait for handshake news when there is none yet.

        Returns:
            The error to raise (wrong server key, key refused, server not secured, or the
            server's authenticator not running), or None (also for unsecured sockets).
        """
        if self._watcher is None:
            return None
        with translate_errors("read handshake events"):
            self._watcher.drain(0)
            if self._watcher.error() is None and timeout_ms != 0:
                self._watcher.drain(timeout_ms)
        return self._watcher.error()

    def wait_handshake(self, timeout_ms: int) -> bool:
        """Wait until this client socket completed the handshake with every endpoint.

        Returns:
            True when done (always at once for unsecured sockets); False after ``timeout_ms``
            (e.g. the server is not running).

        Raises:
            AuthenticationError: A handshake failed.
        """
        if self._watcher is None:
            return True
        with translate_errors("wait for the handshake"):
            return self._watcher.wait(timeout_ms)

    def check_handshake(self, *, retry: bool) -> None:
        """Raise this socket's security handshake failure, if any.

        Args:
            retry: Start a new handshake instead of raising, when the retry interval allows
                (so callers that check before every request cannot make a tight loop).

        Raises:
            AuthenticationError: The handshake failed and no new attempt was started.
        """
        if not self.is_secure:
            return
        error = self.handshake_error()
        if error is not None and not (retry and self.retry_handshake()):
            raise error

    def retry_handshake(self) -> bool:
        """Start one new handshake with each endpoint whose handshake failed.

        Does nothing for an endpoint that failed less than ``Settings.reconnect_ivl_max_ms``
        ago, so a caller that retries on every request cannot make a tight loop.

        Returns:
            True when a new attempt started (the failure is no longer reported).
        """
        if self._watcher is None:
            return False
        with translate_errors("retry the handshake"):
            return self._watcher.retry()

    @staticmethod
    def peer_key(origin: zmq.Frame | str) -> str | None:
        """The CurveZMQ public key (Z85 text) of the client that sent a message.

        The key comes from the authenticator that let the client in, so it cannot be forged
        by the client.

        Args:
            origin: A frame the peer sent (not the routing-id frame a ROUTER adds), or the
                origin :meth:`recv_routed` returned.

        Returns:
            The key, or None when the message did not come through a secured connection.
        """
        if isinstance(origin, str):  # recv_routed's origin on a socket without security
            return None
        try:
            user_id = origin.get("User-Id")
        except (zmq.ZMQError, UnicodeDecodeError):
            return None
        return user_id if isinstance(user_id, str) and is_key_text(user_id) else None

    @staticmethod
    def peer_address(origin: zmq.Frame) -> str:
        """The IP address of the peer that sent a message ("" when unknown, e.g. ipc).

        Args:
            origin: A frame the peer sent, or the origin :meth:`recv_routed` returned.
        """
        try:
            return str(origin.get("Peer-Address"))
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
        security = self.settings.security
        self._zap_domain = new_zap_domain()
        self._policy = None if security is None else AccessPolicy(security)
        self._client_secret_key = (
            None
            if security is None
            else security.client_secret_key or security.secret_key or ephemeral_secret_key()
        )

    @property
    def security(self) -> Security | None:
        """The security settings applied to this transport's sockets (None: plain sockets)."""
        return self.settings.security

    @property
    def authenticator(self) -> Authenticator | None:
        """The authenticator serving this transport's context while a secured server is bound."""
        return shared_authenticator(self.context)

    def _server_key(self, override: str | None) -> str | None:
        security = self.settings.security
        if override is not None or security is None:
            return override
        return security.server_key

    def _secures(self, endpoint: Endpoint) -> bool:
        return self.settings.security is not None and endpoint.scheme != "inproc"

    def _secure_client(self, raw: zmq.Socket[Any], kind: SocketType) -> HandshakeWatcher:
        assert self._client_secret_key is not None
        with translate_errors(f"configure CurveZMQ client on {kind.name} socket"):
            return secure_client_socket(
                raw, self._client_secret_key, self.settings.reconnect_ivl_max_ms
            )

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
                raw.setsockopt(zmq.HANDSHAKE_IVL, settings.handshake_timeout_ms)
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
        lease = None
        try:
            self._apply(raw, options)
            if self._secures(endpoint):
                assert self.settings.security is not None and self._policy is not None
                with translate_errors(f"configure CurveZMQ server on {kind.name} socket"):
                    lease = secure_server_socket(
                        raw, self.settings.security, self._zap_domain, self._policy
                    )
            with translate_errors(f"bind {url}"):
                raw.bind(str(endpoint))
            last = raw.getsockopt(zmq.LAST_ENDPOINT)
            real = last.decode() if isinstance(last, bytes) else str(last)
        except LabwireError:
            raw.close(linger=0)
            if lease is not None:
                lease.release()
            raise
        return Socket(raw, kind, real, lease=lease)

    def connect(
        self, kind: SocketType, url: str, *, server_key: str | None = None, **options: Any
    ) -> Socket:
        """Create a socket of ``kind`` connected to ``url``.

        Args:
            kind: Socket pattern.
            url: The peer's endpoint.
            server_key: With security on: the server's public key (Z85 text), e.g. learnt from
                the registry; default ``Settings.security.server_key``. Ignored without
                security.
            **options: Extra ZeroMQ socket options by name (e.g. ``immediate=1``).

        Raises:
            EndpointError: ``url`` is invalid.
            SecurityConfigError: Security is on and no server key is known.
        """
        endpoint = parse_endpoint(url)
        raw = self._make(kind, endpoint)
        watcher = None
        try:
            self._apply(raw, options)
            if self._secures(endpoint):
                watcher = self._secure_client(raw, kind)
            sock = Socket(
                raw, kind, str(endpoint), watcher=watcher, server_key=self._server_key(server_key)
            )
            sock.connect(str(endpoint))
        except LabwireError:
            if watcher is not None:
                watcher.close()
            raw.close(linger=0)
            raise
        return sock

    def unconnected(
        self, kind: SocketType, *, server_key: str | None = None, **options: Any
    ) -> Socket:
        """Create a socket of ``kind`` that is neither bound nor connected yet.

        It gets the TCP options (heartbeats, reconnection delays) in case it connects over TCP,
        and, with security on, the CurveZMQ client settings (see :meth:`connect` for
        ``server_key``).
        """
        raw = self._make(kind, Endpoint("tcp", "*", 0))
        watcher = None
        try:
            self._apply(raw, options)
            if self.settings.security is not None:
                watcher = self._secure_client(raw, kind)
        except LabwireError:
            raw.close(linger=0)
            raise
        return Socket(raw, kind, "", watcher=watcher, server_key=self._server_key(server_key))

    @staticmethod
    def _apply(raw: zmq.Socket[Any], options: dict[str, Any]) -> None:
        for name, value in options.items():
            option = getattr(zmq, name.upper(), None)
            if not isinstance(option, int):
                raise EndpointError(f"unknown socket option {name!r}")
            with translate_errors(f"set socket option {name}"):
                raw.setsockopt(option, value)


def _server_key_for(url: str, server_key: str | None) -> str:
    if server_key is None:
        raise SecurityConfigError(
            f"security is on but no server public key is known for {url}: pass server_key=, "
            "or set Security.server_key (LABWIRE_SERVER_KEY)"
        )
    if not is_key_text(server_key):
        raise SecurityConfigError(f"server key for {url} is not a CurveZMQ key: {server_key!r}")
    return server_key
