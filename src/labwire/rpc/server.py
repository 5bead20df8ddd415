"""RPCServer: exposes a device's methods, properties and signals to many clients at once.

Theory of operation
-------------------
The server runs a small pool of *runner* threads in the leader/follower pattern. Exactly one
runner, the leader, owns the ROUTER socket: it receives a request, validates it, runs the
handler itself and sends the reply, with no hand-off between threads (which would double the
latency of a small call). While requests arrive, a watchdog thread looks at the leader every
couple of milliseconds (an idle server's watchdog sleeps until the next request, so an idle
server wakes only at its heartbeat interval): when a handler has been running longer than
``_TAKEOVER_SECONDS`` (a slow ``run_scan()``),
leadership, and so the socket, passes to another runner, which goes on serving other clients
and property reads. The old leader finishes its handler without touching the socket again: it
queues its reply and wakes the new leader with an empty message that reaches the socket
itself, through an ``inproc://`` connection from a private DEALER (the waker). So the leader
waits in one blocking receive on one socket, with no poll of a second source. Ownership changes
only under a lock, which gives ZeroMQ the memory barrier it requires when a socket moves
between threads; a handler that ends sooner than the takeover time keeps the socket without
taking that lock, since the watchdog cannot have moved it. At most ``workers`` runners exist,
so at most ``workers - 1`` slow handlers run at once.

Requests from labwire clients carry a client id, a request id and an expiry. The server never
starts a request whose expiry has passed (checked on receipt), and answers a duplicate (same
client id and request id, within a window) from a small cache instead of executing it twice.
A duplicate can only be read while its original runs once the watchdog has handed the socket
over, so the watchdog marks that request as running when it does; the duplicate is refused.
Every request takes one path: decoded (a labwire client's call or property read is one compact
frame, decoded in one typed pass), checked, looked up in the duplicate table, run, and
answered; a result that is plain JSON goes back as one compact frame, encoded once.
Methods declared with :meth:`RPCServer.register_operation` are operations
(:mod:`labwire.rpc.operations`): started with OP_START they run in a thread of their own, not
in a runner, and an :class:`~labwire.rpc.operations.OperationTable` answers the polls, cancels
and listings, and cancels those whose deadline passed or whose client vanished. Called plainly
they are cancelled when the call's expiry passes.
Signals are published on one PUB socket (guarded by a
lock, since any thread may emit), once per emission whatever the number of clients, each
message numbered per signal under a random epoch drawn at start.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import queue
import secrets
import socket as stdsocket
import threading
import time
import traceback as tb
from collections.abc import Callable, Collection, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from labwire.config import Settings
from labwire.errors import ClosedError, ConfigurationError, LabwireError, NotFound, ProtocolError
from labwire.registration import RegistrationKeeper
from labwire.rpc.interface import RemoteMethod, mark_method, scan_class
from labwire.rpc.operations import (
    OPERATION_ATTRIBUTE,
    Operation,
    OperationSpec,
    OperationTable,
    operation_method,
)
from labwire.rpc.property import RPCProperty
from labwire.rpc.signal import RPCSignal
from labwire.transport import Socket, SocketType, Transport, parse_endpoint
from labwire.wire.codec import encode_json
from labwire.wire.rpc import (
    PROTOCOL_VERSION,
    ErrorCode,
    ExtensionEvents,
    Request,
    RPCEvents,
    claimed_request_id,
    decode_compact,
    decode_frames,
    encode_buffer_reply,
    encode_frames,
    encode_plain_reply,
    expand_compact_request,
    is_private_name,
    parse_request,
    reply_extension,
)
from labwire.wire.signals import encode_signal, probe_token

__all__ = ["RPCServer"]

_log = logging.getLogger(__name__)

#: The version of labwire serving, reported with the inventory (``labwire ping`` shows it).
_LABWIRE_VERSION = importlib.metadata.version("labwire")

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")
R = TypeVar("R")
P = ParamSpec("P")

#: Replies kept for duplicate detection, in two generations: the newer takes every reply and
#: retires the older once it holds _DEDUP_ENTRIES replies or is _DEDUP_SECONDS old. So a reply
#: is kept for at least _DEDUP_ENTRIES later replies or _DEDUP_SECONDS (whichever ends first),
#: and for at most twice that. Replies over _DEDUP_MAX_BYTES are remembered but not kept.
_DEDUP_ENTRIES = 2048
_DEDUP_SECONDS = 30.0
_DEDUP_MAX_BYTES = 64 * 1024
_Key = tuple[str, int]
_Reply = tuple[_Key | None, list[Any], list[Any]]
_Job = tuple[float, _Key | None]

#: A handler running longer than this hands the socket over to another runner.
_TAKEOVER_SECONDS = 0.002
#: How often the watchdog looks at the leader while requests arrive.
_WATCHDOG_SECONDS = 0.002
#: After this long without a request, the watchdog sleeps until the next one.
_WATCHDOG_QUIET_SECONDS = 0.5
#: Subscription messages read from a publisher at a time, and probe tokens remembered.
_SUBSCRIPTIONS_AT_ONCE = 1000
_PROBES_KEPT = 256
#: Leadership is up for grabs (the next runner to look takes it).
_VACANT = -1
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


class _Failure(Exception):
    """An error reply decided while handling a request."""

    def __init__(self, code: ErrorCode, message: str, error_type: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.error_type = error_type or {
            ErrorCode.NOT_FOUND: "NotFound",
            ErrorCode.BAD_REQUEST: "ProtocolError",
            ErrorCode.EXPIRED: "RequestExpired",
            ErrorCode.DENIED: "PermissionDenied",
            ErrorCode.STOPPING: "Unavailable",
        }.get(code, "RemoteError")


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

        exposed = scan_class(type(self), stop_at=(RPCServer,))
        self._methods: dict[str, RemoteMethod] = exposed.methods
        self._operation_specs: dict[str, OperationSpec] = {
            n: getattr(m.function, OPERATION_ATTRIBUTE)
            for n, m in self._methods.items()
            if hasattr(m.function, OPERATION_ATTRIBUTE)
        }
        self._buffer_methods = {
            n: m.function for n, m in self._methods.items() if m.kind == "buffer"
        }
        self._rpc_properties: dict[str, RPCProperty] = exposed.properties
        self._signals: dict[str, RPCSignal] = {
            name: getattr(self, name) for name in exposed.signals
        }

        self._server_id = secrets.token_hex(8)
        self._seq: dict[str, int] = dict.fromkeys(self._signals, 0)
        self._pub_lock = threading.Lock()
        #: Probe tokens whose subscription reached a publisher (SIGNAL_CHECK), the newest last.
        self._probes: dict[str, None] = {}
        self._call_lock = threading.Lock() if serialize_calls else None
        self._operations = OperationTable(self._server_id, self._call_lock)
        self._stop = False
        self._dead = False
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._keeper: Any = None
        # Replies by (client id, request id); None: in progress, or too large to keep.
        self._recent: dict[_Key, list[Any] | None] = {}
        self._older: dict[_Key, list[Any] | None] = {}
        self._recent_since = time.monotonic()
        self._replies: queue.SimpleQueue[_Reply] = queue.SimpleQueue()
        self._peer_key: str | None = None
        self._secure = self._transport.security is not None
        self._last_origin: Any = None  # the last request's origin (see Socket.recv_routed)
        self._max_runners = max(2, workers or self._settings.workers)
        # The lock itself is taken on every call: "with lock" runs in C, where "with condition"
        # would add two Python-level calls.
        self._lead_lock = threading.Lock()
        self._lead = threading.Condition(self._lead_lock)
        self._leader = _VACANT
        # Each runner's current handler: when it started and its duplicate-table key (None: not
        # in a handler).
        self._jobs: dict[int, _Job | None] = {}
        self._idle_runners = 0
        self._runners: list[threading.Thread] = []
        self._watchdog: threading.Thread | None = None
        # Set to wake the watchdog, which sleeps on it while no request arrives.
        self._watchdog_asleep = False
        self._requests_arrive = threading.Event()

        self._socket: Socket = self._transport.bind(SocketType.ROUTER, url)
        self.endpoint = self._socket.endpoint
        self.port = self._socket.port
        try:
            self._signal_socket: Socket | None = self._bind_signals()
        except LabwireError:
            self._socket.close(0)
            raise
        self.signal_endpoint = self._signal_socket.endpoint
        self._wake_id = b"labwire-wake-" + secrets.token_bytes(16)
        self._waker_lock = threading.RLock()  # RLock: a signal handler may stop the server
        try:
            wake_url = self._socket.bind(f"inproc://labwire-wake-{self._server_id}")
            self._waker: Socket | None = self._transport.connect(
                SocketType.DEALER, wake_url, routing_id=self._wake_id
            )
        except LabwireError:
            self._socket.close(0)
            self._signal_socket.close(0)
            raise
        self.signal_broker = signal_broker
        self._broker_socket: Socket | None = None
        if signal_broker is not None:
            try:
                self._broker_socket = self._transport.connect(
                    SocketType.XPUB, signal_broker, sndhwm=self._settings.signal_hwm
                )
            except LabwireError:
                self._socket.close(0)
                self._signal_socket.close(0)
                self._waker.close(0)
                raise
        for signal in self._signals.values():
            signal._publisher = self._publish

    # ------------------------------------------------------------------ declaration

    @staticmethod
    def register_method_json(timeout: int | None = 10000) -> Callable[[F], F]:
        """Export a method whose arguments and result travel as JSON.

        Send basic types and containers (int, float, str, bool, list, tuple, dict). labwire
        clients may also pass and receive bytes, memoryviews and numpy arrays, which travel
        as raw frames.

        Args:
            timeout: How long (ms) a client waits for the method by default; None: forever.
        """

        def decorator(function: F) -> F:
            mark_method(function, "json", timeout)
            return function

        return decorator

    @staticmethod
    def register_method_buffer(timeout: int | None = 10000) -> Callable[[F], F]:
        """Export a method that returns ``(buffer, info)``: a bytes-like object and a dict.

        The buffer travels as a raw frame without copies; ``info`` as JSON. Arguments are
        JSON (plus buffers, from labwire clients).

        Args:
            timeout: How long (ms) a client waits for the method by default; None: forever.
        """

        def decorator(function: F) -> F:
            mark_method(function, "buffer", timeout)
            return function

        return decorator

    @staticmethod
    def register_operation(
        timeout: int | None = None, on_disconnect: str = "finish", lease: float = 3.0
    ) -> Callable[[Callable[Concatenate[S, Operation, P], R]], Callable[Concatenate[S, P], R]]:
        """Export a long-running method as an operation: progress, cancel and a deadline.

        The handler's first argument after ``self`` is an
        :class:`~labwire.rpc.operations.Operation`: report progress with
        ``operation.report(fraction, message)`` (which raises
        :class:`~labwire.rpc.operations.OperationCancelled` once cancelled), look at
        ``operation.cancelled``, and register cleanup with ``operation.on_cancel(callback)``.
        Clients start it with ``start_operation()`` and watch, cancel or reattach to it; a
        plain call (any client, deployed ones too) still returns its result, and the handler is
        cancelled once that call's deadline passes. Arguments and result travel as with
        :meth:`register_method_json`.

        Args:
            timeout: The default deadline in ms (for plain calls, how long clients wait); None:
                no limit.
            on_disconnect: ``"finish"``: run to the end when the client that watches it
                vanishes; ``"cancel"``: cancel it once nobody polled it for ``lease`` seconds.
            lease: Seconds without a poll after which the watching client counts as gone.
        """

        def decorator(
            function: Callable[Concatenate[S, Operation, P], R],
        ) -> Callable[Concatenate[S, P], R]:
            spec = OperationSpec(function, timeout, on_disconnect, lease)
            method = operation_method(function, spec)
            mark_method(method, "json", timeout)
            return method

        return decorator

    # ------------------------------------------------------------------ lifecycle

    def _bind_signals(self) -> Socket:
        endpoint = parse_endpoint(self.endpoint, for_bind=True)
        if endpoint.is_tcp:
            url = str(endpoint.with_port(0))
        elif endpoint.scheme == "ipc":
            url = f"ipc://{endpoint.path}.signals"
        else:
            url = f"inproc://{endpoint.path}.signals"
        # XPUB: a PUB that also reads its subscribers' subscriptions (for SIGNAL_CHECK).
        return self._transport.bind(SocketType.XPUB, url, sndhwm=self._settings.signal_hwm)

    def serve_forever(self) -> None:
        """Serve requests until :meth:`stop_server` is called or a client sends STOP_SERVER.

        The calling thread becomes the first runner; it returns once the server has stopped
        and its own handler, if any, has finished.
        """
        if self._dead:
            raise ClosedError("this server was stopped; create a new one")
        with self._lead:
            if self._serving.is_set():
                raise RuntimeError("serve_forever() is already running")
            self._leader = threading.get_ident()
            self._serving.set()
        self._watchdog = threading.Thread(
            target=self._watch, name=f"labwire-watchdog-{self.port}", daemon=True
        )
        self._watchdog.start()
        self._run()

    def start(self) -> RPCServer:
        """Serve from a background thread owned by this server; returns once serving."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"labwire-server-{self.port}", daemon=True
        )
        self._thread.start()
        self._serving.wait(5)
        return self

    def stop_server(self) -> None:
        """Stop serving, and unregister from the registry if registered.

        Safe to call from any thread, several times, and before :meth:`serve_forever`.
        """
        with self._lead:
            self._stop = True
            serving = self._serving.is_set()
            self._lead.notify_all()
        if serving:
            self._wake()
        else:
            self._shutdown()

    def close(self, timeout: float = 1.0) -> None:
        """Stop the server and wait (up to ``timeout`` seconds) until it has shut down."""
        deadline = time.monotonic() + timeout
        self.stop_server()
        self._stopped.wait(timeout)
        self._operations.close(max(0.0, deadline - time.monotonic()))
        for thread in [self._thread, self._watchdog, *self._runners]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the server has shut down; returns False on timeout."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> RPCServer:
        if self._thread is None and not self._serving.is_set():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _shutdown(self) -> None:
        with self._lead:
            if self._dead:
                return
            self._dead = True
            self._stop = True
            self._lead.notify_all()
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            with contextlib.suppress(LabwireError):
                keeper.stop()
        self._operations.close(0.0)
        self.name, self.uuid, self.registry_addr = "", None, ""
        self._socket.close()
        with self._pub_lock:
            signal_socket, self._signal_socket = self._signal_socket, None
            broker_socket, self._broker_socket = self._broker_socket, None
        for publisher in (signal_socket, broker_socket):
            if publisher is not None:
                publisher.close()
        with self._waker_lock:
            waker, self._waker = self._waker, None
        if waker is not None:
            waker.close(0)
        self._stopped.set()
        self._requests_arrive.set()  # the watchdog may be asleep
        _log.info("RPC server on %s stopped", self.endpoint)

    def _wake(self) -> None:
        with self._waker_lock:
            if self._waker is not None:
                with contextlib.suppress(LabwireError):
                    self._waker.send([b""], nowait=True)

    # ------------------------------------------------------------------ runners

    def _run(self) -> None:
        """A runner's life: wait for leadership, lead, repeat until the server stops."""
        me = threading.get_ident()
        while True:
            with self._lead:
                while self._leader != me and not self._stop:
                    if self._leader == _VACANT:
                        self._leader = me
                        break
                    self._idle_runners += 1
                    self._lead.wait()
                    self._idle_runners -= 1
                if self._leader != me:
                    return
            if not self._lead_loop(me):
                return

    def _lead_loop(self, me: int) -> bool:
        """Serve as leader. Returns True when leadership was taken over, False on stop."""
        receive = self._socket.recv_routed
        wake_id = self._wake_id
        # A finite wait lets Python run signal handlers (e.g. SIGTERM -> stop_server) even when
        # the kernel delivered the signal to another thread; an idle server wakes this often.
        idle_ms = self._settings.heartbeat_ivl_ms
        try:
            while not self._stop:
                message = receive(idle_ms)
                if message is None:  # idle: replies age out without new ones to push them
                    now = time.monotonic()
                    if now - self._recent_since >= _DEDUP_SECONDS:
                        self._retire_replies(now)
                    self._read_subscriptions()
                    continue
                # Not unpacked into locals: they would keep a large message alive while the
                # leader waits for the next one.
                if message[0] == wake_id:
                    self._drain_replies()
                    continue
                self._on_message(*message)
                if self._leader != me:
                    return True
            self._drain_replies()
        except ClosedError:  # the ZeroMQ context was terminated under the server
            _log.warning("RPC server on %s stops: its ZeroMQ context was terminated", self.endpoint)
        self._shutdown()
        return False

    def _watch(self) -> None:
        """Hand the socket to another runner when the leader is stuck in a slow handler.

        Sleeps while no request arrives: :meth:`_on_message` wakes it.
        """
        seen, quiet_since = self.stats.requests, time.monotonic()
        while not self._stopped.wait(_WATCHDOG_SECONDS):
            if self.stats.requests != seen or self._jobs.get(self._leader) is not None:
                seen, quiet_since = self.stats.requests, time.monotonic()
            elif time.monotonic() - quiet_since >= _WATCHDOG_QUIET_SECONDS:
                self._requests_arrive.clear()
                self._watchdog_asleep = True
                # A request counted, or a stop, before the flag was up: do not sleep.
                if self.stats.requests == seen and not self._stopped.is_set():
                    self._requests_arrive.wait()
                self._watchdog_asleep = False
                seen, quiet_since = self.stats.requests, time.monotonic()
                continue
            with self._lead:
                # The clock is read before the start time: _finish relies on that order.
                now = time.monotonic()
                job = self._jobs.get(self._leader)
                if job is None or now - job[0] < _TAKEOVER_SECONDS:
                    continue
                if self._idle_runners == 0:
                    self._runners = [t for t in self._runners if t.is_alive()]
                    if len(self._runners) + 1 >= self._max_runners:
                        continue  # every runner is busy: the leader keeps the socket
                    runner = threading.Thread(
                        target=self._run, name=f"labwire-runner-{self.port}", daemon=True
                    )
                    self._runners.append(runner)
                    runner.start()
                key = job[1]
                if key is not None:  # from now on a duplicate can arrive: it must not run
                    self._recent[key] = None
                self._leader = _VACANT
                self._lead.notify()
            self._wake()

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
        if not self._serving.is_set() or self._stop:
            return False
        job = self._jobs.get(self._leader)
        return job is None or time.monotonic() - job[0] < max(1.0, self.alive_timeout / 2)

    def advertised_endpoint(self) -> str:
        """The endpoint other hosts should connect to (a wildcard host replaced by this host)."""
        endpoint = parse_endpoint(self.endpoint, for_bind=True)
        if endpoint.is_tcp and endpoint.is_wildcard:
            return str(endpoint.with_host(_primary_ip()))
        return self.endpoint

    # ------------------------------------------------------------------ I/O thread

    def _drain_replies(self) -> None:
        while True:
            try:
                key, envelope, body = self._replies.get_nowait()
            except queue.Empty:
                return
            self._send(envelope + body)
            if key is not None:
                self._remember(key, body, time.monotonic())

    def _send(self, frames: Sequence[Any]) -> None:
        if not self._socket.send(frames, nowait=True):
            self.stats.unroutable += 1

    def _on_message(self, identity: bytes, parts: list[Any], origin: Any) -> None:
        """Handle one request: ``parts`` come after the sender's routing id (see recv_routed)."""
        self.stats.requests += 1
        if self._watchdog_asleep:
            self._requests_arrive.set()
        self._last_origin = origin
        if self._secure:
            self._peer_key = Socket.peer_key(origin)
        # labwire's own clients send small calls as one part, with no delimiter, once they
        # know the server, in the compact layout for method calls and property reads.
        compact = decode_compact(parts[0], self._limits) if len(parts) == 1 else None
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
            self._send(envelope + self._error_frames(header, request, ErrorCode.BAD_REQUEST, exc))
        except _Failure as exc:
            self._send(envelope + self._error_frames(header, request, exc.code, exc))
        finally:
            self._last_origin = None  # a refused message's last frame may be large

    def _dispatch(self, envelope: list[Any], request: Request, received: float) -> None:
        event = request.event
        if event in _TARGETED_EVENTS:
            self._targeted(envelope, request, received)
        elif event == RPCEvents.GET_INVENTORY:
            self.peer_addr = Socket.peer_address(self._last_origin) or self.peer_addr
            if request.is_labwire:
                details = self._inventory_details()
                self._send(envelope + self._reply(request, self._inventory(), extension=details))
            else:  # exactly the deployed inventory, which has no "success" field
                self._send([*envelope, encode_json(self._inventory())])
        elif event == RPCEvents.INIT_SIGNALS_HANDLING:
            fields = {"signal_port": parse_endpoint(self.signal_endpoint, for_bind=True).port}
            lw = {"signal_endpoint": self.signal_endpoint}
            self._send(envelope + self._reply(request, fields, extension=lw))
        elif event == ExtensionEvents.SIGNAL_CHECK:
            self._read_subscriptions()
            with self._pub_lock:
                subscribed = request.name in self._probes
                self._probes.pop(request.name, None)
            self._send(envelope + self._reply(request, {"subscribed": subscribed}))
        elif event == ExtensionEvents.PING:
            self._send(envelope + self._reply(request, {}, extension={"now": time.monotonic()}))
        elif event in _OPERATION_EVENTS:
            try:
                frames = self._operation_reply(request, received)
            except _Failure:
                raise
            except Exception as exc:  # e.g. the server stops: no new operation starts
                frames = self._failure_frames(request, exc)
            self._send(envelope + frames)
        elif event == RPCEvents.STOP_SERVER:
            self._authorize("stop")
            self._send(envelope + self._reply(request, {}))
            _log.info("STOP_SERVER received from %s", Socket.peer_address(self._last_origin))
            self._stop = True
        else:  # EMIT_SIGNAL: the only event left
            raise _Failure(ErrorCode.BAD_REQUEST, "EMIT_SIGNAL is published by servers")

    def _targeted(self, envelope: list[Any], request: Request, received: float) -> None:
        """Method calls and property access: checks, duplicate detection, then the handler."""
        if request.event != _METHOD_CALL or request.name not in self._methods:
            self._check_target(request)  # the common case needs no more checks than this
            if request.event == _PROPERTY_SET:
                self._authorize("set_property")
        expiry = request.expiry
        if expiry is not None and request.server_id == self._server_id:
            expired = received > expiry
        else:  # an expiry on another incarnation's clock: the caller's patience instead
            ttl_ms = request.ttl_ms
            expired = ttl_ms is not None and time.monotonic() > received + ttl_ms / 1000.0
        if expired:
            self.stats.expired += 1
            raise _Failure(ErrorCode.EXPIRED, "request expired before it could run")
        key = None
        if request.client_id and request.request_id is not None:
            key = (request.client_id, request.request_id)
            table = self._recent if key in self._recent else self._older
            if key in table:
                self.stats.duplicates += 1
                body = table[key]
                if body is None:
                    raise _Failure(ErrorCode.BAD_REQUEST, "duplicate request (already executed)")
                self._send(envelope + body)
                return
        self._run_handler(envelope, request, received, key)

    def _operation_reply(self, request: Request, received: float) -> list[Any]:
        """Answer OP_START, OP_POLL, OP_CANCEL or OP_LIST (see :mod:`labwire.wire.rpc`)."""
        event = request.event
        if event == ExtensionEvents.OP_LIST:
            return self._reply(request, {"ops": [op.info() for op in self._operations.list()]})
        if event == ExtensionEvents.OP_START:
            spec = self._operation_specs.get(request.name)
            if spec is None:
                self._check_target(Request(RPCEvents.METHOD_CALL, request.name))
                raise _Failure(ErrorCode.BAD_REQUEST, f"{request.name!r} is not an operation")
            deadline = None if request.value is None else float(request.value) / 1000.0
            operation = self._operations.start(
                self, request.name, spec, (request.args, request.kwargs), deadline, self.port
            )
            return self._reply(request, {"op": operation.info()})
        try:
            operation = self._operations.get(request.name)
        except NotFound as exc:
            raise _Failure(ErrorCode.NOT_FOUND, exc.remote_message, "OperationLost") from None
        if event == ExtensionEvents.OP_CANCEL:
            operation.cancel(request.value or "cancelled by a client")
            return self._reply(request, {"op": operation.info()})
        info = operation.info()  # before the updates: an ended operation has them all
        fields = {"op": info, "updates": operation.updates_after(request.value or 0)}
        payload = {"result": operation.result} if info["state"] == "succeeded" else None
        return self._reply(request, fields, payload=payload)

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
            raise _Failure(ErrorCode.DENIED, f"{operation} is restricted to admin keys")

    def _check_target(self, request: Request) -> None:
        name = request.name
        if request.event == ExtensionEvents.GET_PROPERTIES:
            return
        if is_private_name(name):
            raise _Failure(ErrorCode.NOT_FOUND, f"{name!r} is private and cannot be reached")
        if request.event == RPCEvents.METHOD_CALL:
            if name not in self._methods:
                # The deployed wording first: deployed clients look for "not implemented".
                message = f"method {name!r} not implemented: no method named {name!r}"
                raise _Failure(ErrorCode.NOT_FOUND, message)
        elif name not in self._rpc_properties:
            raise _Failure(ErrorCode.NOT_FOUND, f"no RPC property named {name!r}")
        elif request.event == RPCEvents.PROPERTY_SET and self._rpc_properties[name].fset is None:
            raise _Failure(ErrorCode.BAD_REQUEST, f"property {name!r} is read-only")

    def _remember(self, key: _Key, body: list[Any], now: float) -> None:
        size = len(body[0]) if len(body) == 1 else sum(memoryview(f).nbytes for f in body)
        recent = self._recent
        recent[key] = body if size <= _DEDUP_MAX_BYTES else None
        if len(recent) >= _DEDUP_ENTRIES or now - self._recent_since >= _DEDUP_SECONDS:
            self._retire_replies(now)

    def _retire_replies(self, now: float) -> None:
        """Forget the older generation of replies; the newer becomes the older."""
        self._older, self._recent, self._recent_since = self._recent, {}, now

    # ------------------------------------------------------------------ workers

    def _run_handler(
        self, envelope: list[Any], request: Request, received: float, key: _Key | None
    ) -> None:
        me = threading.get_ident()
        self._jobs[me] = (received, key)  # read by the watchdog
        try:
            frames = self._execute(request)
        except Exception as exc:
            frames = self._failure_frames(request, exc)
        self._finish(me, envelope, frames, key, received)

    def _failure_frames(self, request: Request, exc: Exception) -> list[Any]:
        """The reply to a request whose handler (or its reply's encoding) raised ``exc``."""
        if isinstance(exc, _Failure):
            return self._error_frames(None, request, exc.code, exc)
        trace = "".join(tb.format_exception(exc))
        return self._error_frames(None, request, ErrorCode.REMOTE, exc, type(exc).__name__, trace)

    def _finish(
        self, me: int, envelope: list[Any], frames: list[Any], key: _Key | None, received: float
    ) -> None:
        """Send a handler's reply, or queue it for the leader if the socket was handed over."""
        self._jobs[me] = None
        # The watchdog reads the clock before it reads a start time, and takes the socket
        # only from a handler that started _TAKEOVER_SECONDS before: a handler that ended
        # sooner, as this clock reading after the store above shows, still holds it.
        if time.monotonic() - received < _TAKEOVER_SECONDS:
            still_leader = True
        else:
            with self._lead_lock:
                still_leader = self._leader == me
        if still_leader:
            if not self._socket.send(envelope + frames, nowait=True):  # _send(), written out
                self.stats.unroutable += 1
            if key is not None:
                self._remember(key, frames, received)
        elif not self._dead:
            self._replies.put((key, envelope, frames))
            self._wake()

    def _execute(self, request: Request) -> list[Any]:
        event = request.event
        if event == _METHOD_CALL:
            function = getattr(self, request.name)
            args, kwargs = request.args, request.kwargs
            spec = self._operation_specs.get(request.name) if self._operation_specs else None
            if spec is not None:
                value = self._plain_operation(request, spec)
            elif self._call_lock is None:
                value = function(*args, **kwargs) if kwargs else function(*args)
            else:
                with self._call_lock:
                    value = function(*args, **kwargs)
            if request.name in self._buffer_methods:
                return self._buffer_reply(request, value)
            key = "result"
        elif event == _PROPERTY_GET:
            value = getattr(self, request.name)
            key = "value"
        elif event == _PROPERTY_SET:
            with self._call_lock or contextlib.nullcontext():
                setattr(self, request.name, request.value)
            return self._reply(request, {})
        else:
            values = {name: getattr(self, name) for name in self._rpc_properties}
            return self._reply(request, {}, payload={"values": values})
        # A success carrying one value: to a labwire client, one scalar is one compact frame.
        if request.version is not None:
            frame = encode_plain_reply(request.request_id, self._server_id, value)
            if frame is not None:
                return [frame]
        return self._reply(request, {}, payload={key: value})

    def _plain_operation(self, request: Request, spec: OperationSpec) -> Any:
        """Run an operation called plainly; it is cancelled once the caller stops waiting."""
        if request.expiry is not None and request.server_id == self._server_id:
            deadline: float | None = max(0.0, request.expiry - time.monotonic())
        elif request.ttl_ms is not None:
            deadline = request.ttl_ms / 1000.0
        else:
            deadline = None
        call = (request.args, request.kwargs)
        with self._call_lock or contextlib.nullcontext():
            return self._operations.call(self, request.name, spec, call, deadline, self.port)

    def _buffer_reply(self, request: Request, result: Any) -> list[Any]:
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise _Failure(
                ErrorCode.REMOTE,
                f"buffer method {request.name!r} must return (buffer, dict), "
                f"got {type(result).__name__}",
                "TypeError",
            )
        buffer, info = result
        if request.is_labwire:
            if isinstance(buffer, (bytes, bytearray)):
                buffer = memoryview(buffer)
            try:  # what _reply() writes for this payload, with less glue
                return encode_buffer_reply(request, self._server_id, buffer, info)
            except TypeError as exc:
                raise _Failure(
                    ErrorCode.REMOTE, f"result cannot be sent: {exc}", "TypeError"
                ) from None
        try:
            return [encode_json(info), memoryview(buffer)]
        except TypeError as exc:
            raise _Failure(ErrorCode.REMOTE, f"buffer method result: {exc}", "TypeError") from None

    # ------------------------------------------------------------------ replies

    def _reply(
        self,
        request: Request,
        fields: dict[str, Any],
        payload: dict[str, Any] | None = None,
        extension: dict[str, Any] | None = None,
    ) -> list[Any]:
        header: dict[str, Any] = {"success": True, **fields}
        if request.is_labwire:
            header["lw"] = reply_extension(request, self._server_id, **(extension or {}))
        try:
            return encode_frames(header, payload)
        except TypeError as exc:
            raise _Failure(ErrorCode.REMOTE, f"result cannot be sent: {exc}", "TypeError") from None

    def _error_frames(
        self,
        header: dict[str, Any] | None,
        request: Request | None,
        code: ErrorCode,
        exc: BaseException,
        error_type: str = "",
        traceback: str = "",
    ) -> list[Any]:
        reply: dict[str, Any] = {"success": False, "error": str(exc), "traceback": traceback}
        labwire = request.is_labwire if request is not None else _claims_labwire(header)
        if labwire:
            rid = request.request_id if request is not None else _claimed_rid(header)
            error_type = error_type or getattr(exc, "error_type", "") or type(exc).__name__
            reply["lw"] = {
                "v": PROTOCOL_VERSION,
                "rid": rid,
                "sid": self._server_id,
                "code": str(code),
                "etype": error_type,
            }
        return [encode_json(reply)]

    def _inventory(self) -> dict[str, Any]:
        return {
            "json_methods": {n: m.timeout_ms for n, m in self._methods.items() if m.kind == "json"},
            "buffer_methods": {
                n: m.timeout_ms for n, m in self._methods.items() if m.kind == "buffer"
            },
            "signals": list(self._signals),
            "properties": list(self._rpc_properties),
            "name": self.name or "",
        }

    def _inventory_details(self) -> dict[str, Any]:
        return {
            "now": time.monotonic(),
            "peer_address": self.peer_addr or "",
            "own_address": self.advertised_endpoint(),
            "signal_endpoint": self.signal_endpoint,
            "labwire_version": _LABWIRE_VERSION,
            "methods": {
                n: {"signature": m.signature, "doc": m.doc} for n, m in self._methods.items()
            },
            "signal_types": {
                n: [getattr(t, "__name__", str(t)) for t in s.arg_types]
                for n, s in self._signals.items()
            },
            "property_docs": {
                n: (p.__doc__ or "").strip().split("\n\n", 1)[0]
                for n, p in self._rpc_properties.items()
            },
            "writable": [n for n, p in self._rpc_properties.items() if p.fset is not None],
            "operations": {
                n: {"timeout": s.timeout_ms, "on_disconnect": s.on_disconnect}
                for n, s in self._operation_specs.items()
            },
        }

    # ------------------------------------------------------------------ signals

    def _read_subscriptions(self) -> None:
        """Read what subscribers sent the publishers, keeping the tokens of probes."""
        with self._pub_lock:
            for publisher in (self._signal_socket, self._broker_socket):
                if publisher is None:
                    continue
                for subscription in publisher.recv_frames_nowait(_SUBSCRIPTIONS_AT_ONCE):
                    token = probe_token(subscription)
                    if token is not None:
                        self._probes[token] = None
                        if len(self._probes) > _PROBES_KEPT:
                            del self._probes[next(iter(self._probes))]

    def _publish(self, name: str, args: tuple[Any, ...]) -> None:
        with self._pub_lock:
            if self._signal_socket is None:
                return
            self._seq[name] = seq = self._seq.get(name, 0) + 1
            frame = encode_signal(name, args, self._server_id, seq)
            if not self._signal_socket.send([frame], nowait=True):
                _log.debug("signal %s #%d dropped: publisher queue full", name, seq)
            if self._broker_socket is not None:
                self._broker_socket.send([frame], nowait=True)


def _claims_labwire(header: dict[str, Any] | None) -> bool:
    return isinstance(header, dict) and isinstance(header.get("lw"), dict)


def _claimed_rid(header: dict[str, Any] | None) -> int | None:
    if not _claims_labwire(header):
        return None
    assert header is not None
    rid = header["lw"].get("rid")
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


def _primary_ip() -> str:
    """This host's first non-loopback IPv4 address by name resolution, else loopback."""
    try:
        infos = stdsocket.getaddrinfo(stdsocket.gethostname(), None, stdsocket.AF_INET)
    except OSError:
        return "127.0.0.1"
    for *_, address in infos:
        if not str(address[0]).startswith("127."):
            return str(address[0])
    return "127.0.0.1"
