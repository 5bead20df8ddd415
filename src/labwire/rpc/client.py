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

A small call to a labwire server (a JSON method with scalar arguments and a deadline) takes a
quick path: one frame in the compact layout (:func:`~labwire.wire.rpc.encode_call`), the reply
awaited inside ZeroMQ's own receive and its first part read as plain bytes. A compact reply
(:func:`~labwire.wire.rpc.decode_plain_reply`) is one frame by its layout, so nothing more is
read; any other reply has the rest of its parts read before it is decoded. Anything out of
the ordinary on the way (no reply within the first wait, an error, buffers, another
incarnation) continues in the general loop with the same request, so both paths behave alike.
Property reads, and calls through the general loop, are written in the compact layout too
whenever they fit it.

The non-I/O logic (building requests, reading replies, inventory, interface proxies) lives in
:class:`ClientBase`, shared with :class:`~labwire.rpc.AsyncRPCClient`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, ParamSpec, TypeVar

from labwire.config import Settings
from labwire.errors import (
    CallTimeout,
    ClosedError,
    LabwireError,
    NotFound,
    ProtocolError,
    ServerRestarted,
    Unavailable,
)
from labwire.rpc.interface import scan_class
from labwire.rpc.operations import OperationHandle, OperationLost
from labwire.rpc.receiver import RPCSignalReceiver
from labwire.rpc.results import NoResult
from labwire.rpc.signal import RPCSignal
from labwire.transport import Socket, SocketType, Transport, parse_endpoint
from labwire.transport.forks import ProcessBound
from labwire.wire.operations import OperationInfo, Update, decode_info
from labwire.wire.rpc import (
    NOT_PLAIN,
    PROTOCOL_VERSION,
    ExtensionEvents,
    RPCEvents,
    decode_buffer_reply,
    decode_frames,
    decode_plain_reply,
    encode_call,
    encode_frames,
    encode_get,
    expand_compact_reply,
    restore_buffers,
)

__all__ = ["ClientBase", "RPCClient", "Reply"]

_log = logging.getLogger(__name__)

C = TypeVar("C", bound=type)

#: Sentinel: "use the method's own timeout".
_DEFAULT: Any = object()


class Reply:
    """A decoded reply: its JSON header and buffer frames.

    Attributes:
        header: The JSON header.
        buffers: The buffer frames that followed it.
        extension: The labwire ``"lw"`` object ({} from a deployed server).
    """

    __slots__ = ("buffers", "extension", "header")

    def __init__(self, header: dict[str, Any], buffers: list[memoryview]) -> None:
        self.header = header
        self.buffers = buffers
        lw = header.get("lw")
        self.extension: dict[str, Any] = lw if type(lw) is dict else {}


class _Overrides(threading.local):
    """Per-thread timeout override (see :meth:`ClientBase.override_timeout`)."""

    value: Any = _DEFAULT  # a class default: reading it raises nothing, unlike getattr()


P = ParamSpec("P")
R = TypeVar("R")


def _weakly(method: Callable[P, R]) -> Callable[P, R | None]:
    """``method`` (a bound method) without keeping its object alive; None once it is gone.

    What a client hands its signal thread and its signals: a client the program drops is then
    collected, and releases its sockets (see :meth:`RPCClient.__del__`).
    """
    reference = weakref.WeakMethod(method)

    def call(*args: P.args, **kwargs: P.kwargs) -> R | None:
        bound = reference()
        return None if bound is None else bound(*args, **kwargs)

    return call


_DESCRIPTIONS: dict[str, str] = {
    RPCEvents.PROPERTY_GET: "read of property {property!r}",
    RPCEvents.PROPERTY_SET: "write of property {property!r}",
    RPCEvents.METHOD_CALL: "call of {method}()",
    RPCEvents.GET_INVENTORY: "inventory request",
    RPCEvents.STOP_SERVER: "stop request",
    RPCEvents.INIT_SIGNALS_HANDLING: "signal endpoint request",
    ExtensionEvents.PING: "ping",
    ExtensionEvents.GET_PROPERTIES: "read of every property",
    ExtensionEvents.OP_START: "start of operation {method}()",
    ExtensionEvents.OP_POLL: "poll of operation {op}",
    ExtensionEvents.OP_CANCEL: "cancel of operation {op}",
    ExtensionEvents.OP_LIST: "list of operations",
}


