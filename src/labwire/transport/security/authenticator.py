"""The ZAP authenticator: one thread per ZeroMQ context decides which client keys get in."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path
from typing import Any, Final

import zmq
from zmq.utils import z85

from labwire.errors import SecurityConfigError
from labwire.security import PUBLIC_KEY_SUFFIX, Security, load_public_key

log = logging.getLogger(__name__)


_ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
_ZAP_VERSION: Final = b"1.0"


# Unique suffixes for inproc endpoints and ZAP domains (itertools.count is thread-safe in CPython).
_ids = itertools.count(1)


# ------------------------------------------------------------------------------ authenticator


class AccessPolicy:
    """Decides whether a client key may connect to the servers of one :class:`Security`.

    Used on the authenticator thread only (it caches the contents of the key folders).
    """

    def __init__(self, security: Security) -> None:
        keys = set(security.allowed_keys) | set(security.admin_keys)
        if security.public_key is not None:
            keys.add(security.public_key)
        self._keys = frozenset(keys)
        self._folders = security.allowed_keys_dirs
        self._allow_any = security.allow_any_client
        self._key_check = security.key_check
        self._folder_cache: dict[Path, tuple[object, frozenset[str]]] = {}

    def allows(self, client_key: str) -> bool:
        """Whether ``client_key`` (Z85 text) may connect.

        Raises:
            Exception: Whatever :attr:`Security.key_check` raises (the authenticator denies).
        """
        if self._allow_any or client_key in self._keys:
            return True
        if any(client_key in self._folder_keys(folder) for folder in self._folders):
            return True
        if self._key_check is not None:
            return bool(self._key_check(client_key))
        return False

    def _folder_keys(self, folder: Path) -> frozenset[str]:
        try:
            signature = tuple(
                sorted(
                    (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
                    for entry in os.scandir(folder)
                    if entry.name.endswith(PUBLIC_KEY_SUFFIX)
                )
            )
        except OSError as exc:
            log.warning("cannot read allowed keys folder %s: %s", folder, exc)
            return frozenset()
        cached = self._folder_cache.get(folder)
        if cached is not None and cached[0] == signature:
            return cached[1]
        keys: set[str] = set()
        for name, _, _ in signature:
            try:
                keys.add(load_public_key(folder / name))
            except SecurityConfigError as exc:
                log.warning("ignoring unusable key file: %s", exc)
        result = frozenset(keys)
        self._folder_cache[folder] = (signature, result)
        return result


def new_zap_domain() -> bytes:
    """A ZAP domain unique in this process (one per :class:`~labwire.transport.Transport`)."""
    return f"labwire-{os.getpid()}-{next(_ids)}".encode("ascii")


class Authenticator:
    """The ZAP handler of one ZeroMQ context: which client keys may connect to labwire servers.

    There is at most one per context (ZeroMQ has one ZAP endpoint per context). Server sockets
    get it through :func:`lease_authenticator`; the first lease starts it and the last release
    stops it, so its thread never outlives the sockets it serves. :meth:`stop` can also be
    called directly: while it is stopped, every handshake on the context's secured servers
    fails (fail closed) until :meth:`start`.

    Attributes:
        context: The ZeroMQ context it serves.
        allowed_count: Handshakes allowed so far.
        denied_count: Handshakes denied so far (unknown key, bad request, or a callback error).
    """

    def __init__(self, context: zmq.Context[Any]) -> None:
        self.context = context
        self.allowed_count = 0
        self.denied_count = 0
        self._lock = threading.Lock()
        self._policies: dict[bytes, AccessPolicy] = {}
        self._holds: dict[bytes, int] = {}
        self._thread: threading.Thread | None = None
        self._control: zmq.Socket[Any] | None = None

    @property
    def is_running(self) -> bool:
        """Whether the handler thread is answering handshakes."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start answering handshakes (no-op when running).

        Raises:
            SecurityConfigError: Another ZAP handler is bound on this context.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._close_control()
            zap = _sync_socket(self.context, zmq.REP)
            zap.setsockopt(zmq.LINGER, 0)
            try:
                zap.bind(_ZAP_ENDPOINT)
            except zmq.ZMQError as exc:
                zap.close(linger=0)
                if exc.errno == zmq.EADDRINUSE:
                    raise SecurityConfigError(
                        "another ZAP authenticator is already running on this ZeroMQ context; "
                        "labwire needs its own (give labwire a separate context)"
                    ) from exc
                raise SecurityConfigError(f"cannot start the authenticator: {exc}") from exc
            endpoint = f"inproc://labwire-authenticator-{next(_ids)}"
            control = _sync_socket(self.context, zmq.PAIR)
            control.setsockopt(zmq.LINGER, 0)
            control.bind(endpoint)
            peer = _sync_socket(self.context, zmq.PAIR)
            peer.setsockopt(zmq.LINGER, 0)
            peer.connect(endpoint)
            thread = threading.Thread(
                target=self._run, args=(zap, peer), name="labwire-authenticator", daemon=True
            )
            thread.start()
            self._thread, self._control = thread, control
        log.debug("authenticator started")

    def stop(self, timeout: float = 1.0) -> None:
        """Stop answering handshakes and join the thread (no-op when stopped).

        Secured servers stay up but refuse every client until :meth:`start` (fail closed).

        Args:
            timeout: Longest wait for the thread, in seconds (it may be inside a slow
                :attr:`Security.key_check`).
        """
        with self._lock:
            thread, control = self._thread, self._control
            self._thread = None
            if thread is None or control is None:
                return
            try:
                control.send(b"STOP", zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.debug("cannot signal the authenticator thread: %s", exc)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("authenticator thread did not stop within %.1f s", timeout)
        with self._lock:
            if self._thread is None:
                self._close_control()
        log.debug("authenticator stopped")

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def _close_control(self) -> None:
        if self._control is not None:
            self._control.close(linger=0)
            self._control = None

    def _hold(self, domain: bytes, policy: AccessPolicy) -> None:
        with self._lock:
            self._policies.setdefault(domain, policy)
            self._holds[domain] = self._holds.get(domain, 0) + 1

    def _drop(self, domain: bytes) -> int:
        """Release one hold on ``domain``; return the holds left on all domains."""
        with self._lock:
            left = self._holds.get(domain, 0) - 1
            if left <= 0:
                self._holds.pop(domain, None)
                self._policies.pop(domain, None)
            else:
                self._holds[domain] = left
            return sum(self._holds.values())

    def _run(self, zap: zmq.Socket[Any], control: zmq.Socket[Any]) -> None:
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        try:
            while True:
                try:
                    ready = dict(poller.poll())
                except zmq.ZMQError as exc:
                    if exc.errno not in (zmq.ETERM, zmq.ENOTSOCK):
                        log.error("authenticator stopped by a socket error: %s", exc)
                    return
                if control in ready:
                    return
                if zap in ready and not self._serve_one(zap):
                    return
        finally:
            # Closing the ZAP socket makes libzmq refuse every handshake (fail closed).
            zap.close(linger=0)
            control.close(linger=0)

    def _serve_one(self, zap: zmq.Socket[Any]) -> bool:
        """Answer one ZAP request; False when the ZAP socket is no longer usable."""
        try:
            request = zap.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return True
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.ETERM, zmq.ENOTSOCK):
                log.error("authenticator stopped: cannot receive ZAP request: %s", exc)
            return False
        reply = self._reply_to(request)
        try:
            zap.send_multipart(reply)
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.ETERM, zmq.ENOTSOCK):
                log.error("authenticator stopped: cannot send ZAP reply: %s", exc)
            return False
        return True

    def _reply_to(self, request: list[bytes]) -> list[bytes]:
        request_id = request[1] if len(request) > 1 else b""
        try:
            status, text, user_id = self._decide(request)
        except Exception:
            log.exception("authenticator error; the client is denied")
            status, text, user_id = b"500", b"internal error", b""
        if status == b"200":
            self.allowed_count += 1
        else:
            self.denied_count += 1
        return [_ZAP_VERSION, request_id, status, text, user_id, b""]

    def _decide(self, request: list[bytes]) -> tuple[bytes, bytes, bytes]:
        if len(request) < 6 or request[0] != _ZAP_VERSION:
            log.warning("malformed ZAP request (%d frames); denied", len(request))
            return b"400", b"malformed ZAP request", b""
        domain, address, mechanism, credentials = request[2], request[3], request[5], request[6:]
        peer = address.decode("ascii", "replace")
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            log.warning("refused %s handshake from %s: only CURVE is accepted", mechanism, peer)
            return b"400", b"CURVE required", b""
        with self._lock:
            policy = self._policies.get(domain)
        client_key = z85.encode(credentials[0]).decode("ascii")
        if policy is None:
            log.warning("refused client key %s from %s: server is closing", client_key, peer)
            return b"400", b"unknown ZAP domain", b""
        try:
            allowed = policy.allows(client_key)
        except Exception:
            log.exception("key check failed for client key %s from %s; denied", client_key, peer)
            return b"400", b"key check failed", b""
        if not allowed:
            log.warning("refused client key %s from %s: not in the allow-list", client_key, peer)
            return b"400", b"client key not allowed", b""
        log.debug("allowed client key %s from %s", client_key, peer)
        return b"200", b"OK", client_key.encode("ascii")


