"""Registry messages, the lease table and the watch tracker: sans-IO, "now" is an argument.

Theory of operation
-------------------
The registry protocol is the deployed plant-imaging one (``WIRE-COMPAT.md``): every message is
ONE frame of UTF-8 JSON, ``{"event": <event>, "payload": {...}}``. labwire's additions ride
along as extra fields that a deployed peer ignores, plus one request (``LIST_DEVICES``) that a
deployed registry answers with ``UNSUPPORTED``, which is how a labwire client tells the two
apart. Frame by frame, protocol version :data:`REGISTRY_PROTOCOL_VERSION`::

    requests (device or client -> registry)
      REGISTER       payload: device_type str, addr str, name str (proposed), overwrite bool
                     labwire: incarnation str (one per registering process/keeper),
                              alive_timeout number (lease length in seconds),
                              public_key str (the device server's CurveZMQ public key, 40
                              Z85 characters; sent only when the device runs with security)
      UNREGISTER     payload: uuid str
      CHECK_ALIVE    payload: uuid str, alive_timeout number (optional)
      LIST_DEVICES   labwire only. payload: name str (optional), device_type str (optional)
      every labwire request also has a top-level "lw": {"v": version, "rid": request id}

    replies (registry -> requester; "lw" echoed with the same "rid" to labwire requesters)
      REGISTER_ACK   payload: name (accepted), uuid
      ACK            payload: req_event, success
                     labwire: reason ("unknown", "expired", "replaced", "unregistered") when
                              success is false: why the uuid has no lease
      ACK to a refused REGISTER (labwire, security on): req_event "REGISTER", success false,
                     reason :data:`REGISTER_DENIED` (see "Authorisation" below)
      ACK to LIST_DEVICES: req_event, success, devices [device...], registry_id, seq,
                     event_port, heartbeat_interval, version
      UNSUPPORTED    payload: req_event (the event sent, or null)
                     labwire: error (what was wrong with the request)

    events (labwire only; the registry's PUB socket on "event_port", one frame each)
      DEVICE_ADDED   payload: registry_id, seq, device
      DEVICE_REMOVED payload: registry_id, seq, device, reason
      HEARTBEAT      payload: registry_id, seq, interval

    device = {"name", "device_type", "address", "registered_since", "last_seen",
              "incarnation", "alive_timeout", "public_key"}
              (times: UNIX seconds, for display only; public_key "" when none was registered)

Leases. :class:`LeaseTable` holds one :class:`Lease` per registered device. A lease is a small
state machine (:data:`LEASE_TRANSITIONS`): it is ACTIVE until it is unregistered, expires (no
CHECK_ALIVE within its alive_timeout, measured on the caller's monotonic clock) or is replaced
by another registration of the same name (``overwrite=True``). Every change is numbered
(``seq``) so that the event stream and snapshots can be matched up; the table keeps a bounded
memory of ended leases so a CHECK_ALIVE for one can say *why* it failed.

Names and device types are 1 to 256 characters, printable and without whitespace (no control
or format characters: no NUL, newline, escape sequence or bidirectional override), without
``/`` or a backslash, and neither ``.`` nor ``..``: a name is safe to print in a terminal, to use as
a file name and to put in a URL path. :func:`device_name_problem` says what is wrong with one;
a REGISTER that breaks the rule is refused with that reason.

Names follow the seed's rule: a free proposed name is granted as is; a taken one gets the first
free suffix ``-1``, ``-2``...; ``overwrite=True`` takes the name over (the holder's lease ends
with reason "replaced"); an empty proposed name yields ``<device_type>-<n>`` with n >= 1. A
REGISTER from an incarnation that already holds a lease for the same type and address gets
that lease back (so a retried REGISTER never creates a second entry).

Authorisation. With security on, the registry knows the authenticated public key of every
requester; a lease remembers the key that registered it (its *owner*, never sent). Ending a
lease owned by another key through REGISTER (``overwrite=True`` on a held name) is allowed
only when the registry's policy says so (admin keys): :meth:`LeaseTable.register` is told with
``may_take_over``. A refused REGISTER is answered with an ``ACK`` (req_event ``REGISTER``,
success false, reason :data:`REGISTER_DENIED`): deployed devices treat every reply other than
REGISTER_ACK as a failed registration, and labwire recognises the reason. The same owner may
always take its own names back (a device restarting under the same key), and an incarnation
id only hands back or replaces leases of the same owner. Without security every owner is ""
and the seed's rule applies unchanged.

Watching. :class:`WatchTracker` turns "snapshot + numbered events" into a consistent view: an
event whose seq is not the next one, a registry id that changed, or a heartbeat that shows a
seq the watcher never saw all mean "resynchronise from a new snapshot".
"""

