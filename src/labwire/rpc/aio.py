"""AsyncRPCClient: the asyncio twin of :class:`~labwire.rpc.RPCClient`.

Theory of operation
-------------------
One DEALER socket per client, owned by the event loop that first uses it. Any number of
coroutines may call at once: each request carries an id, a reader task resolves the future of
the matching call, and replies nobody waits for any more (late replies) are counted and
dropped. A deployed lock-step server returns no ids, so calls to it are serialised and the
socket is replaced after a timeout (Lazy Pirate). Deadlines, pings while waiting without a
deadline, and server-restart handling follow the synchronous client. Signals are received by
the same background receiver thread as the synchronous client and their slots are called in
the event loop.

The interface decorator is shared: ``@RPCClient.register_interface(Interface)`` on a class
deriving from ``Interface`` and ``AsyncRPCClient`` gives awaitable proxies
(``await client.add(1, 2)``, ``await client.mode``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from labwire.config import Settings
from labwire.errors import (
    CallTimeout,
    ClosedError,
    LabwireError,
    ProtocolError,
    ServerRestarted,
    Unavailable,
)
from labwire.rpc.base import (
    _DEFAULT,
    _HANDSHAKE_CHECK_SECONDS,
    ClientBase,
    Reply,
    call_timeout,
    describe,
)
from labwire.rpc.operations import AsyncOperationHandle, OperationLost
from labwire.rpc.receiver import RPCSignalReceiver
from labwire.rpc.results import NoResult
from labwire.rpc.signal import RPCSignal
from labwire.transport import SocketType
from labwire.transport.aio import AsyncSocket, AsyncTransport
from labwire.wire.operations import OperationInfo, Update, decode_info
from labwire.wire.rpc import ExtensionEvents, RPCEvents

__all__ = ["AsyncRPCClient"]


class _Expired(Exception):
    """A pending request's deadline passed (set on its future by its timer)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_Expired())


_log = logging.getLogger(__name__)


