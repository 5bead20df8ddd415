"""The dashboard's view of a lab: the registry's devices, their inventories, values and signals.

Theory of operation
-------------------
A :class:`Hub` lives in one event loop. It watches the registry with
:class:`~labwire.registry.AsyncRegistryWatch` and keeps one :class:`DeviceSession` per
registered device. A session reads the device's inventory with
:class:`~labwire.rpc.aio.AsyncRPCClient`, connects a slot to each of its signals, and reads
every property once a second (:data:`POLL_INTERVAL`): a device that stops answering is
*unreachable*, one the registry drops is *removed*; both keep their panel, greyed out. A signal
named ``<property>Changed`` (or ``<property>_changed``) updates that property at once.

A device with long-running operations (methods its inventory lists under
``details["operations"]``) also has its operation list read (:meth:`AsyncRPCClient.operations`):
every :data:`OPERATIONS_INTERVAL` while one runs, every :data:`POLL_INTERVAL` otherwise, and at
once after the dashboard starts or cancels one. The page shows the running ones with their
progress and the recently ended ones with how they ended.

Everything the hub learns is published as a JSON-ready dictionary to every subscriber queue
(one per open page). Values from devices are passed through :func:`plain`, so the page receives
JSON whatever a device sends; it shows all of it as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from labwire.config import Settings
from labwire.errors import LabwireError, Unavailable
from labwire.registry import AsyncRegistryClient, DeviceInfo, WatchEventKind
from labwire.rpc import RPCSignal
from labwire.rpc.aio import AsyncRPCClient
from labwire.web.forms import parameters
from labwire.wire.operations import OperationInfo

__all__ = [
    "OPERATIONS_INTERVAL",
    "OPERATIONS_SHOWN",
    "POLL_INTERVAL",
    "DeviceSession",
    "Hub",
    "plain",
]

_log = logging.getLogger(__name__)

#: Seconds between two readings of a device's properties (which also tell whether it answers).
POLL_INTERVAL = 1.0

#: Seconds between two readings of a device's operation list while one of them runs.
OPERATIONS_INTERVAL = 0.2

#: Operations shown per device: the running ones first, then the latest that ended.
OPERATIONS_SHOWN = 8

#: Seconds between two attempts to reach a registry that does not answer.
_REGISTRY_RETRY = 1.0

#: Messages a page may have waiting before it is considered stuck and dropped.
_QUEUE_LIMIT = 1000

Message = dict[str, Any]


def plain(value: Any) -> Any:
    """``value`` as JSON can carry it: containers copied, buffers and odd objects as text.

    Args:
        value: Anything a device sent (decoded message content).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return str(value)


def _same_device(old: DeviceInfo, new: DeviceInfo) -> bool:
    """Whether two registry entries are the same serving device (leases renew, devices stay)."""
    return (old.address, old.device_type, old.incarnation, old.public_key) == (
        new.address,
        new.device_type,
        new.incarnation,
        new.public_key,
    )


