"""The lease table: one lease state machine per registered device, numbered changes, expiry.

Sans-IO: every method takes ``now`` from the caller's monotonic clock. The rules (names,
take-overs, ended leases) are in :mod:`labwire.wire.registry`.
"""

from __future__ import annotations

import heapq
import math
import uuid as uuid_module
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

import msgspec

from labwire.errors import LimitExceeded, PermissionDenied
from labwire.wire.registry.messages import (
    ALIVE_TIMEOUT,
    MAX_ALIVE_TIMEOUT,
    REGISTER_DENIED,
    ChangeKind,
    DeviceEvent,
    DeviceInfo,
    RegisterRequest,
    RemovalReason,
    RenewResult,
)


class LeaseState(Enum):
    """Life of one lease. Only ACTIVE has outgoing transitions."""

    ACTIVE = "active"
    UNREGISTERED = "unregistered"
    EXPIRED = "expired"
    REPLACED = "replaced"


class LeaseEvent(Enum):
    """What can happen to a lease."""

    RENEW = "renew"
    UNREGISTER = "unregister"
    EXPIRE = "expire"
    REPLACE = "replace"


#: The lease state machine: ``{state: {event: next state}}``; anything else is illegal.
LEASE_TRANSITIONS: Mapping[LeaseState, Mapping[LeaseEvent, LeaseState]] = {
    LeaseState.ACTIVE: {
        LeaseEvent.RENEW: LeaseState.ACTIVE,
        LeaseEvent.UNREGISTER: LeaseState.UNREGISTERED,
        LeaseEvent.EXPIRE: LeaseState.EXPIRED,
        LeaseEvent.REPLACE: LeaseState.REPLACED,
    },
    LeaseState.UNREGISTERED: {},
    LeaseState.EXPIRED: {},
    LeaseState.REPLACED: {},
}

_REASONS = {
    LeaseState.UNREGISTERED: RemovalReason.UNREGISTERED,
    LeaseState.EXPIRED: RemovalReason.EXPIRED,
    LeaseState.REPLACED: RemovalReason.REPLACED,
}


@dataclass(slots=True)
class Lease:
    """One device's lease inside a :class:`LeaseTable` (times on the caller's monotonic clock).

    Attributes:
        uuid: The secret-ish id the device renews and unregisters with.
        name: The accepted name.
        proposed_name: The name the device asked for.
        device_type: Its type.
        address: Its endpoint.
        incarnation: The registering process's incarnation id ("" when not sent).
        alive_timeout: Lease length in seconds.
        registered_at: When the lease began.
        last_seen: Last registration or renewal.
        expires_at: When the lease ends unless renewed.
        state: Where the lease is in :data:`LEASE_TRANSITIONS`.
        public_key: The device server's public key ("" when none was registered).
        owner: The authenticated client key that registered the lease ("" without security).
    """

    uuid: str
    name: str
    proposed_name: str
    device_type: str
    address: str
    incarnation: str
    alive_timeout: float
    registered_at: float
    last_seen: float
    expires_at: float
    state: LeaseState = LeaseState.ACTIVE
    public_key: str = ""
    owner: str = ""

    def handle(self, event: LeaseEvent) -> LeaseState:
        """Apply ``event`` and return the new state.

        Raises:
            RuntimeError: ``event`` is illegal in the current state (a bug in the caller).
        """
        try:
            self.state = LEASE_TRANSITIONS[self.state][event]
        except KeyError:
            raise RuntimeError(
                f"lease {self.name!r}: event {event.value} is illegal in state {self.state.value}"
            ) from None
        return self.state

    def info(self, offset: float = 0.0) -> DeviceInfo:
        """The lease as a device record, times moved by ``offset`` (monotonic -> wall clock)."""
        return DeviceInfo(
            self.name,
            self.device_type,
            self.address,
            self.registered_at + offset,
            self.last_seen + offset,
            self.incarnation,
            self.alive_timeout,
            self.public_key,
        )


class Change(msgspec.Struct, frozen=True):
    """One numbered change of a :class:`LeaseTable` (monotonic times in ``device``)."""

    kind: ChangeKind
    device: DeviceInfo
    seq: int
    reason: str = ""

    def event(self, registry_id: str, wall_offset: float) -> DeviceEvent:
        """The change as a publishable event, with wall-clock times."""
        return DeviceEvent(
            self.kind, self.device.shifted(wall_offset), registry_id, self.seq, self.reason
        )


class Registration(msgspec.Struct, frozen=True):
    """Result of :meth:`LeaseTable.register`.

    Attributes:
        name: The accepted name.
        uuid: The lease id.
        is_new: False when an existing lease of the same incarnation was handed back.
    """

    name: str
    uuid: str
    is_new: bool = True


def _new_uuid() -> str:
    return str(uuid_module.uuid4())


