"""A watcher's consistent view of a registry from a snapshot plus numbered events (sans-IO)."""

from __future__ import annotations

from enum import Enum

from labwire.wire.registry.messages import (
    ChangeKind,
    DeviceEvent,
    DeviceInfo,
    DeviceListing,
    RegistryHeartbeat,
)


class WatchVerdict(Enum):
    """What a received event or heartbeat means for a :class:`WatchTracker`."""

    APPLIED = "applied"
    STALE = "stale"
    BUFFERED = "buffered"
    RESYNC = "resync"


class WatchTracker:
    """A watcher's view of a registry, kept consistent from a snapshot plus numbered events.

    Until a snapshot is applied (and again after any sign of a missed message) the tracker is
    *unsynchronised*: events are buffered, and the owner must fetch a snapshot and pass it to
    :meth:`apply_snapshot`, which replays the buffered events that are newer than it.

    Args:
        max_buffered: Events kept while unsynchronised; older ones are dropped (the next
            snapshot covers them).
    """

    def __init__(self, max_buffered: int = 10_000) -> None:
        self.registry_id = ""
        self.seq: int | None = None
        self.resyncs = 0
        self._devices: dict[str, DeviceInfo] = {}
        self._buffer: list[DeviceEvent] = []
        self._max_buffered = max_buffered

    @property
    def is_synced(self) -> bool:
        """Whether the view is known to be complete and current."""
        return self.seq is not None

    @property
    def devices(self) -> dict[str, DeviceInfo]:
        """The current view, ``{name: device}`` (a copy)."""
        return dict(self._devices)

    def desync(self) -> None:
        """Mark the view unsynchronised (e.g. the registry went silent)."""
        if self.seq is not None:
            self.resyncs += 1
        self.seq = None

    def apply_snapshot(self, listing: DeviceListing) -> list[DeviceEvent]:
        """Adopt a snapshot, then replay buffered events that are newer than it.

        Returns:
            The replayed events, in order. When a replayed event shows a gap, replay stops and
            the tracker is left unsynchronised (fetch another snapshot).
        """
        self._devices = {device.name: device for device in listing.devices}
        self.registry_id, self.seq = listing.registry_id, listing.seq
        buffered, self._buffer = self._buffer, []
        replayed: list[DeviceEvent] = []
        for event in sorted(buffered, key=lambda item: item.seq):
            if event.registry_id != listing.registry_id or event.seq <= listing.seq:
                continue
            if self.apply_event(event) is not WatchVerdict.APPLIED:
                break
            replayed.append(event)
        return replayed

    def apply_event(self, event: DeviceEvent) -> WatchVerdict:
        """Apply one published change.

        Returns:
            ``APPLIED`` (deliver it), ``STALE`` (already in the view: drop it), ``BUFFERED``
            (unsynchronised: kept for replay) or ``RESYNC`` (a gap or a new registry: fetch a
            snapshot; the event is kept for replay).
        """
        if self.seq is None:
            self._keep(event)
            return WatchVerdict.BUFFERED
        if event.registry_id == self.registry_id and event.seq <= self.seq:
            return WatchVerdict.STALE
        if event.registry_id != self.registry_id or event.seq != self.seq + 1:
            self.desync()
            self._keep(event)
            return WatchVerdict.RESYNC
        self.seq = event.seq
        if event.kind == ChangeKind.ADDED:
            self._devices[event.device.name] = event.device
        else:
            self._devices.pop(event.device.name, None)
        return WatchVerdict.APPLIED

    def apply_heartbeat(self, heartbeat: RegistryHeartbeat) -> WatchVerdict:
        """Check a heartbeat against the view.

        Returns:
            ``RESYNC`` when it shows a change the watcher missed or a new registry incarnation,
            ``STALE`` when the view is current, ``BUFFERED`` while unsynchronised.
        """
        if self.seq is None:
            return WatchVerdict.BUFFERED
        if heartbeat.registry_id != self.registry_id or heartbeat.seq > self.seq:
            self.desync()
            return WatchVerdict.RESYNC
        return WatchVerdict.STALE

    def _keep(self, event: DeviceEvent) -> None:
        self._buffer.append(event)
        if len(self._buffer) > self._max_buffered:
            del self._buffer[: len(self._buffer) - self._max_buffered]
