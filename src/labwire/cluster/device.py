"""Message passing for the peer cluster: the :class:`Device` most programs use.

A device is a named :class:`~labwire.cluster.member.Member` of a group, plus the conveniences
of a robot program: callbacks by event pattern, request handlers, background tasks and
fixed-rate loops, and a storage dict shared by all of them.

Where it runs: a device created inside a running event loop (in a coroutine) lives on that
loop; otherwise on ``context`` (default :meth:`Context.instance`, a background thread running
an event loop), so a plain synchronous program can ``start()`` a device and ``wait()``.
Callbacks, handlers and tasks run on the device's loop; from another thread, call its
coroutines with ``asyncio.run_coroutine_threadsafe(device.publish(...), device.loop)``.

Callbacks: ``@device.on('gps/position')`` (or ``'*/position'``, any glob pattern over
``sender/topic``) receives the events other devices publish; ``@device.on('command')`` (no
``/``) receives what other devices :meth:`~Device.send` to this device's ``command`` endpoint.
Both are called the same way, ``callback(event, data)``, where ``event`` is
``'sender/topic'`` (or ``'sender/endpoint'``), as functions or coroutines. A device does not
receive its own events unless created with ``receive_own=True``. A callback that raises is
logged and the device goes on.

Names: one name per live device in a group; see :mod:`labwire.cluster.member` for what
happens when two devices claim one name.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from labwire.cluster.looper import Context, Looper, running_loop
from labwire.cluster.member import BEACON_INTERVAL, DISCOVERY, TIMEOUT, Member
from labwire.cluster.peers import Peer
from labwire.cluster.util import as_coroutine, next_tick, seconds_of
from labwire.config import Settings
from labwire.wire.cluster import check_name
from labwire.wire.cluster import group_to_port as _group_to_port

__all__ = ["AttributeDict", "Context", "Device", "group_to_port"]

_log = logging.getLogger("labwire.cluster")

F = TypeVar("F", bound=Callable[..., Any])

#: The network a device searches when none is given: every local IPv4 network.
DEFAULT_NETWORK = "0.0.0.0/0"


class AttributeDict(dict[str, Any]):
    """A dictionary whose entries can also be read and written as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


def group_to_port(group: str) -> int:
    """The UDP port of a group (the same on every host; see :mod:`labwire.wire.cluster`)."""
    return _group_to_port(check_name(group, "group name"))


