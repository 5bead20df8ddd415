"""Sans-IO core of rig coordination: experiment messages, typed payloads, datagrams, status.

Messages
--------
The experiment vocabulary is :class:`ExpMessage` (the integer codes of the deployed
``iblutil.io.net`` protocol: ``EXPINIT=1`` ... ``ALYX=128``; 0 marks an error reply) and the rig
status is :class:`ExpStatus` (``CONNECTED=0``, ``INITIALIZED=10``, ``RUNNING=20``,
``STOPPED=30``). Each message has one typed payload class (:class:`Init`, :class:`Start`, ...):
:func:`build_payload` checks the caller's arguments and :func:`payload_from_items` checks what
arrived, so a wrong argument is an error at the caller and a malformed one is an error reply
from the rig, never a crash.

Deployed datagram format (UDP, one datagram per message)
--------------------------------------------------------
Each datagram is a UTF-8 JSON array whose first element is the message code::

    [1, data]                     EXPINIT       (reply: [1, data])
    [2, exp_ref, data]            EXPSTART      (reply: [2, exp_ref, data])
    [4, data]                     EXPEND        (reply: [4, data])
    [8, data]                     EXPCLEANUP    (reply: [8, data])
    [16, data]                    EXPINTERRUPT  (reply: [16, data])
    [32, status]                  EXPSTATUS     (reply: [32, status])
    [64, status, data]            EXPINFO       (reply: [64, status, data])
    [128, base_url, token]        ALYX          (reply: [128, base_url, token])
    [0, "Type: message", code]    error reply to the message ``code`` (never echoed)

The receiver of any non-error datagram sends the exact bytes back as confirmation (the echo);
the application's answer comes later as a new datagram with the same code, which is echoed in
turn. The default port is :data:`LISTEN_PORT`. The wire carries no request id, so a reply is
matched to the pending request of the same code from the same peer.

Between two labwire ends the same payload items travel inside an RPC call
(:mod:`labwire.wire.rpc`), which adds request ids, deadlines and CurveZMQ.

Status machine
--------------
:data:`TRANSITIONS` is the rig's status table ``{status: {message: next status}}``;
:func:`next_status` applies it and raises :class:`IllegalTransition` for a message the current
status does not allow. EXPSTATUS, EXPINFO and ALYX never change the status; EXPINTERRUPT is
allowed in every status (an experiment may fail before it initialised every rig).

Protocol version: :data:`PROTOCOL_VERSION` (the deployed enumerations' version).
"""

from __future__ import annotations

import ipaddress
import re
import traceback
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any, ClassVar

from labwire.errors import ConfigurationError, EndpointError, ProtocolError
from labwire.wire.codec import decode_json, encode_json
from labwire.wire.limits import Limits

__all__ = [
    "LISTEN_PORT",
    "MAX_DATAGRAM_BYTES",
    "PROTOCOL_VERSION",
    "REVERSED_MESSAGES",
    "TRANSITIONS",
    "Alyx",
    "Cleanup",
    "Datagram",
    "End",
    "ExpMessage",
    "ExpStatus",
    "IllegalTransition",
    "Info",
    "Init",
    "Interrupt",
    "Payload",
    "RigAddress",
    "Start",
    "Status",
    "build_payload",
    "decode_datagram",
    "encode_datagram",
    "encode_error",
    "error_details",
    "next_status",
    "parse_message",
    "parse_rig_uri",
    "parse_status",
    "payload_from_items",
]

#: Port deployed rig services listen on when a URI names none.
LISTEN_PORT = 11001
#: Version of the deployed message and status enumerations.
PROTOCOL_VERSION = "1.0.0"
#: Largest UDP payload; bigger messages cannot be sent as one datagram.
MAX_DATAGRAM_BYTES = 65507

#: Limits on decoded datagrams (a datagram is at most 64 KiB anyway).
_LIMITS = Limits(max_json_bytes=MAX_DATAGRAM_BYTES, max_depth=32)