from __future__ import annotations

import heapq
import math
import re
import unicodedata
import uuid as uuid_module
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, TypeAlias

import msgspec

from labwire.errors import LimitExceeded, PermissionDenied, ProtocolError
from labwire.wire.codec import decode_json, encode_json
from labwire.wire.limits import Limits

__all__ = [
    "ALIVE_TIMEOUT",
    "LEASE_TRANSITIONS",
    "MAX_ALIVE_TIMEOUT",
    "REGISTER_DENIED",
    "REGISTRY_PROTOCOL_VERSION",
    "Ack",
    "Change",
    "ChangeKind",
    "CheckAliveRequest",
    "DeviceEvent",
    "DeviceInfo",
    "DeviceListing",
    "EventType",
    "ExtensionEvent",
    "Lease",
    "LeaseEvent",
    "LeaseState",
    "LeaseTable",
    "ListDevicesRequest",
    "RegisterAck",
    "RegisterRequest",
    "Registration",
    "RegistryHeartbeat",
    "RegistryReply",
    "RegistryRequest",
    "RemovalReason",
    "RenewResult",
    "RequestMeta",
    "RequestRejected",
    "UnregisterRequest",
    "Unsupported",
    "WatchTracker",
    "WatchVerdict",
    "changes_to_events",
    "decode_event",
    "decode_reply",
    "decode_request",
    "device_name_problem",
    "encode_event",
    "encode_reply",
    "encode_request",
]

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


def _message(data: bytes | bytearray | memoryview, limits: Limits) -> dict[str, Any]:
    message = decode_json(data, limits)
    if not isinstance(message, dict):
        raise ProtocolError(
            f"a registry message must be a JSON object, got {type(message).__name__}"
        )
    return message


def _payload(message: Mapping[str, Any], what: str) -> dict[str, Any]:
    payload = message.get("payload", {})
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ProtocolError(f"field 'payload' of {what} must be an object")
    return payload


def _meta(message: Mapping[str, Any]) -> RequestMeta | None:
    extension = message.get("lw")
    if extension is None:
        return None
    if not isinstance(extension, dict):
        raise ProtocolError("field 'lw' must be an object")
    version = extension.get("v")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ProtocolError("field 'lw.v' must be a positive integer")
    request_id = extension.get("rid")
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, int)):
        raise ProtocolError("field 'lw.rid' must be an integer")
    return RequestMeta(version, request_id)


# --------------------------------------------------------------------------- requests


def encode_request(request: RegistryRequest, request_id: int | None = None) -> bytes:
    """Encode a request as one JSON frame.

    Args:
        request: The request.
        request_id: When given, the labwire extension ``"lw"`` is added with this id; leave it
            out to send exactly what a deployed device sends (plus REGISTER's extra fields).

    Returns:
        The frame.
    """
    payload: dict[str, Any]
    if isinstance(request, RegisterRequest):
        event: str = EventType.REGISTER
        payload = {
            "device_type": request.device_type,
            "addr": request.addr,
            "name": request.name,
            "overwrite": request.overwrite,
        }
        if request.incarnation:
            payload["incarnation"] = request.incarnation
        if request.alive_timeout is not None:
            payload["alive_timeout"] = request.alive_timeout
        if request.public_key:
            payload["public_key"] = request.public_key
    elif isinstance(request, UnregisterRequest):
        event, payload = EventType.UNREGISTER, {"uuid": request.uuid}
    elif isinstance(request, CheckAliveRequest):
        event, payload = EventType.CHECK_ALIVE, {"uuid": request.uuid}
        if request.alive_timeout is not None:
            payload["alive_timeout"] = request.alive_timeout
    else:
        event, payload = ExtensionEvent.LIST_DEVICES, {}
        if request.name is not None:
            payload["name"] = request.name
        if request.device_type is not None:
            payload["device_type"] = request.device_type
    message: dict[str, Any] = {"event": event, "payload": payload}
    if request_id is not None:
        message["lw"] = {"v": REGISTRY_PROTOCOL_VERSION, "rid": request_id}
    return encode_json(message)