class AuthenticatorLease:
    """One secured server socket's hold on its context's :class:`Authenticator`.

    Attributes:
        authenticator: The authenticator held.
        domain: The ZAP domain of the socket.
    """

    def __init__(self, authenticator: Authenticator, domain: bytes) -> None:
        self.authenticator = authenticator
        self.domain = domain
        self._released = False

    def release(self) -> None:
        """Give the hold back (idempotent); the last release stops the authenticator."""
        with _shared_lock:
            if self._released:
                return
            self._released = True
            if self.authenticator._drop(self.domain) == 0:
                key = _context_key(self.authenticator.context)
                if _shared.get(key) is self.authenticator:
                    del _shared[key]
                self.authenticator.stop()


# ZeroMQ has one ZAP endpoint per context, so authenticators are shared per context: an entry
# exists only while a lease is held (the entry keeps the context alive, nothing longer). Keyed
# by the libzmq context, so that shadows of one context (zmq.asyncio) share one authenticator.
_shared: dict[int, Authenticator] = {}
_shared_lock = threading.Lock()


def _context_key(context: zmq.Context[Any]) -> int:
    return int(context.underlying)


def _sync_socket(context: zmq.Context[Any], kind: int) -> zmq.Socket[Any]:
    """A plain (blocking) socket, even when ``context`` is a ``zmq.asyncio`` shadow."""
    sock: zmq.Socket[Any] = context.socket(kind, socket_class=zmq.Socket)
    return sock


def lease_authenticator(
    context: zmq.Context[Any], domain: bytes, policy: AccessPolicy
) -> AuthenticatorLease:
    """Hold the authenticator of ``context`` for a server socket of ZAP ``domain``.

    Starts it when needed. Release the lease when the socket closes.

    Raises:
        SecurityConfigError: Another ZAP handler is bound on this context.
    """
    key = _context_key(context)
    with _shared_lock:
        authenticator = _shared.get(key)
        if authenticator is None or authenticator.context.closed:
            authenticator = Authenticator(context)
            _shared[key] = authenticator
        authenticator._hold(domain, policy)
        try:
            authenticator.start()
        except BaseException:
            if authenticator._drop(domain) == 0:
                del _shared[key]
            raise
    return AuthenticatorLease(authenticator, domain)


def shared_authenticator(context: zmq.Context[Any]) -> Authenticator | None:
    """The authenticator currently serving ``context`` (None when no secured server exists)."""
    with _shared_lock:
        authenticator = _shared.get(_context_key(context))
    if authenticator is None or authenticator.context.closed:
        return None
    return authenticator
