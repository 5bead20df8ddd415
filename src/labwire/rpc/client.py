"""RPCClient: calls a device's methods and properties and receives its signals.

Theory of operation
-------------------
Each thread that uses a client gets its own DEALER socket to the server, so many threads share
one client object without locks and every reply reaches the thread that asked. A DEALER (not a
REQ) never wedges: each request carries a request id, replies that do not match the pending id
are late replies to calls that already timed out, and are counted and dropped. Against a
deployed lock-step server, whose replies carry no id, the thread's socket is closed and opened
afresh after a timeout (the Lazy Pirate pattern) so a late reply can never be mistaken for the
next one.

Every call has a deadline: the method's timeout from the server's inventory, the client's
``timeout`` for other requests, or a per-call override. A call ends with a result, a
:class:`~labwire.rpc.NoResult` (or :class:`~labwire.errors.RemoteError`), or raises
:class:`~labwire.errors.CallTimeout` / :class:`~labwire.errors.Unavailable` by its deadline.
With no deadline (``timeout=None``) the client pings a labwire server while it waits, so a
dead or restarted server is still noticed. Replies carry the server's incarnation id: when it
changes, the client re-reads the inventory and re-subscribes its signals by itself.

A call or property read to a labwire server whose arguments are plain JSON data (scalars,
dicts, lists, strings, keyword arguments) and that has a deadline takes the compact exchange:
one frame in the compact layout (:func:`~labwire.wire.rpc.encode_call`; with buffer arguments,
the buffers follow it as frames of their own), the reply awaited inside ZeroMQ's own receive
and its first part read as plain bytes. A compact reply
(:func:`~labwire.wire.rpc.decode_plain_reply`) is one frame by its layout, so nothing more is
read; any other reply has the rest of its parts read before it is decoded. Anything out of
the ordinary on the way (no reply within the first wait, an error, buffers, another
incarnation) continues in the general loop with the same request, so both paths behave alike.

The non-I/O logic (building requests, reading replies, inventory, interface proxies) lives in
:class:`~labwire.rpc.base.ClientBase` (:mod:`labwire.rpc.base`), shared with
:class:`~labwire.rpc.AsyncRPCClient`, and the operation calls in
:mod:`labwire.rpc.operation_calls`; each thread's connection in :mod:`labwire.rpc.channels`;
the signal receiver and its subscriptions in :mod:`labwire.rpc.subscriptions`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from labwire.config import Settings
from labwire.errors import (
    CallTimeout,
    ServerRestarted,
    Unavailable,
)
from labwire.rpc.base import (
    _CONNECTION_CHECK_SECONDS,
    _DEFAULT,
    _GET_INVENTORY,
    _HANDSHAKE_CHECK_SECONDS,
    Reply,
    call_timeout,
    describe,
)
from labwire.rpc.channels import Channel, Channels
from labwire.rpc.operation_calls import OperationCalls
from labwire.rpc.results import NoResult
from labwire.rpc.signal import RPCSignal
from labwire.rpc.subscriptions import Subscriptions
from labwire.wire.rpc import (
    NOT_PLAIN,
    Buffer,
    ExtensionEvents,
    RPCEvents,
    decode_buffer_reply,
    decode_plain_reply,
    encode_get,
)

__all__ = ["RPCClient"]

_log = logging.getLogger(__name__)
_CONNECTION_CHECK_MS = int(_CONNECTION_CHECK_SECONDS * 1000)
_HANDSHAKE_CHECK_MS = int(_HANDSHAKE_CHECK_SECONDS * 1000)


class RPCClient(OperationCalls):
    """Client for an :class:`~labwire.rpc.RPCServer` (or a deployed plant-imaging server).

    Subclass an interface and ``RPCClient`` and decorate the subclass with
    ``@RPCClient.register_interface(Interface)``; or use :meth:`call`/:meth:`execute`
    directly. Construction reads the server's inventory.

    Args:
        context: ZeroMQ context, or None for the process-wide one.
        url: The server, ``tcp://HOST:PORT``, ``ipc://PATH`` or ``inproc://NAME``.
        timeout: Deadline in ms for the inventory, property access and stop requests, and
            for methods the server declares without a timeout (None: wait forever).
        settings: Transport settings.
        resolve: Called to find the server's current URL when it cannot be reached (e.g. a
            registry lookup), so the client follows a device that moved.
        raise_errors: Raise :class:`~labwire.errors.RemoteError` for remote failures instead
            of returning :class:`~labwire.rpc.NoResult`.
        server_key: With security on: the server's public key (e.g. from the registry), when
            it differs from ``settings.security.server_key``.
        signal_url: Where to subscribe to the server's signals instead of the endpoint the
            server announces: the out (XPUB) address of a signal broker the server publishes
            into (``RPCServer(..., signal_broker=...)``). Only this server's emissions are
            delivered (those carrying its current epoch), so one broker can carry many
            devices; a restarted server is followed within about a second. With security on,
            the broker's key is ``settings.security.server_key``.

    Attributes:
        signal_url: The ``signal_url`` given, or None.

    Raises:
        Unavailable: Nobody answers at ``url``.
        AuthenticationError: The security handshake failed (wrong key, or not allowed).
        CallTimeout: The server did not send its inventory in time.
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
        self._channels = Channels(self._transport)
        self._local = self._channels.local  # read on every call
        self._subscriptions = Subscriptions(self)
        try:
            self.refresh_inventory(connect_wait=True)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public calls

    def execute(
        self, method_name: str, params: dict[str, Any], *, timeout: Any = _DEFAULT
    ) -> tuple[Any, Any]:
        """Execute a remote method.

        Args:
            method_name: The method's name.
            params: ``{"args": [...], "kwargs": {...}}`` (either key may be omitted).
            timeout: Deadline in ms for this call, None for no deadline; default: the method's
                timeout from the server's inventory.

        Returns:
            A 2-tuple ``(result, info)``: for a JSON method ``(value, None)``; for a buffer
            method ``(buffer, buffer_info)`` with the buffer as a zero-copy memoryview (or a
            numpy array if the server sent one); on a remote failure
            ``(NoResult(error, traceback), None)``.

        Raises:
            TimeoutError: No reply before the deadline (:class:`~labwire.errors.CallTimeout`).
            Unavailable: The server cannot be reached.
            RemoteError: The remote method failed and ``raise_errors`` is set.
        """
        if timeout is _DEFAULT:
            timeout = self._method_timeout(method_name)
        fields = {"method": method_name}
        payload = {
            "params": {"args": list(params.get("args", [])), "kwargs": params.get("kwargs", {})}
        }
        reply = self._request(RPCEvents.METHOD_CALL, fields, payload, timeout)
        return self._method_result(method_name, reply)

    def call(self, method_name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a remote method by name, like the interface proxies do.

        Returns:
            The result; ``(buffer, info)`` for buffer methods; a :class:`NoResult` on failure.
        """
        return self._invoke(method_name, args, kwargs)

    def get_property(self, name: str) -> Any:
        """Read a remote property.

        Raises:
            RemoteError: The property does not exist or its getter failed.
        """
        return self._get_property(name)

    def set_property(self, name: str, value: Any) -> None:
        """Write a remote property.

        Raises:
            RemoteError: The property does not exist, is read-only, or its setter failed.
        """
        self._set_property(name, value)

    def get_properties(self) -> dict[str, Any]:
        """Read every RPC property of the server at once (labwire servers only).

        Raises:
            RemoteError: A getter failed.
        """
        if not self.is_labwire_server:
            return {name: self._get_property(name) for name in self._properties}
        reply = self._request(ExtensionEvents.GET_PROPERTIES, {}, None, self._plain_timeout())
        return self._property_values(reply)

    def ping(self) -> float:
        """Round-trip a no-op request; returns the round trip in seconds."""
        start = time.monotonic()
        if self.is_labwire_server:
            self._request(ExtensionEvents.PING, {}, None, self._plain_timeout())
        else:
            self._request(RPCEvents.GET_INVENTORY, {}, None, self._plain_timeout())
        return time.monotonic() - start

    def stop_server(self) -> bool:
        """Ask the server to shut down.

        Returns:
            True when the server acknowledged; False when it did not answer in time or refused
            (the outcome is logged).
        """
        self._check_open()
        timeout_ms = self._plain_timeout()
        start = time.monotonic()
        deadline = None if timeout_ms is None else start + timeout_ms / 1000.0
        channel = self._channels.one_off(self.url, self.server_key)
        try:
            reply = self._exchange(
                channel, RPCEvents.STOP_SERVER, {}, None, timeout_ms, start, deadline, False
            )
        except (CallTimeout, Unavailable) as exc:
            _log.warning("STOP_SERVER to %s: %s", self.url, exc)
            return False
        finally:
            channel.socket.close(0)
        failure = self._failure(reply)
        if failure is not None:
            _log.warning("STOP_SERVER to %s refused: %s", self.url, failure.error)
            return False
        _log.info("STOP_SERVER acknowledged by %s", self.url)
        return True

    def refresh_inventory(self, *, connect_wait: bool = False) -> None:
        """Read the server's inventory again (done by itself after a server restart)."""
        sent = time.monotonic()
        reply = self._request(
            RPCEvents.GET_INVENTORY, {}, None, self.timeout, connect_wait=connect_wait
        )
        self._apply_inventory(reply, sent, time.monotonic())

    def signal_stats(self) -> dict[str, int]:
        """Counters of the signal receiver: received, gaps, restarts, stale, slot_errors."""
        return self._subscriptions.stats()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close every socket of this client and stop its signal thread (returns within ~1 s).

        Calls in progress in other threads finish with their own deadline; their socket is
        closed when they end. In a fork's child, a client inherited from the parent is only
        marked closed: its sockets are the parent's.
        """
        self._closed = True
        if self.forked_from is not None:
            return
        self._subscriptions.close()
        self._release_sockets()

    def __del__(self) -> None:
        # A client the program dropped without close() (the seed documents none): its sockets
        # and signal thread go with it, so the program's own context.term() does not wait.
        if getattr(self, "_closed", True) or self.forked_from is not None:
            return
        self._closed = True
        self._subscriptions.stop()  # the thread closes its socket and ends by itself
        self._release_sockets()

    def _release_sockets(self) -> None:
        """Close the call sockets (also when the context was terminated under the client)."""
        self._closed = True
        self._channels.close()

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ proxies

    def _invoke(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A method call: to a labwire server, with the common case written out.

        The call is encoded, sent and (usually) answered in one pass; whatever is not the
        common case (a reply that is not plain JSON, or for a buffer method not the usual two
        frames, a slow reply, an error, a restart) continues in the general loop with the same
        request. A call that needs the general path from the start (a deployed server, no
        deadline, arguments the compact layout cannot carry) takes :meth:`execute`.
        """
        compact = self._compact_timeout(name)
        if compact is None:
            return self._execute_call(name, args, kwargs)
        timeout_ms, buffer = compact
        deadline = time.monotonic() + timeout_ms / 1000.0
        rid = next(self._rids)
        expiry = deadline + self._clock_offset
        frames = self._encode_call(name, list(args), kwargs, rid, timeout_ms, expiry)
        if frames is None:
            return self._execute_call(name, args, kwargs)
        reply = self._compact_exchange(
            frames, rid, timeout_ms, deadline, buffer, f"call of {name}()"
        )
        if type(reply) is not Reply:
            return reply
        result, info = self._method_result(name, reply)
        if buffer and not isinstance(result, NoResult):
            return result, info
        return result

    def _compact_exchange(
        self,
        frames: list[Buffer],
        rid: int,
        timeout_ms: int,
        deadline: float,
        buffer: bool,
        what: str,
    ) -> Any:
        """Send a compact request and read its reply, with the common case written out.

        Args:
            frames: The request's frames: one, or a call's and its buffer arguments.
            rid: Its request id.
            timeout_ms: The call's timeout.
            deadline: When it times out, on the monotonic clock.
            buffer: Whether the reply is a buffer method's.
            what: The request, as a timeout names it.

        Returns:
            The value of a compact reply (for a buffer method, its ``(buffer, info)``), or,
            for any other reply, the :class:`Reply` for the general code to read.
        """
        channel = self._local.channel
        if channel is None or channel.url != self.url:
            channel = self._channel()
        lock = channel.lock
        lock.acquire()  # not "with": on this path that costs as much as the check it guards
        try:
            socket = channel.socket
            secure = socket.is_secure
            wait_ms = max(
                1, min(timeout_ms, _HANDSHAKE_CHECK_MS if secure else _CONNECTION_CHECK_MS)
            )
            # A JSON request of one frame on a plain socket is sent and its reply received in
            # one step.
            head: bytes | Literal[False] | None = False
            if len(frames) == 1 and not secure and not buffer:
                head = socket.request(frames[0], wait_ms)
            received = None
            if head is False:  # not sent yet
                if secure or not socket.send(frames, nowait=True):
                    self._send(channel, frames, deadline, False)
                    socket = channel.socket
                if buffer:
                    # A buffer reply has two parts or more: read them all, as zero-copy frames.
                    parts = socket.recv_frames(wait_ms)
                    if parts is not None:
                        received = [part.buffer for part in parts]
                        value = decode_buffer_reply(
                            parts[0].bytes, received[1:], rid, self._server_id, self._limits
                        )
                        if value is not NOT_PLAIN:
                            return value
                    head = None
                else:
                    head = socket.recv_head(wait_ms)
            if head is not None:
                # A compact reply is one frame by its layout; anything else has its parts read.
                result = decode_plain_reply(head, rid, self._server_id, self._limits)
                if result is not NOT_PLAIN:
                    return result
                received = [memoryview(head), *(part.buffer for part in socket.recv_tail())]
            reply = self._await_reply(channel, rid, what, timeout_ms, deadline, received)
        finally:
            if self._closed:
                channel.socket.close(0)
            lock.release()
        if self._restarted(reply):
            self._on_restart()
        return reply

    def _execute_call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A method call through :meth:`execute`, returning what :meth:`_invoke` returns."""
        result, info = self.execute(name, {"args": list(args), "kwargs": kwargs})
        if name in self._buffer_methods and not isinstance(result, NoResult):
            return result, info
        return result

    def _get_property(self, name: str) -> Any:
        timeout_ms = self._plain_timeout()
        if self._protocol is not None and timeout_ms is not None and not self._closed:
            deadline = time.monotonic() + timeout_ms / 1000.0
            rid = next(self._rids)
            expiry = deadline + self._clock_offset
            frame = encode_get(name, self._client_id, rid, timeout_ms, expiry, self._server_id)
            if frame is not None:
                what = f"read of property {name!r}"
                reply = self._compact_exchange([frame], rid, timeout_ms, deadline, False, what)
                return reply if type(reply) is not Reply else self._property_value(name, reply)
        # No deadline (the general loop pings while it waits), or a deployed server.
        reply = self._request(RPCEvents.PROPERTY_GET, {"property": name}, None, timeout_ms)
        return self._property_value(name, reply)

    def _set_property(self, name: str, value: Any) -> None:
        reply = self._request(
            RPCEvents.PROPERTY_SET, {"property": name}, {"value": value}, self._plain_timeout()
        )
        self._check_set(reply)

    # ------------------------------------------------------------------ channels

    def _channel(self) -> Channel:
        return self._channels.current(self.url, self.server_key)

    # ------------------------------------------------------------------ the call loop

    def _request(
        self,
        event: str,
        fields: dict[str, Any],
        payload: dict[str, Any] | None,
        timeout_ms: int | None,
        *,
        connect_wait: bool = False,
    ) -> Reply:
        self._check_open()
        start = time.monotonic()
        deadline = None if timeout_ms is None else start + timeout_ms / 1000.0
        channel = self._channel()
        with channel.lock:
            try:
                reply = self._exchange(
                    channel, event, fields, payload, timeout_ms, start, deadline, connect_wait
                )
            finally:
                if self._closed:
                    channel.socket.close(0)
        if event != _GET_INVENTORY and self._restarted(reply):
            self._on_restart()
        return reply

    def _exchange(
        self,
        channel: Channel,
        event: str,
        fields: dict[str, Any],
        payload: dict[str, Any] | None,
        timeout_ms: int | None,
        start: float,
        deadline: float | None,
        connect_wait: bool,
    ) -> Reply:
        rid, frames = self._build(event, fields, payload, timeout_ms, start)
        self._send(channel, frames, deadline, connect_wait)
        return self._await_reply(channel, rid, describe(event, fields), timeout_ms, deadline)

    def _await_reply(
        self,
        channel: Channel,
        rid: int,
        what: str,
        timeout_ms: int | None,
        deadline: float | None,
        received: list[memoryview] | None = None,
    ) -> Reply:
        """Wait for the reply to request ``rid``, starting with ``received`` if given."""
        heartbeat = self._settings.heartbeat_ivl_ms / 1000.0
        ping_rid: int | None = None
        last_alive = time.monotonic()
        while True:
            if received is None:
                now = time.monotonic()
                if deadline is not None:
                    wait = deadline - now
                    if wait <= 0:
                        self._timed_out(channel)
                        raise call_timeout(what, self.url, timeout_ms)
                    wait = min(wait, _CONNECTION_CHECK_SECONDS)
                else:
                    wait = heartbeat
                if channel.socket.is_secure:
                    wait = min(wait, _HANDSHAKE_CHECK_SECONDS)
                received = channel.socket.recv(max(1, int(wait * 1000)))
            if received is None:
                channel.socket.check_handshake(retry=False)
                if not channel.socket.poll(0, writable=True):
                    # With ZMQ_IMMEDIATE a socket is writable only while connected: the
                    # connection carrying the request is gone, and its reply with it.
                    self._timed_out(channel)
                    raise Unavailable(f"{self.url} went away while a call was pending")
                if deadline is None and self.is_labwire_server:
                    ping_rid, last_alive = self._keepalive(channel, ping_rid, last_alive)
                continue
            reply = self._read(received)
            received = None
            if ping_rid is not None and reply.extension.get("rid") == ping_rid:
                if self._restarted(reply):
                    self._on_restart()
                    raise ServerRestarted(f"{self.url} restarted during the call (outcome unknown)")
                ping_rid, last_alive = None, time.monotonic()
                continue
            if not self._matches(reply, rid):
                self.late_replies += 1
                _log.debug("dropped a late reply from %s", self.url)
                continue
            return reply

    def _keepalive(
        self, channel: Channel, ping_rid: int | None, last_alive: float
    ) -> tuple[int | None, float]:
        now = time.monotonic()
        if now - last_alive > self._settings.heartbeat_timeout_ms / 1000.0:
            self._timed_out(channel)
            raise Unavailable(f"{self.url} stopped answering while a call was pending")
        if ping_rid is None:
            ping_rid, frames = self._build(ExtensionEvents.PING, {}, None, None, now)
            if not channel.socket.send(frames, nowait=True):
                ping_rid = None
        return ping_rid, last_alive

    def _send(
        self, channel: Channel, frames: list[Any], deadline: float | None, connect_wait: bool
    ) -> None:
        channel.socket.check_handshake(retry=True)
        if channel.socket.send(frames, nowait=True):
            return
        if not connect_wait:  # no connection: a fresh socket connects at once
            self._channels.renew(channel, self.server_key)
        grace = self._settings.connect_grace_ms / 1000.0
        limit = self._connect_limit(deadline, connect_wait)
        slice_s = _HANDSHAKE_CHECK_SECONDS if channel.socket.is_secure else None
        while (remaining := limit - time.monotonic()) > 0:
            wait = remaining if slice_s is None else min(remaining, slice_s)
            if channel.socket.poll(max(1, int(wait * 1000)), writable=True):
                if channel.socket.send(frames, nowait=True):
                    return
            elif slice_s is not None:
                channel.socket.check_handshake(retry=False)
        if self._follow(channel) and (
            channel.socket.send(frames, nowait=True)
            or (
                channel.socket.poll(max(1, int(grace * 1000)), writable=True)
                and channel.socket.send(frames, nowait=True)
            )
        ):
            return
        raise Unavailable(f"cannot reach {self.url}: no connection (is the server running?)")

    def _follow(self, channel: Channel) -> bool:
        if not self._moved():
            return False
        channel.url = self.url
        self._channels.renew(channel, self.server_key)
        return True

    def _timed_out(self, channel: Channel) -> None:
        if not self.is_labwire_server:
            # Lazy Pirate: a deployed server's late reply carries no id; drop the socket.
            self._channels.drop(channel)

    # ------------------------------------------------------------------ restarts and signals

    def _on_restart(self) -> None:
        _log.info("server at %s restarted; reading its inventory again", self.url)
        try:
            self.refresh_inventory()
        except (CallTimeout, Unavailable) as exc:
            _log.warning("could not re-read the inventory of %s: %s", self.url, exc)
            return
        self._subscriptions.follow_restart()

    def _on_slots_changed(self, signal: RPCSignal) -> None:
        if not self._closed:
            self._subscriptions.update(signal)