class AsyncRPCClient(ClientBase):
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
        self._async_transport = AsyncTransport(context, settings)
        self._socket: AsyncSocket | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._serial: asyncio.Lock | None = None
        self._signal_receiver: RPCSignalReceiver | None = None
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
            RPCEvents.PROPERTY_GET, {"property": name}, None, self._plain_timeout()
        )
        return self._property_value(name, reply)

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

    async def start_operation(
        self,
        method_name: str,
        *args: Any,
        deadline: Any = _DEFAULT,
        on_progress: Callable[[Update], Any] | None = None,
        **kwargs: Any,
    ) -> AsyncOperationHandle:
        """Start an operation and watch it; see :meth:`labwire.rpc.RPCClient.start_operation`.

        Iterate the handle (``async for update in handle``) for its progress updates.
        """
        fields, payload = self._operation_start(method_name, args, kwargs, deadline)
        reply = await self._request(
            ExtensionEvents.OP_START, fields, payload, self._operation_timeout()
        )
        header, _ = self._operation_reply(reply)
        return AsyncOperationHandle(self, decode_info(header.get("op")), on_progress)

    async def attach_operation(
        self, operation_id: str, on_progress: Callable[[Update], Any] | None = None
    ) -> AsyncOperationHandle:
        """Watch an operation started elsewhere by its id.

        Raises:
            OperationLost: The server does not know it.
        """
        header, _, _ = await self._operation_request(
            ExtensionEvents.OP_POLL, {"op": operation_id, "after": 0}
        )
        failure = self._failure(Reply(header, []))
        if failure is not None:
            raise OperationLost(failure.error)
        return AsyncOperationHandle(self, decode_info(header.get("op")), on_progress)

    async def operations(self) -> list[OperationInfo]:
        """The server's running operations and those that ended recently."""
        reply = await self._request(ExtensionEvents.OP_LIST, {}, None, self._operation_timeout())
        header, _ = self._operation_reply(reply)
        ops = header.get("ops")
        if not isinstance(ops, list):
            raise ProtocolError("OP_LIST reply needs an 'ops' list")
        return [decode_info(op) for op in ops]

    async def cancel_operation(
        self, operation_id: str, reason: str = "cancelled by a client"
    ) -> OperationInfo:
        """Cancel an operation by id; returns what the server says of it.

        Raises:
            OperationLost: The server does not know it.
        """
        fields = {"op": operation_id, "reason": reason[:256]}
        header, _, _ = await self._operation_request(ExtensionEvents.OP_CANCEL, fields)
        failure = self._failure(Reply(header, []))
        if failure is not None:
            raise OperationLost(failure.error)
        return decode_info(header.get("op"))

    async def _operation_request(
        self, event: str, fields: dict[str, Any]
    ) -> tuple[dict[str, Any], list[memoryview], dict[str, Any]]:
        """An OP_POLL or OP_CANCEL: the reply's header, buffers and ``"lw"`` object."""
        reply = await self._request(event, fields, None, self._operation_timeout())
        return reply.header, reply.buffers, reply.extension

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
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, LabwireError):
                await reader
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        receiver, self._signal_receiver = self._signal_receiver, None
        if receiver is not None:
            await asyncio.to_thread(receiver.close)

    # ------------------------------------------------------------------ proxies

    def _invoke(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._invoke_async(name, args, kwargs)

    async def _invoke_async(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
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

    def _ensure_socket(self) -> AsyncSocket:
        if self._socket is None or self._socket.closed:
            self._socket = self._async_transport.connect(
                SocketType.DEALER, self.url, server_key=self.server_key, immediate=1
            )
        return self._socket

    def _reset_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()

    async def _request(
        self,
        event: str,
        fields: dict[str, Any],
        payload: dict[str, Any] | None,
        timeout_ms: int | None,
        *,
        connect_wait: bool = False,
    ) -> Reply:
        self._check_open()
        self._loop = asyncio.get_running_loop()
        start = time.monotonic()
        deadline = None if timeout_ms is None else start + timeout_ms / 1000.0
        if self.is_labwire_server:
            reply = await self._exchange(event, fields, payload, timeout_ms, deadline, connect_wait)
        else:
            if self._serial is None:
                self._serial = asyncio.Lock()
            async with self._serial:
                reply = await self._exchange_serial(
                    event, fields, payload, timeout_ms, deadline, connect_wait
                )
        if event != RPCEvents.GET_INVENTORY and self._restarted(reply):
            await self._on_restart()
        return reply

    async def _send(self, frames: list[Any], deadline: float | None, connect_wait: bool) -> None:
        socket = self._ensure_socket()
        socket.check_handshake(retry=True)
        if socket.send_nowait(frames):
            return
        grace = self._settings.connect_grace_ms / 1000.0
        limit = self._connect_limit(deadline, connect_wait)
        while (remaining := limit - time.monotonic()) > 0:
            if socket.is_secure:
                remaining = min(remaining, _HANDSHAKE_CHECK_SECONDS)
            if await socket.poll(max(1, int(remaining * 1000)), writable=True) and (
                socket.send_nowait(frames)
            ):
                return
            socket.check_handshake(retry=False)
        if self._moved():
            self._reset_socket()
            socket = self._ensure_socket()
            if await socket.poll(max(1, int(grace * 1000)), writable=True) and (
                socket.send_nowait(frames)
            ):
                return
        raise Unavailable(f"cannot reach {self.url}: no connection (is the server running?)")

    async def _exchange_serial(
        self,
        event: str,
        fields: dict[str, Any],
        payload: dict[str, Any] | None,
        timeout_ms: int | None,
        deadline: float | None,
        connect_wait: bool,
    ) -> Reply:
        rid, frames = self._build(event, fields, payload, timeout_ms, time.monotonic())
        await self._send(frames, deadline, connect_wait)
        socket = self._ensure_socket()
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                self._reset_socket()  # Lazy Pirate: a late reply must never pair with the next call
                raise call_timeout(describe(event, fields), self.url, timeout_ms)
            received = await socket.recv(None if wait is None else max(1, int(wait * 1000)))
            if received is None:
                continue
            reply = self._read(received)
            if self._matches(reply, rid):
                return reply
            self.late_replies += 1

    async def _exchange(
        self,
        event: str,
        fields: dict[str, Any],
        payload: dict[str, Any] | None,
        timeout_ms: int | None,
        deadline: float | None,
        connect_wait: bool,
    ) -> Reply:
        assert self._loop is not None
        rid, frames = self._build(event, fields, payload, timeout_ms, time.monotonic())
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[rid] = future
        try:
            await self._send(frames, deadline, connect_wait)
            self._ensure_reader()
            if deadline is not None:
                # A timer on the future itself: asyncio.wait_for() would add a task and a
                # waiter to every call.
                timer = self._loop.call_at(
                    self._loop.time() + max(0.0, deadline - time.monotonic()),
                    _expire,
                    future,
                )
                try:
                    return await future
                except _Expired:
                    raise call_timeout(describe(event, fields), self.url, timeout_ms) from None
                finally:
                    timer.cancel()
            return await self._wait_alive(future)
        finally:
            self._pending.pop(rid, None)

    async def _wait_alive(self, future: asyncio.Future[Reply]) -> Reply:
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
            if self._restarted(pong):
                await self._on_restart()
                raise ServerRestarted(f"{self.url} restarted during the call (outcome unknown)")

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            assert self._loop is not None
            self._reader = self._loop.create_task(self._read_replies())

    async def _read_replies(self) -> None:
        socket = self._ensure_socket()
        while not self._closed:
            received = await socket.recv(None)
            if received is None:
                continue
            try:
                reply = self._read(received)
            except ProtocolError as exc:
                _log.warning("dropped a malformed reply from %s: %s", self.url, exc)
                continue
            future = self._pending.get(reply.extension.get("rid", -1))
            if future is None or future.done():
                self.late_replies += 1
                continue
            future.set_result(reply)

    # ------------------------------------------------------------------ restarts and signals

    async def _on_restart(self) -> None:
        _log.info("server at %s restarted; reading its inventory again", self.url)
        try:
            await self.refresh_inventory()
        except (CallTimeout, Unavailable) as exc:
            _log.warning("could not re-read the inventory of %s: %s", self.url, exc)
            return
        if self._signal_receiver is not None and self.signal_url is None:
            url = await self._current_signal_url()
            if url:
                self._signal_receiver.retarget(url)

    async def _current_signal_url(self) -> str | None:
        try:
            reply = await self._request(
                RPCEvents.INIT_SIGNALS_HANDLING, {}, None, self._plain_timeout()
            )
        except (CallTimeout, Unavailable, ProtocolError):
            return None
        return self._signal_url(reply)

    def _on_slots_changed(self, signal: RPCSignal) -> None:
        if self._closed:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        task = loop.create_task(self._update_subscription(signal))
        task.add_done_callback(_log_task_failure)

    async def _update_subscription(self, signal: RPCSignal) -> None:
        if self._signal_receiver is None:
            url = self.signal_url or await self._current_signal_url()
            if url is None:
                _log.warning("server at %s offers no signal endpoint", self.url)
                return
            if self._signal_receiver is None:
                loop = self._loop
                assert loop is not None
                receiver = RPCSignalReceiver(
                    self.context,
                    url,
                    {name: _LoopSignal(loop, local) for name, local in self._signals.items()},
                    settings=self._settings,
                    selective=True,
                    server_key=None if self.signal_url else self.server_key,
                    epoch=self._epoch if self.signal_url else None,
                )
                receiver.start()
                self._signal_receiver = receiver
        if signal.connections:
            self._signal_receiver.subscribe(signal.name)
        else:
            self._signal_receiver.unsubscribe(signal.name)

    async def signal_stats(self) -> dict[str, int]:
        """Counters of the signal receiver (see :meth:`labwire.rpc.RPCClient.signal_stats`)."""
        receiver = self._signal_receiver
        if receiver is None:
            return {"received": 0, "gaps": 0, "restarts": 0, "stale": 0, "slot_errors": 0}
        return {
            "received": receiver.received,
            "gaps": receiver.tracker.gaps,
            "restarts": receiver.tracker.restarts,
            "stale": receiver.tracker.stale,
            "slot_errors": receiver.slot_errors,
        }


class _LoopSignal(RPCSignal):
    """Stands in for a client signal in the receiver thread; runs slots in the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: RPCSignal) -> None:
        super().__init__(*target.arg_types)
        self.name = target.name
        self._loop = loop
        self._target = target

    def dispatch(self, *args: Any) -> int:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
            self._loop.call_soon_threadsafe(self._target.dispatch, *args)
        return 0


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.warning("signal subscription update failed: %s", task.exception())