class ExpMessage(IntFlag):
    """The experiment messages, with the integer codes of the deployed protocol."""

    EXPINIT = 1
    EXPSTART = 2
    EXPEND = 4
    EXPCLEANUP = 8
    EXPINTERRUPT = 16
    EXPSTATUS = 32
    EXPINFO = 64
    ALYX = 128


class ExpStatus(IntEnum):
    """A rig's experiment status, with the values of the deployed protocol."""

    CONNECTED = 0
    INITIALIZED = 10
    RUNNING = 20
    STOPPED = 30


#: Messages sent to rigs in reverse order when sent one rig after the other.
REVERSED_MESSAGES = frozenset({ExpMessage.EXPEND, ExpMessage.EXPINTERRUPT, ExpMessage.EXPCLEANUP})

_SINGLE_CODES = {int(member): member for member in ExpMessage}


def parse_message(value: object) -> ExpMessage:
    """The message named by ``value``: an :class:`ExpMessage`, its name or its integer code.

    Names are case-insensitive (``"expinit"``), as the deployed code accepts them.

    Raises:
        TypeError: ``value`` is neither a message, a string nor an integer.
        ConfigurationError: No single message has that name or code.
    """
    if isinstance(value, ExpMessage) and int(value) in _SINGLE_CODES:
        return _SINGLE_CODES[int(value)]
    if isinstance(value, str):
        member = ExpMessage.__members__.get(value.strip().upper())
        if member is None:
            raise ConfigurationError(
                f"unknown experiment message {value!r}; choose from {', '.join(_NAMES)}"
            )
        return member
    if isinstance(value, int) and not isinstance(value, bool):
        member = _SINGLE_CODES.get(int(value))
        if member is None:
            raise ConfigurationError(
                f"unknown experiment message code {value}; codes are "
                + ", ".join(f"{m.name}={int(m)}" for m in ExpMessage)
            )
        return member
    raise TypeError(
        f"an experiment message is an ExpMessage, its name or its code, not {type(value).__name__}"
    )


_NAMES = tuple(ExpMessage.__members__)


def parse_status(value: object) -> ExpStatus:
    """The status named by ``value``: an :class:`ExpStatus`, its name or its integer value.

    Raises:
        ConfigurationError: No status has that name or value.
    """
    if isinstance(value, ExpStatus):
        return value
    if isinstance(value, str):
        member = ExpStatus.__members__.get(value.strip().upper())
        if member is not None:
            return member
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            return ExpStatus(value)
        except ValueError:
            pass
    choices = ", ".join(f"{s.name}={int(s)}" for s in ExpStatus)
    raise ConfigurationError(f"unknown experiment status {value!r}; choose from {choices}")


# ----------------------------------------------------------------------------- payloads


def _check_json(message: str, field: str, value: Any) -> Any:
    try:
        encode_json(value)
    except TypeError as exc:
        raise TypeError(f"{message} {field}: {exc}") from None
    return value


@dataclass(frozen=True, slots=True)
class Payload(ABC):
    """Base of the typed payloads: one subclass per message."""

    message: ClassVar[ExpMessage]
    signature: ClassVar[str]

    @abstractmethod
    def items(self) -> list[Any]:
        """The payload as the list of values that follow the code on the wire."""

    @classmethod
    @abstractmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items, checking them.

        Raises:
            ProtocolError: Too many items, or an item of the wrong type.
        """


def _items_of(message: ExpMessage, items: Sequence[Any], count: int) -> list[Any]:
    if len(items) > count:
        raise ProtocolError(
            f"{message.name} carries at most {count} value(s) after its code, got {len(items)}"
        )
    return [*items, *([None] * (count - len(items)))]


@dataclass(frozen=True, slots=True)
class _DataOnly(Payload):
    data: Any = None

    def __post_init__(self) -> None:
        _check_json(self.message.name or "", "data", self.data)

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [self.data]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        (data,) = _items_of(cls.message, items, 1)
        return cls(data)


@dataclass(frozen=True, slots=True)
class Init(_DataOnly):
    """EXPINIT: the experiment is initialising.

    Attributes:
        data: Optional JSON data for the rigs (e.g. the experiment description).
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPINIT
    signature: ClassVar[str] = "(data=None)"


