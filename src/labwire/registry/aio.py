"""asyncio twins of :class:`~labwire.registry.RegistryClient` and its watch.

Same method names and behaviour as the synchronous classes in :mod:`labwire.registry.client`,
awaited. Sockets belong to the event loop that uses them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any, Self

from labwire.config import Settings
from labwire.errors import (
    AuthenticationError,
    ClosedError,
    NotFound,
    RegistryError,
    Unavailable,
)
from labwire.registration import HANDSHAKE_CHECK_SECONDS, as_transport, read_reply
from labwire.registry.client import QUERY_TIMEOUT
from labwire.registry.watch import WatchBase, WatchCore, WatchEvent, listing_or_raise
from labwire.transport import Context, SocketType, Transport, parse_endpoint
from labwire.transport.aio import AsyncSocket, AsyncTransport
from labwire.wire.registry import (
    DeviceInfo,
    DeviceListing,
    ListDevicesRequest,
    RegistryReply,
    RegistryRequest,
    encode_request,
)

__all__ = ["AsyncRegistryClient", "AsyncRegistryWatch"]

_log = logging.getLogger(__name__)


class _AsyncChannel:
    """The asyncio version of :class:`~labwire.registration.channel.RequestChannel`.

    With security on, a refused handshake is raised as
    :class:`~labwire.errors.AuthenticationError` within :data:`HANDSHAKE_CHECK_SECONDS` of the
    socket's handshake watcher seeing it: a secured socket waits in slices of that length and
    looks at the handshake news between them (unsecured sockets wait in one piece).
    """

    def __init__(self, transport: AsyncTransport, url: str) -> None:
        self.transport = transport
        self.url = url
        self._socket: AsyncSocket | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger_ms=0)
            self._socket = None

    async def request(self, request: RegistryRequest, timeout: float) -> RegistryReply:
        async with self._lock:
            return await self._request(request, timeout)

    async def _request(self, request: RegistryRequest, timeout: float) -> RegistryReply:
        deadline = time.monotonic() + timeout
        if self._socket is None:
            self._socket = self.transport.connect(SocketType.DEALER, self.url, immediate=1)
        socket = self._socket
        socket.check_handshake(retry=True)
        request_id = next(self._ids)
        frames_out = [b"", encode_request(request, request_id)]
        if not socket.send_nowait(frames_out):  # IMMEDIATE: no connection (yet)
            grace_ms = min(self.transport.settings.connect_grace_ms, int(timeout * 1000))
            if not await self._send_when_connected(socket, frames_out, max(grace_ms, 1)):
                self.close()
                raise Unavailable(f"registry at {self.url} is not reachable")
        limits = self.transport.settings.limits
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise Unavailable(f"registry at {self.url} did not answer within {timeout:g} s")
            if socket.is_secure:
                remaining = min(remaining, HANDSHAKE_CHECK_SECONDS)
            frames = await socket.recv(max(1, int(remaining * 1000)))
            if frames is None:
                socket.check_handshake(retry=False)  # e.g. a reconnection was refused
                continue
            reply = read_reply(frames, request_id, self.url, limits)
            if reply is not None:
                return reply

    @staticmethod
    async def _send_when_connected(
        socket: AsyncSocket, frames: list[bytes], timeout_ms: int
    ) -> bool:
        """Send once the socket has a connection, within ``timeout_ms``.

        Returns:
            True when sent; False when no connection came in time.

        Raises:
            AuthenticationError: The security handshake failed meanwhile.
        """
        if not socket.is_secure:
            return await socket.poll(timeout_ms, writable=True) and socket.send_nowait(frames)
        deadline = time.monotonic() + timeout_ms / 1000
        while (remaining := deadline - time.monotonic()) > 0:
            wait_ms = max(1, int(min(remaining, HANDSHAKE_CHECK_SECONDS) * 1000))
            if await socket.poll(wait_ms, writable=True) and socket.send_nowait(frames):
                return True
            socket.check_handshake(retry=False)
        return False


class AsyncRegistryClient:
    """Query a registry from asyncio: the twin of :class:`~labwire.registry.RegistryClient`.

    Args:
        registry_url: The registry endpoint (None: ``settings.registry_url``).
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        settings: Settings when ``context`` is not a Transport.
        timeout: Seconds each query may take before :class:`~labwire.errors.Unavailable`.
    """

    def __init__(
        self,
        registry_url: str | None = None,
        *,
        context: Context[Any] | Transport | None = None,
        settings: Settings | None = None,
        timeout: float = QUERY_TIMEOUT,
    ) -> None:
        transport = as_transport(context, settings)
        self.transport = AsyncTransport.from_transport(transport)
        self.registry_url = registry_url or transport.settings.registry_url
        parse_endpoint(self.registry_url)
        self.timeout = timeout
        self._channel: _AsyncChannel | None = _AsyncChannel(self.transport, self.registry_url)

    async def listing(
        self, *, name: str | None = None, device_type: str | None = None
    ) -> DeviceListing:
        """A consistent snapshot of the registry (see :meth:`RegistryClient.listing`)."""
        if self._channel is None:
            raise ClosedError("the registry client is closed")
        reply = await self._channel.request(ListDevicesRequest(name, device_type), self.timeout)
        return listing_or_raise(reply, self.registry_url)

    async def list_devices(self, device_type: str | None = None) -> list[DeviceInfo]:
        """Every registered device (of one type, when given), sorted by name."""
        return list((await self.listing(device_type=device_type)).devices)

    async def lookup(self, name: str) -> DeviceInfo:
        """The device registered under ``name``.

        Raises:
            NotFound: No device has that name.
            Unavailable: The registry cannot be reached or did not answer in time.
            RegistryError: The registry cannot list devices (e.g. a deployed registry).
        """
        devices = (await self.listing(name=name)).devices
        if not devices:
            raise NotFound("NotFound", f"no device named {name!r} in registry {self.registry_url}")
        return devices[0]

    async def find(self, device_type: str) -> list[DeviceInfo]:
        """Every device of ``device_type``, sorted by name."""
        return await self.list_devices(device_type)

    async def get_devices(self) -> dict[str, tuple[str, str]]:
        """``{name: (device_type, address)}``."""
        return {d.name: (d.device_type, d.address) for d in await self.list_devices()}

    async def watch(self) -> AsyncRegistryWatch:
        """Watch the registry: a snapshot, then every change.

        Raises:
            Unavailable: The registry cannot be reached.
            RegistryError: The registry cannot list devices (e.g. a deployed registry).
        """
        watch = AsyncRegistryWatch(self.registry_url, self.transport, self.timeout)
        try:
            await watch.synchronise(raise_errors=True)
        except BaseException:
            watch.close()
            raise
        return watch

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRegistryWatch(WatchBase):
    """The asyncio twin of :class:`~labwire.registry.RegistryWatch`; use ``async for``.

    Made by :meth:`AsyncRegistryClient.watch`.

    Args:
        registry_url: The registry endpoint.
        transport: The asyncio socket factory.
        timeout: Seconds a snapshot request may take.
    """

    def __init__(self, registry_url: str, transport: AsyncTransport, timeout: float) -> None:
        self.registry_url = registry_url
        self.transport = transport
        self.timeout = timeout
        self._core = WatchCore(transport.settings.limits)
        self._channel = _AsyncChannel(transport, registry_url)
        self._subscriber: AsyncSocket | None = None
        self._closed = False

    async def next_event(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event, waiting at most ``timeout`` seconds (None: until there is one).

        Raises:
            ClosedError: The watch is closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        core = self._core
        while True:
            if self._closed:
                raise ClosedError("the registry watch is closed")
            if core.pending:
                return core.pending.popleft()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            if core.needs_snapshot and now >= self._core.retry_at:
                await self.synchronise(raise_errors=False, deadline=deadline)
                continue
            wake_at = (
                self._core.retry_at if core.needs_snapshot else core.last_heard + core.silence_limit
            )
            if deadline is not None:
                wake_at = min(wake_at, deadline)
            await self._wait(wake_at)
            if not core.needs_snapshot and core.is_silent(time.monotonic()):
                _log.warning("registry %s went silent", self.registry_url)
                core.on_lost()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        try:
            event = await self.next_event()
        except ClosedError:
            raise StopAsyncIteration from None
        assert event is not None
        return event

    def close(self) -> None:
        """Stop watching and close the sockets."""
        self._closed = True
        if self._subscriber is not None:
            self._subscriber.close(linger_ms=0)
            self._subscriber = None
        self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    async def synchronise(self, *, raise_errors: bool, deadline: float | None = None) -> None:
        """Fetch a snapshot with a live subscription; on failure, schedule a retry.

        Raises:
            Unavailable: (with ``raise_errors``) the registry cannot be reached.
            RegistryError: (with ``raise_errors``) the registry cannot list devices.
        """
        core = self._core
        try:
            for attempt in range(3):
                if self._subscriber is not None and not core.is_live:
                    await self._wait_first_frame(deadline)
                remaining = self.timeout if deadline is None else deadline - time.monotonic()
                reply = await self._channel.request(
                    ListDevicesRequest(), max(0.001, min(self.timeout, remaining))
                )
                listing = listing_or_raise(reply, self.registry_url)
                if self._needs_subscription(listing):
                    continue
                if core.is_live or attempt == 2:
                    break
            core.on_listing(listing, time.monotonic())
        except (Unavailable, RegistryError, AuthenticationError) as exc:
            if raise_errors:
                raise
            core.on_resync_failed(exc, time.monotonic())

    async def _wait(self, until: float) -> None:
        subscriber = self._subscriber
        timeout_ms = max(0, int((until - time.monotonic()) * 1000) + 1)
        if subscriber is None:
            await asyncio.sleep(timeout_ms / 1000)
            return
        frames = await subscriber.recv(timeout_ms)
        while frames is not None:
            if len(frames) == 1:
                self._core.on_frame(frames[0], time.monotonic())
            frames = await subscriber.recv(0) if not subscriber.closed else None

    async def _wait_first_frame(self, deadline: float | None) -> None:
        limit = time.monotonic() + max(self._core.silence_limit, 0.5)
        if deadline is not None:
            limit = min(limit, deadline)
        while not self._core.is_live and time.monotonic() < limit:
            subscriber = self._subscriber
            if subscriber is None or not subscriber.is_secure:
                await self._wait(limit)
                continue
            # A secured subscriber waits in slices and looks at its handshake news between
            # them: a publisher that refuses this client fails the watch at once.
            await self._wait(min(limit, time.monotonic() + HANDSHAKE_CHECK_SECONDS))
            if not self._core.is_live:
                subscriber.check_handshake(retry=True)
