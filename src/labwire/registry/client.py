"""Remote discovery: list, look up and watch the devices of a registry from anywhere.

:class:`RegistryClient` asks a labwire registry for its devices over one persistent connection
(``LIST_DEVICES``, a labwire addition; a deployed registry answers UNSUPPORTED and the client
raises :class:`~labwire.errors.RegistryError`). :meth:`RegistryClient.watch` returns a
:class:`RegistryWatch`, a stream that starts with a snapshot and then carries the registry's
numbered changes (see :mod:`labwire.registry.watch`).

A watch subscribes to the registry's event publisher first and asks for the snapshot only once
its subscription is live (the registry answers each new subscription with a heartbeat), so no
change can fall between the snapshot and the stream. The asyncio twin lives in
:mod:`labwire.registry.aio`.

With security on (``Settings.security`` holding the registry's public key as ``server_key``,
and this process's keypair), both connections run CurveZMQ. A handshake the registry refuses
raises :class:`~labwire.errors.AuthenticationError` within a moment, not after the timeout; a
watch that is already running logs it, reports LOST, and tries again with its usual backoff.
Listings and events carry each device's public key (``DeviceInfo.public_key``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Self

from labwire.config import Settings
from labwire.errors import AuthenticationError, ClosedError, NotFound, RegistryError, Unavailable
from labwire.registration import Interrupted, RequestChannel, Waker, as_transport
from labwire.registry.watch import WatchBase, WatchCore, WatchEvent, listing_or_raise
from labwire.transport import Context, Poller, Socket, Transport, parse_endpoint
from labwire.wire.registry import DeviceInfo, DeviceListing, ListDevicesRequest

__all__ = ["RegistryClient", "RegistryWatch"]

_log = logging.getLogger(__name__)

#: Default seconds a registry query may take.
QUERY_TIMEOUT = 2.0


class RegistryClient:
    """Query a registry: list devices, look them up by name or type, watch changes.

    One client may be shared by several threads (queries are serialised).

    Args:
        registry_url: The registry endpoint (None: ``settings.registry_url``).
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        settings: Settings when ``context`` is not a Transport.
        timeout: Seconds each query may take before :class:`~labwire.errors.Unavailable`.

    Attributes:
        registry_url: The registry endpoint.
        timeout: Seconds each query may take.
    """

    def __init__(
        self,
        registry_url: str | None = None,
        *,
        context: Context[Any] | Transport | None = None,
        settings: Settings | None = None,
        timeout: float = QUERY_TIMEOUT,
    ) -> None:
        self.transport = as_transport(context, settings)
        self.registry_url = registry_url or self.transport.settings.registry_url
        parse_endpoint(self.registry_url)
        self.timeout = timeout
        self._channel: RequestChannel | None = RequestChannel(self.transport, self.registry_url)
        self._lock = threading.Lock()

    def listing(self, *, name: str | None = None, device_type: str | None = None) -> DeviceListing:
        """A consistent snapshot of the registry, with its change number and event port.

        Args:
            name: Only the device of this name.
            device_type: Only devices of this type.

        Raises:
            Unavailable: The registry cannot be reached or did not answer in time.
            AuthenticationError: Security is on and the registry refused the handshake.
            RegistryError: The registry cannot list devices (e.g. a deployed registry).
            ClosedError: The client was closed.
        """
        with self._lock:
            if self._channel is None:
                raise ClosedError("the registry client is closed")
            reply = self._channel.request(ListDevicesRequest(name, device_type), self.timeout)
        return listing_or_raise(reply, self.registry_url)

    def list_devices(self, device_type: str | None = None) -> list[DeviceInfo]:
        """Every registered device (of one type, when given), sorted by name.

        Each :class:`~labwire.wire.registry.DeviceInfo` has the name, type, address,
        ``registered_since`` and ``last_seen`` (UNIX times).

        Raises:
            Unavailable: The registry cannot be reached or did not answer in time.
            RegistryError: The registry cannot list devices (e.g. a deployed registry).
        """
        return list(self.listing(device_type=device_type).devices)

    def lookup(self, name: str) -> DeviceInfo:
        """The device registered under ``name``.

        Raises:
            NotFound: No device has that name (a :class:`LookupError`).
            Unavailable: The registry cannot be reached or did not answer in time.
            RegistryError: The registry cannot list devices (e.g. a deployed registry).
        """
        devices = self.listing(name=name).devices
        if not devices:
            raise NotFound("NotFound", f"no device named {name!r} in registry {self.registry_url}")
        return devices[0]

    def find(self, device_type: str) -> list[DeviceInfo]:
        """Every device of ``device_type``, sorted by name (empty when there is none)."""
        return self.list_devices(device_type)

    def get_devices(self) -> dict[str, tuple[str, str]]:
        """``{name: (device_type, address)}``, like :meth:`DeviceRegistry.get_devices`."""
        return {d.name: (d.device_type, d.address) for d in self.list_devices()}

    def watch(self) -> RegistryWatch:
        """Watch the registry: a snapshot, then every change (see :class:`RegistryWatch`).

        The watch has its own sockets and is owned by the thread that iterates it.

        Raises:
            Unavailable: The registry cannot be reached.
            AuthenticationError: Security is on and the registry refused the handshake.
            RegistryError: The registry cannot list devices (e.g. a deployed registry).
        """
        return RegistryWatch(self.registry_url, context=self.transport, timeout=self.timeout)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RegistryWatch(WatchBase):
    """A registry's devices as a stream of :class:`~labwire.registry.watch.WatchEvent`.

    The first event is a SNAPSHOT; then ADDED/REMOVED in the registry's order. After any sign
    of a missed change the watch fetches a new snapshot and yields it as a SNAPSHOT; when the
    registry goes silent it yields LOST once, keeps trying (with backoff), and yields a SNAPSHOT
    when the registry answers again. :attr:`devices` is the current view.

    Iterate it (``for event in watch``) or call :meth:`next_event` with a timeout. The watch
    is used by one thread; :meth:`close` may be called from any thread and ends an iteration
    in progress.

    Args:
        registry_url: The registry endpoint.
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        settings: Settings when ``context`` is not a Transport.
        timeout: Seconds a snapshot request may take.

    Raises:
        Unavailable: The registry cannot be reached for the first snapshot.
        AuthenticationError: Security is on and the registry refused the handshake.
        RegistryError: The registry cannot list devices (e.g. a deployed registry).
    """

    def __init__(
        self,
        registry_url: str,
        *,
        context: Context[Any] | Transport | None = None,
        settings: Settings | None = None,
        timeout: float = QUERY_TIMEOUT,
    ) -> None:
        self.transport = as_transport(context, settings)
        self.registry_url = registry_url
        self.timeout = timeout
        self._core = WatchCore(self.transport.settings.limits)
        self._waker = Waker(self.transport)
        self._channel = RequestChannel(self.transport, registry_url, wake=self._waker.socket)
        self._subscriber: Socket | None = None
        self._closing = False
        self._closed = threading.Event()
        self._busy = threading.Lock()
        try:
            self._synchronise(time.monotonic() + timeout, raise_errors=True)
        except BaseException:
            self._close_sockets()
            raise

    def next_event(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event, waiting at most ``timeout`` seconds (None: until there is one).

        Returns:
            The event, or None when none came in time.

        Raises:
            ClosedError: The watch is closed.
        """
        with self._busy:
            if self._closing:
                raise ClosedError("the registry watch is closed")
            try:
                return self._next(None if timeout is None else time.monotonic() + timeout)
            except Interrupted:
                self._close_sockets()
                raise ClosedError("the registry watch was closed") from None

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> WatchEvent:
        try:
            event = self.next_event()
        except ClosedError:
            raise StopIteration from None
        assert event is not None
        return event

    def close(self) -> None:
        """Stop watching and close the sockets (from any thread; returns within ~1 s)."""
        self._closing = True
        self._waker.wake()
        if self._busy.acquire(timeout=1.0):
            try:
                self._close_sockets()
            finally:
                self._busy.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def _next(self, deadline: float | None) -> WatchEvent | None:
        core = self._core
        while True:
            if core.pending:
                return core.pending.popleft()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            if core.needs_snapshot and now >= self._core.retry_at:
                self._synchronise(deadline, raise_errors=False)
                continue
            wake_at = (
                self._core.retry_at if core.needs_snapshot else core.last_heard + core.silence_limit
            )
            if deadline is not None:
                wake_at = min(wake_at, deadline)
            self._wait(wake_at)
            if not core.needs_snapshot and core.is_silent(time.monotonic()):
                _log.warning("registry %s went silent", self.registry_url)
                core.on_lost()

    def _wait(self, until: float) -> None:
        """Wait for published frames until ``until`` and feed them to the core."""
        poller = Poller()
        poller.register(self._waker.socket)
        subscriber = self._subscriber
        events = None if subscriber is None else subscriber.handshake_events
        if subscriber is not None:
            poller.register(subscriber)
        if events is not None:
            poller.register(events)  # wakes a first-frame wait when the handshake fails
        timeout_ms = max(0, int((until - time.monotonic()) * 1000) + 1)
        ready = poller.poll(timeout_ms)
        if self._waker.socket in ready:
            raise Interrupted
        if subscriber is not None and events is not None and events in ready:
            subscriber.handshake_error()  # reads the news; the socket's watcher logs failures
        if subscriber is not None and subscriber in ready:
            while (frames := subscriber.recv(0)) is not None:
                if len(frames) == 1:
                    self._core.on_frame(frames[0], time.monotonic())

    def _synchronise(self, deadline: float | None, *, raise_errors: bool) -> None:
        """Fetch a snapshot with a live subscription; on failure, schedule a retry."""
        core = self._core
        try:
            for _attempt in range(3):
                if self._subscriber is not None and not core.is_live:
                    self._wait_first_frame(deadline)
                remaining = self.timeout if deadline is None else deadline - time.monotonic()
                reply = self._channel.request(
                    ListDevicesRequest(), max(0.001, min(self.timeout, remaining))
                )
                listing = listing_or_raise(reply, self.registry_url)
                if self._needs_subscription(listing):
                    continue
                if core.is_live or _attempt == 2:
                    break
            core.on_listing(listing, time.monotonic())
        except (Unavailable, RegistryError, AuthenticationError) as exc:
            if raise_errors:
                raise
            core.on_resync_failed(exc, time.monotonic())

    def _wait_first_frame(self, deadline: float | None) -> None:
        limit = time.monotonic() + max(self._core.silence_limit, 0.5)
        if deadline is not None:
            limit = min(limit, deadline)
        while not self._core.is_live and time.monotonic() < limit:
            self._wait(limit)
            if self._subscriber is not None and not self._core.is_live:
                self._subscriber.check_handshake(retry=True)

    def _close_sockets(self) -> None:
        self._closing = True
        if self._subscriber is not None:
            self._subscriber.close(linger_ms=0)
            self._subscriber = None
        self._channel.close()
        self._waker.close()
        self._closed.set()
