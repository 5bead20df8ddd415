"""Registry messages: limits, event names, the typed requests, replies and events, field checks.

The frame-by-frame format is in :mod:`labwire.wire.registry`; :mod:`labwire.wire.registry.codec`
turns these messages into frames and back.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeAlias

import msgspec

from labwire.errors import LimitExceeded, ProtocolError

REGISTRY_PROTOCOL_VERSION = 1

#: Default lease length in seconds, as in the deployed registry.
ALIVE_TIMEOUT = 20

#: Longest lease a registry grants (one week), so a typo cannot pin a name for ever.
MAX_ALIVE_TIMEOUT = 7 * 24 * 3600.0

MAX_NAME_CHARS = 256
MAX_ADDRESS_CHARS = 1024
MAX_INCARNATION_CHARS = 64
MAX_UUID_CHARS = 128
MAX_REASON_CHARS = 256
PUBLIC_KEY_CHARS = 40

#: ``reason`` of the ACK that refuses a REGISTER taking over a name held by another key.
REGISTER_DENIED = "permission denied: overwriting a name needs an admin key"

# A CurveZMQ public key in Z85 text (ZeroMQ's Z85 alphabet, 40 characters).
_PUBLIC_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


class EventType(StrEnum):
    """Event types of the deployed registry protocol, as sent in a message's ``"event"``."""

    REGISTER = "REGISTER"
    REGISTER_ACK = "REGISTER_ACK"
    UNREGISTER = "UNREGISTER"
    CHECK_ALIVE = "CHECK_ALIVE"
    ACK = "ACK"
    UNSUPPORTED = "UNSUPPORTED"


class AliveCheckState(StrEnum):
    """The outcome of an alive check, as ``send_alive_check`` returns it.

    Members compare equal to their values, so code comparing with the strings works too.
    """

    OK = "ok"
    """The registry renewed the lease."""
    UNKNOWN = "unknown"
    """The registry does not know the uuid (it restarted, or the lease expired): register again."""
    UNREACHABLE = "unreachable"
    """No reply came in time."""


class ExtensionEvent(StrEnum):
    """labwire-only events: a request deployed registries do not know, and published events."""

    LIST_DEVICES = "LIST_DEVICES"
    DEVICE_ADDED = "DEVICE_ADDED"
    DEVICE_REMOVED = "DEVICE_REMOVED"
    HEARTBEAT = "HEARTBEAT"


class ChangeKind(StrEnum):
    """What happened to a device in the registry."""

    ADDED = "added"
    REMOVED = "removed"


class RemovalReason(StrEnum):
    """Why a lease ended."""

    UNREGISTERED = "unregistered"
    EXPIRED = "expired"
    REPLACED = "replaced"


class RenewResult(StrEnum):
    """Outcome of a CHECK_ALIVE: ``ok`` or why the uuid holds no lease."""

    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REPLACED = "replaced"
    UNREGISTERED = "unregistered"


# --------------------------------------------------------------------------- messages


