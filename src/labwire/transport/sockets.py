"""Sockets: every ZeroMQ socket labwire opens is made and configured by one factory.

Each socket gets a bounded LINGER (so ``close()`` is prompt whatever the peer state), ZMTP
heartbeats on TCP (so a vanished peer is noticed in seconds, not kernel minutes), a per-frame
``MAXMSGSIZE`` from the limits, and short reconnection delays. Security settings, when present,
are applied here too, so that no part of labwire can open an unprotected TCP socket by
accident. ZeroMQ errors are translated into :mod:`labwire.errors` before they leave the
transport.

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

Modules: :mod:`~labwire.transport.errors` (error translation), :mod:`~labwire.transport.socket`
(:class:`Socket` and :class:`SocketType`), :mod:`~labwire.transport.poller` (:class:`Poller`)
and :mod:`~labwire.transport.factory` (:class:`Transport`, the context); every name is
re-exported here.
"""

from labwire.transport.errors import translate_errors
from labwire.transport.factory import Context, Transport, default_context
from labwire.transport.poller import Poller
from labwire.transport.socket import Buffer, Socket, SocketType

__all__ = [
    "Buffer",
    "Context",
    "Poller",
    "Socket",
    "SocketType",
    "Transport",
    "default_context",
    "translate_errors",
]
