"""Keep one device registered: register, renew the lease, re-register, unregister on stop.

Theory of operation
-------------------
:meth:`RegistrationKeeper.start` registers in the caller's thread (retrying while the registry
is not reachable, up to ``register_timeout``) and then starts one background thread that owns
the connection to the registry. Every ``alive_timeout / 4`` seconds it sends CHECK_ALIVE:

* ``ok``: nothing to do;
* no lease (the registry restarted, or the lease expired while the device was paused or cut
  off): register again, proposing the name it had, so names stay stable;
* the lease was *replaced* (another process registered the same name with
  ``overwrite=True``): log a warning and register again with ``overwrite=False``, so the
  device gets ``name-1`` instead of fighting over the name (the registry publishes "removed"
  then "added" for each step: never a silent swap);
* the registry is unreachable: retry with exponential backoff (with jitter, so many devices
  do not hit a restarted registry at once) up to about one renewal period.

Every REGISTER carries this keeper's *incarnation* id: a registry that receives a retried
REGISTER (its reply was lost) hands back the same lease instead of creating a second entry.

With security on, REGISTER carries the device server's public key (the transport's
``Security.public_key`` unless another is given), so clients that connect by name learn it
from the registry. A secured registry refuses a takeover (``overwrite=True`` on a name held by
another key) from a key that is not an admin key: :meth:`RegistrationKeeper.start` raises
:class:`~labwire.errors.PermissionDenied`; a later re-registration that is refused that way
registers again without overwrite (the device gets ``name-1``), like a replaced lease. A
refused handshake raises :class:`~labwire.errors.AuthenticationError` from ``start()`` at once;
in the background it is logged and retried with the usual backoff (the registry's allow-list
may change).

If a ``health_check`` is given, the keeper renews only while it returns True: a device whose
own loop is hung stops renewing, is removed when its lease runs out, and registers again once
the check passes.

:meth:`RegistrationKeeper.stop` wakes the thread, which unregisters (waiting at most half a
second) and closes its sockets; ``stop()`` returns within about a second whatever the registry
does.
"""

from __future__ import annotations

import logging
import random
import socket as socket_module
import threading
import time
import uuid as uuid_module
from collections.abc import Callable
from typing import Any, Self

from labwire.config import Settings
from labwire.errors import (
    AuthenticationError,
    ClosedError,
    PermissionDenied,
    RegistryError,
    Unavailable,
)
from labwire.registration.calls import as_transport, check_registration, own_public_key
from labwire.registration.channel import Interrupted, RequestChannel, Waker
from labwire.transport import Context, Poller, Transport, parse_endpoint
from labwire.wire.registry import (
    ALIVE_TIMEOUT,
    Ack,
    CheckAliveRequest,
    RegisterAck,
    RegisterRequest,
    RenewResult,
    UnregisterRequest,
)

__all__ = ["RegistrationKeeper"]

_log = logging.getLogger(__name__)

#: How long the keeper's thread waits, whatever stop() says, for the reply to an UNREGISTER or
#: to a registration from the background (stop() waits for the thread).
_UNINTERRUPTED_TIMEOUT = 0.5
_JOIN_TIMEOUT = 1.0


def local_address_towards(host: str) -> str | None:
    """The local IP address this host uses to reach ``host`` (None when there is no route)."""
    family = socket_module.AF_INET6 if ":" in host else socket_module.AF_INET
    probe = socket_module.socket(family, socket_module.SOCK_DGRAM)
    try:
        probe.connect((host, 9))  # UDP connect sends nothing; it only picks a route
        address: str = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return address


def advertised_address(address: str, registry_url: str) -> str:
    """``address`` with a wildcard host (``*``, ``0.0.0.0``) replaced by a reachable one.

    The replacement is the local address of the route to the registry's host, which is the
    address other hosts on that network can use.
    """
    try:
        endpoint = parse_endpoint(address, for_bind=True)
    except ValueError:
        return address
    if not endpoint.is_tcp or not endpoint.is_wildcard:
        return address
    registry_host = parse_endpoint(registry_url).host
    local = local_address_towards(registry_host)
    if local is None:
        _log.warning("no route to registry host %s; registering %s as is", registry_host, address)
        return address
    return str(endpoint.with_host(local))