def decode_request(
    data: bytes | bytearray | memoryview, limits: Limits
) -> tuple[RegistryRequest, RequestMeta | None]:
    """Decode and validate one request frame.

    Args:
        data: The frame.
        limits: Limits to enforce while decoding.

    Returns:
        The request and its labwire extension (None for a deployed sender).

    Raises:
        RequestRejected: The frame is not a valid request; ``req_event`` and ``meta`` say
            what could be read of it, so an error reply can still be routed and matched.
    """
    try:
        message = _message(data, limits)
    except ProtocolError as exc:
        raise RequestRejected(str(exc), None, None) from None
    event = message.get("event")
    try:
        meta = _meta(message)
    except ProtocolError as exc:
        raise RequestRejected(str(exc), event if isinstance(event, str) else None, None) from None
    if not isinstance(event, str):
        raise RequestRejected("a registry request needs an 'event' string", None, meta)
    try:
        return _parse_request(event, message), meta
    except ProtocolError as exc:
        raise RequestRejected(str(exc), event[:64], meta) from None


def _parse_request(event: str, message: Mapping[str, Any]) -> RegistryRequest:
    if event == EventType.REGISTER:
        payload = _payload(message, event)
        return RegisterRequest(
            device_type=_device_name(payload, "device_type", event, required=True),
            addr=_text(payload, "addr", MAX_ADDRESS_CHARS, event),
            name=_device_name(payload, "name", event, required=False),
            overwrite=_flag(payload, "overwrite", event),
            incarnation=_text(payload, "incarnation", MAX_INCARNATION_CHARS, event, default=""),
            alive_timeout=_alive_timeout(payload, event),
            public_key=_public_key(payload, event),
        )
    if event == EventType.UNREGISTER:
        payload = _payload(message, event)
        return UnregisterRequest(_text(payload, "uuid", MAX_UUID_CHARS, event))
    if event == EventType.CHECK_ALIVE:
        payload = _payload(message, event)
        return CheckAliveRequest(
            _text(payload, "uuid", MAX_UUID_CHARS, event), _alive_timeout(payload, event)
        )
    if event == ExtensionEvent.LIST_DEVICES:
        payload = _payload(message, event)
        name = payload.get("name")
        device_type = payload.get("device_type")
        return ListDevicesRequest(
            None if name is None else _text(payload, "name", MAX_NAME_CHARS, event),
            None if device_type is None else _text(payload, "device_type", MAX_NAME_CHARS, event),
        )
    raise ProtocolError(f"unsupported registry event {event[:64]!r}")


# --------------------------------------------------------------------------- replies


def encode_reply(reply: RegistryReply, meta: RequestMeta | None = None) -> bytes:
    """Encode a reply as one JSON frame.

    Args:
        reply: The reply.
        meta: The labwire extension of the request being answered; when given, ``"lw"`` with
            the same request id is added. Deployed requesters get exactly the deployed reply
            fields (plus ``reason``/``error`` on failures).

    Returns:
        The frame.
    """
    message: dict[str, Any]
    if isinstance(reply, RegisterAck):
        message = {
            "event": EventType.REGISTER_ACK,
            "payload": {"name": reply.name, "uuid": reply.uuid},
        }
    elif isinstance(reply, Ack):
        payload: dict[str, Any] = {"req_event": reply.req_event, "success": reply.success}
        if reply.reason:
            payload["reason"] = reply.reason
        message = {"event": EventType.ACK, "payload": payload}
    elif isinstance(reply, DeviceListing):
        message = {
            "event": EventType.ACK,
            "payload": {
                "req_event": ExtensionEvent.LIST_DEVICES,
                "success": True,
                "devices": reply.devices,
                "registry_id": reply.registry_id,
                "seq": reply.seq,
                "event_port": reply.event_port,
                "heartbeat_interval": reply.heartbeat_interval,
                "version": reply.version,
            },
        }
    else:
        payload = {"req_event": reply.req_event}
        if reply.error:
            payload["error"] = reply.error
        message = {"event": EventType.UNSUPPORTED, "payload": payload}
    if meta is not None:
        message["lw"] = {"v": REGISTRY_PROTOCOL_VERSION, "rid": meta.request_id}
    return encode_json(message)