#: The deadline of one operation request when the client has no default timeout.
_OPERATION_REQUEST_MS = 2000


def describe(event: str, fields: dict[str, Any]) -> str:
    """What a request is, in words for error messages (not the wire's event names)."""
    template = _DESCRIPTIONS.get(event, "request")
    return template.format(
        method=fields.get("method", ""), property=fields.get("property", ""), op=fields.get("op")
    )


def call_timeout(what: str, url: str, timeout_ms: int | None) -> CallTimeout:
    """The error for a request that got no reply in time (the outcome is unknown)."""
    return CallTimeout(
        f"no reply from {url} to the {what} within {timeout_ms} ms (it may or may not have run)"
    )


class ClientBase(ProcessBound):
    """The parts of an RPC client that do no I/O; shared by the sync and asyncio clients.

    Attributes:
        url: The server URL.
        timeout: Default deadline in ms for requests other than method calls (and for methods
            the server declares without one in a deployed inventory).
        name: The server's registry name, from its inventory.
        own_address: This client's address as the server sees it (labwire servers).
        peer_address: The server's host.
        late_replies: Replies dropped because their call had already ended.
    """

    _interface: ClassVar[type | None] = None

    def _init_base(
        self,
        context: Any,
        url: str,
        timeout: int | None,
        settings: Settings | None,
        resolve: Callable[[], str] | None,
        raise_errors: bool,
        server_key: str | None = None,
    ) -> None:
        parse_endpoint(url)
        self.server_key = server_key
        self._transport = Transport(context, settings)
        self.context = self._transport.context
        self._settings = self._transport.settings
        self._limits = self._settings.limits
        self.url = url
        self.timeout = timeout
        self._resolve = resolve
        self._raise_errors = raise_errors
        self._client_id = secrets.token_hex(8)
        self._rids = itertools.count(1)
        self._json_methods: dict[str, int | None] = {}
        self._buffer_methods: dict[str, int | None] = {}
        self._properties: list[str] = []
        self._remote_signals: list[str] = []
        self._details: dict[str, Any] = {}
        self.name = ""
        self.own_address = ""
        self.peer_address = _host_of(url)
        self._protocol: int | None = None
        self._server_id = ""
        self._clock_offset = 0.0
        self._closed = False
        ProcessBound.__init__(self, f"client for {url}")
        self.late_replies = 0
        self._overrides = _Overrides()
        self._overriding = 0  # threads inside override_timeout(): none spares the lookup
        self._overriding_lock = threading.Lock()
        self._signals: dict[str, RPCSignal] = {
            name: getattr(self, name) for name in scan_class(type(self), (ClientBase,)).signals
        }
        for signal in self._signals.values():
            signal._watcher = _weakly(self._on_slots_changed)

    # ------------------------------------------------------------------ introspection

    @property
    def is_labwire_server(self) -> bool:
        """Whether the server speaks labwire's extensions (else: a deployed server)."""
        return self._protocol is not None

    @property
    def server_id(self) -> str:
        """The current incarnation id of the server ("" for deployed servers)."""
        return self._server_id

    def inventory(self) -> dict[str, Any]:
        """What the server exposes, as last read: methods with timeouts, properties, signals.

        labwire servers also report signatures, docstrings and which properties are writable
        under ``"details"``.
        """
        return {
            "name": self.name,
            "json_methods": dict(self._json_methods),
            "buffer_methods": dict(self._buffer_methods),
            "properties": list(self._properties),
            "signals": list(self._remote_signals),
            "details": dict(self._details),
        }

    @contextlib.contextmanager
    def override_timeout(self, timeout_ms: int | None) -> Iterator[None]:
        """Within the block, calls from this thread use ``timeout_ms`` as their deadline.

        Args:
            timeout_ms: Deadline in ms for every call, or None to wait forever.
        """
        previous = self._overrides.value
        self._overrides.value = timeout_ms
        with self._overriding_lock:
            self._overriding += 1
        try:
            yield
        finally:
            self._overrides.value = previous
            with self._overriding_lock:
                self._overriding -= 1

    def _method_timeout(self, name: str) -> int | None:
        override = self._overrides.value
        if override is not _DEFAULT:
            return int(override) if override is not None else None
        declared = self._buffer_methods.get(name, self._json_methods.get(name))
        if declared is None and not self.is_labwire_server:
            # A deployed server cannot be pinged while we wait: never wait for it forever.
            return self.timeout
        if name in self._buffer_methods or name in self._json_methods:
            return declared
        return self.timeout

    def _plain_timeout(self) -> int | None:
        override = self._overrides.value
        return self.timeout if override is _DEFAULT else override

    # ------------------------------------------------------------------ operations

    def _operation_start(
        self, method_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], deadline: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fields and payload of an OP_START (``deadline`` in s; default: the method's)."""
        if not self.is_labwire_server:
            raise NotFound("", f"{self.url} is a deployed server: it runs no operations")
        if deadline is _DEFAULT:
            declared = self._json_methods.get(method_name)
            deadline_ms = declared
        else:
            deadline_ms = None if deadline is None else deadline * 1000.0
        fields = {"method": method_name, "deadline": deadline_ms}
        return fields, {"params": {"args": list(args), "kwargs": kwargs}}

    def _operation_timeout(self) -> int:
        """The deadline of one operation request (an OP_* event), in ms."""
        return self.timeout if self.timeout is not None else _OPERATION_REQUEST_MS

    def _operation_reply(self, reply: Reply) -> tuple[dict[str, Any], list[memoryview]]:
        failure = self._failure(reply)
        if failure is not None:
            raise failure.exception()
        return reply.header, reply.buffers

    # ------------------------------------------------------------------ requests

    def _build(
        self,
        event: str,
        fields: dict[str, Any],
        payload: dict[str, Any] | None,
        timeout_ms: int | None,
        now: float,
    ) -> tuple[int, list[Any]]:
        rid = next(self._rids)
        expiry = None
        if timeout_ms is not None and self._server_id:
            expiry = now + timeout_ms / 1000.0 + self._clock_offset
        labwire = self._protocol is not None
        if labwire and event == RPCEvents.METHOD_CALL and payload is not None:
            params = payload["params"]
            frame = encode_call(
                fields["method"],
                params["args"],
                params["kwargs"],
                self._client_id,
                rid,
                timeout_ms,
                expiry,
                self._server_id,
            )
            if frame is not None:
                return rid, [frame]
        elif labwire and event == RPCEvents.PROPERTY_GET:
            frame = encode_get(
                fields["property"], self._client_id, rid, timeout_ms, expiry, self._server_id
            )
            if frame is not None:
                return rid, [frame]
        header: dict[str, Any] = {"event": str(event), **fields}
        header["lw"] = {
            "v": PROTOCOL_VERSION,
            "cid": self._client_id,
            "rid": rid,
            "ttl": timeout_ms,
            "exp": expiry,
            "sid": self._server_id,
        }
        frames = encode_frames(header, payload)
        if labwire:  # a labwire server answers with the envelope it got: no delimiter
            return rid, frames
        if len(frames) > 1:
            raise TypeError("buffers can only be sent to labwire servers, not deployed ones")
        return rid, [b"", *frames]

    def _read(self, frames: list[memoryview]) -> Reply:
        body = frames[1:] if frames and frames[0].nbytes == 0 else frames
        if not body:
            raise ProtocolError("reply has no frames")
        header, buffers = decode_frames(body, self._limits, expand_compact_reply)
        return Reply(header, buffers)

    def _matches(self, reply: Reply, rid: int) -> bool:
        lw = reply.extension
        if not lw:
            return self._protocol is None
        return bool(lw.get("rid") == rid)

    def _restarted(self, reply: Reply) -> bool:
        sid = reply.extension.get("sid")
        return bool(sid and self._server_id and sid != self._server_id)

    def _apply_inventory(self, reply: Reply, sent: float, received: float) -> None:
        header = reply.header
        self._json_methods = _timeouts(header.get("json_methods"))
        self._buffer_methods = _timeouts(header.get("buffer_methods"))
        self._properties = [p for p in header.get("properties") or [] if isinstance(p, str)]
        self._remote_signals = [s for s in header.get("signals") or [] if isinstance(s, str)]
        name = header.get("name")
        self.name = name if isinstance(name, str) else ""
        lw = reply.extension
        if lw:
            self._protocol = int(lw.get("v") or PROTOCOL_VERSION)
            self._server_id = str(lw.get("sid") or "")
            server_now = lw.get("now")
            if isinstance(server_now, (int, float)):
                self._clock_offset = float(server_now) - (sent + received) / 2
            self.own_address = str(lw.get("peer_address") or "")
            self._details = {k: v for k, v in lw.items() if k not in ("v", "rid", "sid", "now")}
        else:
            self._protocol = None
            self._server_id = ""
            self._clock_offset = 0.0

    def _use_signal_url(self, signal_url: str | None) -> None:
        """Subscribe at ``signal_url`` (a signal broker) instead of the server's endpoint."""
        if signal_url is not None:
            parse_endpoint(signal_url)
        self.signal_url = signal_url

    def _epoch(self) -> str:
        """The epoch of the server's signals: its incarnation id."""
        return self._server_id

    def _signal_url(self, reply: Reply) -> str | None:
        if reply.header.get("success") is False:
            return None
        endpoint = reply.extension.get("signal_endpoint")
        if isinstance(endpoint, str) and endpoint:
            parsed = parse_endpoint(endpoint, for_bind=True)
            if not parsed.is_tcp:
                return endpoint
            return str(parse_endpoint(self.url).with_port(parsed.port or 0))
        port = reply.header.get("signal_port")
        if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
            return str(parse_endpoint(self.url).with_port(port))
        return None

    def _failure(self, reply: Reply) -> NoResult | None:
        header = reply.header
        if header.get("success") is False or "error" in header:
            lw = reply.extension
            return NoResult(
                str(header.get("error", "")),
                str(header.get("traceback", "") or ""),
                str(lw.get("etype", "")),
                str(lw.get("code", "remote")),
            )
        return None

    def _method_result(self, name: str, reply: Reply) -> tuple[Any, Any]:
        failure = self._failure(reply)
        if failure is not None:
            if self._raise_errors:
                raise failure.exception()
            return failure, None
        is_buffer = name in self._buffer_methods
        if reply.extension:
            result = restore_buffers(reply.header.get("result"), reply.buffers)
            if is_buffer:
                if not (isinstance(result, list) and len(result) == 2):
                    raise ProtocolError("buffer reply must hold [buffer, info]")
                return result[0], result[1]
            return result, None
        if is_buffer:
            if len(reply.buffers) != 1:
                raise ProtocolError(f"buffer reply has {len(reply.buffers) + 1} frames, not 2")
            return reply.buffers[0], reply.header
        return reply.header.get("result"), None

    def _property_value(self, name: str, reply: Reply) -> Any:
        failure = self._failure(reply)
        if failure is not None:
            raise failure.exception()
        return restore_buffers(reply.header.get("value"), reply.buffers)

    def _property_values(self, reply: Reply) -> dict[str, Any]:
        failure = self._failure(reply)
        if failure is not None:
            raise failure.exception()
        values = restore_buffers(reply.header.get("values"), reply.buffers)
        if not isinstance(values, dict):
            raise ProtocolError("GET_PROPERTIES reply needs a 'values' object")
        return values

    def _check_set(self, reply: Reply) -> None:
        failure = self._failure(reply)
        if failure is not None:
            raise failure.exception()

    def _connect_limit(self, deadline: float | None, connect_wait: bool) -> float:
        """Until when a request may wait for a connection.

        That is the grace period, or the whole deadline while connecting for the first time.
        """
        grace = self._settings.connect_grace_ms / 1000.0
        limit = deadline if connect_wait and deadline is not None else time.monotonic() + grace
        return limit if deadline is None else min(limit, deadline)

    def _moved(self) -> bool:
        """Ask the resolver where the server is now; True (and the URL updated) if it moved."""
        if self._resolve is None:
            return False
        try:
            url = self._resolve()
        except LabwireError as exc:
            _log.debug("re-resolving %s failed: %s", self.url, exc)
            return False
        if not url or url == self.url:
            return False
        _log.info("server moved from %s to %s", self.url, url)
        self.url = url
        self.peer_address = _host_of(url)
        # A resolver that also learnt the server's key (the registry's) hands it over.
        self.server_key = getattr(self._resolve, "public_key", None) or self.server_key
        return True

    def after_fork_in_child(self) -> None:
        """In a fork's child: closed for good, so that every call path checks the process."""
        self._closed = True

    def _check_open(self) -> None:
        self.check_process()
        if self._closed:
            raise ClosedError(f"client for {self.url} is closed")

    # ------------------------------------------------------------------ interfaces

    @classmethod
    def register_interface(cls, interface: type) -> Callable[[C], C]:
        """Class decorator that makes a client subclass implement ``interface`` remotely.

        Every public method of the interface (and of its bases, at any depth) becomes a proxy
        with the same signature that calls the server; every property becomes a remote
        property; signals become local signals fed by the server.

        Args:
            interface: The interface class (a plain class or an ABC).

        Returns:
            The decorator.

        Raises:
            RuntimeError: (from the decorator) The decorated class does not inherit from both
                ``interface`` and an RPC client class.
        """

        def decorator(client_cls: C) -> C:
            if not (issubclass(client_cls, interface) and issubclass(client_cls, ClientBase)):
                raise RuntimeError(
                    f"{client_cls.__name__} must inherit from both {interface.__name__} "
                    "and an RPC client class (RPCClient or AsyncRPCClient)"
                )
            exposed = scan_class(interface, (ClientBase,))
            for name, function in exposed.functions.items():
                setattr(client_cls, name, _method_proxy(name, function))
            for name, prop in {**exposed.plain_properties, **exposed.properties}.items():
                setattr(client_cls, name, _property_proxy(name, prop.__doc__))
            # The proxies implement every abstract method of the interface.
            setattr(client_cls, "__abstractmethods__", frozenset())  # noqa: B010
            client_cls._interface = interface
            return client_cls

        return decorator

    def _invoke(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _on_slots_changed(self, signal: RPCSignal) -> None:
        raise NotImplementedError

    def _get_property(self, name: str) -> Any:
        raise NotImplementedError

    def _set_property(self, name: str, value: Any) -> Any:
        raise NotImplementedError


def _method_proxy(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(function)
    params = list(signature.parameters.values())[1:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    simple = len(positional) == len(params)
    least = sum(1 for p in positional if p.default is p.empty)
    most = len(positional)

    @functools.wraps(function)
    def proxy(self: ClientBase, *args: Any, **kwargs: Any) -> Any:
        # Positional calls to plain signatures are checked by count; the rest by bind().
        if kwargs or not simple or not least <= len(args) <= most:
            try:
                signature.bind(self, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{name}(): {exc}") from None
        return self._invoke(name, args, kwargs)

    proxy.__isabstractmethod__ = False  # type: ignore[attr-defined]
    return proxy


def _property_proxy(name: str, doc: str | None) -> property:
    def getter(self: ClientBase) -> Any:
        return self._get_property(name)

    def setter(self: ClientBase, value: Any) -> None:
        self._set_property(name, value)

    return property(getter, setter, None, doc)


#: How often a call on a secured connection looks for a failed security handshake.
_HANDSHAKE_CHECK_SECONDS = 0.05
#: How often a pending call checks that the connection its request went out on still exists.
_CONNECTION_CHECK_SECONDS = 0.1
_CONNECTION_CHECK_MS = int(_CONNECTION_CHECK_SECONDS * 1000)
_HANDSHAKE_CHECK_MS = int(_HANDSHAKE_CHECK_SECONDS * 1000)
#: The timeout of a method the inventory does not list.
_UNLISTED: Any = object()


def _timeouts(value: Any) -> dict[str, int | None]:
    if not isinstance(value, dict):
        return {}
    result: dict[str, int | None] = {}
    for name, timeout in value.items():
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float, type(None))):
            continue
        result[str(name)] = None if timeout is None else int(timeout)
    return result


def _host_of(url: str) -> str:
    endpoint = parse_endpoint(url)
    return endpoint.host if endpoint.is_tcp else str(endpoint)


class _Channel:
    """One thread's connection to the server."""

    __slots__ = ("lock", "socket", "thread", "url")

    def __init__(self, socket: Socket, url: str) -> None:
        self.socket = socket
        self.url = url
        self.thread = weakref.ref(threading.current_thread())
        self.lock = threading.Lock()


#: How long connect() waits for a subscription when the client has no default timeout.
_SUBSCRIBE_WAIT_MS = 2000


class _ThreadChannel(threading.local):
    """Each thread's channel, None until the thread's first call."""

    channel: _Channel | None = None  # a class default: reading it raises nothing


class RPCClient(ClientBase):
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
        self._local = _ThreadChannel()
        self._channels: dict[int, _Channel] = {}
        self._channels_lock = threading.Lock()
        self._signal_receiver: RPCSignalReceiver | None = None
        self._receiver_lock = threading.Lock()
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

    def start_operation(
        self,
        method_name: str,
        *args: Any,
        deadline: Any = _DEFAULT,
        on_progress: Callable[[Update], Any] | None = None,
        **kwargs: Any,
    ) -> OperationHandle:
        """Start a method the server declares as an operation, and watch it.

        Args:
            method_name: The operation's method.
            *args: Its positional arguments.
            deadline: Seconds it may run before the server cancels it; None: no limit;
                default: the method's declared timeout.
            on_progress: Called with each :class:`~labwire.wire.operations.Update`, in order.
            **kwargs: Its keyword arguments (``deadline`` and ``on_progress`` are taken).

        Returns:
            The handle: ``progress``, ``result(timeout)``, ``cancel()``, ``id``.

        Raises:
            NotFound: No such method on the server, or it is no operation.
            RemoteError: The server refused to start it.
        """
        fields, payload = self._operation_start(method_name, args, kwargs, deadline)
        reply = self._request(ExtensionEvents.OP_START, fields, payload, self._operation_timeout())
        header, _ = self._operation_reply(reply)
        return OperationHandle(self, decode_info(header.get("op")), on_progress)

    def attach_operation(
        self, operation_id: str, on_progress: Callable[[Update], Any] | None = None
    ) -> OperationHandle:
        """Watch an operation started elsewhere (another client or process) by its id.

        Raises:
            OperationLost: The server does not know it (it restarted, or the id is wrong).
        """
        header, _, _ = self._operation_request(
            ExtensionEvents.OP_POLL, {"op": operation_id, "after": 0}
        )
        failure = self._failure(Reply(header, []))
        if failure is not None:
            raise OperationLost(failure.error)
        return OperationHandle(self, decode_info(header.get("op")), on_progress)

    def operations(self) -> list[OperationInfo]:
        """The server's running operations and those that ended recently."""
        reply = self._request(ExtensionEvents.OP_LIST, {}, None, self._operation_timeout())
        header, _ = self._operation_reply(reply)
        ops = header.get("ops")
        if not isinstance(ops, list):
            raise ProtocolError("OP_LIST reply needs an 'ops' list")
        return [decode_info(op) for op in ops]

    def cancel_operation(
        self, operation_id: str, reason: str = "cancelled by a client"
    ) -> OperationInfo:
        """Cancel an operation by id (from any client); returns what the server says of it.

        Raises:
            OperationLost: The server does not know it.
        """
        fields = {"op": operation_id, "reason": reason[:256]}
        header, _, _ = self._operation_request(ExtensionEvents.OP_CANCEL, fields)
        failure = self._failure(Reply(header, []))
        if failure is not None:
            raise OperationLost(failure.error)
        return decode_info(header.get("op"))

    def _operation_request(
        self, event: str, fields: dict[str, Any]
    ) -> tuple[dict[str, Any], list[memoryview], dict[str, Any]]:
        """An OP_POLL or OP_CANCEL: the reply's header, buffers and ``"lw"`` object."""
        reply = self._request(event, fields, None, self._operation_timeout())
        return reply.header, reply.buffers, reply.extension

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
        # A one-off socket without ZMQ_IMMEDIATE: with it, libzmq discards a reply that arrived
        # just before the peer closed the connection, which is when this reply arrives.
        channel = _Channel(
            self._transport.connect(SocketType.DEALER, self.url, server_key=self.server_key),
            self.url,
        )
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
        with self._receiver_lock:
            receiver, self._signal_receiver = self._signal_receiver, None
        if receiver is not None:
            receiver.close()
        self._release_sockets()

    def __del__(self) -> None:
        # A client the program dropped without close() (the seed documents none): its sockets
        # and signal thread go with it, so the program's own context.term() does not wait.
        if getattr(self, "_closed", True) or self.forked_from is not None:
            return
        self._closed = True
        receiver = self._signal_receiver
        if receiver is not None:
            receiver.stop()  # the thread closes its socket and ends by itself
        self._release_sockets()

    def _release_sockets(self) -> None:
        """Close the call sockets (also when the context was terminated under the client)."""
        self._closed = True
        with self._channels_lock:
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            if channel.lock.acquire(timeout=0.5):
                try:
                    channel.socket.close()
                finally:
                    channel.lock.release()

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
        timeout_ms = self._json_methods.get(name, _UNLISTED)
        buffer = timeout_ms is _UNLISTED
        if buffer:
            timeout_ms = self._buffer_methods.get(name, _UNLISTED)
        if self._overriding and timeout_ms is not _UNLISTED:
            override = self._overrides.value
            if override is not _DEFAULT:
                timeout_ms = None if override is None else int(override)
        if self._protocol is None or timeout_ms is _UNLISTED or timeout_ms is None or self._closed:
            return self._execute_call(name, args, kwargs)  # no deadline: the loop pings
        deadline = time.monotonic() + timeout_ms / 1000.0
        rid = next(self._rids)
        frame = encode_call(
            name,
            list(args),
            kwargs,
            self._client_id,
            rid,
            timeout_ms,
            deadline + self._clock_offset,
            self._server_id,
        )
        if frame is None:
            return self._execute_call(name, args, kwargs)
        reply = self._compact_exchange(
            frame, rid, timeout_ms, deadline, buffer, f"call of {name}()"
        )
        if type(reply) is not Reply:
            return reply
        result, info = self._method_result(name, reply)
        if buffer and not isinstance(result, NoResult):
            return result, info
        return result

    def _compact_exchange(
        self, frame: bytes, rid: int, timeout_ms: int, deadline: float, buffer: bool, what: str
    ) -> Any:
        """Send a compact request and read its reply, with the common case written out.

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
            # A JSON request on a plain socket is sent and its reply received in one step.
            head = False if secure or buffer else socket.request(frame, wait_ms)
            received = None
            if head is False:  # not sent yet
                if secure or not socket.send((frame,), nowait=True):
                    self._send(channel, [frame], deadline, False)
                    socket = channel.socket
                if buffer:
                    # A buffer reply has two parts or more: read them all, as zero-copy frames.
                    frames = socket.recv_frames(wait_ms)
                    if frames is not None:
                        received = [part.buffer for part in frames]
                        value = decode_buffer_reply(
                            received[0], received[1:], rid, self._server_id, self._limits
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
                reply = self._compact_exchange(frame, rid, timeout_ms, deadline, False, what)
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

    def _channel(self) -> _Channel:
        # A channel's socket is open for as long as the channel is this thread's: whatever
        # closes it (a Lazy Pirate retry, close()) drops or replaces the channel too.
        channel = self._local.channel
        if channel is not None and channel.url == self.url:
            return channel
        if channel is not None:
            self._drop_channel(channel)
        socket = self._transport.connect(
            SocketType.DEALER, self.url, server_key=self.server_key, immediate=1
        )
        channel = _Channel(socket, self.url)
        self._local.channel = channel
        with self._channels_lock:
            for ident, other in list(self._channels.items()):
                owner = other.thread()
                if owner is None or not owner.is_alive():
                    other.socket.close()
                    del self._channels[ident]
            self._channels[threading.get_ident()] = channel
        return channel

    def _drop_channel(self, channel: _Channel) -> None:
        channel.socket.close(0)
        if self._local.channel is channel:  # not a one-off (stop_server)
            self._local.channel = None
        with self._channels_lock:
            if self._channels.get(threading.get_ident()) is channel:
                del self._channels[threading.get_ident()]

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
        if event != RPCEvents.GET_INVENTORY and self._restarted(reply):
            self._on_restart()
        return reply

    def _exchange(
        self,
        channel: _Channel,
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
        channel: _Channel,
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
        self, channel: _Channel, ping_rid: int | None, last_alive: float
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
        self, channel: _Channel, frames: list[Any], deadline: float | None, connect_wait: bool
    ) -> None:
        channel.socket.check_handshake(retry=True)
        if channel.socket.send(frames, nowait=True):
            return
        if not connect_wait:
            # No connection. A fresh socket connects at once, where this one may be waiting out
            # its reconnection backoff (up to reconnect_ivl_max) since the server went away.
            self._renew(channel)
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

    def _renew(self, channel: _Channel) -> None:
        stale = channel.socket
        channel.socket = self._transport.connect(
            SocketType.DEALER, channel.url, server_key=self.server_key, immediate=1
        )
        stale.close(0)

    def _follow(self, channel: _Channel) -> bool:
        if not self._moved():
            return False
        channel.url = self.url
        self._renew(channel)
        return True

    def _timed_out(self, channel: _Channel) -> None:
        if not self.is_labwire_server:
            # Lazy Pirate: a deployed server's late reply carries no id; drop the socket.
            self._drop_channel(channel)

    # ------------------------------------------------------------------ restarts and signals

    def _on_restart(self) -> None:
        _log.info("server at %s restarted; reading its inventory again", self.url)
        try:
            self.refresh_inventory()
        except (CallTimeout, Unavailable) as exc:
            _log.warning("could not re-read the inventory of %s: %s", self.url, exc)
            return
        receiver = self._signal_receiver
        if receiver is not None and self.signal_url is None:
            url = self._current_signal_url()
            if url:
                receiver.retarget(url)

    def _current_signal_url(self) -> str | None:
        try:
            reply = self._request(RPCEvents.INIT_SIGNALS_HANDLING, {}, None, self._plain_timeout())
        except (CallTimeout, Unavailable, ProtocolError):
            return None
        return self._signal_url(reply)

    def _on_slots_changed(self, signal: RPCSignal) -> None:
        if self._closed:
            return
        receiver = self._ensure_receiver()
        if receiver is None:
            return
        if signal.connections:
            receiver.subscribe(signal.name)
            # connect() returns once the subscription is in place, so that an emission the
            # caller triggers next is not lost (a slot connected by a slot is not waited for).
            if self.is_labwire_server and threading.current_thread() is not receiver:
                self._confirm_subscriptions(receiver)
        else:
            receiver.unsubscribe(signal.name)

    def _confirm_subscriptions(self, receiver: RPCSignalReceiver) -> None:
        """Wait until the server's publisher has every subscription made so far.

        A probe subscription follows them; the server says when it has arrived (SIGNAL_CHECK).
        Gives up, with a warning, after the client's timeout: signals then start a little late.
        """
        token = secrets.token_hex(8)
        receiver.probe(token)
        timeout_ms = self._plain_timeout() or _SUBSCRIBE_WAIT_MS
        deadline = time.monotonic() + timeout_ms / 1000.0
        pause = 0.001
        try:
            while True:
                reply = self._request(
                    ExtensionEvents.SIGNAL_CHECK, {"token": token}, None, timeout_ms
                )
                if reply.header.get("subscribed") is True or self._failure(reply) is not None:
                    return  # in place, or a server without the check: nothing to wait for
                if time.monotonic() + pause > deadline:
                    _log.warning("signal subscription to %s not confirmed in time", self.url)
                    return
                time.sleep(pause)  # the subscription is on its way: ask again shortly
                pause = min(pause * 2, 0.05)
        except (CallTimeout, Unavailable) as exc:
            _log.warning("signal subscription to %s not confirmed: %s", self.url, exc)
        finally:
            receiver.unprobe(token)

    def _ensure_receiver(self) -> RPCSignalReceiver | None:
        with self._receiver_lock:
            if self._signal_receiver is not None:
                return self._signal_receiver
            if self.signal_url is not None:
                return self._start_receiver(
                    self.signal_url,
                    server_key=None,
                    refresh=_weakly(self._follow_through_broker),
                    epoch=_weakly(self._epoch),
                )
            url = self._current_signal_url()
            if url is None:
                _log.warning("server at %s offers no signal endpoint", self.url)
                return None
            return self._start_receiver(
                url,
                server_key=self.server_key,
                refresh=_weakly(self._current_signal_url) if self.is_labwire_server else None,
                epoch=None,
            )

    def _start_receiver(
        self,
        url: str,
        *,
        server_key: str | None,
        refresh: Callable[[], str | None] | None,
        epoch: Callable[[], str | None] | None,
    ) -> RPCSignalReceiver:
        receiver = RPCSignalReceiver(
            self.context,
            url,
            self._signals,
            settings=self._settings,
            # A deployed publisher's frames do not start with the signal name.
            selective=self.is_labwire_server,
            server_key=server_key,
            refresh=refresh,
            epoch=epoch,
            on_terminated=_weakly(self._release_sockets),
        )
        receiver.start()
        self._signal_receiver = receiver
        return receiver

    def _follow_through_broker(self) -> str | None:
        """The receiver's refresh with a broker: ask the server, so a restart is noticed."""
        self._current_signal_url()
        return self.signal_url
