"""One request at a time to a registry over a DEALER socket, replies matched by request id.

The socket speaks the REQ envelope (an empty delimiter frame, then one JSON frame), so it works
against a labwire registry (ROUTER) and a deployed one (REP) alike. It is created with
``IMMEDIATE`` so that a registry that is down is reported within the connect grace period
instead of after the full timeout. After a timeout the socket is thrown away (LINGER 0): a
late reply can never be taken for the answer to a later request, and nothing queued while the
registry was unreachable is delivered after the caller gave up.

With security on the socket is a CurveZMQ client (the registry's key is
``Settings.security.server_key``). A refused handshake is reported as
:class:`~labwire.errors.AuthenticationError` as soon as the socket's handshake watcher sees it,
not after the timeout; a channel that failed asks for a new handshake at most once per
``Settings.reconnect_ivl_max_ms`` (:meth:`~labwire.transport.Socket.retry_handshake`), so a
caller that retries cannot make a tight reconnect loop.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

from labwire.errors import ProtocolError, RegistryError, Unavailable
from labwire.transport import Poller, Socket, SocketType, Transport
from labwire.transport.forks import ProcessBound
from labwire.wire.limits import Limits
from labwire.wire.registry import RegistryReply, RegistryRequest, decode_reply, encode_request

__all__ = ["HANDSHAKE_CHECK_SECONDS", "Interrupted", "RequestChannel", "Waker", "read_reply"]

_log = logging.getLogger(__name__)

#: Longest wait between two looks at a secured socket's handshake news while connecting.
HANDSHAKE_CHECK_SECONDS = 0.05


def read_reply(
    frames: list[memoryview], request_id: int, url: str, limits: Limits
) -> RegistryReply | None:
    """Decode the reply to request ``request_id``; None for a late reply to an earlier one.

    Raises:
        RegistryError: The registry at ``url`` sent something that is not a reply.
    """
    body = frames[1:] if len(frames) > 1 and frames[0].nbytes == 0 else frames
    if len(body) != 1:
        raise RegistryError(f"registry at {url} sent a {len(body)}-frame reply")
    try:
        reply, reply_id = decode_reply(body[0], limits)
    except ProtocolError as exc:
        raise RegistryError(f"registry at {url} sent an invalid reply: {exc}") from exc
    if reply_id is not None and reply_id != request_id:
        _log.debug("dropping a late registry reply (request %s)", reply_id)
        return None
    return reply


class Interrupted(Exception):
    """The wake-up socket fired while a request was waiting (the owner is stopping)."""


class RequestChannel(ProcessBound):
    """A persistent DEALER connection to one registry, used by one thread at a time.

    Args:
        transport: The socket factory.
        url: The registry endpoint.
        wake: Optional socket whose readability interrupts a waiting request.
    """

    def __init__(self, transport: Transport, url: str, *, wake: Socket | None = None) -> None:
        ProcessBound.__init__(self, f"registry connection to {url}")
        self.transport = transport
        self.url = url
        self._wake = wake
        self._socket: Socket | None = None
        self._ids = itertools.count(1)

    def _open(self) -> Socket:
        if self._socket is None:
            self._socket = self.transport.connect(SocketType.DEALER, self.url, immediate=1)
        return self._socket

    def reset(self) -> None:
        """Drop the connection and anything queued on it."""
        if self._socket is not None:
            if self.forked_from is None:  # in a fork's child the socket is the parent's
                self._socket.close(linger_ms=0)
            self._socket = None

    def close(self) -> None:
        """Close the socket."""
        self.reset()

    def request(
        self, request: RegistryRequest, timeout: float, *, interruptible: bool = True
    ) -> RegistryReply:
        """Send ``request`` and wait for its reply.

        Args:
            request: The request.
            timeout: Seconds to wait in all.
            interruptible: Whether the wake-up socket (if any) may interrupt the wait.

        Returns:
            The reply.

        Raises:
            Unavailable: No connection within the connect grace period, or no reply in time.
            AuthenticationError: The security handshake with the registry failed (its key is
                wrong, or it does not accept this client's key).
            RegistryError: The registry answered with something that is not a registry reply.
            Interrupted: The wake-up socket fired.
            ClosedError: This channel was made in the parent of this (forked) process.
        """
        self.check_process()
        deadline = time.monotonic() + timeout
        socket = self._open()
        socket.check_handshake(retry=True)
        request_id = next(self._ids)
        frames_out = [b"", encode_request(request, request_id)]
        if not socket.send(frames_out, nowait=True):  # IMMEDIATE: no connection (yet)
            grace_ms = min(self.transport.settings.connect_grace_ms, int(timeout * 1000))
            if not self._send_when_connected(socket, frames_out, max(grace_ms, 1)):
                self.reset()
                raise Unavailable(f"registry at {self.url} is not reachable")
        wake = self._wake if interruptible else None
        events = socket.handshake_events
        poller: Poller | None = None
        if wake is not None or events is not None:
            poller = Poller()
            poller.register(socket)
            for source in (wake, events):
                if source is not None:
                    poller.register(source)
        limits = self.transport.settings.limits
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.reset()
                raise Unavailable(f"registry at {self.url} did not answer within {timeout:g} s")
            wait_ms = max(1, int(remaining * 1000))
            if poller is None:
                frames = socket.recv(wait_ms)
            else:
                ready = poller.poll(wait_ms)
                if wake is not None and wake in ready:
                    raise Interrupted
                if events is not None and events in ready:
                    socket.check_handshake(retry=False)  # e.g. a reconnection was refused
                frames = socket.recv(0) if socket in ready else None
            if frames is None:
                continue
            reply = read_reply(frames, request_id, self.url, limits)
            if reply is not None:
                return reply

    @staticmethod
    def _send_when_connected(socket: Socket, frames: list[bytes], timeout_ms: int) -> bool:
        """Send once the socket has a connection, within ``timeout_ms``.

        Returns:
            True when sent; False when no connection came in time.

        Raises:
            AuthenticationError: The security handshake failed meanwhile.
        """
        if not socket.is_secure:
            return socket.poll(timeout_ms, writable=True) and socket.send(frames, nowait=True)
        deadline = time.monotonic() + timeout_ms / 1000
        while (remaining := deadline - time.monotonic()) > 0:
            wait_ms = max(1, int(min(remaining, HANDSHAKE_CHECK_SECONDS) * 1000))
            if socket.poll(wait_ms, writable=True) and socket.send(frames, nowait=True):
                return True
            socket.check_handshake(retry=False)
        return False


class Waker:
    """An inproc PAIR pair: :meth:`wake` from any thread makes :attr:`socket` readable.

    The owner thread polls :attr:`socket` alongside its other sockets; it is the only user of
    it. :meth:`wake` may be called from any thread.

    Args:
        transport: The socket factory (its context hosts the inproc pair).
    """

    def __init__(self, transport: Transport) -> None:
        url = Transport.unique_inproc("wake")
        self.socket = transport.bind(SocketType.PAIR, url)
        self._sender: Socket | None = transport.connect(SocketType.PAIR, url)
        self._lock = threading.Lock()

    def wake(self) -> None:
        """Make :attr:`socket` readable (a no-op after :meth:`close`)."""
        with self._lock:
            if self._sender is not None:
                self._sender.send([b""], nowait=True)

    def drain(self) -> None:
        """Consume pending wake-ups (owner thread only)."""
        while self.socket.recv(0) is not None:
            pass

    def close(self) -> None:
        """Close both ends."""
        with self._lock:
            if self._sender is not None:
                self._sender.close(linger_ms=0)
                self._sender = None
        self.socket.close(linger_ms=0)
