"""AsyncRPCClient: the asyncio twin of :class:`~labwire.rpc.RPCClient`.

Theory of operation
-------------------
One DEALER socket per client, owned by the event loop that first uses it. Any number of
coroutines may call at once: each request carries an id and a future, and the loop itself
watches the socket (:class:`~labwire.transport.aio.ReadWatch`): when replies arrive it
receives them all without waiting and resolves the futures of the matching calls, with no
task in between. A reply that is plain JSON is the call's result as it is. Replies nobody
waits for any more (late replies) are counted and dropped. A deployed lock-step server
returns no ids, so calls to it are serialised and the socket is replaced after a timeout
(Lazy Pirate). Deadlines, pings while waiting without a
deadline, and server-restart handling follow the synchronous client. Signals are received by
the same background receiver thread as the synchronous client
(:class:`~labwire.rpc.subscriptions.AsyncSubscriptions`) and their slots are called in the
event loop.

The interface decorator is shared: ``@RPCClient.register_interface(Interface)`` on a class
deriving from ``Interface`` and ``AsyncRPCClient`` gives awaitable proxies
(``await client.add(1, 2)``, ``await client.mode``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from labwire.config import Settings
from labwire.errors import (
    CallTimeout,
    ClosedError,
    ProtocolError,
    ServerRestarted,
    Unavailable,
)
from labwire.rpc.base import (
    _CONNECTION_CHECK_SECONDS,
    _DEFAULT,
    _GET_INVENTORY,
    _HANDSHAKE_CHECK_SECONDS,
    _METHOD_CALL,
    _PROPERTY_GET,
    Reply,
    call_timeout,
    describe,
)
from labwire.rpc.operation_calls import AsyncOperationCalls
from labwire.rpc.results import NoResult
from labwire.rpc.signal import RPCSignal
from labwire.rpc.subscriptions import AsyncSubscriptions
from labwire.transport import Socket, SocketType
from labwire.transport.aio import ReadWatch
from labwire.wire.rpc import (
    ExtensionEvents,
    RPCEvents,
    expand_compact_reply,
    read_plain_reply,
)

__all__ = ["AsyncRPCClient"]


#: Messages a socket's send queue holds (libzmq's default high-water mark, which the client's
#: socket keeps).
_QUEUE_HOLDS = 1000


class _Expired(Exception):
    """A pending request's deadline passed (set on its future by its timer)."""


class _Lost(Exception):
    """The connection a pending request went out on is gone, and its reply with it."""


def _check_call(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    at: float,
    socket: Socket,
    pending: dict[int | None, asyncio.Future[Any]],
) -> None:
    """The timer of a pending call, looking at it every ``_CONNECTION_CHECK_SECONDS``.

    It ends the call at its deadline (``at``, on the loop's clock), or as soon as the
    connection its request went out on is gone: with ``ZMQ_IMMEDIATE`` the socket is then
    not writable. A full send queue makes it not writable too, so that is looked at only
    while fewer requests are pending than the queue holds.
    """
    if future.done():
        return
    now = loop.time()
    if now >= at:
        future.set_exception(_Expired())
    elif socket.closed or (len(pending) < _QUEUE_HOLDS and not socket.poll(0, writable=True)):
        future.set_exception(_Lost())
    else:  # a call that ends before this fires finds its future done
        next_check = min(at, now + _CONNECTION_CHECK_SECONDS)
        loop.call_at(next_check, _check_call, loop, future, at, socket, pending)


_log = logging.getLogger(__name__)
#: The first wait before sending again while the server is not connected yet (it doubles up
#: to the handshake check interval).
_SEND_RETRY_SECONDS = 0.001


