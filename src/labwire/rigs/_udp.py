"""The deployed UDP echo protocol, robust on labwire's side of the wire (asyncio).

Theory of operation
-------------------
One :class:`EchoEndpoint` wraps one UDP socket. Sending is *confirmed*: the datagram is sent
and sent again, with a doubling interval, until the peer echoes the same bytes or the deadline
passes, so one lost datagram (either way) never ends the link. While a datagram waits for its
echo, the first byte-identical datagram from that peer is its echo, however late it comes (a
loaded host may leave it unread for a while). After that first echo, an identical datagram
counts as the echo of a further copy only if such a copy was sent within the last
:data:`ECHO_WINDOW` seconds (an echo comes back within a round trip, well under that on a lab
network); anything else is the peer's own traffic (for example its reply, overtaking a lost
echo) and is handled as such. So a reply byte-identical to its request that overtakes a lost
echo is taken for that echo: a labwire rig resends its reply until it is echoed, which recovers
it. The window matters when a reply is byte-identical to its request (``[32,0]`` answers
``[32,0]``), which the deployed wire cannot tell apart otherwise: counting echoes owed for
copies that were lost would swallow the peer's next message, and taking a late echo for a new
message would start an endless exchange of echoes. The window is shorter than the first resend
interval, so a peer's own resend never falls within it. After a send ends, its entry stays for
one more window to absorb the echo of its last copy.

Every other non-error datagram is echoed back at once, exactly, and handed to the owner's
``on_datagram`` callback, unless the same bytes from the same peer are still being handled
(a resend whose echo was lost): that one is only echoed again. Error replies (code 0) are
never echoed, as in the deployed protocol. Nothing raised while handling a datagram escapes
into the event loop: it is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from labwire.errors import ProtocolError
from labwire.wire.rigs import Datagram, decode_datagram

__all__ = ["Address", "EchoEndpoint"]

_log = logging.getLogger(__name__)

Address = tuple[Any, ...]
#: First wait for an echo before sending again; doubles up to _RESEND_MAX.
_RESEND_FIRST = 0.2
_RESEND_MAX = 1.0
#: Seconds after a copy was sent during which an identical datagram is taken for its echo.
ECHO_WINDOW = 0.1


@dataclass
class _Outgoing:
    data: bytes
    echoed: asyncio.Future[None]
    #: Loop times at which copies were sent that have no echo yet.
    unechoed: list[float] = field(default_factory=list)


class EchoEndpoint(asyncio.DatagramProtocol):
    """One UDP socket speaking the deployed echo protocol.

    Args:
        on_datagram: Called with ``(datagram, raw bytes, peer address)`` for every new
            datagram from a peer (already echoed when it is not an error reply); the
            datagram is a :class:`~labwire.errors.ProtocolError` when it cannot be decoded.
        name: A label for log messages.

    Attributes:
        dropped: Datagrams that could not be decoded (logged and dropped, after the echo).
        resent: Datagrams sent again because no echo came in time.
    """

    def __init__(
        self,
        on_datagram: Callable[[Datagram | ProtocolError, bytes, Address], None],
        name: str = "rig",
    ) -> None:
        self._on_datagram = on_datagram
        self.name = name
        self._transport: asyncio.DatagramTransport | None = None
        self._outgoing: dict[Address, list[_Outgoing]] = {}
        self._in_progress: set[tuple[Address, bytes]] = set()
        self.dropped = 0
        self.resent = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (called by asyncio)."""
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Mark the endpoint closed (called by asyncio)."""
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        """Log a socket error, e.g. ICMP port unreachable while the peer is down."""
        _log.debug("[%s] UDP error: %s", self.name, exc)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """Sort one incoming datagram: an echo, an error reply or a new message."""
        try:
            self._receive(data, addr[:2])
        except Exception:
            self.dropped += 1
            _log.exception("[%s] failed to handle a datagram from %s", self.name, addr)

    # ------------------------------------------------------------------ public

    @property
    def local_address(self) -> Address:
        """The socket's own (host, port)."""
        assert self._transport is not None
        address: Address = self._transport.get_extra_info("sockname")[:2]
        return address

    def send(self, data: bytes, addr: Address | None = None) -> None:
        """Send one datagram without waiting for its echo (to ``addr``, or the connected peer)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, None if addr is None or self._connected_to(addr) else addr)

    async def confirmed_send(
        self,
        data: bytes,
        addr: Address,
        deadline: float,
        stop_when: asyncio.Future[Any] | None = None,
    ) -> bool:
        """Send ``data`` until ``addr`` echoes it or the loop clock passes ``deadline``.

        Args:
            data: The datagram.
            addr: The peer, as it appears in received datagrams (host, port).
            deadline: Loop time (``loop.time()``) after which to give up.
            stop_when: Stop sending when this future is done (e.g. the reply arrived,
                which proves the message was received even if its echo was lost).

        Returns:
            True when the echo came (or ``stop_when`` finished), False at the deadline.
        """
        loop = asyncio.get_running_loop()
        pending = _Outgoing(data, loop.create_future())
        queue = self._outgoing.setdefault(addr, [])
        queue.append(pending)
        interval = _RESEND_FIRST
        waiters: set[asyncio.Future[Any]] = {pending.echoed}
        if stop_when is not None:
            waiters.add(stop_when)
        try:
            while True:
                if pending.unechoed or pending.echoed.done():
                    self.resent += 1
                pending.unechoed.append(loop.time())
                self.send(data, addr)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                done, _ = await asyncio.wait(
                    waiters, timeout=min(interval, remaining), return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    return True
                interval = min(interval * 2, _RESEND_MAX)
        finally:
            if not pending.echoed.done():
                pending.echoed.cancel()
            if pending.unechoed:
                loop.call_later(ECHO_WINDOW, self._forget, addr, pending)
            else:
                self._forget(addr, pending)

    def _forget(self, addr: Address, pending: _Outgoing) -> None:
        queue = self._outgoing.get(addr, [])
        if pending in queue:
            queue.remove(pending)
        if not queue:
            self._outgoing.pop(addr, None)

    def begin(self, data: bytes, addr: Address) -> None:
        """Note that ``data`` from ``addr`` is being handled (resends are only echoed)."""
        self._in_progress.add((addr, data))

    def done(self, data: bytes, addr: Address) -> None:
        """Note that handling ``data`` from ``addr`` has finished."""
        self._in_progress.discard((addr, data))

    def close(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ internals

    def _connected_to(self, addr: Address) -> bool:
        assert self._transport is not None
        peer = self._transport.get_extra_info("peername")
        return peer is not None and tuple(peer[:2]) == tuple(addr)

    def _receive(self, data: bytes, addr: Address) -> None:
        outgoing = self._outgoing.get(addr)
        if outgoing:
            oldest = asyncio.get_running_loop().time() - ECHO_WINDOW
            for pending in outgoing:
                if pending.data != data:
                    continue
                if pending.echoed.done():  # a later copy's echo: only within the window
                    pending.unechoed = [sent for sent in pending.unechoed if sent >= oldest]
                if pending.unechoed:
                    del pending.unechoed[0]
                    if not pending.echoed.done():
                        pending.echoed.set_result(None)
                    return
        try:
            datagram = decode_datagram(data)
        except ProtocolError as exc:
            self.dropped += 1
            if not data.startswith(b"[0"):
                self.send(data, addr)  # the sender waits for its confirmation whatever it sent
            _log.warning("[%s] bad datagram from %s: %s", self.name, addr, exc)
            self._on_datagram(exc, data, addr)
            return
        if not datagram.is_error:
            self.send(data, addr)
            if (addr, data) in self._in_progress:
                return
        self._on_datagram(datagram, data, addr)
