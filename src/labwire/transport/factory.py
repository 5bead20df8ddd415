"""The socket factory: :class:`Transport` makes and configures every socket labwire opens.

Each socket gets a bounded LINGER, ZMTP heartbeats on TCP, a per-frame ``MAXMSGSIZE`` from the
limits, short reconnection delays and, when ``Settings.security`` is set, CurveZMQ (see
:mod:`labwire.transport.sockets` for the whole picture).
"""

from __future__ import annotations

import threading
from typing import Any

import zmq

from labwire.config import Settings, default_settings
from labwire.errors import EndpointError, LabwireError, TransportError
from labwire.transport.endpoints import Endpoint, parse_endpoint
from labwire.transport.errors import translate_errors
from labwire.transport.security import (
    AccessPolicy,
    Authenticator,
    HandshakeWatcher,
    Security,
    ephemeral_secret_key,
    new_zap_domain,
    secure_client_socket,
    secure_server_socket,
    shared_authenticator,
)
from labwire.transport.socket import Socket, SocketType

__all__ = ["Context", "Transport", "default_context"]

Context = zmq.Context


def default_context() -> zmq.Context[Any]:
    """The process-wide ZeroMQ context (used when ``context=None`` is passed)."""
    return zmq.Context.instance()


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
                raw,
                kind,
                str(endpoint),
                watcher=watcher,
                server_key=self._server_key(server_key),
                reply_spin_us=self.settings.reply_spin_us,
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