class Device(Looper):
    """A device on the peer cluster.

    Args:
        name: A name to identify the device by (1-64 printable characters, no ``/``).
        group: The group; devices talk to the devices of their group only.
        network: The IPv4 network to find the group in (default ``'0.0.0.0/0'``: every
            local network); ``'127.0.0.0/8'`` keeps to this machine.
        context: The :class:`Context` (loop thread) to run on; default: the running loop when
            created in a coroutine, else :meth:`Context.instance`.
        key: The group's shared secret: authenticates beacons and secures the data links
            (see :mod:`labwire.cluster.member`).
        timeout: Seconds :meth:`request` and :meth:`send` wait.
        beacon_interval: Seconds between beacons (a duration, e.g. ``'200ms'``).
        expiry: Seconds of silence after which a peer is dropped (default four beacon
            intervals plus one second).
        settings: labwire settings (limits, security); default from the environment.
        receive_own: Also deliver this device's own events to its matching callbacks.
        discovery: How beacons travel: ``"broadcast"``, ``"multicast"`` or both (default).

    Raises:
        ValueError: A name, network or duration is invalid (the message says which).
    """

    def __init__(
        self,
        name: str,
        group: str,
        network: str | None = None,
        context: Context | None = None,
        *,
        key: bytes | str | None = None,
        timeout: float | str = TIMEOUT,
        beacon_interval: float | str = BEACON_INTERVAL,
        expiry: float | str | None = None,
        settings: Settings | None = None,
        receive_own: bool = False,
        discovery: Collection[str] = DISCOVERY,
    ) -> None:
        loop = running_loop() if context is None else None
        if loop is None:
            self.context: Context | None = context or Context.instance()
            self.context.ensure_started()
            loop = self.context.loop
        else:
            self.context = None
        super().__init__(loop)
        self.group = check_name(group, "group name")
        self._member = Member(
            name,
            DEFAULT_NETWORK if network is None else network,
            group_to_port(group),
            key,
            loop,
            group=group,
            beacon_interval=beacon_interval,
            expiry=expiry,
            timeout=timeout,
            settings=settings,
            receive_own=receive_own,
            discovery=discovery,
        )
        self._storage = AttributeDict()
        self._stopped = threading.Event()

    @property
    def name(self) -> str:
        """Name of the device."""
        return self._member.name

    @property
    def storage(self) -> AttributeDict:
        """Local device storage, shared by all the device's tasks and callbacks."""
        return self._storage

    @property
    def timeout(self) -> float:
        """Seconds :meth:`request` and :meth:`send` wait (settable)."""
        return self._member.timeout

    @timeout.setter
    def timeout(self, seconds: float | str) -> None:
        self._member.timeout = seconds_of(seconds, "timeout")

    @property
    def member(self) -> Member:
        """The device's group membership (peers, statistics, timeouts)."""
        return self._member

    @property
    def stats(self) -> dict[str, int]:
        """Counters of the device's traffic (see :class:`~labwire.cluster.member.Member`)."""
        return dict(self._member.stats)

    def peers(self) -> list[Peer]:
        """The live devices of the group this device knows about."""
        return self._member.peers()

    async def send(self, dest: str, endpoint: str, data: Any) -> None:
        """Directly send data to another device.

        Args:
            dest: The device name to send to.
            endpoint: The endpoint to send to on the destination device.
            data: Any JSON data.

        Raises:
            UnknownPeer: No live device of the group has that name.
            CallTimeout: No connection to it within the device's timeout.
        """
        await self._member.send(dest, endpoint, data)

    async def publish(self, topic: str, data: Any) -> None:
        """Publish to topic: devices that subscribed to a matching pattern receive it.

        Args:
            topic: The topic, or event name; others see it as ``'<this name>/<topic>'``.
            data: Any JSON data; dictionaries are a good way to package it.
        """
        await self._member.publish(topic, data)

    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """Add a callback for an event, as a decorator or as a plain call.

        Example::

            @device.on('other-device/hello')
            async def callback(event, data):
                print(event, data)

        Args:
            event: What to react to: ``'sender/topic'`` with glob patterns on either side
                (``'*/heartbeat'``, ``'important/*'``) for published events, or an endpoint
                (no ``/``) for data sent to this device.
            callback: ``callback(event, data)``, a function or a coroutine function.

        Returns:
            The decorator, or ``callback`` when given.
        """

        def decorator(function: F) -> F:
            peer, slash, topic = event.partition("/")
            if slash:
                self._member.subscribe(peer, topic, function)
            else:
                self._member.on_recv(event, function)
            return function

        return decorator if callback is None else decorator(callback)

    async def request(self, dest: str, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        """Request data from another device.

        Args:
            dest: The device name to request data from.
            endpoint: The endpoint to request.
            *args: Arguments passed to the endpoint.
            **kwargs: Keyword arguments passed to the endpoint.

        Returns:
            The return value of the endpoint that you requested.

        Raises:
            UnknownPeer: No live device of the group has that name.
            NotFound: It has no such endpoint.
            RemoteError: Its handler raised.
            CallTimeout: No answer within the device's timeout.
        """
        return await self._member.request(dest, endpoint, *args, **kwargs)

    def on_request(self, endpoint: str, callback: Callable[..., Any] | None = None) -> Any:
        """Add a callback that answers requests for ``endpoint`` (decorator or plain call).

        The callback gets the request's arguments and returns the answer (a function or a
        coroutine function); an exception it raises reaches the requester as an error.
        """

        def decorator(function: F) -> F:
            self._member.on_request(endpoint, function)
            return function

        return decorator if callback is None else decorator(callback)

    def task(self, task: F) -> F:
        """Create a background task, started with the device (a decorator).

        Example::

            @device.task
            async def setup_task():
                ...
        """
        self.create_task(as_coroutine(task))
        return task

    def every(self, duration: float | str) -> Callable[[F], F]:
        """Create a background task that runs every ``duration``, at a fixed rate.

        Runs start ``duration`` apart whatever the callback's own run time; a run that
        overruns skips the ticks it missed (no burst to catch up). An exception in a run is
        logged and the next run goes ahead.

        Args:
            duration: How long between runs, as :func:`duration_to_seconds` reads it.

        Raises:
            ValueError: ``duration`` is not a positive duration.
        """
        period = seconds_of(duration, "every()")

        def decorator(function: F) -> F:
            coroutine = as_coroutine(function)

            @functools.wraps(function)
            async def run() -> None:
                loop = asyncio.get_running_loop()
                next_run = loop.time()
                while True:
                    try:
                        await coroutine()
                    except Exception:
                        _log.exception("%s: periodic %s raised", self.name, function.__name__)
                    now = loop.time()
                    next_run = next_tick(next_run, period, now)
                    await asyncio.sleep(next_run - now)

            self.create_daemon(run)
            return function

        return decorator

    async def sleep(self, duration: float | str) -> None:
        """Sleep for ``duration`` (seconds, or text such as ``'100ms'``).

        Raises:
            ValueError: ``duration`` is not a positive duration.
        """
        await asyncio.sleep(seconds_of(duration, "sleep()"))

    def start(self) -> None:
        """Start device: join the group, run its tasks.

        Raises:
            OSError: The group's UDP port cannot be bound.
        """
        self._stopped.clear()
        self._member.start()
        super().start()

    def stop(self) -> None:
        """Stop device: leave the group, cancel its tasks (safe from any thread)."""
        super().stop()
        self._member.stop()
        self._stopped.set()

    def wait(self) -> None:
        """Wait until the device is stopped or its context exits (Ctrl-C stops the device).

        Raises:
            RuntimeError: Called on the device's own loop (it would never return).
        """
        if self.in_loop_thread():
            raise RuntimeError("Device.wait() would block the device's own event loop")
        try:
            while not self._stopped.wait(0.5):
                if self.context is not None and not self.context.is_alive():
                    return
        except KeyboardInterrupt:
            _log.info("%s: interrupted; stopping", self.name)
            self.stop()

    async def __aenter__(self) -> Device:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Device({self.name!r}, {self.group!r}, uid={self._member.uid})"
