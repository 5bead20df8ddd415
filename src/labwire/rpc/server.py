"""RPCServer: exposes a device's methods, properties and signals to many clients at once.

Theory of operation
-------------------
A small pool of runner threads serves the ROUTER socket in the leader/follower pattern
(:mod:`labwire.rpc.runners`): the leader receives a request and runs it in its own thread, and
a watchdog hands the socket to another runner when a handler is slow, so other clients and
property reads go on being served. An idle server wakes only at its heartbeat interval.

Requests from labwire clients carry a client id, a request id and an expiry. The server never
starts a request whose expiry has passed (checked on receipt), and answers a duplicate (same
client id and request id, within a window) from a small cache (:mod:`labwire.rpc.dedup`)
instead of executing it twice. A duplicate can only be read while its original runs once the
watchdog has handed the socket over, so the watchdog marks that request as running when it
does; the duplicate is refused.
Every request takes one path: decoded (a labwire client's call or property read is one compact
frame, decoded in one typed pass), checked, looked up in the duplicate table, run, and
answered (:mod:`labwire.rpc.replies`); a result that is plain JSON goes back as one compact
frame, encoded once.
Methods declared with :meth:`RPCServer.register_operation` are operations
(:mod:`labwire.rpc.operations`): started with OP_START they run in a thread of their own, not
in a runner, and an :class:`~labwire.rpc.operations.OperationTable` answers the starts, polls,
cancels and listings, and cancels those whose deadline passed or whose client vanished. Called
plainly they are cancelled when the call's expiry passes.
Signals are published once per emission whatever the number of clients, numbered per signal
under the server's incarnation id (:mod:`labwire.rpc.publisher`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

from labwire.config import Settings
from labwire.errors import ConfigurationError, LabwireError, ProtocolError
from labwire.registration import RegistrationKeeper
from labwire.rpc.catalogue import Catalogue
from labwire.rpc.dedup import ReplyCache
from labwire.rpc.interface import register_method_buffer, register_method_json, register_operation
from labwire.rpc.operations import OperationTable
from labwire.rpc.publisher import SignalPublisher
from labwire.rpc.replies import Failure, buffer_result, error_frames, handler_failure, success
from labwire.rpc.runners import Key, RunnerPool
from labwire.transport import Socket, SocketType, Transport, parse_endpoint, primary_ip
from labwire.wire.codec import encode_json
from labwire.wire.rpc import (
    ErrorCode,
    ExtensionEvents,
    Request,
    RPCEvents,
    claimed_request_id,
    decode_compact,
    decode_frames,
    encode_plain_reply,
    expand_compact_request,
    is_private_name,
    parse_request,
)

__all__ = ["RPCServer"]

_log = logging.getLogger(__name__)

# Enum members cost a descriptor lookup each time they are read; every call reads these.
_METHOD_CALL = RPCEvents.METHOD_CALL
_PROPERTY_GET = RPCEvents.PROPERTY_GET
_PROPERTY_SET = RPCEvents.PROPERTY_SET
_OPERATION_EVENTS = frozenset(
    {
        ExtensionEvents.OP_START,
        ExtensionEvents.OP_POLL,
        ExtensionEvents.OP_CANCEL,
        ExtensionEvents.OP_LIST,
    }
)
#: Events that name a method or property, and run a handler.
_TARGETED_EVENTS = frozenset(
    {
        RPCEvents.METHOD_CALL,
        RPCEvents.PROPERTY_GET,
        RPCEvents.PROPERTY_SET,
        ExtensionEvents.GET_PROPERTIES,
    }
)


class _Stats:
    """Counters a server keeps about what it refused or dropped."""

    def __init__(self) -> None:
        self.requests = 0
        self.bad_requests = 0
        self.expired = 0
        self.duplicates = 0
        self.unroutable = 0
        self.busy = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class RPCServer:
    """Serves a device object's methods, properties and signals over the network.

    Subclass an interface and ``RPCServer``, decorate the exported methods with
    :meth:`register_method_json` or :meth:`register_method_buffer`, declare properties with
    :class:`~labwire.rpc.RPCProperty` and signals with :class:`~labwire.rpc.RPCSignal`, then
    call :meth:`serve_forever` (or :meth:`start` to serve from a background thread).

    Args:
        context: ZeroMQ context, or None for the process-wide one.
        url: Where to listen: ``tcp://HOST:PORT`` (port 0 or none picks a free port),
            ``ipc://PATH`` or ``inproc://NAME``.
        alive_timeout: Seconds after which a registry considers this device gone if it has not
            renewed its registration.
        settings: Transport settings (defaults: :func:`~labwire.config.default_settings`).
        workers: Worker threads for method calls and property access (default: settings).
        serialize_calls: Run method calls and property sets one at a time (for hardware that
            must not be driven concurrently). Property reads stay concurrent.
        admin_operations: With security on, the operations only admin keys may run:
            ``"stop"`` (STOP_SERVER) and/or ``"set_property"``. Default: ``("stop",)``.
            Refusals are answered with a permission error and logged with the client's key.
        signal_broker: The in (XSUB) address of a signal broker (``labwire broker signals``, or
            a :mod:`labwire.brokers` FORWARDER from XSUB to XPUB). Every signal is also
            published there, through a PUB socket connected to it, so that subscribers that
            only know the broker's out address receive it; :attr:`signal_endpoint` keeps
            publishing as well. None (default): no broker.

    Attributes:
        context: The ZeroMQ context.
        url: The URL given at construction.
        endpoint: The real bound endpoint (port resolved).
        port: The TCP port listened on (0 for ipc/inproc).
        alive_timeout: See above.
        uuid: Registry-assigned id, or None when not registered.
        name: Name accepted by the registry ("" when not registered).
        registry_addr: URL of the registry this server is registered with, or "".
        peer_addr: IP address of the client whose inventory request (peer discovery) came
            last, or None.
        signal_broker: The signal broker address given at construction, or None.
    """

    def __init__(
        self,
        context: Any,
        url: str,
        alive_timeout: int = 60,
        *,
        settings: Settings | None = None,
        workers: int | None = None,
        serialize_calls: bool = False,
        admin_operations: Collection[str] = ("stop",),
        signal_broker: str | None = None,
    ) -> None:
        unknown = set(admin_operations) - {"stop", "set_property"}
        if unknown:
            raise ConfigurationError(f"unknown admin operations {sorted(unknown)}")
        self._admin_operations = frozenset(admin_operations)
        self._transport = Transport(context, settings)
        self.context = self._transport.context
        self._settings = self._transport.settings
        self._limits = self._settings.limits
        self.url = url
        self.alive_timeout = alive_timeout
        self.uuid: str | None = None
        self.name = ""
        self.registry_addr = ""
        self.peer_addr: str | None = None
        self.stats = _Stats()

        catalogue = Catalogue(self, RPCServer)
        self._catalogue = catalogue
        # The tables every request looks up, as attributes of their own.
        self._methods = catalogue.methods
        self._operation_specs = catalogue.operations
        self._buffer_methods = catalogue.buffer_methods
        self._rpc_properties = catalogue.properties

        self._server_id = secrets.token_hex(8)
        self._call_lock = threading.Lock() if serialize_calls else None
        self._operations = OperationTable(self._server_id, self._call_lock)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._keeper: Any = None
        self._answered = ReplyCache(time.monotonic())
        self._peer_key: str | None = None
        self._secure = self._transport.security is not None
        self._last_origin: Any = None  # the last request's origin (see Socket.recv_routed)
        self._socket: Socket = self._transport.bind(SocketType.ROUTER, url)
        self.endpoint = self._socket.endpoint
        self.port = self._socket.port
        self.signal_broker = signal_broker
        try:
            self._publisher = SignalPublisher(
                self._transport,
                self.endpoint,
                self._server_id,
                self._settings.signal_hwm,
                signal_broker,
            )
        except LabwireError:
            self._socket.close(0)
            raise
        self.signal_endpoint = self._publisher.endpoint
        try:
            self._pool = RunnerPool(
                self._socket,
                self._transport,
                str(self.port),
                workers or self._settings.workers,
                self._settings.heartbeat_ivl_ms,
                handle=self._on_message,
                idle=self._on_idle,
                send=self._send,
                remember=self._answered.remember,
                on_takeover=self._answered.mark_running,
                on_stop=self._shutdown,
            )
        except LabwireError:
            self._socket.close(0)
            self._publisher.close(0)
            raise
        for signal in catalogue.signals.values():
            signal._publisher = self._publisher.publish

    # ------------------------------------------------------------------ declaration (interface.py)

    register_method_json = staticmethod(register_method_json)
    register_method_buffer = staticmethod(register_method_buffer)
    register_operation = staticmethod(register_operation)

    # ------------------------------------------------------------------ lifecycle

    def serve_forever(self) -> None:
        """Serve requests until :meth:`stop_server` is called or a client sends STOP_SERVER.

        The calling thread becomes the first runner; it returns once the server has stopped
        and its own handler, if any, has finished.
        """
        self._pool.serve()

    def start(self) -> RPCServer:
        """Serve from a background thread owned by this server; returns once serving."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"labwire-server-{self.port}", daemon=True
        )
        self._thread.start()
        self._pool.serving.wait(5)
        return self

    def stop_server(self) -> None:
        """Stop serving, and unregister from the registry if registered.

        Safe to call from any thread, several times, and before :meth:`serve_forever`.
        """
        if not self._pool.request_stop():
            self._shutdown()

    def close(self, timeout: float = 1.0) -> None:
        """Stop the server and wait (up to ``timeout`` seconds) until it has shut down."""
        deadline = time.monotonic() + timeout
        self.stop_server()
        self._stopped.wait(timeout)
        self._operations.close(max(0.0, deadline - time.monotonic()))
        for thread in [self._thread, *self._pool.threads()]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the server has shut down; returns False on timeout."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> RPCServer:
        if self._thread is None and not self._pool.serving.is_set():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _shutdown(self) -> None:
        if not self._pool.close():
            return
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            with contextlib.suppress(LabwireError):
                keeper.stop()
        self._operations.close(0.0)
        self.name, self.uuid, self.registry_addr = "", None, ""
        self._socket.close()
        self._publisher.close()
        self._stopped.set()
        _log.info("RPC server on %s stopped", self.endpoint)

    # ------------------------------------------------------------------ registry

    def register_to_registry(
        self,
        type_: str,
        name: str,
        registry_url: str,
        overwrite: bool = True,
        *,
        timeout: float = 5.0,
    ) -> str:
        """Register this server with a device registry and keep the registration alive.

        The name may be changed by the registry to avoid a duplicate. From then on a
        background thread renews the lease well within ``alive_timeout``, registers again by
        itself if the registry forgot the device (e.g. it restarted), and unregisters when the
        server stops. With security on, the registration publishes this server's public key,
        so clients that connect by name learn it from the registry.

        Args:
            type_: Device type (e.g. ``"camera"``).
            name: Proposed device name.
            registry_url: The registry's URL, ``tcp://HOST:PORT``.
            overwrite: Take the name over if another device holds it (a secured registry
                allows that only for admin keys, or for the key already holding the name).
            timeout: Seconds the first registration may take before giving up.

        Returns:
            The name accepted by the registry.

        Raises:
            ConfigurationError: ``type_`` or ``name`` breaks the device-name rule (printable,
                no whitespace, no ``/``; see :mod:`labwire.wire.registry`).
            RegistryError: The registry refused the registration.
            Unavailable: The registry could not be reached in time.
            AuthenticationError: Security is on and the registry refused the handshake.
            PermissionDenied: A secured registry refused to let this server's key take the
                name over.
        """
        security = self._transport.security
        keeper = RegistrationKeeper(
            self._transport,
            device_type=type_,
            name=name,
            address=self.advertised_endpoint(),
            registry_url=registry_url,
            overwrite=overwrite,
            alive_timeout=self.alive_timeout,
            health_check=self.is_responsive,
            on_name_change=self._renamed,
            public_key=None if security is None else security.public_key,
            register_timeout=timeout,
        )
        if self._keeper is not None:
            self._keeper.stop()
        accepted: str = keeper.start()
        self._keeper = keeper
        self.name, self.uuid, self.registry_addr = accepted, keeper.uuid, registry_url
        return accepted

    def _renamed(self, name: str) -> None:
        self.name = name

    def is_responsive(self) -> bool:
        """Whether a new request would be served now.

        False when the server is not serving, or when every runner is stuck in a handler for
        longer than half the ``alive_timeout`` (at least one second). The registration keeper
        renews the lease only while this holds, so a device whose loop hangs drops out of the
        registry and comes back when it frees.
        """
        return self._pool.is_responsive(max(1.0, self.alive_timeout / 2))

    def advertised_endpoint(self) -> str:
        """The endpoint other hosts should connect to (a wildcard host replaced by this host)."""
        endpoint = parse_endpoint(self.endpoint, for_bind=True)
        if endpoint.is_tcp and endpoint.is_wildcard:
            return str(endpoint.with_host(primary_ip()))
        return self.endpoint

    # ------------------------------------------------------------------ requests

    def _send(self, frames: Sequence[Any]) -> None:
        if not self._socket.send(frames, nowait=True):
            self.stats.unroutable += 1

    def _on_message(self, identity: bytes, parts: list[Any], origin: Any) -> None:
        """Handle one request: ``parts`` come after the sender's routing id (see recv_routed)."""
        self.stats.requests += 1
        self._last_origin = origin
        if self._secure:
            self._peer_key = Socket.peer_key(origin)
        # labwire's own clients send small calls with no delimiter, once they know the
        # server, in the compact layout for method calls and property reads: one part, or
        # the call's buffer arguments after it.
        if len(parts) == 1:
            compact = decode_compact(parts[0], self._limits)
        else:
            compact = decode_compact(parts[0], self._limits, parts[1:])
        envelope: list[Any] = [identity]
        header: dict[str, Any] | None = None
        request = None
        first: Any = None  # the body's first frame, for a refusal to find its request id
        try:
            if compact is not None:
                request = compact.request()
                self._targeted(envelope, request, time.monotonic())
                return
            body_start = 0
            while body_start < len(parts) and len(parts[body_start]) != 0:
                body_start += 1
            if body_start < len(parts):
                envelope = [identity, *(bytes(part) for part in parts[:body_start]), b""]
                body = [memoryview(part) for part in parts[body_start + 1 :]]
            else:  # no delimiter: labwire's one-part layout, or a raw DEALER
                body = [memoryview(part) for part in parts]
            if not body:
                raise ProtocolError("empty request: no frame after the envelope")
            first = body[0]
            header, buffers = decode_frames(body, self._limits, expand_compact_request)
            request = parse_request(header, buffers)
            self._dispatch(envelope, request, time.monotonic())
        except ProtocolError as exc:
            self.stats.bad_requests += 1
            _log.debug("bad request from %s: %s", Socket.peer_address(origin), exc)
            if header is None and first is not None:  # refused undecoded: route it all the same
                rid = claimed_request_id(first)
                header = None if rid is None else {"lw": {"rid": rid}}
            self._send(
                envelope
                + error_frames(header, request, self._server_id, ErrorCode.BAD_REQUEST, exc)
            )
        except Failure as exc:
            self._send(envelope + error_frames(header, request, self._server_id, exc.code, exc))
        finally:
            self._last_origin = None  # a refused message's last frame may be large

    def _dispatch(self, envelope: list[Any], request: Request, received: float) -> None:
        event = request.event
        if event in _TARGETED_EVENTS:
            self._targeted(envelope, request, received)
        elif event == RPCEvents.GET_INVENTORY:
            self.peer_addr = Socket.peer_address(self._last_origin) or self.peer_addr
            inventory = self._catalogue.inventory(self.name or "")
            if request.is_labwire:
                details = self._catalogue.details(
                    peer_address=self.peer_addr or "",
                    own_address=self.advertised_endpoint(),
                    signal_endpoint=self.signal_endpoint,
                )
                self._send(
                    envelope + success(request, self._server_id, inventory, extension=details)
                )
            else:  # exactly the deployed inventory, which has no "success" field
                self._send([*envelope, encode_json(inventory)])
        elif event == RPCEvents.INIT_SIGNALS_HANDLING:
            fields = {"signal_port": parse_endpoint(self.signal_endpoint, for_bind=True).port}
            lw = {"signal_endpoint": self.signal_endpoint}
            self._send(envelope + success(request, self._server_id, fields, extension=lw))
        elif event == ExtensionEvents.SIGNAL_CHECK:
            subscribed = self._publisher.probe_arrived(request.name)
            self._send(envelope + success(request, self._server_id, {"subscribed": subscribed}))
        elif event == ExtensionEvents.PING:
            self._send(
                envelope
                + success(request, self._server_id, {}, extension={"now": time.monotonic()})
            )
        elif event in _OPERATION_EVENTS:
            spec = None
            if event == ExtensionEvents.OP_START:
                spec = self._operation_specs.get(request.name)
                if spec is None:  # no such method at all, or a plain one
                    self._check_target(Request(RPCEvents.METHOD_CALL, request.name))
            try:
                frames = self._operations.answer(self, request, spec, self.port)
            except Failure:
                raise
            except Exception as exc:  # e.g. the server stops: no new operation starts
                frames = handler_failure(request, self._server_id, exc)
            self._send(envelope + frames)
        elif event == RPCEvents.STOP_SERVER:
            self._authorize("stop")
            self._send(envelope + success(request, self._server_id, {}))
            _log.info("STOP_SERVER received from %s", Socket.peer_address(self._last_origin))
            self._pool.stopping = True
        else:  # EMIT_SIGNAL: the only event left
            raise Failure(ErrorCode.BAD_REQUEST, "EMIT_SIGNAL is published by servers")

    def _targeted(self, envelope: list[Any], request: Request, received: float) -> None:
        """Method calls and property access: checks, duplicate detection, then the handler."""
        event = request.event
        if event == _METHOD_CALL:  # an exported name (never a private one) needs no more checks
            if request.name not in self._methods:
                self._check_target(request)
        elif event != _PROPERTY_GET or request.name not in self._rpc_properties:
            self._check_target(request)
            if event == _PROPERTY_SET:
                self._authorize("set_property")
        expiry = request.expiry
        if expiry is not None and request.server_id == self._server_id:
            expired = received > expiry
        else:  # an expiry on another incarnation's clock: the caller's patience instead
            ttl_ms = request.ttl_ms
            expired = ttl_ms is not None and time.monotonic() > received + ttl_ms / 1000.0
        if expired:
            self.stats.expired += 1
            raise Failure(ErrorCode.EXPIRED, "request expired before it could run")
        key = None
        if request.client_id and request.request_id is not None:
            key = (request.client_id, request.request_id)
            if key in self._answered:
                self.stats.duplicates += 1
                body = self._answered.get(key)
                if body is None:
                    raise Failure(ErrorCode.BAD_REQUEST, "duplicate request (already executed)")
                self._send(envelope + body)
                return
        self._run_handler(envelope, request, received, key)

    def _authorize(self, operation: str) -> None:
        security = self._transport.security
        if security is None or operation not in self._admin_operations:
            return
        if not security.is_admin(self._peer_key):
            _log.warning(
                "refused %s from client key %s (%s): not an admin key",
                operation,
                self._peer_key,
                Socket.peer_address(self._last_origin),
            )
            raise Failure(ErrorCode.DENIED, f"{operation} is restricted to admin keys")

    def _check_target(self, request: Request) -> None:
        name = request.name
        if request.event == ExtensionEvents.GET_PROPERTIES:
            return
        if is_private_name(name):
            raise Failure(ErrorCode.NOT_FOUND, f"{name!r} is private and cannot be reached")
        if request.event == RPCEvents.METHOD_CALL:
            if name not in self._methods:
                # The deployed wording first: deployed clients look for "not implemented".
                message = f"method {name!r} not implemented: no method named {name!r}"
                raise Failure(ErrorCode.NOT_FOUND, message)
        elif name not in self._rpc_properties:
            raise Failure(ErrorCode.NOT_FOUND, f"no RPC property named {name!r}")
        elif request.event == RPCEvents.PROPERTY_SET and self._rpc_properties[name].fset is None:
            raise Failure(ErrorCode.BAD_REQUEST, f"property {name!r} is read-only")

    def _on_idle(self) -> None:
        """No request came for a while: let replies age out, and read subscriptions."""
        self._answered.age(time.monotonic())
        self._publisher.read_subscriptions()

    # ------------------------------------------------------------------ handlers

    def _run_handler(
        self, envelope: list[Any], request: Request, received: float, key: Key | None
    ) -> None:
        self._pool.begin(received, key)
        try:
            frames = self._execute(request)
        except Exception as exc:
            frames = handler_failure(request, self._server_id, exc)
        self._pool.finish(envelope, frames, key, received)

    def _execute(self, request: Request) -> list[Any]:
        event = request.event
        if event == _METHOD_CALL:
            function = getattr(self, request.name)
            args, kwargs = request.args, request.kwargs
            spec = self._operation_specs.get(request.name) if self._operation_specs else None
            if spec is not None:
                value = self._operations.call(self, request, spec, self.port)
            elif self._call_lock is None:
                value = function(*args, **kwargs) if kwargs else function(*args)
            else:
                with self._call_lock:
                    value = function(*args, **kwargs)
            if request.name in self._buffer_methods:
                return buffer_result(request, self._server_id, value)
            key = "result"
        elif event == _PROPERTY_GET:
            value = getattr(self, request.name)
            key = "value"
        elif event == _PROPERTY_SET:
            with self._call_lock or contextlib.nullcontext():
                setattr(self, request.name, request.value)
            return success(request, self._server_id, {})
        else:
            values = {name: getattr(self, name) for name in self._rpc_properties}
            return success(request, self._server_id, {}, payload={"values": values})
        # A success carrying plain JSON: to a labwire client, one compact frame, encoded once.
        if request.version is not None:
            frame = encode_plain_reply(request.request_id, self._server_id, value)
            if frame is not None:
                return [frame]
        return success(request, self._server_id, {}, payload={key: value})
