"""A member's peers: what it knows of each (:class:`Peer`) and its live link to each."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from dataclasses import dataclass

from labwire.errors import (
    LabwireError,
    Unavailable,
)
from labwire.transport import Socket
from labwire.transport.waiting import Waker
from labwire.wire.cluster import (
    Answer,
)

__all__ = ["Error", "Peer", "PeerLink", "UnknownPeer"]


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


class PeerLink:
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
        """The peer's data link endpoint."""
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
        """What is known of the peer at ``now`` (a monotonic time), as a :class:`Peer`."""
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
