"""Peer cluster wire format: discovery beacons, data-link messages, durations and group ports.

Sans-IO: nothing here opens a socket or reads a clock.

Beacons (UDP, protocol version 1)
---------------------------------
Every device of a group sends one datagram per beacon interval to the group's UDP port
(:func:`group_to_port`)::

    b"LWCB"  | version (1 byte) | JSON body | HMAC-SHA256 tag (32 bytes)

The body is a :class:`Beacon`: group, device name, instance id (random per start), the TCP port
of the device's data link, the version of its catalog (subscriptions and endpoints), and its
CurveZMQ public key when the data link is secured by labwire security settings. The catalog
itself travels over the data link when its version changes, so a beacon stays under
:data:`MAX_BEACON_BYTES` however many subscriptions a device has. The tag is computed with the
group key (:func:`beacon_key`); without a key it is computed with a key derived from the group
name alone, which detects corruption but authenticates nobody. A datagram that fails any check
raises :class:`~labwire.errors.ProtocolError` from :func:`decode_beacon` (the caller drops and
counts it).

Data-link messages (ZeroMQ, one JSON frame each)
------------------------------------------------
A JSON object with a ``kind`` tag, one of :class:`Event` (a published topic), :class:`Direct`
(``send``), :class:`Call` (``request``), :class:`Answer` (a request's outcome),
:class:`CatalogQuery` and :class:`Catalog`. Every message names its sender and the sender's
instance id. Decoding goes through the strict JSON codec (:func:`labwire.wire.decode_json`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from typing import Any, Literal

import msgspec

from labwire.errors import ProtocolError
from labwire.wire.codec import decode_json, encode_json
from labwire.wire.limits import Limits

__all__ = [
    "BEACON_MAGIC",
    "BEACON_VERSION",
    "MAX_BEACON_BYTES",
    "MAX_NAME_CHARS",
    "Answer",
    "Beacon",
    "Call",
    "Catalog",
    "CatalogQuery",
    "Direct",
    "Event",
    "Message",
    "beacon_key",
    "check_name",
    "curve_secret_from_key",
    "decode_beacon",
    "decode_message",
    "duration_to_seconds",
    "encode_beacon",
    "encode_message",
    "group_to_multicast",
    "group_to_port",
]

BEACON_MAGIC = b"LWCB"
BEACON_VERSION = 1
#: Largest beacon datagram, header and tag included.
MAX_BEACON_BYTES = 1024
#: Longest device or group name.
MAX_NAME_CHARS = 64
_TAG_BYTES = 32
_HEADER = BEACON_MAGIC + bytes([BEACON_VERSION])
#: Group ports are drawn from this range: above the well-known ports, below Linux's ephemeral
#: range (32768-60999), so a random client socket never holds a group's port.
_PORT_LOW, _PORT_HIGH = 10000, 32768


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it can name a device or a group, else raise ``ValueError``.

    A name is 1 to :data:`MAX_NAME_CHARS` printable characters without ``/`` (which separates
    the sender from the topic in event names).
    """
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a string, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"{what} must have 1 to {MAX_NAME_CHARS} characters, got {name!r}")
    if "/" in name or not name.isprintable():
        raise ValueError(f"{what} must be printable and contain no '/', got {name!r}")
    return name


def group_to_multicast(group: str) -> str:
    """The IPv4 multicast address of a group's beacons, in ``239.255.0.0/16`` (site-local).

    Args:
        group: The group name.
    """
    digest = hashlib.sha256(b"multicast\0" + group.encode("utf-8")).digest()
    return f"239.255.{digest[0]}.{max(1, digest[1])}"


def group_to_port(group: str) -> int:
    """The UDP port a group's beacons use: the same on every host for the same group name.

    Args:
        group: The group name.

    Returns:
        A port in 10000-32767, derived from a SHA-256 hash of the name.
    """
    digest = hashlib.sha256(group.encode("utf-8")).digest()
    return _PORT_LOW + int.from_bytes(digest[:4], "big") % (_PORT_HIGH - _PORT_LOW)