class LeaseTable:
    """All leases of one registry, keyed by uuid and by name.

    Not thread-safe: one owner calls it. Every method takes ``now`` from a monotonic clock
    (seconds); time never runs backwards inside the table even if ``now`` does. Changes are
    accumulated and handed out by :meth:`pop_changes`, numbered from 1 in :attr:`seq` order.

    Args:
        default_alive_timeout: Lease length when a REGISTER does not ask for one.
        max_devices: Most leases at once; more registrations are refused.
        new_uuid: Factory for lease ids (random UUIDs by default).
        remembered: How many ended leases are remembered to explain a failed CHECK_ALIVE.
    """

    def __init__(
        self,
        *,
        default_alive_timeout: float = ALIVE_TIMEOUT,
        max_devices: int = 100_000,
        new_uuid: Callable[[], str] | None = None,
        remembered: int = 4096,
    ) -> None:
        if not 0 < default_alive_timeout <= MAX_ALIVE_TIMEOUT:
            raise ValueError("default_alive_timeout must be > 0 and at most one week")
        self.default_alive_timeout = float(default_alive_timeout)
        self.max_devices = max_devices
        self.seq = 0
        self._new_uuid = new_uuid or _new_uuid
        self._leases: dict[str, Lease] = {}
        self._by_name: dict[str, str] = {}
        self._by_incarnation: dict[str, str] = {}
        self._ended: OrderedDict[str, LeaseState] = OrderedDict()
        self._remembered = remembered
        self._expiries: list[tuple[float, str]] = []
        self._changes: list[Change] = []
        self._now = -math.inf

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def _advance(self, now: float) -> float:
        if now > self._now:
            self._now = now
        return self._now

    # ----------------------------------------------------------------- operations

    def register(
        self,
        now: float,
        request: RegisterRequest,
        *,
        owner: str = "",
        may_take_over: bool = True,
    ) -> Registration:
        """Grant a lease following the name rule (see the module docstring).

        Args:
            now: Monotonic time in seconds.
            request: The REGISTER request.
            owner: The authenticated key of the requester ("" without security).
            may_take_over: Whether the requester may end a lease owned by another key by
                overwriting its name (with security on: whether it holds an admin key).

        Returns:
            The accepted name and the lease uuid.

        Raises:
            LimitExceeded: The table already holds ``max_devices`` leases.
            PermissionDenied: ``overwrite`` would end a lease owned by another key and
                ``may_take_over`` is false; nothing changed.
        """
        now = self._advance(now)
        self.expire(now)
        ttl = request.alive_timeout or self.default_alive_timeout
        held = self._leases.get(self._by_incarnation.get(request.incarnation, ""))
        if held is not None and held.owner != owner:
            held = None  # an incarnation id speaks only for leases of the same key
        if held is not None and request.incarnation:
            same_device = (
                held.address == request.addr
                and held.device_type == request.device_type
                and request.name in (held.name, held.proposed_name)
            )
            if same_device:
                self._renew(held, now, ttl)
                return Registration(held.name, held.uuid, is_new=False)
        holder = self._leases.get(self._by_name.get(request.name, "")) if request.name else None
        if (
            request.overwrite
            and holder is not None
            and holder is not held
            and holder.owner != owner
            and not may_take_over
        ):
            raise PermissionDenied("PermissionDenied", f"{REGISTER_DENIED} ({holder.name!r})")
        frees_one = held is not None or (holder is not None and request.overwrite)
        if len(self._leases) >= self.max_devices and not frees_one:
            raise LimitExceeded(f"the registry is full ({self.max_devices} devices)")
        if held is not None:
            self._end(held, LeaseEvent.REPLACE)
            if holder is held:
                holder = None
        if not request.name:
            name = self._free_name(request.device_type or "device", always_suffix=True)
        elif holder is None:
            name = request.name
        elif request.overwrite:
            self._end(holder, LeaseEvent.REPLACE)
            name = request.name
        else:
            name = self._free_name(request.name, always_suffix=False)
        uuid = self._new_uuid()
        while uuid in self._leases or uuid in self._ended:
            uuid = self._new_uuid()
        lease = Lease(
            uuid=uuid,
            name=name,
            proposed_name=request.name,
            device_type=request.device_type,
            address=request.addr,
            incarnation=request.incarnation,
            alive_timeout=ttl,
            registered_at=now,
            last_seen=now,
            expires_at=now + ttl,
            public_key=request.public_key,
            owner=owner,
        )
        self._leases[uuid] = lease
        self._by_name[name] = uuid
        if lease.incarnation:
            self._by_incarnation.setdefault(lease.incarnation, uuid)
        heapq.heappush(self._expiries, (lease.expires_at, uuid))
        self._record(ChangeKind.ADDED, lease)
        return Registration(name, uuid)

    def renew(self, now: float, uuid: str, alive_timeout: float | None = None) -> RenewResult:
        """Renew a lease (CHECK_ALIVE): it now expires at ``now + alive_timeout``.

        Args:
            now: Monotonic time in seconds.
            uuid: The lease id.
            alive_timeout: New lease length; None keeps the current one.

        Returns:
            ``OK``, or why there is no lease to renew.
        """
        now = self._advance(now)
        self.expire(now)
        lease = self._leases.get(uuid)
        if lease is None:
            ended = self._ended.get(uuid)
            return RenewResult(ended.value) if ended is not None else RenewResult.UNKNOWN
        self._renew(lease, now, alive_timeout or lease.alive_timeout)
        return RenewResult.OK

    def unregister(self, now: float, uuid: str) -> bool:
        """End a lease at the device's request.

        Returns:
            True when an active lease was ended, False when ``uuid`` had none.
        """
        now = self._advance(now)
        self.expire(now)
        lease = self._leases.get(uuid)
        if lease is None:
            return False
        self._end(lease, LeaseEvent.UNREGISTER)
        return True

    def expire(self, now: float) -> int:
        """End every lease whose expiry is at or before ``now``.

        Returns:
            How many leases expired.
        """
        now = self._advance(now)
        expired = 0
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires_at, uuid = heapq.heappop(heap)
            lease = self._leases.get(uuid)
            if lease is not None and lease.expires_at == expires_at:
                self._end(lease, LeaseEvent.EXPIRE)
                expired += 1
        return expired

    def next_expiry(self) -> float | None:
        """The earliest time at which a lease may expire, or None when there are none."""
        heap = self._expiries
        while heap:
            expires_at, uuid = heap[0]
            lease = self._leases.get(uuid)
            if lease is not None and lease.expires_at == expires_at:
                return expires_at
            heapq.heappop(heap)
        return None

    @property
    def has_changes(self) -> bool:
        """Whether changes are waiting for :meth:`pop_changes`."""
        return bool(self._changes)

    def pop_changes(self) -> list[Change]:
        """Hand out (and forget) the changes made since the last call, in seq order."""
        changes, self._changes = self._changes, []
        return changes

    # ----------------------------------------------------------------- queries

    def get(self, name: str, offset: float = 0.0) -> DeviceInfo | None:
        """The device registered under ``name``, or None.

        Args:
            name: The device name.
            offset: Added to the record's times (e.g. to turn them into wall-clock times).
        """
        uuid = self._by_name.get(name)
        return None if uuid is None else self._leases[uuid].info(offset)

    def devices(self, device_type: str | None = None, offset: float = 0.0) -> list[DeviceInfo]:
        """All devices (of one type when ``device_type`` is given), sorted by name.

        Args:
            device_type: Only devices of this type, when given.
            offset: Added to the records' times (e.g. to turn them into wall-clock times).
        """
        leases = sorted(self._leases.values(), key=lambda lease: lease.name)
        return [
            lease.info(offset)
            for lease in leases
            if device_type is None or lease.device_type == device_type
        ]

    def addresses(self) -> dict[str, tuple[str, str]]:
        """``{name: (device_type, address)}`` for every device (a new dict each call)."""
        return {lease.name: (lease.device_type, lease.address) for lease in self._leases.values()}

    # ----------------------------------------------------------------- internals

    def _renew(self, lease: Lease, now: float, ttl: float) -> None:
        lease.handle(LeaseEvent.RENEW)
        lease.alive_timeout = ttl
        lease.last_seen = now
        lease.expires_at = now + ttl
        heapq.heappush(self._expiries, (lease.expires_at, lease.uuid))
        if len(self._expiries) > 4 * len(self._leases) + 64:
            self._expiries = [(item.expires_at, item.uuid) for item in self._leases.values()]
            heapq.heapify(self._expiries)

    def _end(self, lease: Lease, event: LeaseEvent) -> None:
        state = lease.handle(event)
        del self._leases[lease.uuid]
        if self._by_name.get(lease.name) == lease.uuid:
            del self._by_name[lease.name]
        if lease.incarnation and self._by_incarnation.get(lease.incarnation) == lease.uuid:
            del self._by_incarnation[lease.incarnation]
        self._ended[lease.uuid] = state
        while len(self._ended) > self._remembered:
            self._ended.popitem(last=False)
        self._record(ChangeKind.REMOVED, lease, _REASONS[state])

    def _record(self, kind: ChangeKind, lease: Lease, reason: str = "") -> None:
        self.seq += 1
        self._changes.append(Change(kind, lease.info(), self.seq, reason))

    def _free_name(self, base: str, *, always_suffix: bool) -> str:
        if not always_suffix and base not in self._by_name:
            return base
        number = 1
        while f"{base}-{number}" in self._by_name:
            number += 1
        return f"{base}-{number}"


def changes_to_events(
    changes: Iterable[Change], registry_id: str, wall_offset: float
) -> list[DeviceEvent]:
    """Turn table changes into publishable events with wall-clock times."""
    return [change.event(registry_id, wall_offset) for change in changes]