@dataclass(frozen=True, slots=True)
class End(_DataOnly):
    """EXPEND: the experiment has stopped.

    Attributes:
        data: Optional JSON data.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPEND
    signature: ClassVar[str] = "(data=None)"


@dataclass(frozen=True, slots=True)
class Cleanup(_DataOnly):
    """EXPCLEANUP: the experiment's clean-up has begun.

    Attributes:
        data: Optional JSON data.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPCLEANUP
    signature: ClassVar[str] = "(data=None)"


@dataclass(frozen=True, slots=True)
class Interrupt(_DataOnly):
    """EXPINTERRUPT: the experiment was interrupted.

    Attributes:
        data: Optional JSON data; labwire sends ``{"error": error_details(exc)}`` when an
            exception interrupted the experiment.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPINTERRUPT
    signature: ClassVar[str] = "(data=None)"


@dataclass(frozen=True, slots=True)
class Start(Payload):
    """EXPSTART: the experiment has begun.

    Attributes:
        exp_ref: The experiment reference ``yyyy-mm-dd_n_subject`` (None when unknown). A dict
            with ``date``, ``sequence`` and ``subject`` is joined into that form.
        data: Optional JSON data.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPSTART
    signature: ClassVar[str] = "(exp_ref, data=None)"
    exp_ref: str | None = None
    data: Any = None

    def __post_init__(self) -> None:
        exp_ref = self.exp_ref
        if isinstance(exp_ref, Mapping):
            try:
                exp_ref = f"{exp_ref['date']}_{int(exp_ref['sequence'])}_{exp_ref['subject']}"
            except (KeyError, TypeError, ValueError):
                raise TypeError(
                    "EXPSTART exp_ref as a dict needs 'date', an integer 'sequence' and 'subject'"
                ) from None
            object.__setattr__(self, "exp_ref", exp_ref)
        elif exp_ref == "":
            object.__setattr__(self, "exp_ref", None)
        elif exp_ref is not None and not isinstance(exp_ref, str):
            raise TypeError(
                f"EXPSTART exp_ref must be a string yyyy-mm-dd_n_subject or None, "
                f"not {type(exp_ref).__name__}"
            )
        _check_json("EXPSTART", "data", self.data)

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [self.exp_ref, self.data]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        exp_ref, data = _items_of(cls.message, items, 2)
        if exp_ref is not None and not isinstance(exp_ref, str):
            raise ProtocolError(f"EXPSTART exp_ref must be a string, got {type(exp_ref).__name__}")
        return cls(exp_ref, data)


@dataclass(frozen=True, slots=True)
class Status(Payload):
    """EXPSTATUS: a status report.

    Attributes:
        status: The sender's status.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPSTATUS
    signature: ClassVar[str] = "(status)"
    status: ExpStatus

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", parse_status(self.status))

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [int(self.status)]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        (status,) = _items_of(cls.message, items, 1)
        return cls(_wire_status(cls.message, status))


@dataclass(frozen=True, slots=True)
class Info(Payload):
    """EXPINFO: a status report with details.

    Attributes:
        status: The sender's status.
        data: Optional JSON details (e.g. the experiment reference, whether this is the main
            sync).
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPINFO
    signature: ClassVar[str] = "(status, data=None)"
    status: ExpStatus
    data: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", parse_status(self.status))
        _check_json("EXPINFO", "data", self.data)

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [int(self.status), self.data]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        status, data = _items_of(cls.message, items, 2)
        return cls(_wire_status(cls.message, status), data)


