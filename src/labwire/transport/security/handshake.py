"""Secured sockets: CURVE options for servers and clients, and the client's handshake watch."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Final

import zmq
from zmq.utils.monitor import parse_monitor_message

from labwire.config import ENV_SECRET_KEY
from labwire.errors import AuthenticationError, SecurityConfigError
from labwire.security import Security, public_key_from_secret
from labwire.transport.security.authenticator import (
    AccessPolicy,
    AuthenticatorLease,
    _ids,
    _sync_socket,
    lease_authenticator,
)

log = logging.getLogger(__name__)


_HANDSHAKE_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def plain_handshake_refused(context: zmq.Context[Any], url: str, timeout_ms: int = 500) -> bool:
    """Whether the server at ``url`` drops a plain (unsecured) client during the handshake.

    What a CurveZMQ server does to a client without keys, so the command line can say "this
    peer requires security" instead of "not reachable". False also when nobody answers.

    Args:
        context: The context to make the probing socket in.
        url: The server's endpoint.
        timeout_ms: How long to wait for the handshake's outcome.
    """
    probe = _sync_socket(context, zmq.DEALER)
    events = _sync_socket(context, zmq.PAIR)
    address = f"inproc://labwire-probe-{next(_ids)}"
    try:
        probe.setsockopt(zmq.LINGER, 0)
        events.setsockopt(zmq.LINGER, 0)
        probe.monitor(address, _HANDSHAKE_EVENTS)
        events.connect(address)
        probe.connect(url)
        if not events.poll(timeout_ms):
            return False
        event = parse_monitor_message(events.recv_multipart())["event"]
        return bool(event != zmq.EVENT_HANDSHAKE_SUCCEEDED)
    except zmq.ZMQError as exc:
        log.debug("cannot probe %s for security: %s", url, exc)
        return False
    finally:
        with contextlib.suppress(zmq.ZMQError):
            probe.disable_monitor()
        events.close(linger=0)
        probe.close(linger=0)


# ---------------------------------------------------------------------------- handshake watch


class HandshakeWatcher:
    """Follows the security handshakes of one client socket and reports failures.

    Made by the transport for every secured client socket; reached through the
    :class:`~labwire.transport.Socket` methods (``handshake_error``, ``wait_handshake``,
    ``retry_handshake``, ``handshake_events``). Use it from the thread that owns the socket.

    Args:
        raw: The client socket (before it connects).
        client_key: The public key the socket presents (named in error messages).
        retry_interval_ms: Least time between two attempts on one endpoint.
    """

    def __init__(self, raw: zmq.Socket[Any], *, client_key: str, retry_interval_ms: int) -> None:
        self._raw = raw
        self._client_key = client_key
        self._retry_interval = retry_interval_ms / 1000
        address = f"inproc://labwire-handshakes-{next(_ids)}"
        raw.monitor(address, _HANDSHAKE_EVENTS)
        events = _sync_socket(raw.context, zmq.PAIR)
        try:
            events.setsockopt(zmq.LINGER, 0)
            # Unbounded: libzmq blocks the monitored socket when the event pipe is full.
            # Only handshake events are sent (one per connection), and readers drain them.
            events.setsockopt(zmq.RCVHWM, 0)
            events.connect(address)
        except zmq.ZMQError:
            events.close(linger=0)
            raw.disable_monitor()
            raise
        self.events = events
        self.failure_count = 0
        self._server_keys: dict[str, str] = {}
        self._failures: dict[str, tuple[AuthenticationError, float]] = {}
        self._succeeded: set[str] = set()
        self._forgotten: set[str] = set()

    def watch(self, url: str, server_key: str) -> None:
        """Record that the socket connects to ``url`` expecting ``server_key``."""
        self.drain(0)  # events of an earlier connection to ``url`` are not about this one
        self._server_keys[url] = server_key
        self._failures.pop(url, None)
        self._succeeded.discard(url)
        self._forgotten.discard(url)

    def forget(self, url: str) -> None:
        """Stop following ``url`` (the socket disconnected from it)."""
        self.drain(0)
        if self._server_keys.pop(url, None) is not None:
            self._forgotten.add(url)
        self._failures.pop(url, None)
        self._succeeded.discard(url)

    def drain(self, timeout_ms: int | None = 0) -> None:
        """Read the pending monitor events, waiting up to ``timeout_ms`` for the first one."""
        wait = timeout_ms
        while self.events.poll(wait):
            wait = 0
            try:
                message = self.events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                event = parse_monitor_message(message)
            except (ValueError, IndexError, TypeError):
                log.debug("ignoring malformed monitor event %r", message)
                continue
            self._on_event(int(event["event"]), int(event["value"]), event["endpoint"])

    def _url_of(self, endpoint: bytes | str) -> str | None:
        text = endpoint.decode("utf-8", "replace") if isinstance(endpoint, bytes) else endpoint
        if text in self._server_keys:
            return text
        if text in self._forgotten:
            return None  # a late event from an endpoint the socket left
        if len(self._server_keys) == 1:
            return next(iter(self._server_keys))
        # A hostname is reported by its resolved address; match on the port.
        port = text.rpartition(":")[2]
        matches = [url for url in self._server_keys if url.rpartition(":")[2] == port]
        return matches[0] if len(matches) == 1 else None

    def _on_event(self, event: int, value: int, endpoint: bytes | str) -> None:
        url = self._url_of(endpoint)
        if url is None:
            log.debug("handshake event %d for unknown endpoint %r", event, endpoint)
            return
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._failures.pop(url, None)
            self._succeeded.add(url)
            return
        self.failure_count += 1
        self._succeeded.discard(url)
        error = self._error_for(event, value, url)
        self._failures[url] = (error, time.monotonic())
        log.info("%s", error)  # raised to the caller, who says it (once)
        # libzmq does not reconnect after a failed handshake (RECONNECT_STOP); dropping the
        # endpoint makes that explicit (and holds even where that option is unsupported).
        try:
            self._raw.disconnect(url)
        except zmq.ZMQError:
            log.debug("endpoint %s already gone after its failed handshake", url)

    def _error_for(self, event: int, value: int, url: str) -> AuthenticationError:
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            if value == 400:
                return AuthenticationError(
                    f"{url}: the server refused this client's key {self._client_key} "
                    "(it is not in the server's allowed keys)"
                )
            return AuthenticationError(
                f"{url}: the server's authenticator refused the handshake (ZAP status {value})"
            )
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            return AuthenticationError(
                f"{url}: security handshake failed (protocol error {value:#x}): the server may "
                "not have security turned on"
            )
        return AuthenticationError(
            f"{url}: security handshake failed: the server's public key is wrong, or the "
            "server's authenticator is not running"
        )

    def error(self) -> AuthenticationError | None:
        """The latest unresolved handshake failure (after :meth:`drain`), or None."""
        if not self._failures:
            return None
        return max(self._failures.values(), key=lambda item: item[1])[0]

    def wait(self, timeout_ms: int) -> bool:
        """Wait until every watched endpoint completed a handshake.

        Returns:
            True when they all did; False when ``timeout_ms`` passed first.

        Raises:
            AuthenticationError: A handshake failed.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            self.drain(0)
            error = self.error()
            if error is not None:
                raise error
            if self._server_keys and self._succeeded >= self._server_keys.keys():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.drain(max(1, int(remaining * 1000)))

    def retry(self) -> bool:
        """Make one new attempt on each failed endpoint whose retry interval has passed.

        Returns:
            True when at least one new attempt started.
        """
        self.drain(0)
        now = time.monotonic()
        retried = False
        for url, (_, failed_at) in list(self._failures.items()):
            if now - failed_at < self._retry_interval:
                continue
            self._raw.setsockopt(zmq.CURVE_SERVERKEY, self._server_keys[url].encode("ascii"))
            with contextlib.suppress(zmq.ZMQError):  # already dropped after the failure
                self._raw.disconnect(url)
            self._raw.connect(url)
            del self._failures[url]
            retried = True
            log.debug("retrying the security handshake with %s", url)
        return retried

    def close(self) -> None:
        """Stop monitoring (call before closing the watched socket)."""
        if not self._raw.closed:
            try:
                self._raw.disable_monitor()
            except zmq.ZMQError as exc:
                log.debug("cannot disable the socket monitor: %s", exc)
        self.events.close(linger=0)


