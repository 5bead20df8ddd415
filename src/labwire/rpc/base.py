"""What the sync and asyncio RPC clients share: requests, replies, inventory and proxies.

:class:`ClientBase` holds everything that is not I/O: building requests (in the compact layout
whenever they fit it), reading replies, the inventory and the clock offset, interface proxies
for methods and properties, and signal bookkeeping; the operation requests
(:mod:`labwire.rpc.operation_calls`) build on it. :class:`~labwire.rpc.RPCClient` (one DEALER
socket per thread) and :class:`~labwire.rpc.AsyncRPCClient` (one socket, replies matched to
futures) add the I/O.
"""

from __future__ import annotations

import contextlib
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
    ProtocolError,
)
from labwire.rpc.interface import implement_remotely, scan_class
from labwire.rpc.results import NoResult
from labwire.rpc.signal import RPCSignal
from labwire.transport import Transport, parse_endpoint
from labwire.transport.forks import ProcessBound
from labwire.wire.rpc import (
    BUFFER_CALLS_VERSION,
    PROTOCOL_VERSION,
    Buffer,
    ExtensionEvents,
    RPCEvents,
    decode_frames,
    encode_call,
    encode_call_frames,
    encode_frames,
    encode_get,
    expand_compact_reply,
    restore_buffers,
)

__all__ = ["ClientBase", "Reply", "call_timeout", "describe"]

_log = logging.getLogger(__name__)

C = TypeVar("C", bound=type)

# Enum members read once: each read of one costs about 0.2 us, on every call.
_METHOD_CALL = RPCEvents.METHOD_CALL
_PROPERTY_GET = RPCEvents.PROPERTY_GET
_GET_INVENTORY = RPCEvents.GET_INVENTORY

#: Sentinel: "use the method's own timeout".
_DEFAULT: Any = object()
#: The timeout of a method the inventory does not list.
_UNLISTED: Any = object()


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
        self._buffer_calls = False  # the server reads compact calls with buffer frames
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

    def _compact_timeout(self, name: str) -> tuple[int, bool] | None:
        """How a call of ``name`` goes in the compact layout, if it can.

        Returns:
            Its deadline in ms and whether ``name`` is a buffer method; or None when the call
            takes the general path: a deployed server, a method the inventory does not list,
            no deadline (the general loop pings while it waits), or a closed client.
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
            return None
        return timeout_ms, buffer

    def _plain_timeout(self) -> int | None:
        override = self._overrides.value
        return self.timeout if override is _DEFAULT else override

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
        if labwire and event == _METHOD_CALL and payload is not None:
            params = payload["params"]
            name, args, kwargs = fields["method"], params["args"], params["kwargs"]
            frames = self._encode_call(name, args, kwargs, rid, timeout_ms, expiry)
            if frames is not None:
                return rid, frames
        elif labwire and event == _PROPERTY_GET:
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
        if labwire:
            return rid, _without_delimiter(frames)
        if len(frames) > 1:
            raise TypeError("buffers can only be sent to labwire servers, not deployed ones")
        return rid, [b"", *frames]

    def _encode_call(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        rid: int,
        timeout_ms: int | None,
        expiry: float | None,
    ) -> list[Buffer] | None:
        """A METHOD_CALL to a labwire server in the compact layout, if it fits.

        Returns:
            Its frames: one; or, to a server that reads them, a call with buffer arguments
            and its buffers; None when the call needs the general layout.
        """
        cid, sid = self._client_id, self._server_id
        frame = encode_call(name, args, kwargs, cid, rid, timeout_ms, expiry, sid)
        if frame is not None:
            return [frame]
        if not self._buffer_calls:
            return None
        frames = encode_call_frames(name, args, kwargs, cid, rid, timeout_ms, expiry, sid)
        return None if frames is None else _without_delimiter(frames)

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
            self._buffer_calls = self._protocol >= BUFFER_CALLS_VERSION
            self._server_id = str(lw.get("sid") or "")
            server_now = lw.get("now")
            if isinstance(server_now, (int, float)):
                self._clock_offset = float(server_now) - (sent + received) / 2
            self.own_address = str(lw.get("peer_address") or "")
            self._details = {k: v for k, v in lw.items() if k not in ("v", "rid", "sid", "now")}
        else:
            self._protocol = None
            self._buffer_calls = False
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
            implement_remotely(client_cls, interface, ClientBase)
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


#: How often a call on a secured connection looks for a failed security handshake.
_HANDSHAKE_CHECK_SECONDS = 0.05
#: How often a pending call checks that the connection its request went out on still exists.
_CONNECTION_CHECK_SECONDS = 0.1


def _without_delimiter(frames: list[Buffer]) -> list[Buffer]:
    """A request to a labwire server, as a labwire client sends it.

    The server answers with the envelope it got, so the client leaves the empty delimiter
    frame out; unless one of the frames (a buffer) is empty, which the server would take for
    the delimiter.
    """
    for frame in frames:
        if (frame.nbytes if type(frame) is memoryview else len(frame)) == 0:
            return [b"", *frames]
    return frames


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