class DeviceInfo(msgspec.Struct, frozen=True):
    """One registered device, as listed and published by a registry.

    Attributes:
        name: The accepted (unique) name.
        device_type: The device type given at registration.
        address: The device's endpoint, e.g. ``tcp://10.0.0.7:5000``.
        registered_since: When the lease began. On the wire: UNIX seconds (display only);
            inside :class:`LeaseTable`: the caller's monotonic clock.
        last_seen: Last registration or CHECK_ALIVE, on the same clock as ``registered_since``.
        incarnation: The registering process's incarnation id ("" for deployed devices).
        alive_timeout: The lease length in seconds.
        public_key: The device server's CurveZMQ public key (Z85 text), "" when the device
            registered none (security off, or a deployed device). Clients that connect by
            name use it as the server key.
    """

    name: str
    device_type: str
    address: str
    registered_since: float = 0.0
    last_seen: float = 0.0
    incarnation: str = ""
    alive_timeout: float = float(ALIVE_TIMEOUT)
    public_key: str = ""

    def shifted(self, offset: float) -> DeviceInfo:
        """The same record with both times moved by ``offset`` (monotonic -> wall clock)."""
        return msgspec.structs.replace(
            self,
            registered_since=self.registered_since + offset,
            last_seen=self.last_seen + offset,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (messages embed the struct, which encodes the same)."""
        return msgspec.structs.asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> DeviceInfo:
        """Validate and build a record from decoded JSON.

        Raises:
            ProtocolError: ``value`` is not a device record.
        """
        if type(value) is dict:  # fast path: a well-formed record from a labwire registry
            name = value.get("name")
            device_type = value.get("device_type")
            address = value.get("address")
            incarnation = value.get("incarnation", "")
            registered = value.get("registered_since")
            seen = value.get("last_seen")
            ttl = value.get("alive_timeout")
            public_key = value.get("public_key", "")
            if (
                type(name) is str
                and type(device_type) is str
                and type(address) is str
                and type(incarnation) is str
                and type(registered) is float
                and type(seen) is float
                and type(ttl) is float
                and type(public_key) is str
                and len(name) <= MAX_NAME_CHARS
                and len(device_type) <= MAX_NAME_CHARS
                and len(address) <= MAX_ADDRESS_CHARS
                and len(incarnation) <= MAX_INCARNATION_CHARS
                and (not public_key or _PUBLIC_KEY.fullmatch(public_key) is not None)
            ):
                return cls(
                    name, device_type, address, registered, seen, incarnation, ttl, public_key
                )
        if not isinstance(value, dict):
            raise ProtocolError("a device record must be a JSON object")
        return cls(
            name=_text(value, "name", MAX_NAME_CHARS, "device"),
            device_type=_text(value, "device_type", MAX_NAME_CHARS, "device"),
            address=_text(value, "address", MAX_ADDRESS_CHARS, "device"),
            registered_since=_number(value, "registered_since", "device", default=0.0),
            last_seen=_number(value, "last_seen", "device", default=0.0),
            incarnation=_text(value, "incarnation", MAX_INCARNATION_CHARS, "device", default=""),
            alive_timeout=_number(value, "alive_timeout", "device", default=float(ALIVE_TIMEOUT)),
            public_key=_public_key(value, "device"),
        )


class RequestMeta(msgspec.Struct, frozen=True):
    """The labwire extension of a request (absent from deployed peers' requests).

    Attributes:
        version: The sender's registry protocol version.
        request_id: Echoed in the reply so the sender can match it and drop late replies.
    """

    version: int = REGISTRY_PROTOCOL_VERSION
    request_id: int | None = None


class RegisterRequest(msgspec.Struct, frozen=True):
    """``REGISTER``: ask for a lease under a proposed name.

    Attributes:
        device_type: The device type (e.g. ``"camera"``).
        addr: The device's full endpoint.
        name: The proposed name ("" asks for ``<device_type>-<n>``).
        overwrite: Take the name over when another device holds it.
        incarnation: labwire: the registering process's incarnation id.
        alive_timeout: labwire: lease length in seconds (None: the registry's default).
        public_key: labwire: the device server's CurveZMQ public key ("" when it has none).
    """

    device_type: str
    addr: str
    name: str
    overwrite: bool = False
    incarnation: str = ""
    alive_timeout: float | None = None
    public_key: str = ""


class UnregisterRequest(msgspec.Struct, frozen=True):
    """``UNREGISTER``: end the lease identified by ``uuid``."""

    uuid: str


class CheckAliveRequest(msgspec.Struct, frozen=True):
    """``CHECK_ALIVE``: renew a lease for ``alive_timeout`` seconds (None: its last length)."""

    uuid: str
    alive_timeout: float | None = None


class ListDevicesRequest(msgspec.Struct, frozen=True):
    """``LIST_DEVICES`` (labwire): list devices, optionally only one name or one type."""

    name: str | None = None
    device_type: str | None = None


RegistryRequest: TypeAlias = (
    RegisterRequest | UnregisterRequest | CheckAliveRequest | ListDevicesRequest
)


class RegisterAck(msgspec.Struct, frozen=True):
    """``REGISTER_ACK``: the accepted name and the uuid that identifies the lease."""

    name: str
    uuid: str


class Ack(msgspec.Struct, frozen=True):
    """``ACK`` to UNREGISTER or CHECK_ALIVE, or (labwire) the refusal of a REGISTER.

    Attributes:
        req_event: The event acknowledged.
        success: Whether it succeeded.
        reason: labwire: why it failed ("" from deployed registries or on success);
            :data:`REGISTER_DENIED` for a REGISTER refused for lack of permission.
    """

    req_event: str
    success: bool
    reason: str = ""

    @property
    def is_permission_denied(self) -> bool:
        """Whether this is a registry's refusal of a REGISTER for lack of permission."""
        return (
            self.req_event == EventType.REGISTER
            and not self.success
            and self.reason.startswith("permission denied")
        )


class DeviceListing(msgspec.Struct, frozen=True):
    """labwire ``ACK`` to LIST_DEVICES: a consistent snapshot of the registry.

    Attributes:
        devices: The devices (wall-clock times).
        registry_id: The registry incarnation; changes when the registry restarts.
        seq: Number of the last change included in this snapshot.
        event_port: TCP port of the registry's event publisher (0: none).
        heartbeat_interval: Seconds between the publisher's heartbeats.
        version: The registry's protocol version.
    """

    devices: tuple[DeviceInfo, ...]
    registry_id: str
    seq: int
    event_port: int = 0
    heartbeat_interval: float = 1.0
    version: int = REGISTRY_PROTOCOL_VERSION


class Unsupported(msgspec.Struct, frozen=True):
    """``UNSUPPORTED``: the request was not understood (``error`` says why, for labwire)."""

    req_event: str | None
    error: str = ""


RegistryReply: TypeAlias = RegisterAck | Ack | DeviceListing | Unsupported


class DeviceEvent(msgspec.Struct, frozen=True):
    """A published change: a device was added or removed.

    Attributes:
        kind: Added or removed.
        device: The device record (wall-clock times).
        registry_id: The publishing registry's incarnation.
        seq: Number of this change (1, 2, 3... per registry incarnation).
        reason: For removals, a :class:`RemovalReason` value.
    """

    kind: ChangeKind
    device: DeviceInfo
    registry_id: str
    seq: int
    reason: str = ""


class RegistryHeartbeat(msgspec.Struct, frozen=True):
    """A published heartbeat: the registry is alive and its last change is ``seq``."""

    registry_id: str
    seq: int
    interval: float


class RequestRejected(ProtocolError):
    """A request the registry cannot accept, with what is needed to answer it.

    Attributes:
        req_event: The ``event`` of the request when it had one, else None.
        meta: The labwire extension of the request, when it could be read.
    """

    def __init__(self, message: str, req_event: str | None, meta: RequestMeta | None) -> None:
        super().__init__(message)
        self.req_event = req_event
        self.meta = meta


# --------------------------------------------------------------------------- field checks


def _text(
    obj: Mapping[str, Any], key: str, max_chars: int, what: str, default: str | None = None
) -> str:
    if key not in obj:
        if default is not None:
            return default
        raise ProtocolError(f"{what} needs a {key!r} field")
    value = obj[key]
    if not isinstance(value, str):
        raise ProtocolError(f"field {key!r} of {what} must be a string")
    if len(value) > max_chars:
        raise LimitExceeded(f"field {key!r} of {what} is longer than {max_chars} characters")
    return value


def device_name_problem(name: str) -> str | None:
    """What makes ``name`` unusable as a device name or type, or None when it is a good one.

    The rule (see the module docs) keeps names safe in terminals, file names and URLs.

    Args:
        name: A proposed device name or device type.

    Returns:
        A sentence naming the problem, or None.
    """
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    if name in (".", ".."):
        return f"cannot be {name!r}"
    for char in name:
        if char in "/\\":
            return f"contains {char!r} (names may not hold '/' or '\\')"
        if char.isspace():
            return f"contains whitespace ({char!r})"
        if unicodedata.category(char)[0] == "C":
            return f"contains the control or format character U+{ord(char):04X}"
    return None


def _device_name(obj: Mapping[str, Any], key: str, what: str, *, required: bool) -> str:
    """A name or type field: empty (the registry picks), or one that follows the name rule."""
    value = _text(obj, key, MAX_NAME_CHARS, what, default=None if required else "")
    if not value:
        return value
    problem = device_name_problem(value)
    if problem is not None:
        raise ProtocolError(f"field {key!r} of {what} {problem}: {value!r}")
    return value


def _number(obj: Mapping[str, Any], key: str, what: str, default: float | None = None) -> float:
    value = obj.get(key)
    if value is None:
        if default is not None:
            return default
        raise ProtocolError(f"{what} needs a {key!r} field")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"field {key!r} of {what} must be a number")
    return float(value)


def _alive_timeout(obj: Mapping[str, Any], what: str) -> float | None:
    if obj.get("alive_timeout") is None:
        return None
    seconds = _number(obj, "alive_timeout", what)
    if not 0 < seconds <= MAX_ALIVE_TIMEOUT:
        raise ProtocolError(
            f"field 'alive_timeout' of {what} must be > 0 and <= {MAX_ALIVE_TIMEOUT:g} seconds"
        )
    return seconds


def _public_key(obj: Mapping[str, Any], what: str) -> str:
    value = obj.get("public_key")
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or _PUBLIC_KEY.fullmatch(value) is None:
        raise ProtocolError(
            f"field 'public_key' of {what} must be a CurveZMQ public key "
            f"({PUBLIC_KEY_CHARS} Z85 characters)"
        )
    return value


def _flag(obj: Mapping[str, Any], key: str, what: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProtocolError(f"field {key!r} of {what} must be true or false")
    return value


def _integer(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"field {key!r} of {what} must be an integer")
    return value
