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

This module holds discovery, configuration and the member's life cycle;
:mod:`labwire.cluster.messaging` what travels on the data links and :mod:`labwire.cluster.peers`
what a member knows of its peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from labwire.cluster.messaging import Callback, Messaging
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
from labwire.cluster.peers import Peer, PeerLink
from labwire.cluster.util import debug, next_tick, seconds_of
from labwire.config import Settings, default_settings
from labwire.errors import (
    ClosedError,
    ConfigurationError,
    LabwireError,
    ProtocolError,
    Unavailable,
)
from labwire.transport import SocketType, Transport
from labwire.transport.security import Security, public_key_from_secret
from labwire.transport.waiting import Waker
from labwire.wire.cluster import (
    MAX_BEACON_BYTES,
    Beacon,
    CatalogQuery,
    beacon_key,
    check_name,
    curve_secret_from_key,
    decode_beacon,
    encode_beacon,
    encode_message,
    group_to_multicast,
)

__all__ = ["Member"]

_log = logging.getLogger("labwire.cluster")
#: Default seconds between beacons.
BEACON_INTERVAL = 0.5
#: How beacons travel by default: both ways, where the network allows each.
DISCOVERY = ("broadcast", "multicast")
#: Default timeout of request() and send(), in seconds.
TIMEOUT = 5.0
#: Events queued per peer before new ones are dropped.
EVENT_HWM = 10_000


class Member(Messaging):
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
        self._conflicts: set[str] = set()
        self._udp: AsyncSocket | None = None
        self._senders: dict[str, AsyncSocket] = {}  # multicast, by interface address
        self._hurry: asyncio.Event | None = None
        self._transport: Transport | None = None
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

    def _connect(self, beacon: Beacon, address: str) -> PeerLink:
        link = PeerLink(
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

    async def _introduce(self, link: PeerLink) -> None:
        """Once the new link connects: ask for the peer's catalog and give it ours."""
        deadline = self.loop.time() + self.expiry
        with contextlib.suppress(LabwireError):  # the peer left or never answered
            await self._send_within(
                link, encode_message(CatalogQuery(self.name, self.uid)), deadline, "introduce"
            )
            self._send_nowait(link, encode_message(self._catalog()))

    def _open_link(self, link: PeerLink) -> None:
        assert self._transport is not None
        options: dict[str, Any] = {"immediate": 1, "sndhwm": EVENT_HWM}
        if link.server_key:
            options["server_key"] = link.server_key
        link.socket = self._transport.connect(SocketType.DEALER, link.url, **options)
        link.waker = Waker(link.socket, self.loop)
        link.reader = self.loop.create_task(self._read_link(link))

    def _move(self, link: PeerLink, address: str, port: int) -> None:
        debug(f"{self.name}: {link.name} moved to {address}:{port}")
        self._close_link(link)
        link.address, link.port = address, port
        link.address_seen = time.monotonic()
        self._open_link(link)

    def _close_link(self, link: PeerLink) -> None:
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


def _pattern(text: object, what: str) -> str:
    if not isinstance(text, str) or not text:
        raise ConfigurationError(f"{what} pattern must be a non-empty string, got {text!r}")
    return text