@dataclass(frozen=True, slots=True)
class Alyx(Payload):
    """ALYX: an Alyx database token, sent or requested.

    Build it with :func:`build_payload` from an ``AlyxClient`` (or None to request the token
    from the rig), or directly from the URL and the token.

    Attributes:
        base_url: The Alyx database URL (None when requesting).
        token: ``{user: token}`` (empty when requesting).
    """

    message: ClassVar[ExpMessage] = ExpMessage.ALYX
    signature: ClassVar[str] = "(alyx=None)"
    base_url: str | None = None
    token: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.base_url is not None and not isinstance(self.base_url, str):
            raise TypeError(f"ALYX base_url must be a string, not {type(self.base_url).__name__}")
        if self.token is None:
            object.__setattr__(self, "token", {})
        elif not isinstance(self.token, Mapping):
            raise TypeError(f"ALYX token must be a dict, not {type(self.token).__name__}")
        _check_json("ALYX", "token", dict(self.token or {}))

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [self.base_url, dict(self.token or {})]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        base_url, token = _items_of(cls.message, items, 2)
        if base_url is not None and not isinstance(base_url, str):
            raise ProtocolError("ALYX base_url must be a string or null")
        if token is not None and not isinstance(token, dict):
            raise ProtocolError("ALYX token must be an object or null")
        return cls(base_url, token)


def _wire_status(message: ExpMessage, value: Any) -> ExpStatus:
    try:
        return parse_status(value)
    except ConfigurationError as exc:
        raise ProtocolError(f"{message.name}: {exc}") from None


_PAYLOADS: dict[ExpMessage, type[Payload]] = {
    cls.message: cls for cls in (Init, Start, End, Cleanup, Interrupt, Status, Info, Alyx)
}


def _alyx_payload(*args: Any, **kwargs: Any) -> Alyx:
    if len(args) == 2 or {"base_url", "token"} & kwargs.keys():
        return Alyx(*args, **kwargs)
    if len(args) > 1 or set(kwargs) - {"alyx"}:
        raise TypeError("ALYX takes (alyx=None) or (base_url, token)")
    alyx = args[0] if args else kwargs.get("alyx")
    if alyx is None:
        return Alyx()
    base_url = getattr(alyx, "base_url", None)
    logged_in = bool(getattr(alyx, "is_logged_in", False))
    token = {alyx.user: alyx._token} if logged_in else {}
    return Alyx(base_url, token)


def build_payload(message: object, *args: Any, **kwargs: Any) -> Payload:
    """The typed payload of ``message`` built from a caller's arguments.

    The arguments follow the deployed ``Service`` methods: ``EXPINIT(data=None)``,
    ``EXPSTART(exp_ref, data=None)``, ``EXPEND(data=None)``, ``EXPCLEANUP(data=None)``,
    ``EXPINTERRUPT(data=None)``, ``EXPSTATUS(status)``, ``EXPINFO(status, data=None)``,
    ``ALYX(alyx=None)`` (or ``ALYX(base_url, token)``).

    Raises:
        TypeError: Wrong arguments for the message, or data JSON cannot carry.
        ConfigurationError: An unknown message or status.
    """
    kind = parse_message(message)
    if kind is ExpMessage.ALYX:
        return _alyx_payload(*args, **kwargs)
    cls = _PAYLOADS[kind]
    try:
        return cls(*args, **kwargs)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{kind.name}: {exc}") from None
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise TypeError(f"{kind.name} takes {cls.signature}: {exc}") from None


def payload_from_items(message: ExpMessage, items: Sequence[Any]) -> Payload:
    """The typed payload of a received ``message`` carrying ``items``.

    Raises:
        ProtocolError: The items do not fit the message.
    """
    try:
        return _PAYLOADS[message].from_items(items)
    except (TypeError, ConfigurationError) as exc:
        raise ProtocolError(f"{message.name}: {exc}") from None


def error_details(exc: BaseException) -> dict[str, str]:
    """The details of ``exc`` as data: ``{"type", "message", "traceback"}``."""
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


# ----------------------------------------------------------------------------- datagrams