_UNITS = {
    "ms": 0.001,
    "msec": 0.001,
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


def duration_to_seconds(duration: object) -> float:
    """Convert a duration to seconds.

    Args:
        duration: A number of seconds (int or float), or text: a number followed by a unit,
            such as ``'100ms'``, ``'1.5s'``, ``'2 minutes'`` or ``'1h'``. Units: ``ms``,
            ``millisecond(s)``; ``s``, ``sec``, ``second(s)``; ``m``, ``min``, ``minute(s)``;
            ``h``, ``hour(s)``. Text without a unit is seconds.

    Returns:
        The duration in seconds (a number is returned as given), or -1 when ``duration`` is
        not a duration (garbage text, an unknown unit, NaN, a bool, another type).
    """
    if isinstance(duration, bool):
        return -1
    if isinstance(duration, int | float):
        return duration if math.isfinite(duration) else -1
    if not isinstance(duration, str):
        return -1
    match = _DURATION.fullmatch(duration)
    if match is None:
        return -1
    number, unit = match.groups()
    scale = _UNITS.get(unit.lower()) if unit else 1.0
    if scale is None:
        return -1
    return float(number) * scale


# ---------------------------------------------------------------------------------- keys


def beacon_key(group: str, key: bytes | str | None) -> bytes:
    """The HMAC key for a group's beacons.

    Args:
        group: The group name (beacons of other groups never verify).
        key: The group's shared secret, or None for an unauthenticated group.
    """
    secret = b"" if key is None else key.encode("utf-8") if isinstance(key, str) else bytes(key)
    marker = b"keyed" if key is not None else b"open"
    return hashlib.sha256(
        b"labwire-cluster-beacon\0" + marker + b"\0" + group.encode() + b"\0" + secret
    ).digest()


_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def _z85(data: bytes) -> str:
    """Z85 text of ``data`` (length a multiple of 4), as CurveZMQ keys are written."""
    chars: list[str] = []
    for offset in range(0, len(data), 4):
        value = int.from_bytes(data[offset : offset + 4], "big")
        block = []
        for _ in range(5):
            value, digit = divmod(value, 85)
            block.append(_Z85[digit])
        chars.extend(reversed(block))
    return "".join(chars)


def curve_secret_from_key(group: str, key: bytes | str) -> str:
    """A CurveZMQ secret key (Z85 text) derived from a group's shared secret.

    Every holder of the key derives the same keypair, so data links can require it: only key
    holders complete the handshake.
    """
    secret = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    seed = hashlib.sha256(b"labwire-cluster-curve\0" + group.encode() + b"\0" + secret).digest()
    return _z85(seed)


# ------------------------------------------------------------------------------- beacons


class Beacon(msgspec.Struct, frozen=True, array_like=True):
    """What a device announces on the group's UDP port.

    Attributes:
        group: The group name.
        name: The device name.
        uid: The device instance's random id (new on every start).
        port: TCP port of the device's data link (at the beacon's source address).
        catalog: Version of the device's catalog; a peer refetches it when this changes.
        server_key: The data link's CurveZMQ public key when labwire security settings
            secure it ("" otherwise: plain, or secured by the group key).
        interval_ms: The sender's beacon interval in milliseconds (0: not said).

    Fields are only ever appended, with defaults, and extra trailing fields are ignored, so
    peers of neighbouring versions understand each other's beacons.
    """

    group: str
    name: str
    uid: str
    port: int
    catalog: int
    server_key: str = ""
    interval_ms: int = 0


_BEACON_DECODER = msgspec.json.Decoder(Beacon)


def encode_beacon(beacon: Beacon, key: bytes) -> bytes:
    """Encode and sign a beacon.

    Args:
        beacon: The beacon.
        key: The HMAC key from :func:`beacon_key`.

    Raises:
        ValueError: The beacon would exceed :data:`MAX_BEACON_BYTES`.
    """
    body = _HEADER + encode_json(beacon)
    packet = body + hmac.digest(key, body, "sha256")
    if len(packet) > MAX_BEACON_BYTES:
        raise ValueError(f"beacon of {len(packet)} bytes exceeds {MAX_BEACON_BYTES} bytes")
    return packet


def decode_beacon(packet: bytes, key: bytes) -> Beacon:
    """Check and decode a beacon datagram.

    Args:
        packet: The datagram.
        key: The HMAC key from :func:`beacon_key`.

    Raises:
        ProtocolError: Not a labwire beacon, another version, a bad tag (another group or
            key, or tampered), or a malformed body; the message says which.
    """
    if len(packet) > MAX_BEACON_BYTES:
        raise ProtocolError(f"beacon of {len(packet)} bytes is over {MAX_BEACON_BYTES}")
    if len(packet) < len(_HEADER) + _TAG_BYTES + 2 or not packet.startswith(BEACON_MAGIC):
        raise ProtocolError("not a labwire cluster beacon")
    if packet[len(BEACON_MAGIC)] != BEACON_VERSION:
        raise ProtocolError(f"beacon version {packet[len(BEACON_MAGIC)]} is not supported")
    body, tag = packet[:-_TAG_BYTES], packet[-_TAG_BYTES:]
    if not hmac.compare_digest(hmac.digest(key, body, "sha256"), tag):
        raise ProtocolError("beacon authentication failed (another group or key, or tampered)")
    try:
        beacon = _BEACON_DECODER.decode(body[len(_HEADER) :])
    except (msgspec.DecodeError, UnicodeError, ValueError) as exc:
        raise ProtocolError(f"malformed beacon: {exc}") from None
    if not 0 < beacon.port < 65536:
        raise ProtocolError(f"beacon port {beacon.port} is out of range")
    try:
        check_name(beacon.name, "beacon name")
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    return beacon


# ------------------------------------------------------------------------------ messages


class Event(msgspec.Struct, frozen=True, tag="event", tag_field="kind"):
    """A published event.

    Attributes:
        sender: Name of the publishing device.
        uid: Its instance id.
        topic: The topic (the event name is ``sender/topic``).
        data: The payload (JSON data).
    """

    sender: str
    uid: str
    topic: str
    data: Any = None


class Direct(msgspec.Struct, frozen=True, tag="send", tag_field="kind"):
    """Data sent to one device's endpoint (``send``).

    Attributes:
        sender: Name of the sending device.
        uid: Its instance id.
        endpoint: The receiving endpoint.
        data: The payload.
    """

    sender: str
    uid: str
    endpoint: str
    data: Any = None


class Call(msgspec.Struct, frozen=True, tag="request", tag_field="kind"):
    """A request for one device's endpoint.

    Attributes:
        sender: Name of the requesting device.
        uid: Its instance id.
        id: Request id, echoed in the :class:`Answer`.
        endpoint: The endpoint.
        args: Positional arguments.
        kwargs: Keyword arguments.
    """

    sender: str
    uid: str
    id: int
    endpoint: str
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)


