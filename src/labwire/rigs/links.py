"""How a coordinator reaches one rig: the deployed UDP protocol or labwire's transport.

Both links offer one coroutine, :meth:`RigLink.request`, that sends one message and returns
the reply items, or raises :class:`~labwire.errors.RemoteError` (the rig refused or failed),
:class:`~labwire.errors.CallTimeout` (no reply by the deadline: outcome unknown) or
:class:`~labwire.errors.Unavailable` (the rig cannot be reached at all). A link is never ended
by a failure: the next request tries again, so a restarted rig is reached without recreating
anything.

* :class:`UdpLink` (``udp://HOST:PORT`` or a bare host): the deployed protocol. The wire has no
  request id, so one request at a time goes to a rig; its reply is the next datagram from that
  rig with the same code. The request is resent until echoed (see
  :mod:`labwire.rigs._udp`); the rig's reply is echoed back. The wire's limits remain: after a
  request timed out, its late reply can still be taken for the reply to the next request of
  the same code to that rig, and a request delayed in the network or in a frozen rig is
  executed whenever it arrives. Between two labwire ends, use ``tcp://`` or a registry name.
* :class:`RpcLink` (``tcp://...`` or a registry name): a call of the rig service's
  ``rig_message`` method through :class:`~labwire.rpc.AsyncRPCClient`, so replies are matched
  by request id, late replies are dropped, requests carry an expiry, and CurveZMQ applies when
  security is on. A registry name is resolved when first needed and again when the rig
  cannot be reached (it may have moved).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Any

from labwire.config import Settings
from labwire.errors import CallTimeout, LabwireError, ProtocolError, RemoteError, Unavailable
from labwire.rigs._udp import Address, EchoEndpoint
from labwire.rigs.service import RIG_METHOD
from labwire.rpc import AsyncRPCClient
from labwire.wire.rigs import Datagram, ExpMessage, RigAddress, encode_datagram

__all__ = ["RigLink", "RpcLink", "UdpLink", "open_link"]

_log = logging.getLogger(__name__)


class RigLink(ABC):
    """One coordinator's way to one rig.

    Attributes:
        name: The rig's name.
        uri: The URI it was given as.
    """

    def __init__(self, name: str, uri: str) -> None:
        self.name = name
        self.uri = uri

    @property
    @abstractmethod
    def is_connected(self) -> bool:
        """Whether the link is open (it may still fail to reach the rig)."""

    @abstractmethod
    async def request(self, message: ExpMessage, items: list[Any], timeout: float) -> list[Any]:
        """Send one message and return the rig's reply items.

        Raises:
            RemoteError: The rig refused the message or its handler failed.
            CallTimeout: No reply within ``timeout`` seconds (outcome unknown).
            Unavailable: The rig cannot be reached.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Close the link."""


class UdpLink(RigLink):
    """The deployed UDP protocol to one rig.

    The socket is opened by :meth:`open` (a host name is resolved then); if that fails, the
    next request tries again, so a rig whose name did not resolve yet is reported per request
    instead of failing the whole coordinator.
    """

    def __init__(self, name: str, uri: str, address: RigAddress) -> None:
        super().__init__(name, uri)
        self._address = address
        self._endpoint: EchoEndpoint | None = None
        self._peer: Address = ()
        self._lock = asyncio.Lock()
        self._waiting: dict[int, asyncio.Future[list[Any]]] = {}
        self._closed = False
        self.unsolicited = 0

    async def open(self) -> EchoEndpoint:
        """Open the UDP socket connected to the rig (once).

        Raises:
            Unavailable: The host name cannot be resolved, or the link is closed.
        """
        if self._closed:
            raise Unavailable(f"the link to rig {self.name!r} is closed")
        if self._endpoint is not None:
            return self._endpoint
        address = self._address
        loop = asyncio.get_running_loop()
        try:
            _, endpoint = await loop.create_datagram_endpoint(
                lambda: EchoEndpoint(self._on_datagram, self.name),
                remote_addr=(address.host, address.port),
            )
        except OSError as exc:
            raise Unavailable(f"rig {self.name!r} at {address.url}: {exc}") from exc
        if self._closed:
            endpoint.close()
            raise Unavailable(f"the link to rig {self.name!r} is closed")
        self._endpoint = endpoint
        assert endpoint._transport is not None
        self._peer = tuple(endpoint._transport.get_extra_info("peername")[:2])
        return endpoint

    @property
    def is_connected(self) -> bool:
        """Whether the socket is open."""
        return self._endpoint is not None and not self._endpoint.closed.done()

    async def request(self, message: ExpMessage, items: list[Any], timeout: float) -> list[Any]:
        """Send one message (resent until confirmed) and wait for the reply of the same code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        data = encode_datagram(message, items)
        endpoint = await self.open()
        try:
            await asyncio.wait_for(self._lock.acquire(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise CallTimeout(
                f"rig {self.name!r} ({self.uri}) was still busy with an earlier message after "
                f"{timeout:g} s; {message.name} was not sent"
            ) from None
        code = int(message)
        reply: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting[code] = reply  # in place before anything is sent
        try:
            confirmed = await endpoint.confirmed_send(data, self._peer, deadline, reply)
            if not confirmed:
                raise CallTimeout(
                    f"rig {self.name!r} ({self.uri}) did not confirm {message.name} within "
                    f"{timeout:g} s"
                )
            try:
                return await asyncio.wait_for(reply, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise CallTimeout(
                    f"rig {self.name!r} ({self.uri}) confirmed {message.name} but did not "
                    f"reply within {timeout:g} s (outcome unknown)"
                ) from None
        finally:
            self._waiting.pop(code, None)
            self._lock.release()

    def _on_datagram(self, datagram: Datagram | ProtocolError, data: bytes, addr: Address) -> None:
        if isinstance(datagram, ProtocolError):
            return  # logged by the endpoint
        if datagram.is_error:
            error_type, text, code = datagram.error
            waiter = self._waiting.get(code)
            if waiter is not None and not waiter.done():
                waiter.set_exception(RemoteError(error_type, text))
            else:
                _log.warning("rig %r reported %s: %s", self.name, error_type, text)
            return
        waiter = self._waiting.get(datagram.code)
        if waiter is not None and not waiter.done():
            waiter.set_result(list(datagram.items))
        else:
            self.unsolicited += 1
            _log.info(
                "rig %r sent %s unasked (dropped)", self.name, datagram.message or datagram.code
            )

    async def aclose(self) -> None:
        """Close the socket; pending requests fail as unavailable."""
        self._closed = True
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(Unavailable(f"the link to rig {self.name!r} was closed"))
        if self._endpoint is not None:
            self._endpoint.close()


class RpcLink(RigLink):
    """labwire's transport to a rig service (by URL or registry name)."""

    def __init__(
        self,
        name: str,
        uri: str,
        address: RigAddress,
        settings: Settings | None,
        registry_url: str | None,
    ) -> None:
        super().__init__(name, uri)
        self._address = address
        self._settings = settings
        self._registry_url = registry_url
        self._client: AsyncRPCClient | None = None
        self._closed = False

    @property
    def is_connected(self) -> bool:
        """Whether the link is open."""
        return not self._closed

    async def _connect(self, timeout_ms: int) -> AsyncRPCClient:
        if self._client is not None:
            return self._client
        options: dict[str, Any] = {"raise_errors": True}
        if self._settings is not None:
            options["settings"] = self._settings
        if self._address.link == "name":
            from labwire.registry import connect

            lookup = max(0.2, min(2.0, timeout_ms / 2000))
            name = self._address.url

            def lookup_and_connect() -> AsyncRPCClient:
                return connect(
                    AsyncRPCClient,
                    name,
                    self._registry_url,
                    timeout=timeout_ms,
                    lookup_timeout=lookup,
                    **options,
                )

            client = await asyncio.to_thread(lookup_and_connect)
        else:
            client = AsyncRPCClient(None, self._address.url, timeout_ms, **options)
        self._client = client
        return client

    async def request(self, message: ExpMessage, items: list[Any], timeout: float) -> list[Any]:
        """Call ``rig_message`` on the rig service with a deadline."""
        if self._closed:
            raise Unavailable(f"the link to rig {self.name!r} is closed")
        timeout_ms = max(1, int(timeout * 1000))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        client = await self._connect(timeout_ms)
        if not client.is_labwire_server:
            with contextlib.suppress(LabwireError, TimeoutError):
                await asyncio.wait_for(client.refresh_inventory(connect_wait=True), timeout)
        remaining = max(1, int((deadline - loop.time()) * 1000))
        try:
            result, _ = await client.execute(
                RIG_METHOD, {"args": [int(message), items]}, timeout=remaining
            )
        except TimeoutError as exc:
            if isinstance(exc, CallTimeout):
                raise
            raise CallTimeout(f"rig {self.name!r}: no reply within {timeout:g} s") from None
        if not isinstance(result, list):
            raise ProtocolError(f"rig {self.name!r} replied {type(result).__name__}, not a list")
        return result

    async def aclose(self) -> None:
        """Close the RPC client."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


async def open_link(
    name: str,
    uri: str,
    address: RigAddress,
    settings: Settings | None,
    registry_url: str | None,
) -> RigLink:
    """Open the link that ``address`` calls for (see :func:`labwire.wire.rigs.parse_rig_uri`).

    A UDP link is opened at once when its host resolves; otherwise each request tries again
    (and reports the rig unavailable until it works).
    """
    if address.link == "udp":
        link = UdpLink(name, uri, address)
        try:
            await link.open()
        except Unavailable as exc:
            _log.warning("%s; will try again on the next message", exc)
        return link
    return RpcLink(name, uri, address, settings, registry_url)