@dataclass(frozen=True, slots=True)
class Datagram:
    """One decoded datagram.

    Attributes:
        code: The first element: a message code, or 0 for an error reply.
        items: The elements after the code.
    """

    code: int
    items: tuple[Any, ...]

    @property
    def is_error(self) -> bool:
        """Whether this is an error reply (code 0)."""
        return self.code == 0

    @property
    def message(self) -> ExpMessage | None:
        """The message this datagram carries, or None for an unknown code or an error."""
        return _SINGLE_CODES.get(self.code)

    @property
    def error(self) -> tuple[str, str, int]:
        """For an error reply: (remote type, remote message, code of the failed message).

        The deployed text ``"Type: message"`` is split at the first colon; a text without one
        has the type ``"RemoteError"``.
        """
        text = self.items[0] if self.items else ""
        text = text if isinstance(text, str) else str(text)
        code = self.items[1] if len(self.items) > 1 else 0
        code = code if isinstance(code, int) and not isinstance(code, bool) else 0
        kind, sep, rest = text.partition(": ")
        if sep and kind.isidentifier():
            return kind, rest, code
        return "RemoteError", text, code


def encode_datagram(code: int, items: Sequence[Any]) -> bytes:
    """Encode one datagram ``[code, *items]``.

    Raises:
        TypeError: The items hold something JSON cannot carry.
        ConfigurationError: The datagram is larger than a UDP datagram can be.
    """
    encoded = encode_json([int(code), *items])
    if len(encoded) > MAX_DATAGRAM_BYTES:
        raise ConfigurationError(
            f"message of {len(encoded)} bytes does not fit in one UDP datagram "
            f"({MAX_DATAGRAM_BYTES} bytes at most)"
        )
    return encoded