class AsyncRPCClient(AsyncOperationCalls):
    """asyncio client for an :class:`~labwire.rpc.RPCServer` (or a deployed server).

    Use it as ``async with AsyncRPCClient(None, url) as client:`` (or ``await
    AsyncRPCClient.open(None, url)``), which reads the inventory; then ``await
    client.call("add", 1, 2)`` or the awaitable interface proxies.

    Args:
        context: ZeroMQ context, or None for the process-wide one.
        url: The server URL.
        timeout: Deadline in ms for the inventory, properties and stop (None: forever).
        settings: Transport settings.
        resolve: Called to find the server's current URL when it cannot be reached.
        raise_errors: Raise :class:`~labwire.errors.RemoteError` instead of returning
            :class:`~labwire.rpc.NoResult` for remote failures.
        server_key: With security on: the server's public key, when it differs from
            ``settings.security.server_key``.
        signal_url: Where to subscribe to the server's signals instead of the endpoint the
            server announces: a signal broker's out address (see
            :class:`~labwire.rpc.RPCClient`). Only this server's emissions are delivered;
            after a server restart, from the first call that notices it.

    Attributes:
        signal_url: The ``signal_url`` given, or None.

    Raises:
        EndpointError: ``signal_url`` is not a valid address.
    """

    def __init__(
        self,
        context: Any,
        url: str,
        timeout: int | None = 1000,
        *,
        settings: Settings | None = None,
        resolve: Callable[[], str] | None = None,
        raise_errors: bool = False,
        server_key: str | None = None,
        signal_url: str | None = None,
    ) -> None:
        self._use_signal_url(signal_url)
        self._init_base(context, url, timeout, settings, resolve, raise_errors, server_key)
        self._socket: Socket | None = None
        self._watch: ReadWatch | None = None
        # Calls waiting for their reply, by request id (None: the one call to a deployed
        # server, whose replies carry no id); each future gets a Reply or a plain value.
        self._pending: dict[int | None, asyncio.Future[Any]] = {}
        self._serial: asyncio.Lock | None = None
        self._subscriptions = AsyncSubscriptions(self)
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    async def open(cls, context: Any, url: str, timeout: int | None = 1000, **options: Any) -> Any:
        """Create a client and read the server's inventory.

        Raises:
            Unavailable: Nobody answers at ``url``.
            CallTimeout: The server did not send its inventory in time.
        """
        client = cls(context, url, timeout, **options)
        try:
            await client.refresh_inventory(connect_wait=True)
        except BaseException:
            await client.aclose()
            raise
        return client

    async def __aenter__(self) -> Any:
        try:
            await self.refresh_inventory(connect_wait=True)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ public calls

    async def execute(
        self, method_name: str, params: dict[str, Any], *, timeout: Any = _DEFAULT
    ) -> tuple[Any, Any]:
        """Execute a remote method; see :meth:`labwire.rpc.RPCClient.execute`."""
        if timeout is _DEFAULT:
            timeout = self._method_timeout(method_name)
        payload = {
            "params": {"args": list(params.get("args", [])), "kwargs": params.get("kwargs", {})}
        }
        reply = await self._request(
            RPCEvents.METHOD_CALL, {"method": method_name}, payload, timeout
        )
        return self._method_result(method_name, reply)

    async def call(self, method_name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a remote method by name; see :meth:`labwire.rpc.RPCClient.call`."""
        return await self._invoke_async(method_name, args, kwargs)

    async def get_property(self, name: str) -> Any:
        """Read a remote property.

        Raises:
            RemoteError: The property does not exist or its getter failed.
        """
        reply = await self._request(
            _PROPERTY_GET, {"property": name}, None, self._plain_timeout(), plain=True
        )
        return reply if type(reply) is not Reply else self._property_value(name, reply)

    async def set_property(self, name: str, value: Any) -> None:
        """Write a remote property.

        Raises:
            RemoteError: The property does not exist, is read-only, or its setter failed.
        """
        reply = await self._request(
            RPCEvents.PROPERTY_SET, {"property": name}, {"value": value}, self._plain_timeout()
        )
        self._check_set(reply)

    async def get_properties(self) -> dict[str, Any]:
        """Read every RPC property of the server at once."""
        if not self.is_labwire_server:
            return {name: await self.get_property(name) for name in self._properties}
        reply = await self._request(ExtensionEvents.GET_PROPERTIES, {}, None, self._plain_timeout())
        return self._property_values(reply)

    async def stop_server(self) -> bool:
        """Ask the server to shut down; True when it acknowledged."""
        try:
            reply = await self._request(RPCEvents.STOP_SERVER, {}, None, self._plain_timeout())
        except (CallTimeout, Unavailable) as exc:
            _log.warning("STOP_SERVER to %s: %s", self.url, exc)
            return False
        return self._failure(reply) is None

    async def refresh_inventory(self, *, connect_wait: bool = False) -> None:
        """Read the server's inventory again."""
        sent = time.monotonic()
        reply = await self._request(
            RPCEvents.GET_INVENTORY, {}, None, self.timeout, connect_wait=connect_wait
        )
        self._apply_inventory(reply, sent, time.monotonic())

    async def aclose(self) -> None:
        """Close the socket, stop the reader and the signal thread."""
        self._closed = True
        if self.forked_from is not None:  # a fork's child: the sockets are the parent's
            return
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClosedError(f"client for {self.url} is closed"))
        self._pending.clear()
        self._close_socket(None)
        await self._subscriptions.close()

    # ------------------------------------------------------------------ proxies

    def _invoke(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._invoke_async(name, args, kwargs)

    async def _invoke_async(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A method call: plain JSON both ways to a labwire server in one compact exchange.

        Anything else (a buffer method, a deployed server, no deadline, arguments the compact
        layout cannot carry) takes :meth:`execute`.
        """
        compact = self._compact_timeout(name)
        if compact is not None and not compact[1]:
            timeout_ms = compact[0]
            deadline = time.monotonic() + timeout_ms / 1000.0
            rid = next(self._rids)
            expiry = deadline + self._clock_offset
            frames = self._encode_call(name, list(args), kwargs, rid, timeout_ms, expiry)
            if frames is not None:
                self._loop = asyncio.get_running_loop()
                what = (_METHOD_CALL, {"method": name})
                reply = await self._round_trip(rid, frames, deadline, timeout_ms, what)
                if type(reply) is not Reply:
                    return reply
                if self._restarted(reply):
                    await self._on_restart()
                return self._method_result(name, reply)[0]
        result, info = await self.execute(name, {"args": list(args), "kwargs": kwargs})
        if name in self._buffer_methods and not isinstance(result, NoResult):
            return result, info
        return result

    def _get_property(self, name: str) -> Any:
        return self.get_property(name)

    def _set_property(self, name: str, value: Any) -> None:
        raise TypeError(
            f"cannot assign {name!r} on an asyncio client; use 'await client.set_property"
            f"({name!r}, value)'"
        )

    # ------------------------------------------------------------------ the call path

    def _ensure_socket(self) -> Socket:
        socket, watch = self._socket, self._watch
        if socket is None or socket.closed or watch is None or watch.loop is not self._loop:
            self._close_socket(0)
            socket = self._transport.connect(
                SocketType.DEALER, self.url, server_key=self.server_key, immediate=1
            )
            self._socket = socket
            self._watch = ReadWatch(socket, self._on_readable)
        return socket

    def _close_socket(self, linger_ms: int | None) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.close(linger_ms)

    def _on_readable(self) -> None:
        """Receive every reply waiting, and resolve the futures of the calls they answer."""
        socket = self._socket
        if socket is None:
            return
        try:
            # The descriptor fired, so a reply is nearly always there: receive first, and ask
            # ZeroMQ's EVENTS (a system call) only whether more follow.
            head = socket.recv_head(0)
            while head is not None:
                self._take_reply(socket, head)
                head = socket.recv_head(0) if socket.readable() else None
        except ClosedError:  # the ZeroMQ context was terminated under the client
            return

    def _take_reply(self, socket: Socket, head: bytes) -> None:
        """Resolve the future of the call that the reply starting with ``head`` answers."""
        rid: int | None
        plain = read_plain_reply(head, self._server_id, self._limits)
        if plain is not None:
            rid, value = plain
        else:
            frames = [memoryview(head), *(part.buffer for part in socket.recv_tail())]
            try:
                value = self._read(frames)
            except ProtocolError as exc:
                _log.warning("dropped a malformed reply from %s: %s", self.url, exc)
                return
            lw = value.extension
            claimed = lw.get("rid", -1) if lw else None
            rid = claimed if claimed is None or type(claimed) is int else -1
        future = self._pending.get(rid)
        if future is None or future.done():
            self.late_replies += 1
        else:
            future.set_result(value)

    async def _request(
        self,
        event: str,
        fields: dict[str, Any],
        payload: dict[str, Any] | None,
        timeout_ms: int | None,
        *,
        connect_wait: bool = False,
        plain: bool = False,
    ) -> Any:
        """Send a request and wait for its reply.

        Returns:
            The :class:`Reply`; with ``plain``, a compact reply's value as it is.
        """
        self._check_open()
        self._loop = asyncio.get_running_loop()
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000.0
        if self.is_labwire_server:
            reply = await self._exchange(event, fields, payload, timeout_ms, deadline, connect_wait)
        else:
            if self._serial is None:
                self._serial = asyncio.Lock()
            async with self._serial:
                reply = await self._exchange(
                    event, fields, payload, timeout_ms, deadline, connect_wait, serial=True
                )
        if type(reply) is not Reply:
            return reply[2] if plain else Reply(expand_compact_reply(reply), [])
        if event != _GET_INVENTORY and self._restarted(reply):
            await self._on_restart()
        return reply

    async def _exchange(
        self,
        event: str,
        fields: dict[str, Any],
        payload: dict[str, Any] | None,
        timeout_ms: int | None,
        deadline: float | None,
        connect_wait: bool,
        *,
        serial: bool = False,
    ) -> Any:
        """One request: its :class:`Reply`, or ``[rid, sid, value]`` for a compact reply."""
        server_id = self._server_id
        rid, frames = self._build(event, fields, payload, timeout_ms, time.monotonic())
        reply = await self._round_trip(
            rid, frames, deadline, timeout_ms, (event, fields), connect_wait, serial
        )
        return reply if type(reply) is Reply else [rid, server_id, reply]

    async def _round_trip(
        self,
        rid: int,
        frames: list[Any],
        deadline: float | None,
        timeout_ms: int | None,
        what: tuple[str, dict[str, Any]],
        connect_wait: bool = False,
        serial: bool = False,
    ) -> Any:
        """Send a request's frames and wait for the reply :meth:`_on_readable` hands over.

        Args:
            rid: The request's id.
            frames: Its frames.
            deadline: When to give up (monotonic clock), or None to wait while the server
                answers pings (a deployed server: forever).
            timeout_ms: The deadline as the caller gave it, for the error message.
            what: ``(event, fields)`` of the request, to name it in a timeout's message.
            connect_wait: Wait for the server to come up (see :meth:`_connect_limit`).
            serial: A deployed server's request: its reply carries no id, and the socket is
                replaced after a timeout (Lazy Pirate).

        Returns:
            A :class:`Reply`, or a compact reply's plain value.
        """
        loop = self._loop
        assert loop is not None
        future = loop.create_future()
        pending = self._pending
        pending[rid] = future
        if serial:
            pending[None] = future
        try:
            socket = self._ensure_socket()
            socket.check_handshake(retry=True)
            if not self._send_now(socket, frames):  # not connected yet: wait for it
                socket = await self._send_later(socket, frames, deadline, connect_wait)
            if deadline is None:
                return await (future if serial else self._wait_alive(future))
            # A timer on the future itself: asyncio.wait_for() would add a task and a waiter
            # to every call.
            now = loop.time()
            at = now + max(0.0, deadline - time.monotonic())
            timer = loop.call_at(
                min(at, now + _CONNECTION_CHECK_SECONDS),
                _check_call,
                loop,
                future,
                at,
                socket,
                pending,
            )
            try:
                return await future
            except (_Expired, _Lost) as exc:
                if serial:  # Lazy Pirate: a late reply must never pair with the next call
                    self._close_socket(0)
                if isinstance(exc, _Lost):
                    raise Unavailable(f"{self.url} went away while a call was pending") from None
                raise call_timeout(describe(*what), self.url, timeout_ms) from None
            finally:
                timer.cancel()
        finally:
            pending.pop(rid, None)
            if serial:
                pending.pop(None, None)

    async def _send_later(
        self, socket: Socket, frames: list[Any], deadline: float | None, connect_wait: bool
    ) -> Socket:
        """Send a request that could not be sent at once, once the server is connected.

        Returns:
            The socket it went out on.
        """
        if not connect_wait and self._socket is socket and len(self._pending) < _QUEUE_HOLDS:
            # No connection (the queue is not full). A fresh socket connects at once, where
            # this one may be waiting out its reconnection backoff (up to reconnect_ivl_max)
            # since the server went away. Calls pending on it lost their connection with it.
            self._close_socket(0)
        sent = await self._send_until(frames, self._connect_limit(deadline, connect_wait))
        if sent is not None:
            return sent
        if self._moved():
            self._close_socket(0)
            grace = self._settings.connect_grace_ms / 1000.0
            sent = await self._send_until(frames, time.monotonic() + grace)
            if sent is not None:
                return sent
        raise Unavailable(f"cannot reach {self.url}: no connection (is the server running?)")

    def _send_now(self, socket: Socket, frames: list[Any]) -> bool:
        sent = socket.send(frames, nowait=True)
        assert self._watch is not None
        self._watch.kick()
        return sent

    async def _send_until(self, frames: list[Any], limit: float) -> Socket | None:
        """Send on the client's socket once the server is connected, trying until ``limit``.

        Returns:
            The socket the request went out on, or None if it could not be sent in time.
        """
        delay = _SEND_RETRY_SECONDS
        while (remaining := limit - time.monotonic()) > 0:
            await asyncio.sleep(min(delay, remaining))
            delay = min(2 * delay, _HANDSHAKE_CHECK_SECONDS)
            socket = self._ensure_socket()  # another call may have replaced it meanwhile
            if self._send_now(socket, frames):
                return socket
            socket.check_handshake(retry=False)
        return None

    async def _wait_alive(self, future: asyncio.Future[Any]) -> Any:
        """Wait without a deadline, pinging the server so a dead one is noticed."""
        heartbeat = self._settings.heartbeat_ivl_ms / 1000.0
        dead_after = self._settings.heartbeat_timeout_ms / 1000.0
        while True:
            done, _ = await asyncio.wait({future}, timeout=heartbeat)
            if done:
                return future.result()
            try:
                pong = await self._exchange(
                    ExtensionEvents.PING,
                    {},
                    None,
                    int(dead_after * 1000),
                    time.monotonic() + dead_after,
                    False,
                )
            except (CallTimeout, Unavailable):
                raise Unavailable(
                    f"{self.url} stopped answering while a call was pending"
                ) from None
            if type(pong) is Reply and self._restarted(pong):
                await self._on_restart()
                raise ServerRestarted(f"{self.url} restarted during the call (outcome unknown)")

    # ------------------------------------------------------------------ restarts and signals

    async def _on_restart(self) -> None:
        _log.info("server at %s restarted; reading its inventory again", self.url)
        try:
            await self.refresh_inventory()
        except (CallTimeout, Unavailable) as exc:
            _log.warning("could not re-read the inventory of %s: %s", self.url, exc)
            return
        await self._subscriptions.follow_restart()

    def _on_slots_changed(self, signal: RPCSignal) -> None:
        if self._closed:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._subscriptions.changed(signal, loop)

    async def signal_stats(self) -> dict[str, int]:
        """Counters of the signal receiver (see :meth:`labwire.rpc.RPCClient.signal_stats`)."""
        return self._subscriptions.stats()
