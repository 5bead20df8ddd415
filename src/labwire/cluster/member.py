"""A member of a peer group: discovery, expiry, and the data links to the other members.

Theory of operation
-------------------
A :class:`Member` announces itself with a UDP beacon (:mod:`labwire.wire.cluster`) on the
group's port every ``beacon_interval`` seconds, and listens there for the beacons of the others
(:mod:`labwire.cluster.net` says where beacons go: broadcast and multicast). A beacon that
fails authentication, comes from another group or is malformed is dropped and counted
(``stats["rejected_beacons"]``). A member that hears a new peer sends its own beacon at once,
so two members find each other in one round trip, not one beacon interval.

Each member binds one ZeroMQ ROUTER socket (its *data link*, on an ephemeral TCP port named in
its beacons). For every peer it hears, it connects one DEALER socket to the peer's ROUTER, and
sends everything for that peer through it: events, ``send`` data, requests, catalog queries.
The peer answers requests and catalog queries on the same connection. So a slow peer only
fills its own queue: events to it are dropped (and counted, ``stats["dropped_events"]``) when
its queue is full, and a member never blocks on a publish. The sockets are the socket
factory's own (:class:`labwire.transport.Transport`); the event loop wakes a reader when a
socket signals (:class:`labwire.transport.waiting.Waker`) and the reader takes every message
waiting. Request handlers that are plain functions answer at once; coroutine handlers run in a
task each, so a slow one holds up nothing else.

The *catalog* (subscribed event patterns, request endpoints, ``send`` endpoints) has a version
number carried in every beacon. Two members trade catalogs as soon as a new link connects; a
member asks a peer again when the version it holds is older, and pushes its own catalog to its
peers when it changes. Events go only to peers with a subscription pattern that matches
``sender/topic`` (:func:`fnmatch.fnmatchcase`); a peer whose catalog has not arrived yet (the
first moments after it joined) gets no events.

A peer whose beacons stop for ``expiry`` seconds is removed: its link is closed and its pending
requests fail with :class:`~labwire.errors.Unavailable`; later requests fail at once with
:class:`UnknownPeer`. When its beacons come back it is a peer again.

Security: with a group ``key``, beacons carry an HMAC-SHA256 tag made with the key, and every
data link runs CurveZMQ with a keypair derived from the key, which every member presents and
requires: only key holders are heard and can connect. Without a key but with labwire security
settings (``Settings.security``), data links use those settings and each beacon carries its
member's public key. Without either, beacons are checked for integrity only and links are
plain TCP.

Names: two members of a group should not share a name. When a member hears a beacon with a
name it already knows from another live instance (or with its own name), it ignores that beacon,
counts it (``stats["name_conflicts"]``) and logs a warning once per instance: the instance
heard first keeps the name as long as it keeps beaconing; the other one is not reachable by
that name. Once the holder misses three of its beacons (and a quarter second more), the next
instance heard with the name takes it: a device killed and started again is reachable at
once, without waiting for expiry (requests pending with the old instance fail with
:class:`~labwire.errors.Unavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import ipaddress
import itertools
import logging
import math
import secrets
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

from labwire.cluster.looper import Looper
from labwire.cluster.net import (
    AsyncSocket,
    beacon_targets,
    close_quietly,
    data_link_host,
    join_multicast,
    multicast_interfaces,
    open_beacon_socket,
    open_multicast_sender,
)
from labwire.cluster.util import debug, next_tick, seconds_of
from labwire.config import Settings, default_settings
from labwire.errors import (
    CallTimeout,
    ClosedError,
    ConfigurationError,
    LabwireError,
    NotFound,
    ProtocolError,
    RemoteError,
    Unavailable,
)
from labwire.transport import Socket, SocketType, Transport
from labwire.transport.security import Security, public_key_from_secret
from labwire.transport.waiting import POLLIN, POLLOUT, Waker, recv_waiting
from labwire.wire.cluster import (
    MAX_BEACON_BYTES,
    Answer,
    Beacon,
    Call,
    Catalog,
    CatalogQuery,
    Direct,
    Event,
    Message,
    beacon_key,
    check_name,
    curve_secret_from_key,
    decode_beacon,
    decode_message,
    encode_beacon,
    encode_message,
    group_to_multicast,
)

__all__ = ["Error", "Member", "Peer", "UnknownPeer"]

_log = logging.getLogger("labwire.cluster")

Callback = Callable[..., Any]

#: Default seconds between beacons.
BEACON_INTERVAL = 0.5
#: How beacons travel by default: both ways, where the network allows each.
DISCOVERY = ("broadcast", "multicast")
#: Default timeout of request() and send(), in seconds.
TIMEOUT = 5.0
#: Events queued per peer before new ones are dropped.
EVENT_HWM = 10_000
#: Most messages handled in a row before the loop gets a turn.
_BURST = 256


class Error(LabwireError):
    """An error of the peer cluster."""


class UnknownPeer(Error, Unavailable):
    """No live member of the group has that name (never heard, or expired)."""


@dataclass(frozen=True, slots=True)
class Peer:
    """What a member knows about another member of its group (a snapshot).

    Attributes:
        name: The peer's name.
        uid: Its instance id (new on every start).
        address: The IP address its beacons come from.
        port: The TCP port of its data link.
        subscriptions: Its event patterns (empty until its catalog arrived).
        requests: Its request endpoints.
        receivers: Its ``send`` endpoint patterns.
        has_catalog: Whether its catalog arrived.
        age: Seconds since its last beacon.
    """

    name: str
    uid: str
    address: str
    port: int
    subscriptions: tuple[str, ...]
    requests: tuple[str, ...]
    receivers: tuple[str, ...]
    has_catalog: bool
    age: float


class _Link:
    """One peer's live state: its data link, catalog and pending requests (loop thread only)."""

    def __init__(
        self, name: str, uid: str, address: str, port: int, server_key: str, interval: float
    ) -> None:
        self.name = name
        self.interval = interval  # the peer's beacon interval (as it says, else ours)
        self.uid = uid
        self.address = address
        self.port = port
        self.server_key = server_key
        now = time.monotonic()
        self.last_seen = now
        self.address_seen = now
        self.catalog_version = -1
        self.catalog_asked = 0.0
        self.subscriptions: tuple[str, ...] = ()
        self.requests: tuple[str, ...] = ()
        self.receivers: tuple[str, ...] = ()
        self.matches: dict[str, bool] = {}
        self.pending: dict[int, asyncio.Future[Answer]] = {}
        self.socket: Socket | None = None
        self.waker: Waker | None = None
        self.reader: asyncio.Task[None] | None = None

    @property
    def silence(self) -> float:
        """How long without a beacon before another instance may take the peer's name.

        Three of its beacon intervals and a quarter second: a late beacon on a loaded host
        does not hand the name over.
        """
        return 3 * self.interval + 0.25

    @property
    def url(self) -> str:
        return f"tcp://{self.address}:{self.port}"

    def wants(self, event: str) -> bool:
        """Whether one of the peer's subscriptions matches ``event`` (cached per event)."""
        wanted = self.matches.get(event)
        if wanted is None:
            wanted = any(fnmatch.fnmatchcase(event, pattern) for pattern in self.subscriptions)
            if len(self.matches) > 4096:
                self.matches.clear()
            self.matches[event] = wanted
        return wanted

    def snapshot(self, now: float) -> Peer:
        return Peer(
            self.name,
            self.uid,
            self.address,
            self.port,
            self.subscriptions,
            self.requests,
            self.receivers,
            self.catalog_version >= 0,
            now - self.last_seen,
        )