def encode_error(error_type: str, message: str, code: int) -> bytes:
    """Encode the error reply ``[0, "Type: message", code]`` to the message ``code``."""
    text = f"{error_type}: {message}" if error_type else message
    encoded = encode_json([0, text, int(code)])
    if len(encoded) > MAX_DATAGRAM_BYTES:
        encoded = encode_json([0, text[: MAX_DATAGRAM_BYTES // 8], int(code)])
    return encoded


def decode_datagram(data: bytes) -> Datagram:
    """Decode one datagram.

    Raises:
        ProtocolError: Not strict JSON, not an array, empty, or its first element is not an
            integer code.
    """
    value = decode_json(data, _LIMITS)
    if not isinstance(value, list) or not value:
        raise ProtocolError("a rig datagram must be a non-empty JSON array [code, ...]")
    code = value[0]
    if not isinstance(code, int) or isinstance(code, bool) or code < 0:
        raise ProtocolError(f"a rig datagram starts with an integer code >= 0, got {code!r}")
    return Datagram(code, tuple(value[1:]))


# ----------------------------------------------------------------------------- status machine


class IllegalTransition(ProtocolError):
    """A message the rig's current status does not allow (e.g. EXPSTART before EXPINIT)."""


_S = ExpStatus
_M = ExpMessage
_LIFECYCLE: dict[ExpStatus, dict[ExpMessage, ExpStatus]] = {
    _S.CONNECTED: {
        _M.EXPINIT: _S.INITIALIZED,
        _M.EXPINTERRUPT: _S.CONNECTED,
        _M.EXPCLEANUP: _S.CONNECTED,
    },
    _S.INITIALIZED: {
        _M.EXPINIT: _S.INITIALIZED,
        _M.EXPSTART: _S.RUNNING,
        _M.EXPINTERRUPT: _S.STOPPED,
        _M.EXPEND: _S.STOPPED,
        _M.EXPCLEANUP: _S.CONNECTED,
    },
    _S.RUNNING: {_M.EXPEND: _S.STOPPED, _M.EXPINTERRUPT: _S.STOPPED},
    _S.STOPPED: {
        _M.EXPINIT: _S.INITIALIZED,
        _M.EXPEND: _S.STOPPED,
        _M.EXPINTERRUPT: _S.STOPPED,
        _M.EXPCLEANUP: _S.CONNECTED,
    },
}
#: The rig status table: ``{status: {message: next status}}``. Messages missing from a row are
#: illegal in that status; EXPSTATUS, EXPINFO and ALYX are allowed everywhere and keep it.
TRANSITIONS: Mapping[ExpStatus, Mapping[ExpMessage, ExpStatus]] = {
    status: {**row, _M.EXPSTATUS: status, _M.EXPINFO: status, _M.ALYX: status}
    for status, row in _LIFECYCLE.items()
}


def next_status(status: ExpStatus, message: ExpMessage) -> ExpStatus:
    """The status after ``message`` arrives in ``status``.

    Raises:
        IllegalTransition: ``message`` is not allowed in ``status``.
    """
    following = TRANSITIONS[status].get(message)
    if following is None:
        allowed = ", ".join(m.name or "" for m in TRANSITIONS[status])
        raise IllegalTransition(
            f"{message.name} is not allowed while the rig is {status.name} (allowed: {allowed})"
        )
    return following


# ----------------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class RigAddress:
    """Where a rig is and which link reaches it (see :func:`parse_rig_uri`).

    Attributes:
        link: ``"udp"`` (the deployed protocol), ``"zmq"`` (labwire's RPC transport) or
            ``"name"`` (a labwire registry name, reached over labwire's transport).
        host: UDP host ("" otherwise).
        port: UDP port (0 otherwise).
        url: The ZeroMQ URL, or the registry name, or ``udp://host:port``.
    """

    link: str
    host: str = ""
    port: int = 0
    url: str = ""


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_ZMQ_SCHEMES = ("tcp://", "ipc://", "inproc://")


def parse_rig_uri(uri: object, *, for_bind: bool = False) -> RigAddress:
    """Decide how to reach a rig from its URI.

    * ``udp://HOST[:PORT]``, an IP address, ``HOST:PORT`` or ``localhost`` (the forms the
      deployed code accepts; default port :data:`LISTEN_PORT`): the deployed UDP protocol.
    * ``tcp://``, ``ipc://`` or ``inproc://`` URLs: labwire's own transport.
    * A plain name (``camera-left``): a labwire registry name. A host name that is not a
      registry name needs the ``udp://`` scheme.

    Args:
        uri: The URI.
        for_bind: The address is one to listen on: port 0 (any free port) is allowed.

    Raises:
        EndpointError: The URI has none of these forms or a bad port.
    """
    if isinstance(uri, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return RigAddress("udp", str(uri), LISTEN_PORT, f"udp://{uri}:{LISTEN_PORT}")
    if not isinstance(uri, str) or not uri.strip():
        raise EndpointError(f"a rig URI must be a non-empty string, got {uri!r}")
    text = uri.strip()
    if text.startswith(_ZMQ_SCHEMES):
        return RigAddress("zmq", url=text)
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() != "udp":
        raise EndpointError(
            f"unsupported rig URI scheme {scheme!r} in {text!r}: use udp://, tcp://, ipc:// "
            "or a registry name"
        )
    body = rest if sep else text
    host, port = _split_host_port(body, text, 0 if for_bind else 1)
    if not sep and port is None and not _is_ip(host) and host != "localhost":
        if not _NAME.match(host):
            raise EndpointError(f"{text!r} is neither a rig URI nor a registry name")
        return RigAddress("name", url=host)
    if not host:
        raise EndpointError(f"rig URI {text!r} names no host")
    port = LISTEN_PORT if port is None else port
    shown = f"[{host}]" if ":" in host else host
    return RigAddress("udp", host, port, f"udp://{shown}:{port}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _split_host_port(body: str, text: str, lowest: int) -> tuple[str, int | None]:
    if body.startswith("["):
        host, bracket, after = body[1:].partition("]")
        if not bracket:
            raise EndpointError(f"unclosed '[' in rig URI {text!r}")
        port_text = after[1:] if after.startswith(":") else None
        if after and port_text is None:
            raise EndpointError(f"unexpected {after!r} after the address in {text!r}")
    elif body.count(":") == 1:
        host, _, port_text = body.partition(":")
    else:
        host, port_text = body, None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not lowest <= int(port_text) <= 65535:
        raise EndpointError(f"invalid port {port_text!r} in rig URI {text!r} ({lowest}-65535)")
    return host, int(port_text)
