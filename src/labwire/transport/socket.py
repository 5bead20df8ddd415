"""The :class:`Socket`: one configured ZeroMQ socket and its hot paths.

Frames under 64 KiB are copied (cheaper than tracking them), larger buffers are sent without
copying, and the hot paths call pyzmq's backend send and receive directly, with no poll before
a receive (the wait is the socket's own RCVTIMEO). A client's request may first watch for its
reply without sleeping (:meth:`Socket.request`, ``Settings.reply_spin_us``). Sockets are made
by :class:`~labwire.transport.factory.Transport`.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

import zmq

from labwire.errors import AuthenticationError, ClosedError, SecurityConfigError
from labwire.transport.endpoints import parse_endpoint
from labwire.transport.errors import translate_errors
from labwire.transport.security import AuthenticatorLease, HandshakeWatcher, is_key_text

__all__ = ["Buffer", "Socket", "SocketType"]

Buffer = bytes | bytearray | memoryview

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_RCVTIMEO = int(zmq.RCVTIMEO)
# The hot paths call the backend's send and receive directly: pyzmq's Python-level wrapper of
# send (routing ids and groups of draft sockets, which labwire does not use) costs more than
# the send of a small message itself.
_SEND: Any = zmq.backend.Socket.send
_RECV: Any = zmq.backend.Socket.recv
_GET: Any = zmq.backend.Socket.get
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
#: Frames smaller than this are copied (cheaper than tracking a zero-copy frame).
_COPY_BELOW = 65536
#: Replies in a row that may outlast the spin time before requests stop watching; then
#: _SPIN_BACKOFF requests wait without watching, twice as many after each further such reply
#: in a row, up to _SPIN_DOUBLINGS times.
_SPIN_TOLERANCE = 1
_SPIN_BACKOFF = 16
_SPIN_DOUBLINGS = 6
_monotonic = time.monotonic
_active_count = threading.active_count
# The thread pyzmq starts to track zero-copy frames, which rarely wants the GIL.
_zero_copy_tracker: Any = None
with contextlib.suppress(ImportError):  # if pyzmq moves it, that thread counts as any other
    _zero_copy_tracker = importlib.import_module("zmq.utils.garbage").gc


def _alone() -> bool:
    """Whether the calling thread is the only Python thread (pyzmq's tracker aside).

    Watching for a reply holds the GIL: it is done only when no other thread could want it.
    """
    count = _active_count()
    if count == 1:
        return True
    return count == 2 and _zero_copy_tracker is not None and _zero_copy_tracker.is_alive()


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
        "_spin",
        "_spin_misses",
        "_spin_skip",
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
        reply_spin_us: int = 0,
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
        self._spin = reply_spin_us / 1e6  # see request()
        self._spin_skip = 0
        self._spin_misses = 0

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
            # Without waiting, by flag: RCVTIMEO is left as it is for an asyncio poll on the
            # same socket (which would time out with it).
            flags = 0
            if timeout_ms == 0:
                flags = _NOBLOCK
            elif timeout_ms != self._wait:
                self._wait_at_most(timeout_ms)
            data: bytes = _RECV(self._raw, flags, True)
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            with translate_errors("receive"):
                raise exc
        return data

    def request(self, frame: Buffer, timeout_ms: int | None = 0) -> bytes | Literal[False] | None:
        """Send a one-part message without waiting, then receive the first part of the next.

        :meth:`send` (``nowait``) and :meth:`recv_head` in one step, for a client's small
        request and its reply. A socket made with ``reply_spin_us`` first watches for the
        reply that long without sleeping (see :attr:`spinning`), so a quick reply is read at
        once rather than after the thread has slept and been woken. It watches only while
        the calling thread is the process's only Python thread: watching holds the GIL, and
        would keep any other thread waiting for it.

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
        if self._spin and timeout_ms != 0 and _alone():
            if self._spin_skip:
                self._spin_skip -= 1
            elif self._watch(self._spin):
                self._spin_misses = 0
            else:  # a late reply now and then is no reason to stop; several in a row are
                self._spin_misses += 1
                late = self._spin_misses - _SPIN_TOLERANCE
                if late > 0:
                    self._spin_skip = _SPIN_BACKOFF << min(late - 1, _SPIN_DOUBLINGS)
        return self.recv_head(timeout_ms)

    @property
    def spinning(self) -> bool:
        """Whether :meth:`request` watches for the next reply before it sleeps.

        True when the socket was made with ``reply_spin_us`` and recent replies came within
        it: after two in a row that did not, the next 16 requests wait without watching, twice
        as many after each further such reply in a row (up to 1024), so replies that take
        longer (a slow method, a busy machine) cost next to no CPU for the watching, while
        one late reply now and then changes nothing.
        """
        return bool(self._spin) and not self._spin_skip

    def _watch(self, seconds: float) -> bool:
        """Watch ZeroMQ's EVENTS, without sleeping, until a message waits or ``seconds`` pass."""
        raw = self._raw
        end = _monotonic() + seconds
        try:
            while not _GET(raw, _EVENTS) & _POLLIN:
                if _monotonic() > end:
                    return False
        except zmq.ZMQError as exc:
            with translate_errors("poll"):
                raise exc
        return True

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

    def readable(self) -> bool:
        """Whether a message waits to be received (ZeroMQ's EVENTS, read without waiting).

        Raises:
            ClosedError: The socket is closed.
        """
        try:
            return bool(_GET(self._raw, _EVENTS) & _POLLIN)
        except zmq.ZMQError as exc:
            with translate_errors("poll"):
                raise exc
        return False

    def recv_frames_nowait(self, limit: int) -> list[bytes]:
        """Receive up to ``limit`` frames that are already waiting, as bytes, without waiting.

        Meant for single-frame streams (signals): each frame counts as one message, so the
        parts of a multi-frame message arrive as separate items.
        """
        raw = self._raw
        received: list[bytes] = []
        try:
            for _ in range(limit):
                received.append(_RECV(raw, _NOBLOCK, True))
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


def _server_key_for(url: str, server_key: str | None) -> str:
    if server_key is None:
        raise SecurityConfigError(
            f"security is on but no server public key is known for {url}: pass server_key=, "
            "or set Security.server_key (LABWIRE_SERVER_KEY)"
        )
    if not is_key_text(server_key):
        raise SecurityConfigError(f"server key for {url} is not a CurveZMQ key: {server_key!r}")
    return server_key