class Answer(msgspec.Struct, frozen=True, tag="answer", tag_field="kind"):
    """The outcome of a :class:`Call`.

    Attributes:
        sender: Name of the answering device.
        uid: Its instance id.
        id: The request id.
        status: ``"ok"`` (``value`` holds the result), ``"not_found"`` (no such endpoint),
            ``"error"`` (the handler raised) or ``"bad_request"`` (arguments refused).
        value: The result when ``status`` is ``"ok"``.
        error_type: The exception type name otherwise.
        error: The error message otherwise.
        traceback: The remote traceback ("" when none).
    """

    sender: str
    uid: str
    id: int
    status: Literal["ok", "not_found", "error", "bad_request"]
    value: Any = None
    error_type: str = ""
    error: str = ""
    traceback: str = ""


class CatalogQuery(msgspec.Struct, frozen=True, tag="catalog?", tag_field="kind"):
    """Ask a device for its catalog.

    Attributes:
        sender: Name of the asking device.
        uid: Its instance id.
    """

    sender: str
    uid: str


class Catalog(msgspec.Struct, frozen=True, tag="catalog", tag_field="kind"):
    """What a device listens for.

    Attributes:
        sender: Name of the device.
        uid: Its instance id.
        version: The catalog version (as in its beacons).
        subscriptions: Event patterns (``sender/topic`` globs) it subscribed to.
        requests: Its request endpoints.
        receivers: Its ``send`` endpoint patterns.
    """

    sender: str
    uid: str
    version: int
    subscriptions: list[str] = msgspec.field(default_factory=list)
    requests: list[str] = msgspec.field(default_factory=list)
    receivers: list[str] = msgspec.field(default_factory=list)


Message = Event | Direct | Call | Answer | CatalogQuery | Catalog


def encode_message(message: Message) -> bytes:
    """Encode a data-link message as one JSON frame.

    Raises:
        TypeError: The payload cannot be sent as JSON.
    """
    return encode_json(message)


_KINDS: dict[str, type[Message]] = {
    kind.__struct_config__.tag: kind  # type: ignore[misc]
    for kind in (Event, Direct, Call, Answer, CatalogQuery, Catalog)
}


def decode_message(frame: bytes | memoryview, limits: Limits) -> Message:
    """Decode and validate one data-link frame.

    Raises:
        ProtocolError: The frame is not a valid message; the message says why.
    """
    value = decode_json(frame, limits)
    tag = value.get("kind") if isinstance(value, dict) else None
    kind = _KINDS.get(tag) if isinstance(tag, str) else None
    if kind is None:
        raise ProtocolError("a cluster message is a JSON object with a known 'kind'")
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid cluster message: {exc}") from None
