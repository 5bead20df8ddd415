"""Event types, error codes and the protocol version of the RPC protocol."""

from __future__ import annotations

from enum import StrEnum

#: labwire's RPC protocol version, which labwire peers exchange in the ``"lw"`` object.
#: Version 2 servers read a compact call's buffer arguments as frames after it.
PROTOCOL_VERSION = 2
#: The first version whose servers read compact calls with buffer frames.
BUFFER_CALLS_VERSION = 2


class RPCEvents(StrEnum):
    """Event types of the RPC protocol, as sent in a request's ``"event"`` field."""

    PROPERTY_GET = "PROPERTY_GET"
    PROPERTY_SET = "PROPERTY_SET"
    METHOD_CALL = "METHOD_CALL"
    GET_INVENTORY = "GET_INVENTORY"
    STOP_SERVER = "STOP_SERVER"
    INIT_SIGNALS_HANDLING = "INIT_SIGNALS_HANDLING"
    EMIT_SIGNAL = "EMIT_SIGNAL"


class ExtensionEvents(StrEnum):
    """labwire-only events, sent only to servers whose inventory shows a protocol version."""

    PING = "PING"
    GET_PROPERTIES = "GET_PROPERTIES"
    SIGNAL_CHECK = "SIGNAL_CHECK"
    OP_START = "OP_START"
    OP_POLL = "OP_POLL"
    OP_CANCEL = "OP_CANCEL"
    OP_LIST = "OP_LIST"


EXTENSION_EVENTS = frozenset(ExtensionEvents)
_ALL_EVENTS = frozenset(RPCEvents) | EXTENSION_EVENTS


class ErrorCode(StrEnum):
    """Why a labwire reply reports ``success: false``."""

    REMOTE = "remote"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    EXPIRED = "expired"
    DENIED = "denied"
    STOPPING = "stopping"


def is_private_name(name: str) -> bool:
    """Whether ``name`` must never be reachable remotely (it starts with ``_``)."""
    return name.startswith("_")
