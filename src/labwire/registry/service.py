"""The registry service: a thread that grants leases, expires them, and publishes changes.

Theory of operation
-------------------
One thread owns three sockets:

* a ROUTER on ``tcp://addr:port`` for requests. Deployed devices talk to it with REQ sockets
  and labwire peers with DEALER sockets; both send the REQ envelope (identity, empty
  delimiter, one JSON frame), and the reply goes back with the same envelope. A ROUTER never
  blocks on a slow or vanished peer, so one bad client cannot stall the registry;
* an XPUB on ``tcp://addr:<any port>`` that publishes DEVICE_ADDED/DEVICE_REMOVED events and a
  HEARTBEAT every ``heartbeat_interval`` seconds. XPUB also tells us when a watcher
  subscribes: we answer with an immediate heartbeat, so a watcher knows its subscription is
  live before it asks for a snapshot, and misses nothing between the two;
* an inproc PAIR (a :class:`~labwire.registration.channel.Waker`) that
  :meth:`DeviceRegistry.stop` uses to wake the loop.

The loop sleeps in ``poll`` until a message arrives, the next lease expires, or the next
heartbeat is due. All lease logic is the sans-IO :class:`~labwire.wire.registry.LeaseTable`,
fed with ``time.monotonic()`` so wall-clock jumps change nothing. The table is guarded by a
lock only so that :meth:`DeviceRegistry.get_devices` can read it from other threads; user
callbacks never run under that lock, nor in the service thread: a dispatcher thread calls them
in order, logs any exception and goes on, so a slow or failing callback cannot delay renewals.

Security
--------
With ``Settings.security`` set, both TCP sockets are CurveZMQ servers: only clients in the
allow-list can register, renew, list or watch. Every request is read with the authenticated
key of its sender (:meth:`~labwire.transport.Socket.peer_key`); a lease records the key that
registered it. A REGISTER with ``overwrite=True`` that would take a name from a lease of
another key is granted only to admin keys (:meth:`~labwire.transport.security.Security.is_admin`);
otherwise the registry answers ``{"event": "ACK", "payload": {"req_event": "REGISTER",
"success": false, "reason": "permission denied: overwriting a name needs an admin key"}}``
(:data:`~labwire.wire.registry.REGISTER_DENIED`), which deployed devices treat as a failed
registration and :func:`~labwire.registry.register_device` recognises, and logs a warning
naming the client key. A device may always take back a name its own key holds (a restart).
Devices that run with security publish their server's public key in REGISTER; it is stored in
the lease and shown in listings and events, so clients learn device keys from the registry.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import uuid as uuid_module
from collections.abc import Callable
from typing import Any, Self

from labwire.config import Settings
from labwire.errors import LimitExceeded, PermissionDenied
from labwire.registration import Waker
from labwire.transport import Context, Poller, Socket, SocketType, Transport, parse_endpoint
from labwire.wire.registry import (
    ALIVE_TIMEOUT,
    REGISTER_DENIED,
    Ack,
    Change,
    ChangeKind,
    CheckAliveRequest,
    DeviceInfo,
    DeviceListing,
    EventType,
    LeaseTable,
    ListDevicesRequest,
    RegisterAck,
    RegisterRequest,
    RegistryHeartbeat,
    RegistryReply,
    RegistryRequest,
    RemovalReason,
    RenewResult,
    RequestMeta,
    RequestRejected,
    Unsupported,
    decode_request,
    encode_event,
    encode_reply,
)

__all__ = ["DeviceCallback", "DeviceRegistry"]

_log = logging.getLogger(__name__)

#: ``callback(name, device_type, address)``, called when a device is added or removed.
DeviceCallback = Callable[[str, str, str], object]

_STOP_TIMEOUT = 1.0


def _bind_url(addr: str, port: str | int) -> str:
    host = f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr
    return f"tcp://{host}:{port}"


class DeviceRegistry(threading.Thread):
    """A device registry running in its own thread.

    Devices register under a name and renew their lease with CHECK_ALIVE; a device that stops
    renewing is removed after its alive timeout. Callbacks fire when devices are added or
    removed, and every change is published for remote watchers
    (:class:`~labwire.registry.RegistryClient`). Deployed devices and labwire devices can
    register alike (see ``WIRE-COMPAT.md``).

    The sockets are bound when the object is created, so a busy port fails here and
    ``port='0'`` is resolved at once. Call :meth:`start` (or use it as a context manager) to
    serve, :meth:`stop` to end; :meth:`stop` returns within about a second.

    Args:
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        addr: Interface to bind (``'*'``: all of them).
        port: Port to listen on (``'0'``: any free port; see :attr:`port` afterwards).
        settings: Transport settings (timeouts, limits) when ``context`` is not a Transport.
        heartbeat_interval: Seconds between heartbeats on the event publisher.
        default_alive_timeout: Lease length for registrations that do not ask for one.
        max_devices: Most devices at once; further registrations are refused.

    Attributes:
        addr: Interface the registry is bound to.
        port: The TCP port it listens on, as a string (the real one when ``'0'`` was asked).
        context: The ZeroMQ context of its sockets.
        endpoint: The bound request endpoint, e.g. ``tcp://0.0.0.0:5555``.
        url: An endpoint clients on this host can connect to, e.g. ``tcp://127.0.0.1:5555``.
        event_endpoint: The bound event publisher endpoint.
        event_port: The event publisher's TCP port (reported to clients in listings).
        registry_id: This registry incarnation's id; changes on every restart.
        rejected_requests: Requests answered with UNSUPPORTED so far.
    """

    def __init__(
        self,
        context: Context[Any] | Transport | None = None,
        addr: str = "*",
        port: str = "5555",
        *,
        settings: Settings | None = None,
        heartbeat_interval: float = 1.0,
        default_alive_timeout: float = ALIVE_TIMEOUT,
        max_devices: int = 100_000,
    ) -> None:
        super().__init__(name="labwire-registry", daemon=True)
        self.transport = context if isinstance(context, Transport) else Transport(context, settings)
        self.context = self.transport.context
        if not heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be positive")
        self.heartbeat_interval = float(heartbeat_interval)
        self.addr = addr
        self.registry_id = uuid_module.uuid4().hex[:16]
        self.rejected_requests = 0
        self._table = LeaseTable(
            default_alive_timeout=default_alive_timeout, max_devices=max_devices
        )
        self._table_lock = threading.Lock()
        self._new_device_callbacks: tuple[DeviceCallback, ...] = ()
        self._device_removed_callbacks: tuple[DeviceCallback, ...] = ()
        self._callback_queue: queue.SimpleQueue[tuple[ChangeKind, DeviceInfo] | None] = (
            queue.SimpleQueue()
        )
        self._stop_flag = False
        self._serving = threading.Event()
        self._finished = threading.Event()

        self._router = self.transport.bind(SocketType.ROUTER, _bind_url(addr, port))
        sockets: list[Socket] = [self._router]
        try:
            self._publisher = self.transport.bind(
                SocketType.XPUB, _bind_url(addr, 0), xpub_verbose=1, sndhwm=100_000
            )
            sockets.append(self._publisher)
            self._waker = Waker(self.transport)
        except BaseException:
            for socket in sockets:
                socket.close(linger_ms=0)
            raise
        self.endpoint = self._router.endpoint
        self.port = str(self._router.port)
        self.event_endpoint = self._publisher.endpoint
        self.event_port = self._publisher.port
        bound = parse_endpoint(self.endpoint, for_bind=True)
        host = "127.0.0.1" if bound.is_wildcard else bound.host
        self.url = str(bound.with_host(host))

    # ----------------------------------------------------------------- seed API

    def run(self) -> None:
        """Serve requests until :meth:`stop` is called.

        Registers, renews and unregisters devices, expires leases that were not renewed,
        publishes every change and fires the callbacks (from a dispatcher thread).
        """
        if self._finished.is_set() or self._serving.is_set():
            return
        self._serving.set()
        dispatcher = threading.Thread(
            target=self._dispatch_callbacks, name="labwire-registry-callbacks", daemon=True
        )
        dispatcher.start()
        _log.info("registry %s serving on %s", self.registry_id, self.endpoint)
        try:
            self._serve()
        except Exception:
            _log.exception("registry loop failed")
        finally:
            self._close_sockets()
            self._callback_queue.put(None)
            dispatcher.join(_STOP_TIMEOUT)
            self._finished.set()
            _log.info("registry %s stopped", self.registry_id)

    def stop(self) -> None:
        """Stop the registry: the loop ends, sockets close, threads are joined (within ~1 s)."""
        self._stop_flag = True
        self._waker.wake()
        if self._serving.is_set() or self.ident is not None:
            if threading.current_thread() is not self:
                self._finished.wait(_STOP_TIMEOUT)
                if self.is_alive():
                    self.join(_STOP_TIMEOUT)
        else:
            self._close_sockets()
            self._finished.set()
        if self._finished.is_set():
            self._waker.close()

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def get_devices(self) -> dict[str, tuple[str, str]]:
        """Return the registered devices.

        Returns:
            A new dict (a snapshot; changing it changes nothing in the registry) mapping each
            device name to ``(device_type, address)``.
        """
        with self._table_lock:
            return self._table.addresses()

    @property
    def devices(self) -> dict[str, tuple[str, str]]:
        """The registered devices, ``{name: (device_type, address)}`` (a snapshot copy)."""
        return self.get_devices()

    def list_devices(self, device_type: str | None = None) -> list[DeviceInfo]:
        """Full records of the registered devices (wall-clock times), sorted by name.

        Args:
            device_type: Only devices of this type, when given.
        """
        offset = time.time() - time.monotonic()
        with self._table_lock:
            return self._table.devices(device_type, offset)

    def add_new_device_callback(self, callback: DeviceCallback) -> None:
        """Register a callback function to be executed when a new device is registered.

        The callback is called as ``callback(name, device_type, address)`` from the
        registry's dispatcher thread, one change at a time and in order; an exception it
        raises is logged and does not stop the registry or other callbacks.
        """
        self._new_device_callbacks = (*self._new_device_callbacks, callback)

    def add_device_removed_callback(self, callback: DeviceCallback) -> None:
        """Register a callback function to be executed when a device is removed.

        Called as ``callback(name, device_type, address)`` when a device unregisters, its
        lease expires, or another registration takes its name over; see
        :meth:`add_new_device_callback` for how callbacks run.
        """
        self._device_removed_callbacks = (*self._device_removed_callbacks, callback)

    def __enter__(self) -> Self:
        if not self._serving.is_set() and not self.is_alive():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- the loop

    def _serve(self) -> None:
        router, publisher, wake = self._router, self._publisher, self._waker.socket
        table = self._table  # this thread is its only writer: it reads without the lock
        poller = Poller()
        for socket in (router, publisher, wake):
            poller.register(socket)
        next_heartbeat = time.monotonic()
        heartbeat_now = False
        while not self._stop_flag:
            expiry = table.next_expiry()
            wake_at = next_heartbeat if expiry is None else min(next_heartbeat, expiry)
            wait_ms = max(0, math.ceil((wake_at - time.monotonic()) * 1000))
            ready = poller.poll(wait_ms)
            if ready:
                if router in ready:
                    self._handle_request()
                if publisher in ready:
                    heartbeat_now = self._drain_subscriptions() or heartbeat_now
                if wake in ready:
                    self._waker.drain()
            now = time.monotonic()
            if expiry is not None and now >= expiry:
                with self._table_lock:
                    table.expire(now)
            if table.has_changes:
                with self._table_lock:
                    changes = table.pop_changes()
                self._publish_changes(changes)
            if heartbeat_now or now >= next_heartbeat:
                heartbeat = RegistryHeartbeat(self.registry_id, table.seq, self.heartbeat_interval)
                publisher.send([encode_event(heartbeat)], nowait=True)
                next_heartbeat = now + self.heartbeat_interval
                heartbeat_now = False

    def _handle_request(self) -> None:
        # One message per wake-up: the loop's poll finds the next one, which costs less than
        # draining until a receive fails (a raised zmq.Again per batch).
        if self.transport.security is None:
            frames = self._router.recv(0)
            if frames is not None:
                self._handle(frames)
            return
        raw = self._router.recv_frames(0)
        if raw is not None:
            self._handle([frame.buffer for frame in raw], Socket.peer_key(raw[-1]))

    def _handle(self, frames: list[memoryview], peer_key: str | None = None) -> None:
        if len(frames) == 3 and frames[1].nbytes == 0:  # the usual REQ envelope
            envelope, body = frames[:2], frames[2:]
        else:
            split = next((i for i in range(1, len(frames)) if frames[i].nbytes == 0), None)
            if split is None:  # a DEALER that did not send the REQ envelope
                envelope, body = frames[:1], frames[1:]
            else:
                envelope, body = frames[: split + 1], frames[split + 1 :]
        meta: RequestMeta | None = None
        reply: RegistryReply
        if len(body) != 1:
            reply = Unsupported(None, f"a registry request is one JSON frame, got {len(body)}")
        else:
            try:
                request, meta = decode_request(body[0], self.transport.settings.limits)
            except RequestRejected as exc:
                meta = exc.meta
                reply = Unsupported(exc.req_event, str(exc))
            else:
                reply = self._apply(request, peer_key)
        if isinstance(reply, Unsupported):
            self.rejected_requests += 1
            _log.info("rejected a registry request: %s", reply.error or reply.req_event)
        try:
            data = encode_reply(reply, meta)
        except TypeError:  # cannot happen with validated fields; never kill the loop for it
            _log.exception("cannot encode registry reply %r", reply)
            return
        self._router.send([*envelope, data], nowait=True)

    def _apply(self, request: RegistryRequest, peer_key: str | None) -> RegistryReply:
        now = time.monotonic()
        if isinstance(request, ListDevicesRequest):
            return self._listing(request)
        if isinstance(request, CheckAliveRequest):
            with self._table_lock:
                result = self._table.renew(now, request.uuid, request.alive_timeout)
            if result is RenewResult.OK:
                return Ack(EventType.CHECK_ALIVE, True)
            return Ack(EventType.CHECK_ALIVE, False, result.value)
        if isinstance(request, RegisterRequest):
            security = self.transport.security
            may_take_over = security is None or security.is_admin(peer_key)
            try:
                with self._table_lock:
                    granted = self._table.register(
                        now, request, owner=peer_key or "", may_take_over=may_take_over
                    )
            except LimitExceeded as exc:
                return Unsupported(EventType.REGISTER, str(exc))
            except PermissionDenied:
                _log.warning(
                    "refused to let client key %s take the name %r over (%s at %s): "
                    "overwriting a name held by another key needs an admin key",
                    peer_key,
                    request.name,
                    request.device_type,
                    request.addr,
                )
                return Ack(EventType.REGISTER, False, REGISTER_DENIED)
            return RegisterAck(granted.name, granted.uuid)
        with self._table_lock:
            removed = self._table.unregister(now, request.uuid)
        return Ack(EventType.UNREGISTER, removed, "" if removed else RenewResult.UNKNOWN)

    def _listing(self, request: ListDevicesRequest) -> DeviceListing:
        now = time.monotonic()
        offset = time.time() - now
        table = self._table  # read in the service thread, its only writer: no lock needed
        expiry = table.next_expiry()
        if expiry is not None and expiry <= now:  # never list a lease that has run out
            with self._table_lock:
                table.expire(now)
        if request.name is not None:
            found = table.get(request.name, offset)
            devices = [] if found is None else [found]
            if request.device_type is not None:
                devices = [d for d in devices if d.device_type == request.device_type]
        else:
            devices = table.devices(request.device_type, offset)
        return DeviceListing(
            tuple(devices), self.registry_id, table.seq, self.event_port, self.heartbeat_interval
        )

    def _drain_subscriptions(self) -> bool:
        subscribed = False
        while (frames := self._publisher.recv(0)) is not None:
            if frames and frames[0].nbytes and frames[0][0] == 1:
                subscribed = True
        return subscribed

    def _publish_changes(self, changes: list[Change]) -> None:
        offset = time.time() - time.monotonic()
        for change in changes:
            event = change.event(self.registry_id, offset)
            self._publisher.send([encode_event(event)], nowait=True)
            device = change.device
            if change.kind == ChangeKind.ADDED:
                _log.info(
                    "device %r (%s) registered at %s",
                    device.name,
                    device.device_type,
                    device.address,
                )
            elif change.reason == RemovalReason.REPLACED:
                _log.warning(
                    "device %r at %s was replaced by a new registration of the same name",
                    device.name,
                    device.address,
                )
            else:
                _log.info("device %r removed (%s)", device.name, change.reason)
            self._callback_queue.put((change.kind, event.device))

    def _dispatch_callbacks(self) -> None:
        while (item := self._callback_queue.get()) is not None:
            kind, device = item
            callbacks = (
                self._new_device_callbacks
                if kind == ChangeKind.ADDED
                else self._device_removed_callbacks
            )
            for callback in callbacks:
                try:
                    callback(device.name, device.device_type, device.address)
                except Exception:
                    _log.exception("registry %s callback %r failed", kind.value, callback)

    def _close_sockets(self) -> None:
        self._router.close()
        self._publisher.close()