class Member(Looper):
    """One member of a peer group: finds the others, publishes, sends, requests, answers.

    The coroutine methods (:meth:`publish`, :meth:`send`, :meth:`request`) run on the
    member's loop; the others may be called from any thread.

    Args:
        name: This member's name in the group (1-64 printable characters, no ``/``).
        network: The IPv4 network to find peers in, e.g. ``'192.168.1.0/24'``;
            ``'127.0.0.0/8'`` for the processes of one machine; ``'0.0.0.0/0'`` for every
            local network.
        port: The group's UDP port (see :func:`labwire.cluster.group_to_port`).
        key: The group's shared secret (text or bytes), or None; see the module docs.
        loop: The event loop; default the running loop, else the default context's.
        group: The group name written in beacons (default: the port, as text).
        beacon_interval: Seconds between beacons.
        expiry: Seconds without a beacon after which a peer is dropped (default four beacon
            intervals plus one second).
        timeout: Default seconds :meth:`request` and :meth:`send` wait.
        settings: labwire settings (limits, linger, security); default from the environment.
        receive_own: Also deliver this member's own events to its matching subscriptions.
        discovery: How beacons travel: ``"broadcast"``, ``"multicast"`` or both (the
            default; multicast only on interfaces that do it, never on loopback).

    Attributes:
        name: This member's name.
        uid: This instance's random id.
        timeout: Seconds :meth:`request` and :meth:`send` wait (may be changed).
        stats: Counters: ``beacons_sent``, ``beacons_received``, ``rejected_beacons``,
            ``name_conflicts``, ``bad_messages``, ``dropped_events``, ``unhandled``,
            ``late_answers``, ``peers_expired``.
    """

    def __init__(
        self,
        name: str,
        network: str,
        port: int,
        key: bytes | str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        group: str | None = None,
        beacon_interval: float | str = BEACON_INTERVAL,
        expiry: float | str | None = None,
        timeout: float | str = TIMEOUT,
        settings: Settings | None = None,
        receive_own: bool = False,
        discovery: Collection[str] = DISCOVERY,
    ) -> None:
        super().__init__(loop)
        self.name = check_name(name, "member name")
        try:
            self.network = ipaddress.IPv4Network(network, strict=False)
        except ValueError as exc:
            raise ConfigurationError(f"network {network!r} is not an IPv4 network: {exc}") from None
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError(f"port must be an integer in 1-65535, got {port!r}")
        if key is not None and not isinstance(key, str | bytes):
            raise ConfigurationError(f"key must be text or bytes, got {type(key).__name__}")
        self.port = port
        self.group = check_name(str(port) if group is None else group, "group name")
        self.uid = secrets.token_hex(8)
        self.beacon_interval = seconds_of(beacon_interval, "beacon_interval")
        self.expiry = (
            4 * self.beacon_interval + 1.0 if expiry is None else seconds_of(expiry, "expiry")
        )
        self.timeout = seconds_of(timeout, "timeout")
        self.receive_own = receive_own
        self.discovery = frozenset(discovery)
        if not self.discovery or not self.discovery <= set(DISCOVERY) or isinstance(discovery, str):
            raise ConfigurationError(
                f"discovery must be a collection of 'broadcast' and/or 'multicast', "
                f"got {discovery!r}"
            )
        self.stats: Counter[str] = Counter()
        self._key = key
        self._beacon_key = beacon_key(self.group, key)
        self._settings = self._link_settings(settings or default_settings(), key)
        self._wanted: set[str] = set()
        self._subscriptions: dict[str, list[Callback]] = {}
        self._receivers: dict[str, list[Callback]] = {}
        self._request_endpoints: dict[str, Callback] = {}
        self._catalog_version = 0
        self._links: dict[str, _Link] = {}
        self._conflicts: set[str] = set()
        self._ids = itertools.count(1)
        self._router: Socket | None = None
        self._router_waker: Waker | None = None
        self._udp: AsyncSocket | None = None
        self._senders: dict[str, AsyncSocket] = {}  # multicast, by interface address
        self._hurry: asyncio.Event | None = None
        self._transport: Transport | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.create_daemon(self._send_beacons)
        self.create_daemon(self._receive_beacons)
        self.create_daemon(self._serve)
        self.create_daemon(self._expire)

    # ------------------------------------------------------------------ configuration

    def _link_settings(self, settings: Settings, key: bytes | str | None) -> Settings:
        if key is None:
            return settings
        secret = curve_secret_from_key(self.group, key)
        public = public_key_from_secret(secret)
        security = Security(secret_key=secret, server_key=public, allowed_keys=frozenset({public}))
        return settings.replace(security=security)

    @property
    def _server_key(self) -> str:
        """The public key beacons advertise (only for links secured by labwire settings)."""
        security = self._settings.security
        if self._key is not None or security is None:
            return ""
        return security.public_key or ""

    @property
    def data_port(self) -> int:
        """The TCP port of this member's data link (0 before :meth:`start`)."""
        return 0 if self._router is None else self._router.port

    def is_wanted(self, name: str) -> bool:
        """Whether this member wants traffic from the member called ``name``.

        True when one of its subscriptions names that member (a pattern's part before the
        ``/`` matches), or when it sent to or requested from that member.
        """
        if name in self._wanted:
            return True
        return any(
            fnmatch.fnmatchcase(name, pattern.partition("/")[0]) for pattern in self._subscriptions
        )

    def on_recv(self, endpoint: str, callback: Callback) -> None:
        """Call ``callback(event, data)`` for data sent to ``endpoint`` (a glob pattern).

        ``event`` is ``'sender/endpoint'``. The callback may be a function or a coroutine.
        """
        self._receivers.setdefault(_pattern(endpoint, "endpoint"), []).append(callback)
        self._catalog_changed()

    def subscribe(self, peer: str, endpoint: str, callback: Callback) -> None:
        """Call ``callback(event, data)`` for events ``endpoint`` published by ``peer``.

        Both are glob patterns (``'*'``, ``'gps-?'``); ``event`` is ``'sender/topic'``. The
        callback may be a function or a coroutine.
        """
        pattern = f"{_pattern(peer, 'peer')}/{_pattern(endpoint, 'topic')}"
        self._subscriptions.setdefault(pattern, []).append(callback)
        self._catalog_changed()

    def on_request(self, endpoint: str, callback: Callback) -> None:
        """Answer requests for ``endpoint`` with ``callback(*args, **kwargs)``'s result.

        The callback may be a function or a coroutine; each request runs in a task of its own,
        so a slow one does not hold up others. An exception it raises is sent back to the
        requester as a :class:`~labwire.errors.RemoteError`.
        """
        if not isinstance(endpoint, str) or not endpoint:
            raise ConfigurationError(f"endpoint must be a non-empty string, got {endpoint!r}")
        self._request_endpoints[endpoint] = callback
        self._catalog_changed()

    def try_peer(self, peer: str) -> Peer:
        """What this member knows about the live member called ``peer``.

        Raises:
            UnknownPeer: No live member has that name.
        """
        link = self._links.get(peer)
        if link is None:
            raise self._unknown(peer)
        return link.snapshot(time.monotonic())

    def peers(self) -> list[Peer]:
        """Snapshots of the live peers, by name."""
        now = time.monotonic()
        return [self._links[name].snapshot(now) for name in sorted(self._links)]

    def _unknown(self, peer: str) -> UnknownPeer:
        known = ", ".join(sorted(self._links)) or "none"
        return UnknownPeer(
            f"no member named {peer!r} in group {self.group!r} on {self.network} "
            f"(members heard: {known})"
        )

    def _catalog_changed(self) -> None:
        self._catalog_version += 1
        if self.is_running:
            self._call_in_loop(self._push_catalog)

    def _call_in_loop(self, function: Callable[[], None]) -> None:
        if self.in_loop_thread():
            function()
        else:
            with contextlib.suppress(RuntimeError):  # loop closed
                self.loop.call_soon_threadsafe(function)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open the beacon socket and the data link, then start announcing and listening.

        Raises:
            OSError: The group's UDP port cannot be bound.
            EndpointError: The data link cannot be bound.
        """
        if self.is_running:
            return
        if self.in_loop_thread():
            self._open()
        else:
            asyncio.run_coroutine_threadsafe(self._open_async(), self.loop).result(10)
        super().start()

    async def _open_async(self) -> None:
        self._open()

    def _open(self) -> None:
        transport = Transport(None, self._settings)
        router = transport.bind(SocketType.ROUTER, f"tcp://{data_link_host(self.network)}:0")
        try:
            udp = open_beacon_socket(self.port)
        except OSError:
            router.close(0)
            raise
        self._transport, self._router, self._udp = transport, router, udp
        self._router_waker = Waker(router, self.loop)
        debug(f"{self.name}: data link {router.endpoint}, beacons on UDP {self.port}")

    def stop(self) -> None:
        """Stop announcing, close every link; pending requests fail. Safe from any thread."""
        if not self.is_running:
            return
        super().stop()
        if self.in_loop_thread():
            self._close()
        elif not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self._close_async(), self.loop).result(5)

    async def _close_async(self) -> None:
        self._close()

    def _close(self) -> None:
        for task in self._handlers:
            task.cancel()
        for name in list(self._links):
            self._drop(name, ClosedError(f"member {self.name!r} stopped"))
        if self._router_waker is not None:
            self._router_waker.close()
            self._router_waker = None
        if self._router is not None:
            self._router.close(0)
            self._router = None
        close_quietly(self._udp)
        for sender in self._senders.values():
            close_quietly(sender)
        self._senders.clear()
        self._udp = None

    async def __aenter__(self) -> Member:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ beacons

    def _beacon(self) -> bytes:
        beacon = Beacon(
            self.group,
            self.name,
            self.uid,
            self.data_port,
            self._catalog_version,
            self._server_key,
            round(self.beacon_interval * 1000),
        )
        return encode_beacon(beacon, self._beacon_key)

    async def _send_beacons(self) -> None:
        udp = self._udp
        if udp is None:
            return
        hurry = self._hurry = asyncio.Event()
        next_beacon = self.loop.time()
        refresh_every = max(1.0, 10 * self.beacon_interval)
        refreshed = -math.inf
        routes: list[tuple[AsyncSocket, str]] = []
        while True:
            if next_beacon - refreshed >= refresh_every:
                routes, refreshed = self._routes(udp), next_beacon
            packet = self._beacon()
            for sock, target in routes:
                try:
                    await sock.sendto(packet, (target, self.port))
                    self.stats["beacons_sent"] += 1
                except OSError as exc:
                    debug(f"{self.name}: beacon to {target} failed: {exc}")
            hurry.clear()
            now = self.loop.time()
            if next_beacon <= now:
                next_beacon = next_tick(next_beacon, self.beacon_interval, now)
            # A new peer gets an answer at once (it may have started after our last beacon),
            # without moving the regular beacons off their grid.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hurry.wait(), next_beacon - now)

    def _routes(self, udp: AsyncSocket) -> list[tuple[AsyncSocket, str]]:
        """Where beacons go now, from the local interfaces as they are.

        Called again every few seconds, so a network that comes up after the member started
        (a robot booting before its LAN) is used as soon as it is there.
        """
        routes = []
        if "broadcast" in self.discovery:
            routes = [(udp, target) for target in beacon_targets(self.network)]
        if "multicast" not in self.discovery:
            return routes
        group = group_to_multicast(self.group)
        interfaces = multicast_interfaces(self.network)
        for address in set(self._senders) - set(interfaces):
            close_quietly(self._senders.pop(address))
        for address in interfaces:
            if address in self._senders:
                continue
            try:
                join_multicast(udp, group, [address])
                self._senders[address] = open_multicast_sender(address)
            except OSError as exc:
                debug(f"{self.name}: no multicast on {address}: {exc}")
        if not routes and not self._senders:
            debug(f"{self.name}: no interface in {self.network} to send beacons on yet")
        return routes + [(sender, group) for sender in self._senders.values()]

    async def _receive_beacons(self) -> None:
        udp = self._udp
        if udp is None:
            return
        while True:
            packet, source = await udp.recvfrom(MAX_BEACON_BYTES + 1)
            self._on_beacon(packet, source[0])

    def _on_beacon(self, packet: bytes, address: str) -> None:
        if ipaddress.IPv4Address(address) not in self.network:
            return
        try:
            beacon = decode_beacon(packet, self._beacon_key)
            if beacon.group != self.group:
                raise ProtocolError(f"beacon of group {beacon.group!r}")
        except ProtocolError as exc:
            self.stats["rejected_beacons"] += 1
            debug(f"{self.name}: dropped a datagram from {address}: {exc}")
            return
        if beacon.uid == self.uid:
            return
        self.stats["beacons_received"] += 1
        now = time.monotonic()
        link = self._links.get(beacon.name)
        if link is not None and link.uid != beacon.uid and now - link.last_seen > link.silence:
            # the holder of the name went silent (killed and restarted, most likely)
            _log.info("%s: member %s restarted (new instance %s)", self.name, link.name, beacon.uid)
            self._drop(link.name, Unavailable(f"member {link.name!r} restarted"))
            link = None
        if beacon.name == self.name or (link is not None and link.uid != beacon.uid):
            self._conflict(beacon, address)
            return
        if link is None:
            link = self._connect(beacon, address)
        if beacon.interval_ms > 0:
            link.interval = beacon.interval_ms / 1000
        if address == link.address:
            link.address_seen = now
        elif now - link.address_seen > 2 * link.interval:
            self._move(link, address, beacon.port)  # heard only at its new address lately
        link.last_seen = now
        if (
            beacon.catalog != link.catalog_version
            and now - link.catalog_asked > self.beacon_interval
        ):
            link.catalog_asked = now
            self._send_nowait(link, encode_message(CatalogQuery(self.name, self.uid)))

    def _conflict(self, beacon: Beacon, address: str) -> None:
        self.stats["name_conflicts"] += 1
        if beacon.uid in self._conflicts:
            return
        self._conflicts.add(beacon.uid)
        holder = "this member" if beacon.name == self.name else "another member"
        _log.warning(
            "%s: the name %r is also claimed by instance %s at %s; %s keeps it, beacons of "
            "the other are ignored until it expires",
            self.name,
            beacon.name,
            beacon.uid,
            address,
            holder,
        )

    def _connect(self, beacon: Beacon, address: str) -> _Link:
        link = _Link(
            beacon.name, beacon.uid, address, beacon.port, beacon.server_key, self.beacon_interval
        )
        self._links[beacon.name] = link
        self._open_link(link)
        if self._hurry is not None:
            self._hurry.set()
        link.catalog_asked = time.monotonic()
        self._spawn_handler(self._introduce(link))
        _log.info("%s: member %s joined at %s", self.name, link.name, link.url)
        return link

    async def _introduce(self, link: _Link) -> None:
        """Once the new link connects: ask for the peer's catalog and give it ours."""
        deadline = self.loop.time() + self.expiry
        with contextlib.suppress(LabwireError):  # the peer left or never answered
            await self._send_within(
                link, encode_message(CatalogQuery(self.name, self.uid)), deadline, "introduce"
            )
            self._send_nowait(link, encode_message(self._catalog()))

    def _open_link(self, link: _Link) -> None:
        assert self._transport is not None
        options: dict[str, Any] = {"immediate": 1, "sndhwm": EVENT_HWM}
        if link.server_key:
            options["server_key"] = link.server_key
        link.socket = self._transport.connect(SocketType.DEALER, link.url, **options)
        link.waker = Waker(link.socket, self.loop)
        link.reader = self.loop.create_task(self._read_link(link))

    def _move(self, link: _Link, address: str, port: int) -> None:
        debug(f"{self.name}: {link.name} moved to {address}:{port}")
        self._close_link(link)
        link.address, link.port = address, port
        link.address_seen = time.monotonic()
        self._open_link(link)

    def _close_link(self, link: _Link) -> None:
        if link.reader is not None:
            link.reader.cancel()
            link.reader = None
        if link.waker is not None:
            link.waker.close()
            link.waker = None
        if link.socket is not None:
            link.socket.close(0)
            link.socket = None

    def _drop(self, name: str, error: Exception) -> None:
        link = self._links.pop(name, None)
        if link is None:
            return
        self._close_link(link)
        for future in link.pending.values():
            if not future.done():
                future.set_exception(error)
        link.pending.clear()
        self._conflicts.clear()

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(min(self.beacon_interval, self.expiry / 4))
            now = time.monotonic()
            for name, link in list(self._links.items()):
                silent = now - link.last_seen
                if silent > self.expiry:
                    self.stats["peers_expired"] += 1
                    _log.info("%s: member %s expired (silent %.1f s)", self.name, name, silent)
                    self._drop(
                        name,
                        Unavailable(
                            f"member {name!r} left the group (no beacon for {silent:.1f} s)"
                        ),
                    )

    # ------------------------------------------------------------------ outgoing

    def _send_nowait(self, link: _Link, frame: bytes) -> bool:
        sock = link.socket
        return sock is not None and sock.send((frame,), nowait=True)

    async def _send_within(self, link: _Link, frame: bytes, deadline: float, what: str) -> None:
        while not self._send_nowait(link, frame):
            remaining = deadline - self.loop.time()
            waker = link.waker
            if remaining <= 0 or waker is None:
                if self._links.get(link.name) is not link:
                    raise Unavailable(f"{what}: member {link.name!r} left the group")
                raise CallTimeout(
                    f"{what}: no connection to member {link.name!r} at {link.url} within "
                    f"{self.timeout:g} s"
                )
            with contextlib.suppress(ClosedError):  # the link closed: checked above
                await waker.wait(POLLOUT, remaining)

    def _push_catalog(self) -> None:
        if not self._links:
            return
        frame = encode_message(self._catalog())
        for link in self._links.values():
            self._send_nowait(link, frame)

    def _catalog(self) -> Catalog:
        return Catalog(
            self.name,
            self.uid,
            self._catalog_version,
            sorted(self._subscriptions),
            sorted(self._request_endpoints),
            sorted(self._receivers),
        )

    async def publish(self, endpoint: str, data: Any) -> None:
        """Publish ``data`` as the event ``'<this member's name>/<endpoint>'``.

        It goes to every peer with a matching subscription; it never waits for a peer (a peer
        whose queue is full misses it, counted in ``stats["dropped_events"]``).

        Raises:
            TypeError: ``data`` cannot be sent as JSON.
        """
        frame = encode_message(Event(self.name, self.uid, endpoint, data))
        event = f"{self.name}/{endpoint}"
        for link in self._links.values():
            if link.wants(event) and not self._send_nowait(link, frame):
                self.stats["dropped_events"] += 1
        if self.receive_own:
            self._deliver(self._subscriptions, event, event, data)

    async def send(self, peer: str, endpoint: str, data: Any) -> None:
        """Send ``data`` to ``peer``'s ``endpoint`` (handled by its :meth:`on_recv` callbacks).

        Returns once the message is queued on the connection to the peer.

        Raises:
            UnknownPeer: No live member has that name.
            CallTimeout: No connection to the peer within :attr:`timeout`.
            TypeError: ``data`` cannot be sent as JSON.
        """
        link = self._links.get(peer)
        if link is None:
            raise self._unknown(peer)
        self._wanted.add(peer)
        frame = encode_message(Direct(self.name, self.uid, endpoint, data))
        deadline = self.loop.time() + self.timeout
        await self._send_within(link, frame, deadline, f"send to {peer}/{endpoint}")

    async def request(self, peer: str, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``peer``'s request endpoint and return its result.

        Waits at most :attr:`timeout` seconds.

        Raises:
            UnknownPeer: No live member has that name.
            NotFound: The peer has no such endpoint.
            RemoteError: The peer's handler raised (type, message and traceback inside).
            CallTimeout: No answer in time (the outcome is unknown).
            Unavailable: The peer left the group while the request was pending.
            TypeError: The arguments cannot be sent as JSON.
        """
        link = self._links.get(peer)
        if link is None:
            raise self._unknown(peer)
        self._wanted.add(peer)
        request_id = next(self._ids)
        frame = encode_message(Call(self.name, self.uid, request_id, endpoint, list(args), kwargs))
        what = f"request {peer}/{endpoint}"
        deadline = self.loop.time() + self.timeout
        future: asyncio.Future[Answer] = self.loop.create_future()
        link.pending[request_id] = future
        timer = self.loop.call_at(deadline, _time_out, future, what, self.timeout)
        try:
            await self._send_within(link, frame, deadline, what)
            answer = await future
        finally:
            timer.cancel()
            link.pending.pop(request_id, None)
        return _outcome(answer, what)

    # ------------------------------------------------------------------ incoming

    async def _read_link(self, link: _Link) -> None:
        sock, waker = link.socket, link.waker
        assert sock is not None and waker is not None
        while True:
            for frames in recv_waiting(sock, _BURST):
                self._read_one(link, frames)
            await _next_burst(waker)

    def _read_one(self, link: _Link, frames: list[memoryview]) -> None:
        try:
            if len(frames) != 1:
                raise ProtocolError(f"expected 1 frame, got {len(frames)}")
            message = decode_message(frames[0], self._settings.limits)
        except ProtocolError as exc:
            self.stats["bad_messages"] += 1
            debug(f"{self.name}: bad message from {link.name}: {exc}")
            return
        if isinstance(message, Answer):
            future = link.pending.get(message.id)
            if future is None or future.done():
                self.stats["late_answers"] += 1
            else:
                future.set_result(message)
        elif isinstance(message, Catalog):
            self._apply_catalog(message)
        else:
            self.stats["bad_messages"] += 1

    def _apply_catalog(self, catalog: Catalog) -> None:
        link = self._links.get(catalog.sender)
        if link is None or link.uid != catalog.uid or catalog.version < link.catalog_version:
            return
        link.catalog_version = catalog.version
        link.subscriptions = tuple(catalog.subscriptions)
        link.requests = tuple(catalog.requests)
        link.receivers = tuple(catalog.receivers)
        link.matches.clear()

    async def _serve(self) -> None:
        router, waker = self._router, self._router_waker
        if router is None or waker is None:
            return
        while True:
            for frames in recv_waiting(router, _BURST):
                self._serve_one(frames)
            await _next_burst(waker)

    def _serve_one(self, frames: list[memoryview]) -> None:
        try:
            if len(frames) != 2:
                raise ProtocolError(f"expected 2 frames (routing id, message), got {len(frames)}")
            message = decode_message(frames[1], self._settings.limits)
        except ProtocolError as exc:
            self.stats["bad_messages"] += 1
            debug(f"{self.name}: bad message on the data link: {exc}")
            return
        self._handle(bytes(frames[0]), message)

    def _handle(self, identity: bytes, message: Message) -> None:
        if isinstance(message, Event):
            event = f"{message.sender}/{message.topic}"
            if not self._deliver(self._subscriptions, event, event, message.data):
                self.stats["unhandled"] += 1
        elif isinstance(message, Direct):
            event = f"{message.sender}/{message.endpoint}"
            if not self._deliver(self._receivers, message.endpoint, event, message.data):
                self.stats["unhandled"] += 1
                debug(f"{self.name}: no receiver for {event}")
        elif isinstance(message, Call):
            self._answer(identity, message)
        elif isinstance(message, CatalogQuery):
            self._reply(identity, encode_message(self._catalog()))
        elif isinstance(message, Catalog):
            self._apply_catalog(message)
        else:
            self.stats["bad_messages"] += 1

    def _deliver(self, table: dict[str, list[Callback]], key: str, event: str, data: Any) -> bool:
        delivered = False
        for pattern, callbacks in list(table.items()):
            if not fnmatch.fnmatchcase(key, pattern):
                continue
            for callback in callbacks:
                delivered = True
                try:
                    result = callback(event, data)
                except Exception:
                    _log.exception("%s: callback for %s raised", self.name, event)
                    continue
                if asyncio.iscoroutine(result):
                    self._spawn_handler(_logged(result, f"{self.name}: callback for {event}"))
        return delivered

    def _spawn_handler(self, coroutine: Any) -> None:
        task = self.loop.create_task(coroutine)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _reply(self, identity: bytes, frame: bytes) -> None:
        router = self._router
        if router is None or not router.send((identity, frame), nowait=True):
            debug(f"{self.name}: an answer could not be queued (requester gone)")

    def _answer(self, identity: bytes, call: Call) -> None:
        """Run a request's handler: a function at once, a coroutine in a task of its own."""
        handler = self._request_endpoints.get(call.endpoint)
        if handler is None:
            endpoints = ", ".join(sorted(self._request_endpoints)) or "none"
            message = f"{self.name!r} has no request endpoint {call.endpoint!r} (its endpoints: "
            self._reply_failure(identity, call, "not_found", "NotFound", f"{message}{endpoints})")
            return
        try:
            result = handler(*call.args, **call.kwargs)
        except Exception as exc:
            self._reply_exception(identity, call, exc)
            return
        if inspect.isawaitable(result):
            self._spawn_handler(self._answer_later(identity, call, result))
        else:
            self._reply_value(identity, call, result)

    async def _answer_later(self, identity: bytes, call: Call, result: Awaitable[Any]) -> None:
        try:
            value = await result
        except Exception as exc:
            self._reply_exception(identity, call, exc)
        else:
            self._reply_value(identity, call, value)

    def _reply_value(self, identity: bytes, call: Call, value: Any) -> None:
        try:
            frame = encode_message(Answer(self.name, self.uid, call.id, "ok", value))
        except TypeError as exc:
            self._reply_exception(identity, call, exc)
            return
        self._reply(identity, frame)

    def _reply_exception(self, identity: bytes, call: Call, exc: Exception) -> None:
        _log.info("%s: request %s raised %r", self.name, call.endpoint, exc)
        trace = "".join(traceback.format_exception(exc))
        self._reply_failure(identity, call, "error", type(exc).__name__, str(exc), trace)

    def _reply_failure(
        self,
        identity: bytes,
        call: Call,
        status: Literal["not_found", "error"],
        error_type: str,
        error: str,
        trace: str = "",
    ) -> None:
        answer = Answer(self.name, self.uid, call.id, status, None, error_type, error, trace)
        self._reply(identity, encode_message(answer))


async def _next_burst(waker: Waker) -> None:
    """Wait until more messages are waiting (at once if some still are: a turn for others)."""
    if waker.events() & POLLIN:
        await asyncio.sleep(0)
    else:
        await waker.wait(POLLIN)


def _time_out(future: asyncio.Future[Answer], what: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(
            CallTimeout(f"{what}: no answer within {timeout:g} s (outcome unknown)")
        )


def _pattern(text: object, what: str) -> str:
    if not isinstance(text, str) or not text:
        raise ConfigurationError(f"{what} pattern must be a non-empty string, got {text!r}")
    return text


def _outcome(answer: Answer, what: str) -> Any:
    if answer.status == "ok":
        return answer.value
    if answer.status == "not_found":
        raise NotFound(answer.error_type or "NotFound", answer.error, answer.traceback)
    raise RemoteError(answer.error_type, f"{what}: {answer.error}", answer.traceback)


async def _logged(coroutine: Awaitable[Any], what: str) -> None:
    try:
        await coroutine
    except Exception:
        _log.exception("%s raised", what)
