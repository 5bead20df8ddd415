"""What a registry watch yields, and the I/O-free bookkeeping shared by the sync and async watch.

A watch is a stream of :class:`WatchEvent`: first a SNAPSHOT (every device at that moment),
then ADDED/REMOVED changes in the registry's order. If the watcher misses a change (a gap in
the sequence numbers, a heartbeat showing a later change, or a restarted registry), it fetches a
new snapshot and yields it as another SNAPSHOT, so the consumer replaces its view instead of
drifting. When the registry goes silent (no heartbeat for three intervals) the stream yields
LOST once, then a SNAPSHOT when the registry is back.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from enum import StrEnum
from typing import Any

import msgspec

from labwire.errors import ProtocolError, RegistryError
from labwire.transport import SocketType, parse_endpoint
from labwire.wire.limits import Limits
from labwire.wire.registry import (
    ChangeKind,
    DeviceEvent,
    DeviceInfo,
    DeviceListing,
    RegistryHeartbeat,
    RegistryReply,
    WatchTracker,
    WatchVerdict,
    decode_event,
)

__all__ = ["WatchEvent", "WatchEventKind"]

_log = logging.getLogger(__name__)

#: Heartbeats that may be missed before the registry is declared lost.
SILENT_HEARTBEATS = 3


class WatchEventKind(StrEnum):
    """Kinds of :class:`WatchEvent`."""

    SNAPSHOT = "snapshot"
    ADDED = "added"
    REMOVED = "removed"
    LOST = "lost"


class WatchEvent(msgspec.Struct, frozen=True):
    """One item of a registry watch.

    Attributes:
        kind: SNAPSHOT (replace your view with ``devices``), ADDED or REMOVED (``device``
            changed), or LOST (the registry went silent; a SNAPSHOT follows when it is back).
        seq: The registry's change number this item brings the view to.
        device: The device added or removed (None for SNAPSHOT and LOST).
        devices: Every device, for SNAPSHOT (empty otherwise).
        reason: For REMOVED: ``"unregistered"``, ``"expired"`` or ``"replaced"``.
        registry_id: The registry incarnation the item comes from.
    """

    kind: WatchEventKind
    seq: int
    device: DeviceInfo | None = None
    devices: tuple[DeviceInfo, ...] = ()
    reason: str = ""
    registry_id: str = ""


def _from_change(event: DeviceEvent) -> WatchEvent:
    kind = WatchEventKind.ADDED if event.kind == ChangeKind.ADDED else WatchEventKind.REMOVED
    return WatchEvent(kind, event.seq, event.device, (), event.reason, event.registry_id)


def listing_or_raise(reply: RegistryReply, url: str) -> DeviceListing:
    """The listing in ``reply``, or a clear error when the registry cannot list.

    Raises:
        RegistryError: The registry does not support listing (a deployed registry) or
            answered something else.
    """
    if isinstance(reply, DeviceListing):
        return reply
    raise RegistryError(
        f"registry at {url} cannot list devices (a deployed registry without labwire's "
        f"discovery?): {reply}"
    )


#: Longest wait between two attempts to fetch a snapshot.
_MAX_RETRY_DELAY = 2.0


def events_url(registry_url: str, event_port: int) -> str:
    """The registry's event publisher endpoint: the registry's host with ``event_port``."""
    return str(parse_endpoint(registry_url).with_port(event_port))


class WatchBase:
    """What the sync and asyncio watches share: the view, and (re)subscribing to events.

    Subclasses set ``registry_url``, ``transport`` (a sync or asyncio socket factory),
    ``_core`` and ``_subscriber``.
    """

    registry_url: str
    transport: Any
    _core: WatchCore
    _subscriber: Any

    @property
    def devices(self) -> dict[str, DeviceInfo]:
        """The current view, ``{name: device}`` (a copy)."""
        return self._core.tracker.devices

    @property
    def is_synced(self) -> bool:
        """Whether the view is known to be complete and current."""
        return not self._core.needs_snapshot

    @property
    def resyncs(self) -> int:
        """How many times the watch had to fetch a new snapshot after missing something."""
        return self._core.tracker.resyncs

    def _needs_subscription(self, listing: DeviceListing) -> bool:
        """Whether ``listing`` names an event publisher this watch is not subscribed to yet.

        Raises:
            RegistryError: The registry publishes no events.
        """
        if listing.event_port == 0:
            raise RegistryError(f"registry at {self.registry_url} publishes no events")
        if self._subscriber is None or listing.event_port != self._core.event_port:
            if self._subscriber is not None:
                self._subscriber.close(linger_ms=0)
            self._subscriber = self.transport.connect(
                SocketType.SUB, events_url(self.registry_url, listing.event_port)
            )
            self._subscriber.subscribe(b"")
            self._core.event_port = listing.event_port
            self._core.is_live = False
            return True
        return False


class WatchCore:
    """The I/O-free half of a watch: decodes published frames and queues watch events.

    Args:
        limits: Limits applied to published frames.
    """

    def __init__(self, limits: Limits) -> None:
        self.tracker = WatchTracker()
        self.pending: deque[WatchEvent] = deque()
        self.event_port = 0
        self.is_live = False
        self.last_heard = -math.inf
        self.silence_limit = float(SILENT_HEARTBEATS)
        self.retry_at = 0.0
        self._retry_delay = 0.0
        self._limits = limits
        self._lost_reported = False

    @property
    def needs_snapshot(self) -> bool:
        """Whether a snapshot must be fetched before the view can be trusted."""
        return not self.tracker.is_synced

    def on_frame(self, data: memoryview | bytes, now: float) -> None:
        """Handle one frame from the registry's event publisher."""
        self.last_heard = now
        self.is_live = True
        try:
            message = decode_event(data, self._limits)
        except ProtocolError as exc:
            _log.warning("ignoring an invalid registry event: %s", exc)
            self.tracker.desync()
            return
        if isinstance(message, RegistryHeartbeat):
            self.silence_limit = SILENT_HEARTBEATS * message.interval
            if self.tracker.apply_heartbeat(message) is WatchVerdict.RESYNC:
                _log.info("registry watch: heartbeat shows missed changes; resynchronising")
            return
        verdict = self.tracker.apply_event(message)
        if verdict is WatchVerdict.APPLIED:
            self.pending.append(_from_change(message))
        elif verdict is WatchVerdict.RESYNC:
            _log.info("registry watch: missed a change (seq %d); resynchronising", message.seq)

    def on_listing(self, listing: DeviceListing, now: float) -> None:
        """Adopt a snapshot and queue it, followed by any newer buffered changes."""
        self.silence_limit = SILENT_HEARTBEATS * listing.heartbeat_interval
        self.last_heard = now
        replayed = self.tracker.apply_snapshot(listing)
        self.pending.append(
            WatchEvent(
                WatchEventKind.SNAPSHOT,
                listing.seq,
                devices=listing.devices,
                registry_id=listing.registry_id,
            )
        )
        self.pending.extend(_from_change(event) for event in replayed)
        self._lost_reported = False
        self._retry_delay = 0.0

    def on_resync_failed(self, reason: Exception, now: float) -> None:
        """A snapshot could not be fetched: report LOST once and retry later, backing off."""
        _log.info("registry watch cannot resynchronise yet: %s", reason)
        self.on_lost()
        self._retry_delay = min(max(0.1, self._retry_delay * 2), _MAX_RETRY_DELAY)
        self.retry_at = now + self._retry_delay

    def is_silent(self, now: float) -> bool:
        """Whether the publisher has been quiet for longer than allowed."""
        return now - self.last_heard > self.silence_limit

    def on_lost(self) -> None:
        """The registry went silent or cannot be reached: report it once and resynchronise."""
        seq = self.tracker.seq or 0
        self.tracker.desync()
        self.is_live = False
        if not self._lost_reported:
            self._lost_reported = True
            self.pending.append(
                WatchEvent(WatchEventKind.LOST, seq, registry_id=self.tracker.registry_id)
            )