def decode_reply(
    data: bytes | bytearray | memoryview, limits: Limits
) -> tuple[RegistryReply, int | None]:
    """Decode and validate one reply frame.

    Args:
        data: The frame.
        limits: Limits to enforce while decoding.

    Returns:
        The reply and the request id it answers (None from a deployed registry).

    Raises:
        ProtocolError: The frame is not a valid registry reply.
    """
    message = _message(data, limits)
    meta = _meta(message)
    request_id = meta.request_id if meta is not None else None
    event = message.get("event")
    payload = _payload(message, "a reply")
    if event == EventType.REGISTER_ACK:
        name = _text(payload, "name", MAX_NAME_CHARS, event)
        uuid = _text(payload, "uuid", MAX_UUID_CHARS, event)
        return RegisterAck(name, uuid), request_id
    if event == EventType.ACK:
        req_event = _text(payload, "req_event", 64, event, default="")
        success = _flag(payload, "success", event)
        if req_event == ExtensionEvent.LIST_DEVICES and success:
            return _parse_listing(payload), request_id
        reason = _text(payload, "reason", MAX_REASON_CHARS, event, default="")
        return Ack(req_event, success, reason), request_id
    if event == EventType.UNSUPPORTED:
        sent_event = payload.get("req_event")
        error = payload.get("error", "")
        return Unsupported(
            sent_event if isinstance(sent_event, str) else None,
            error if isinstance(error, str) else "",
        ), request_id
    raise ProtocolError(f"unexpected registry reply event {str(event)[:64]!r}")


def _parse_listing(payload: Mapping[str, Any]) -> DeviceListing:
    devices = payload.get("devices")
    if not isinstance(devices, list):
        raise ProtocolError("a device listing needs a 'devices' list")
    event_port = _integer(payload, "event_port", "a device listing")
    if not 0 <= event_port <= 65535:
        raise ProtocolError("field 'event_port' of a device listing is out of range")
    return DeviceListing(
        devices=tuple([DeviceInfo.from_json(item) for item in devices]),
        registry_id=_text(payload, "registry_id", MAX_INCARNATION_CHARS, "a device listing"),
        seq=_integer(payload, "seq", "a device listing"),
        event_port=event_port,
        heartbeat_interval=_number(payload, "heartbeat_interval", "a device listing", 1.0),
        version=_integer(payload, "version", "a device listing"),
    )


# --------------------------------------------------------------------------- events


def encode_event(event: DeviceEvent | RegistryHeartbeat) -> bytes:
    """Encode a published event or heartbeat as one JSON frame."""
    if isinstance(event, RegistryHeartbeat):
        return encode_json(
            {
                "event": ExtensionEvent.HEARTBEAT,
                "payload": {
                    "registry_id": event.registry_id,
                    "seq": event.seq,
                    "interval": event.interval,
                },
            }
        )
    payload: dict[str, Any] = {
        "registry_id": event.registry_id,
        "seq": event.seq,
        "device": event.device,
    }
    if event.kind == ChangeKind.REMOVED:
        payload["reason"] = event.reason
    name = (
        ExtensionEvent.DEVICE_ADDED
        if event.kind == ChangeKind.ADDED
        else (ExtensionEvent.DEVICE_REMOVED)
    )
    return encode_json({"event": name, "payload": payload})


def decode_event(
    data: bytes | bytearray | memoryview, limits: Limits
) -> DeviceEvent | RegistryHeartbeat:
    """Decode and validate one published frame.

    Raises:
        ProtocolError: The frame is not a valid registry event.
    """
    message = _message(data, limits)
    event = message.get("event")
    payload = _payload(message, "an event")
    registry_id = _text(payload, "registry_id", MAX_INCARNATION_CHARS, "an event")
    seq = _integer(payload, "seq", "an event")
    if event == ExtensionEvent.HEARTBEAT:
        return RegistryHeartbeat(registry_id, seq, _number(payload, "interval", "a heartbeat"))
    if event == ExtensionEvent.DEVICE_ADDED:
        kind = ChangeKind.ADDED
    elif event == ExtensionEvent.DEVICE_REMOVED:
        kind = ChangeKind.REMOVED
    else:
        raise ProtocolError(f"unknown registry event {str(event)[:64]!r}")
    reason = _text(payload, "reason", 64, "an event", default="")
    return DeviceEvent(kind, DeviceInfo.from_json(payload.get("device")), registry_id, seq, reason)


# --------------------------------------------------------------------------- leases


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


# --------------------------------------------------------------------------- watching


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


def changes_to_events(
    changes: Iterable[Change], registry_id: str, wall_offset: float
) -> list[DeviceEvent]:
    """Turn table changes into publishable events with wall-clock times."""
    return [change.event(registry_id, wall_offset) for change in changes]