# ------------------------------------------------------------------------- socket configuration


def secure_server_socket(
    raw: zmq.Socket[Any], security: Security, domain: bytes, policy: AccessPolicy
) -> AuthenticatorLease:
    """Make ``raw`` (not yet bound) a CURVE server of ZAP ``domain``, and hold the authenticator.

    ``ZAP_ENFORCE_DOMAIN`` makes libzmq refuse handshakes that no ZAP handler answers.

    Returns:
        The lease to release when the socket closes.

    Raises:
        SecurityConfigError: No server secret key, or the authenticator cannot start.
        zmq.ZMQError: An option was refused (translated by the caller).
    """
    if security.secret_key is None:
        raise SecurityConfigError(
            f"a secured server needs a secret key: set Security.secret_key ({ENV_SECRET_KEY})"
        )
    raw.setsockopt(zmq.CURVE_SERVER, 1)
    raw.setsockopt(zmq.CURVE_SECRETKEY, security.secret_key.encode("ascii"))
    raw.setsockopt(zmq.ZAP_DOMAIN, domain)
    raw.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    return lease_authenticator(raw.context, domain, policy)


def secure_client_socket(
    raw: zmq.Socket[Any], client_secret_key: str, retry_interval_ms: int
) -> HandshakeWatcher:
    """Give ``raw`` (not yet connected) a CURVE client keypair and a handshake watcher.

    The server key is set per connection (:meth:`HandshakeWatcher.watch` and the socket's
    ``connect``). Failed handshakes are not retried by libzmq.

    Raises:
        zmq.ZMQError: An option was refused (translated by the caller).
    """
    public_key = public_key_from_secret(client_secret_key)
    raw.setsockopt(zmq.CURVE_PUBLICKEY, public_key.encode("ascii"))
    raw.setsockopt(zmq.CURVE_SECRETKEY, client_secret_key.encode("ascii"))
    option = getattr(zmq, "RECONNECT_STOP", None)
    value = getattr(zmq, "RECONNECT_STOP_HANDSHAKE_FAILED", None)
    if isinstance(option, int) and isinstance(value, int):
        try:
            raw.setsockopt(option, value)
        except zmq.ZMQError:
            # Older libzmq: the watcher drops failed endpoints itself when it drains events.
            log.debug("RECONNECT_STOP is not supported by this libzmq")
    return HandshakeWatcher(raw, client_key=public_key, retry_interval_ms=retry_interval_ms)