class RegistrationKeeper:
    """Registers one device and keeps its registration alive until :meth:`stop`.

    This is what ``RPCServer.register_to_registry`` uses; it works with any device that has an
    address, against a labwire registry or a deployed one.

    Args:
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        device_type: The device type, e.g. ``"camera"``.
        name: The proposed name ("" asks the registry for ``<device_type>-<n>``).
        address: The device's endpoint. A wildcard host (``tcp://*:5000``) is replaced by the
            local address that routes to the registry.
        registry_url: The registry endpoint.
        overwrite: Take the name over if another device holds it.
        alive_timeout: Seconds the registry keeps the lease without a renewal; renewals are
            sent every ``alive_timeout / 4``.
        settings: Settings when ``context`` is not a Transport.
        health_check: Called before each renewal; the lease is renewed only while it returns
            True (so a device whose own loop hangs drops out of the registry).
        on_name_change: Called with the new name when a re-registration yields another name.
        register_timeout: Seconds :meth:`start` may spend registering.
        public_key: The device server's public key to publish with the registration ("":
            none); None: the public key of the transport's security settings, when security
            is on.

    Attributes:
        name: The accepted name ("" until registered).
        uuid: The lease id ("" until registered).
        registry_url: The registry endpoint.
        device_type: The device type.
        address: The address registered.
        overwrite: Whether the keeper takes the name over from another holder.
        alive_timeout: Lease length in seconds.
        incarnation: This keeper's incarnation id (sent with every REGISTER).
        renew_interval: Seconds between renewals.
        public_key: The public key published with the registration ("" when none).

    Raises:
        ConfigurationError: ``device_type`` or ``name`` breaks the device-name rule (see
            :mod:`labwire.wire.registry`).
        ValueError: ``alive_timeout`` is not positive.
    """

    def __init__(
        self,
        context: Context[Any] | Transport | None,
        device_type: str,
        name: str,
        address: str,
        registry_url: str,
        overwrite: bool = False,
        alive_timeout: float = ALIVE_TIMEOUT,
        *,
        settings: Settings | None = None,
        health_check: Callable[[], bool] | None = None,
        on_name_change: Callable[[str], object] | None = None,
        register_timeout: float = 5.0,
        public_key: str | None = None,
    ) -> None:
        if not alive_timeout > 0:
            raise ValueError("alive_timeout must be positive")
        check_registration(device_type, name)
        self.transport = as_transport(context, settings)
        self.public_key = own_public_key(self.transport, public_key)
        parse_endpoint(registry_url)
        self.device_type = device_type
        self.proposed_name = name
        self.address = address
        self.registry_url = registry_url
        self.overwrite = overwrite
        self.alive_timeout = float(alive_timeout)
        self.renew_interval = self.alive_timeout / 4
        self.register_timeout = register_timeout
        self.incarnation = uuid_module.uuid4().hex
        self.name = ""
        self.uuid = ""
        self._health_check = health_check
        self._on_name_change = on_name_change
        self._yielded = False
        self._was_healthy = True
        self._waker: Waker | None = None
        self._channel: RequestChannel | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._was_started = False

    @property
    def is_registered(self) -> bool:
        """Whether the keeper currently believes it holds a lease."""
        return bool(self.uuid)

    def start(self) -> str:
        """Register, then keep the lease alive in a background thread.

        Returns:
            The name accepted by the registry.

        Raises:
            Unavailable: The registry could not be reached within ``register_timeout``.
            AuthenticationError: Security is on and the registry refused the handshake.
            PermissionDenied: A secured registry refused to let this client's key take the
                name over (``overwrite=True`` needs an admin key there); the message says so.
            RegistryError: The registry refused the registration otherwise.
            ClosedError: The keeper was already started once (make a new one).
        """
        with self._lock:
            if self._was_started:
                raise ClosedError("a RegistrationKeeper can be started only once")
            self._was_started = True
            self.address = advertised_address(self.address, self.registry_url)
            self._waker = Waker(self.transport)
            self._channel = RequestChannel(
                self.transport, self.registry_url, wake=self._waker.socket
            )
            try:
                self._register_until(time.monotonic() + self.register_timeout)
            except BaseException:
                self._close()
                raise
            self._thread = threading.Thread(
                target=self._run, name=f"labwire-keeper-{self.name}", daemon=True
            )
            self._thread.start()
            return self.name

    def stop(self) -> None:
        """Unregister and stop renewing; returns within about a second (idempotent)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None and self._waker is not None:
                self._waker.wake()
                thread.join(_JOIN_TIMEOUT)
                if thread.is_alive():
                    _log.warning("registration keeper for %r did not stop in time", self.name)
                    return
            self._close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- internals

    def _register_until(self, deadline: float) -> None:
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            try:
                self._register(max(0.01, remaining))
                return
            except Unavailable:
                if time.monotonic() + delay >= deadline:
                    raise
            self._sleep(delay)
            delay = min(delay * 2, 1.0)

    def _register(self, timeout: float, *, interruptible: bool = True) -> None:
        assert self._channel is not None
        proposed = self.name or self.proposed_name
        overwrite = self.overwrite and not self._yielded
        reply = self._channel.request(
            RegisterRequest(
                self.device_type,
                self.address,
                proposed,
                overwrite,
                self.incarnation,
                self.alive_timeout,
                self.public_key,
            ),
            timeout,
            interruptible=interruptible,
        )
        if isinstance(reply, Ack) and reply.is_permission_denied:
            raise PermissionDenied(
                "PermissionDenied",
                f"registry at {self.registry_url} refused {proposed!r}: {reply.reason}",
            )
        if not isinstance(reply, RegisterAck):
            raise RegistryError(f"registry at {self.registry_url} refused {proposed!r}: {reply}")
        previous, self.name, self.uuid = self.name, reply.name, reply.uuid
        _log.info("registered %r as %r with %s", proposed, reply.name, self.registry_url)
        if previous and previous != reply.name:
            _log.warning("device %r is now registered as %r", previous, reply.name)
            if self._on_name_change is not None:
                try:
                    self._on_name_change(reply.name)
                except Exception:
                    _log.exception("on_name_change callback failed")

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` unless woken (then raise Interrupted)."""
        assert self._waker is not None
        poller = Poller()
        poller.register(self._waker.socket)
        if poller.poll(max(0, int(seconds * 1000))):
            raise Interrupted

    def _run(self) -> None:
        delay = self.renew_interval
        backoff = 0.0
        try:
            while True:
                self._sleep(delay)
                try:
                    self._tick()
                    delay, backoff = self.renew_interval, 0.0
                except (Unavailable, RegistryError, AuthenticationError) as exc:
                    backoff = min(max(self.renew_interval / 2, backoff * 2), self._max_backoff)
                    delay = backoff * random.uniform(0.8, 1.2)
                    _log.info("registry %s: %s; retrying in %.2f s", self.registry_url, exc, delay)
        except Interrupted:
            pass
        except Exception:
            _log.exception("registration keeper for %r failed", self.name)
        finally:
            self._unregister()

    @property
    def _max_backoff(self) -> float:
        return max(self.renew_interval, min(5.0, self.alive_timeout))

    def _tick(self) -> None:
        if not self._healthy():
            return
        assert self._channel is not None
        timeout = min(self.renew_interval, 5.0)
        if not self.uuid:
            self._register_again(timeout)
            return
        reply = self._channel.request(CheckAliveRequest(self.uuid, self.alive_timeout), timeout)
        if isinstance(reply, Ack) and reply.success:
            return
        reason = reply.reason if isinstance(reply, Ack) else ""
        if reason == RenewResult.REPLACED:
            self._yielded = True
            _log.warning(
                "another device took the name %r over; registering again without overwrite",
                self.name,
            )
        else:
            _log.info(
                "registry %s no longer knows %r (%s); registering again",
                self.registry_url,
                self.name,
                reason or "unknown",
            )
        self.uuid = ""
        self._register_again(timeout)

    def _register_again(self, timeout: float) -> None:
        """Register from the background thread; a refused takeover falls back to no overwrite.

        The wait for the reply is short and stop() does not cut it: a registration cut short
        would leave the registry holding the name under an id this keeper never learnt, which
        stop() could then not unregister.
        """
        timeout = min(timeout, _UNINTERRUPTED_TIMEOUT)
        try:
            self._register(timeout, interruptible=False)
        except PermissionDenied as exc:
            self._yielded = True
            _log.warning("%s; registering again without overwrite", exc.remote_message)
            self._register(timeout, interruptible=False)

    def _healthy(self) -> bool:
        if self._health_check is None:
            return True
        try:
            healthy = bool(self._health_check())
        except Exception:
            _log.exception("health check of %r failed", self.name)
            healthy = False
        if healthy != self._was_healthy:
            self._was_healthy = healthy
            if healthy:
                _log.info("device %r is healthy again; renewing its lease", self.name)
            else:
                _log.warning("device %r is unhealthy; its lease is not renewed", self.name)
        return healthy

    def _unregister(self) -> None:
        channel, uuid = self._channel, self.uuid
        if channel is None or not uuid:
            return
        try:
            reply = channel.request(
                UnregisterRequest(uuid), _UNINTERRUPTED_TIMEOUT, interruptible=False
            )
        except (Unavailable, RegistryError, AuthenticationError) as exc:
            _log.info("could not unregister %r: %s", self.name, exc)
        else:
            if isinstance(reply, Ack) and reply.success:
                _log.info("unregistered %r from %s", self.name, self.registry_url)
        self.uuid = ""

    def _close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._waker is not None:
            self._waker.close()
            self._waker = None