def _error(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _operation(info: OperationInfo) -> Message:
    """What the page shows of an operation (odd numbers from a device made JSON-safe)."""
    return {
        "id": info.id,
        "method": info.method,
        "state": str(info.state),
        "fraction": plain(info.fraction),
        "message": info.message,
        "elapsed": plain(round(info.elapsed, 1)),
        "remaining": None if info.remaining is None else plain(round(info.remaining, 0)),
        "error": info.error,
        "cause": info.cause,
    }


class DeviceSession:
    """One registered device as the dashboard follows it.

    Args:
        hub: The hub that publishes what the session learns.
        info: The registry's entry for the device.
    """

    def __init__(self, hub: Hub, info: DeviceInfo) -> None:
        self.hub = hub
        self.info = info
        self.status = "connecting"
        self.error = ""
        self.methods: list[dict[str, Any]] = []
        self.properties: dict[str, dict[str, Any]] = {}
        self.signals: list[str] = []
        self.buffer_methods: set[str] = set()
        self.operation_methods: set[str] = set()
        self.operations: list[dict[str, Any]] = []
        self.client: AsyncRPCClient | None = None
        #: Held around each request through :attr:`client`: one at a time on its socket.
        self.requests = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._operations_task: asyncio.Task[None] | None = None
        self._operations_wake = asyncio.Event()

    @property
    def name(self) -> str:
        """The device's registry name."""
        return self.info.name

    def describe(self) -> Message:
        """The whole panel of this device, as the page draws it."""
        return {
            "type": "device",
            "name": self.name,
            "device_type": self.info.device_type,
            "address": self.info.address,
            "status": self.status,
            "error": self.error,
            "methods": self.methods,
            "properties": [{"name": name, **entry} for name, entry in self.properties.items()],
            "signals": self.signals,
            "operations": self.operations if self.operation_methods else None,
        }

    def start(self) -> None:
        """Connect and follow the device in the background."""
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        """Stop following the device and close its client."""
        tasks = [self._task, self._operations_task]
        self._task = self._operations_task = None
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    def _set_status(self, status: str, error: str = "") -> None:
        if (status, error) != (self.status, self.error):
            self.status, self.error = status, error
            self.hub.publish(
                {"type": "status", "name": self.name, "status": status, "error": error}
            )

    def mark_removed(self, reason: str) -> None:
        """Show the device as removed from the registry (its panel greys out)."""
        self._set_status("removed", f"removed from the registry ({reason})")

    async def _follow(self) -> None:
        while self.client is None:
            try:
                self.client = await self._connect()
            except LabwireError as exc:
                self._set_status("unreachable", _error(exc))
                await asyncio.sleep(POLL_INTERVAL)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                self._set_status("unreachable", f"unreadable inventory: {_error(exc)}")
                await asyncio.sleep(POLL_INTERVAL)
        self.status = "up"
        self.hub.publish(self.describe())
        if self.operation_methods and self.client.is_labwire_server:
            loop = asyncio.get_running_loop()
            self._operations_task = loop.create_task(self._watch_operations())
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            await self._poll()

    async def _connect(self) -> AsyncRPCClient:
        settings = self.hub.settings
        key = self.info.public_key or None
        timeout = max(1, int(self.hub.timeout * 1000))
        address = self.info.address
        probe = AsyncRPCClient(None, address, timeout, settings=settings, server_key=key)
        try:
            await probe.refresh_inventory(connect_wait=True)
            inventory = probe.inventory()
            values = await probe.get_properties()
        finally:
            await probe.aclose()
        self._read_inventory(inventory, values)
        taken = set(vars(probe))  # a signal may not shadow what a client holds
        usable = [
            name
            for name in self.signals
            if name.isidentifier() and not hasattr(AsyncRPCClient, name) and name not in taken
        ]
        client_class = type("DashboardClient", (AsyncRPCClient,), {n: RPCSignal() for n in usable})
        client: AsyncRPCClient = client_class(
            None, address, timeout, settings=settings, server_key=key, raise_errors=True
        )
        try:
            await client.refresh_inventory(connect_wait=True)
            for name in usable:
                signal: RPCSignal = getattr(client, name)
                signal.connect(self._slot(name))
        except BaseException:
            await client.aclose()
            raise
        return client

    def _read_inventory(self, inventory: dict[str, Any], values: dict[str, Any]) -> None:
        details = inventory.get("details") or {}
        method_details = details.get("methods") or {}
        writable = set(details.get("writable") or [])
        docs = details.get("property_docs") or {}
        self.buffer_methods = set(inventory["buffer_methods"])
        self.operation_methods = set(details.get("operations") or {})
        self.methods = []
        for name in [*inventory["json_methods"], *inventory["buffer_methods"]]:
            about = method_details.get(name) or {}
            signature = str(about.get("signature") or "")
            self.methods.append(
                {
                    "name": name,
                    "signature": signature,
                    "doc": str(about.get("doc") or ""),
                    "buffer": name in self.buffer_methods,
                    "operation": name in self.operation_methods,
                    "params": parameters(signature) if signature else None,
                }
            )
        self.properties = {
            name: {
                "doc": str(docs.get(name) or ""),
                "writable": name in writable,
                "value": plain(values.get(name)),
            }
            for name in inventory["properties"]
        }
        self.signals = list(inventory["signals"])

    def _slot(self, signal: str) -> Callable[..., None]:
        changed = None
        for suffix in ("Changed", "_changed"):
            stem = signal.removesuffix(suffix)
            if stem != signal and stem in self.properties:
                changed = stem

        def slot(*args: Any) -> None:
            values = plain(list(args))
            self.hub.publish(
                {
                    "type": "signal",
                    "name": self.name,
                    "signal": signal,
                    "args": values,
                    "time": time.time(),
                }
            )
            if changed is not None and values:
                self._update(changed, values[0])

        return slot

    def _update(self, name: str, value: Any) -> None:
        entry = self.properties.get(name)
        if entry is not None and entry["value"] != value:
            entry["value"] = value
            self.hub.publish(
                {"type": "property", "name": self.name, "property": name, "value": value}
            )

    async def operations_client(self) -> AsyncRPCClient:
        """A client of the device of its own, with its inventory read (the caller closes it).

        Operation requests each go through one: a started operation's frequent polls never
        share a socket with the panel's reads.
        """
        timeout = max(1, int(self.hub.timeout * 1000))
        key = self.info.public_key or None
        client = AsyncRPCClient(
            None, self.info.address, timeout, settings=self.hub.settings, server_key=key
        )
        try:
            await client.refresh_inventory()
        except BaseException:
            await client.aclose()
            raise
        return client

    def operations_changed(self) -> None:
        """Read the operation list now (the dashboard started or cancelled one)."""
        self._operations_wake.set()

    async def _watch_operations(self) -> None:
        client: AsyncRPCClient | None = None
        try:
            while True:
                if client is None:
                    try:
                        client = await self.operations_client()
                    except LabwireError:
                        await asyncio.sleep(POLL_INTERVAL)
                        continue
                await self._read_operations(client)
        finally:
            if client is not None:
                await client.aclose()

    async def _read_operations(self, client: AsyncRPCClient) -> None:
        """Read the operation list once, publish it if it changed, and wait for the next time."""
        busy = False
        self._operations_wake.clear()
        try:
            listed = await client.operations()
        except LabwireError:  # the property poll tells whether the device answers
            listed = None
        if listed is not None:
            running = [info for info in listed if not info.ended]
            ended = sorted((info for info in listed if info.ended), key=lambda info: -info.started)
            busy = bool(running)
            shown = [_operation(info) for info in [*running, *ended][:OPERATIONS_SHOWN]]
            if shown != self.operations:
                self.operations = shown
                self.hub.publish({"type": "operations", "name": self.name, "operations": shown})
        with contextlib.suppress(TimeoutError):
            interval = OPERATIONS_INTERVAL if busy else POLL_INTERVAL
            await asyncio.wait_for(self._operations_wake.wait(), interval)

    async def _poll(self) -> None:
        client = self.client
        assert client is not None
        try:
            async with self.requests:
                values = await client.get_properties()
        except LabwireError as exc:
            self._set_status("unreachable", _error(exc))
            return
        self._set_status("up")
        for name, value in values.items():
            self._update(name, plain(value))


class Hub:
    """Follows a registry and its devices; publishes every change to the open pages.

    Args:
        registry_url: The registry to follow.
        settings: labwire settings (security, limits) for every client.
        timeout: Seconds a registry query, a property read or write may take (method calls
            have the deadlines their devices declare).
    """

    def __init__(self, registry_url: str, settings: Settings, timeout: float = 2.0) -> None:
        self.registry_url = registry_url
        self.settings = settings
        self.timeout = timeout
        self.devices: dict[str, DeviceSession] = {}
        self.registry_status = "connecting"
        self.registry_error = ""
        self._subscribers: set[asyncio.Queue[Message | None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following the registry (in the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        """Stop following the registry and every device; tell the pages to stop listening."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session in list(self.devices.values()):
            await session.close()
        self.devices.clear()
        for queue in list(self._subscribers):
            self._offer(queue, None)

    # -------------------------------------------------------------- subscribers

    def subscribe(self) -> asyncio.Queue[Message | None]:
        """A queue receiving the current state and then every change (None: the end)."""
        queue: asyncio.Queue[Message | None] = asyncio.Queue(_QUEUE_LIMIT)
        self._offer(queue, self._registry_message())
        for session in self.devices.values():
            self._offer(queue, session.describe())
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Message | None]) -> None:
        """Stop sending to ``queue``."""
        self._subscribers.discard(queue)

    def publish(self, message: Message) -> None:
        """Send ``message`` to every page."""
        for queue in list(self._subscribers):
            self._offer(queue, message)

    def _offer(self, queue: asyncio.Queue[Message | None], message: Message | None) -> None:
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:
            _log.warning("a dashboard page fell %d messages behind; dropping it", _QUEUE_LIMIT)
            self._subscribers.discard(queue)
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            queue.put_nowait(None)

    # -------------------------------------------------------------- the registry

    def _registry_message(self) -> Message:
        return {
            "type": "registry",
            "url": self.registry_url,
            "status": self.registry_status,
            "error": self.registry_error,
        }

    def _set_registry(self, status: str, error: str = "") -> None:
        if (status, error) != (self.registry_status, self.registry_error):
            self.registry_status, self.registry_error = status, error
            self.publish(self._registry_message())

    async def _watch(self) -> None:
        client = AsyncRegistryClient(
            self.registry_url, settings=self.settings, timeout=self.timeout
        )
        try:
            while True:
                try:
                    watch = await client.watch()
                except LabwireError as exc:
                    self._set_registry("unreachable", _error(exc))
                    await asyncio.sleep(_REGISTRY_RETRY)
                    continue
                try:
                    async for event in watch:
                        await self._on_event(event.kind, event.device, event.devices, event.reason)
                finally:
                    watch.close()
        finally:
            client.close()

    async def _on_event(
        self,
        kind: WatchEventKind,
        device: DeviceInfo | None,
        devices: tuple[DeviceInfo, ...],
        reason: str,
    ) -> None:
        if kind == WatchEventKind.LOST:
            self._set_registry("lost", "the registry stopped answering")
            return
        self._set_registry("live")
        if kind == WatchEventKind.SNAPSHOT:
            listed = {info.name: info for info in devices}
            for name, session in list(self.devices.items()):
                if name not in listed and session.status != "removed":
                    await self._remove(name, "no longer registered")
            for info in devices:
                await self._add(info)
        elif kind == WatchEventKind.ADDED and device is not None:
            await self._add(device)
        elif kind == WatchEventKind.REMOVED and device is not None:
            await self._remove(device.name, reason or "unregistered")

    async def _add(self, info: DeviceInfo) -> None:
        session = self.devices.get(info.name)
        if session is not None:
            if _same_device(session.info, info) and session.status != "removed":
                return
            await session.close()
        session = DeviceSession(self, info)
        self.devices[info.name] = session
        self.publish(session.describe())
        session.start()

    async def _remove(self, name: str, reason: str) -> None:
        session = self.devices.get(name)
        if session is None:
            return
        await session.close()
        session.mark_removed(reason)

    # -------------------------------------------------------------- actions from a page

    def session(self, name: str) -> DeviceSession:
        """The session of the device ``name``.

        Raises:
            Unavailable: No such device, or it is not connected.
        """
        session = self.devices.get(name)
        if session is None or session.client is None:
            raise Unavailable(f"device {name!r} is not connected")
        return session
