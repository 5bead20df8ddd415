"""RPC messages: the deployed plant-imaging protocol plus labwire's negotiated additions.

Theory of operation
-------------------
A request is a multi-frame ZeroMQ message. Between peers the envelope is the one a REQ socket
writes (an empty delimiter frame, then the body), so a deployed REQ client, a deployed REP
server, a labwire DEALER client and a labwire ROUTER server all understand each other. Once a
labwire client has read a labwire server's inventory it leaves the delimiter out (one frame
fewer each way); the server answers every request with the envelope it came with.

Small calls take a compact layout. Once a labwire client knows it talks to a labwire server,
it writes a method call whose arguments are JSON scalars, and every property read, as one
JSON array (:func:`encode_call`, :func:`encode_get`)::

    ["METHOD_CALL", method, args, kwargs, cid, rid, ttl, exp, sid]
    ["PROPERTY_GET", property, cid, rid, ttl, exp, sid]

where the last five are the ``"lw"`` fields below. A server decodes that in one typed pass
(:func:`decode_compact`); anything the pass declines goes to the general path, which reads the
array as the header it stands for (:func:`expand_compact_request`) and checks every field, so
a message the general path refuses never passes the fast one. A labwire server answers a
labwire request that succeeded with one JSON scalar in one compact frame,
``[rid, sid, value]`` (:func:`encode_plain_reply`, :func:`decode_plain_reply`); every other
reply has the object layout below.

Request body, frame by frame::

    frame 0   UTF-8 JSON object (the header)
                "event"    one of RPCEvents (or a labwire extension event, see below)
                "method"   METHOD_CALL: method name
                "params"   METHOD_CALL: {"args": [...], "kwargs": {...}}
                "property" PROPERTY_GET / PROPERTY_SET: property name
                "value"    PROPERTY_SET: the new value
                "lw"       labwire only (absent from deployed clients):
                             "v"     protocol version (PROTOCOL_VERSION)
                             "cid"   client id (hex string, one per client object)
                             "rid"   request id (int, unique per client id)
                             "ttl"   milliseconds the caller will wait, or null (forever)
                             "exp"   expiry on the server's monotonic clock, or null
                             "sid"   the server incarnation "exp" was computed against
                             "nbuf"  number of buffer frames that follow
    frame 1+  raw buffers, referenced from the JSON by placeholders (labwire only)

A buffer placeholder is the JSON object ``{"$lwbuf": i, "kind": k, ...}`` where ``i`` indexes
the buffer frames and ``k`` is ``"bytes"``, ``"buffer"`` or ``"ndarray"`` (the latter with
``"dtype"`` and ``"shape"``). The key ``"$lwbuf"`` is reserved in labwire payloads.

Replies carry no ``"event"``. To a deployed client (no ``"lw"`` in the request) a server answers
exactly as the deployed server does: ``{"success": true, "result": ...}`` for a JSON method,
two frames ``[json(buffer_info), raw bytes]`` for a buffer method, ``{"success": false, "error":
..., "traceback": ...}`` on failure, and the inventory and signal-port objects of
``WIRE-COMPAT.md``. To a labwire client every reply is::

    frame 0   {"success": bool, "result": ..., "error": ..., "traceback": ...,
               <event-specific fields>, "lw": {"v", "rid", "sid", "etype", "code", "nbuf"}}
    frame 1+  raw buffers referenced from "result" (buffer methods return
              [placeholder, buffer_info])

Signals are one frame each: ``{"signal": name, "event": "EMIT_SIGNAL", "args": [...],
"blocking": false, "epoch": hex, "seq": n}``. The JSON starts with the signal name so a SUB
socket can filter on the exact prefix ``{"signal":"name",``; deployed subscribers, which
subscribe to everything, ignore the extra fields.

Extension events (labwire servers only; a client sends them once the inventory showed a
protocol version)::

    PING            -> {"success": true, "lw": {..., "now": server's monotonic clock}}
    GET_PROPERTIES  -> {"success": true, "values": {name: value}} (every readable property)
    SIGNAL_CHECK    "token": str (1-64 characters)
                    -> {"success": true, "subscribed": bool}: whether a subscription to
                       :func:`labwire.wire.signals.probe_prefix` (token) has reached the
                       server's publisher. A client subscribes to that prefix right after a
                       signal's and asks until it has: subscriptions travel in order, so the
                       signal's is then in place too, and an emission right after
                       ``connect()`` is not lost.

Operations (labwire servers only; see :mod:`labwire.wire.operations`). A method declared with
``RPCServer.register_operation`` is listed with the JSON methods, so a deployed client (and a
plain METHOD_CALL from labwire) calls it as it always did and gets the plain reply; the
server cancels the handler once the call's expiry passes. Started as an operation, it runs in
a thread of its own and is watched by polling::

    OP_START        "method", "params" as in METHOD_CALL; "deadline": milliseconds the
                    operation may run, or null (no limit); buffers as in METHOD_CALL
                    -> {"success": true, "op": info}
    OP_POLL         "op": operation id (1-64 characters); "after": the last update number
                    seen (an integer >= 0)
                    -> {"success": true, "op": info, "updates": [update, ...],
                        "result": value (once succeeded; buffers as in a method reply)}
    OP_CANCEL       "op": operation id; "reason": str (at most 256 characters)
                    -> {"success": true, "op": info}
    OP_LIST         -> {"success": true, "ops": [info, ...]} (running and recently ended)

where ``info`` is ``{"id", "method", "state", "seq", "started", "elapsed", "remaining", "deadline",
"on_disconnect", "fraction", "message", "error", "cause", "etype", "traceback"}`` and an ``update``
is ``[seq, fraction or null, message, intermediate result or null]``, numbered from 1.
Updates after ``after`` come in the same reply as the outcome, so the last update always
reaches a client before the result. Every OP_POLL or OP_CANCEL renews the operation's lease:
an operation declared ``on_disconnect="cancel"`` is cancelled once no client has polled it
for its lease (a few seconds). An unknown id is answered ``code: "not_found"``; one from an
earlier incarnation of the server says the operation was lost when the server restarted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, cast

import msgspec

from labwire.errors import LimitExceeded, ProtocolError
from labwire.wire.codec import (
    INT64_MAX,
    Int64,
    decode_json,
    encode_json,
    scalars_within_limits,
    within_limits_by_text,
)
from labwire.wire.limits import Limits

__all__ = [
    "EXTENSION_EVENTS",
    "NOT_PLAIN",
    "PROTOCOL_VERSION",
    "Buffer",
    "CompactCall",
    "CompactGet",
    "ErrorCode",
    "RPCEvents",
    "Request",
    "claimed_request_id",
    "decode_buffer_reply",
    "decode_compact",
    "decode_frames",
    "decode_plain_reply",
    "encode_buffer_reply",
    "encode_call",
    "encode_frames",
    "encode_get",
    "encode_plain_reply",
    "expand_compact_reply",
    "expand_compact_request",
    "is_private_name",
    "parse_request",
]

PROTOCOL_VERSION = 1

#: The reserved placeholder key for out-of-band buffers.
BUFFER_KEY = "$lwbuf"

Buffer = bytes | bytearray | memoryview


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


# --------------------------------------------------------------------------- buffers


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # numpy is an optional extra
        return None
    return numpy


def _extract(value: Any, buffers: list[Buffer]) -> Any:
    """Replace buffers inside ``value`` by placeholders, appending them to ``buffers``."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_extract(item, buffers) for item in value]
    if isinstance(value, dict):
        if BUFFER_KEY in value:
            raise TypeError(f"the key {BUFFER_KEY!r} is reserved by labwire")
        return {key: _extract(item, buffers) for key, item in value.items()}
    if isinstance(value, (bytes, bytearray)):
        buffers.append(value)
        return {BUFFER_KEY: len(buffers) - 1, "kind": "bytes"}
    if isinstance(value, memoryview):
        buffers.append(value if value.contiguous else value.tobytes())
        return {BUFFER_KEY: len(buffers) - 1, "kind": "buffer"}
    numpy = _numpy()
    if numpy is not None and isinstance(value, numpy.ndarray):
        if value.dtype.hasobject:
            raise TypeError("numpy arrays of Python objects cannot be sent")
        if numpy.dtype(value.dtype.str) != value.dtype:  # structured and sub-array dtypes
            raise TypeError(f"numpy dtype {value.dtype} cannot be sent: only plain dtypes are")
        array = value if value.flags.c_contiguous else numpy.ascontiguousarray(value)
        try:
            buffers.append(memoryview(array).cast("B") if array.size else b"")
        except ValueError as exc:  # dtypes without buffer support, e.g. datetime64
            raise TypeError(f"numpy array of dtype {array.dtype} cannot be sent: {exc}") from None
        return {
            BUFFER_KEY: len(buffers) - 1,
            "kind": "ndarray",
            "dtype": array.dtype.str,
            "shape": list(array.shape),
        }
    if numpy is not None and isinstance(value, numpy.generic):
        return value.item()
    return value  # let the JSON encoder name the offending type


def _restore(value: Any, buffers: Sequence[memoryview]) -> Any:
    if isinstance(value, list):
        return [_restore(item, buffers) for item in value]
    if isinstance(value, dict):
        if BUFFER_KEY in value:
            return _buffer_from_placeholder(value, buffers)
        return {key: _restore(item, buffers) for key, item in value.items()}
    return value


def _find_placeholder(value: Any) -> dict[str, Any] | None:
    """The first buffer placeholder inside decoded JSON ``value``, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            if BUFFER_KEY in item:
                return item
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return None


def _restore_request_field(value: Any, buffers: Sequence[memoryview]) -> Any:
    """:func:`restore_buffers` for a request field, which must not point at absent frames.

    Without buffer frames, :func:`restore_buffers` returns its input untouched; a request's
    placeholders would then reach the handler as plain objects, so they are looked for here.
    """
    if not buffers:
        placeholder = _find_placeholder(value)
        if placeholder is not None:
            index = placeholder[BUFFER_KEY]
            raise ProtocolError(f"buffer placeholder refers to missing frame {index!r}")
    return restore_buffers(value, buffers)


def _buffer_from_placeholder(placeholder: dict[str, Any], buffers: Sequence[memoryview]) -> Any:
    index = placeholder[BUFFER_KEY]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(buffers):
        raise ProtocolError(f"buffer placeholder refers to missing frame {index!r}")
    data = buffers[index]
    kind = placeholder.get("kind")
    if kind == "bytes":
        return data.tobytes()
    if kind == "buffer":
        return data
    if kind == "ndarray":
        numpy = _numpy()
        if numpy is None:
            return data  # without numpy the raw bytes are the best we can give
        dtype, shape = placeholder.get("dtype"), placeholder.get("shape")
        if not isinstance(dtype, str) or not isinstance(shape, list):
            raise ProtocolError("ndarray placeholder needs a 'dtype' string and a 'shape' list")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ProtocolError("ndarray shape must be a list of non-negative integers")
        try:
            array_type = numpy.dtype(dtype)
            if array_type.hasobject:
                raise TypeError("object dtype")
            return numpy.frombuffer(data, dtype=array_type).reshape(shape)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"ndarray placeholder does not match its frame: {exc}") from None
    raise ProtocolError(f"unknown buffer kind {kind!r}")


# --------------------------------------------------------------------------- frames


def encode_frames(header: dict[str, Any], payload: dict[str, Any] | None = None) -> list[Buffer]:
    """Encode a header plus payload fields (which may hold buffers) into frames.

    Args:
        header: JSON fields copied as they are. When it has an ``"lw"`` object, the number of
            buffer frames is written to ``lw["nbuf"]``; a request's (a header with an
            ``"event"``) is written last.
        payload: Fields whose values may contain bytes, memoryviews or numpy arrays; these
            travel as raw frames after the header, without copies.

    Returns:
        The frames: the JSON header first, then the buffers.

    Raises:
        TypeError: Something in the message cannot be encoded (the message names it).
    """
    buffers: list[Buffer] = []
    if payload:
        for key, value in payload.items():
            header[key] = _extract(value, buffers)
        if "lw" in header and "event" in header:  # a request's last: see claimed_request_id
            header["lw"] = header.pop("lw")
    if buffers:
        extension = header.get("lw")
        if not isinstance(extension, dict):
            raise TypeError("buffers can only be sent to labwire peers")
        extension["nbuf"] = len(buffers)
    return [encode_json(header), *buffers]


def check_frame_sizes(sizes: Sequence[int], limits: Limits) -> None:
    """Check frame count and total size before anything is decoded.

    Raises:
        ProtocolError: There are no frames.
        LimitExceeded: Too many frames, a frame too large, or too many bytes in all.
    """
    if not sizes:
        raise ProtocolError("message has no frames")
    if len(sizes) > limits.max_frames:
        raise LimitExceeded(f"message has {len(sizes)} frames; the limit is {limits.max_frames}")
    total = 0
    for size in sizes:
        if size > limits.max_frame_bytes:
            raise LimitExceeded(f"frame of {size} bytes exceeds {limits.max_frame_bytes}")
        total += size
    if total > limits.max_total_bytes:
        raise LimitExceeded(f"message of {total} bytes exceeds {limits.max_total_bytes}")


def decode_frames(
    frames: Sequence[memoryview],
    limits: Limits,
    compact: Callable[[list[Any]], dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[memoryview]]:
    """Decode the JSON header of a message and return it with the buffer frames.

    Args:
        frames: The message body (envelope already removed).
        limits: Limits to enforce.
        compact: How to read a one-frame message in the compact layout (a JSON array) as the
            header it stands for (:func:`expand_compact_request` or
            :func:`expand_compact_reply`); None refuses arrays.

    Returns:
        The header object and the remaining frames.

    Raises:
        ProtocolError: The message breaks the format (the message says how).
    """
    check_frame_sizes([frame.nbytes for frame in frames], limits)
    header = decode_json(frames[0], limits)
    if type(header) is list and compact is not None:
        if len(frames) > 1:
            raise ProtocolError(f"a compact message has one frame, not {len(frames)}")
        header = compact(header)
    if not isinstance(header, dict):
        raise ProtocolError(f"frame 0 must be a JSON object, got {type(header).__name__}")
    return header, list(frames[1:])


def restore_buffers(value: Any, buffers: Sequence[memoryview]) -> Any:
    """Replace buffer placeholders in decoded JSON by the buffers they refer to.

    Raises:
        ProtocolError: A placeholder is malformed or refers to a missing frame.
    """
    if not buffers:
        return value
    return _restore(value, buffers)


#: How much of a refused frame's end :func:`claimed_request_id` reads.
_CLAIM_WINDOW = 512
#: The end of a compact request: ``..., cid, rid, ttl, exp, sid]``.
_COMPACT_TAIL = re.compile(
    rb',"[0-9a-zA-Z]*",(\d{1,19}),(?:null|\d{1,19}),(?:null|[-+0-9.eE]{1,32}),"[0-9a-zA-Z]*"\]$'
)
#: The end of a request object: ``..., "lw": {...}}`` (labwire writes "lw" last, flat).
_OBJECT_TAIL = re.compile(rb'"lw":(\{[^{}]*\})\}$')


def claimed_request_id(frame: bytes | memoryview) -> int | None:
    """The request id a labwire request claims, read from the end of a frame that was refused.

    A request too large (or otherwise over a limit) is refused before it is decoded, so its
    ``"lw"`` fields are unknown; labwire clients write them last in both layouts, so the end
    of the frame names the request id, and the refusal can reach the caller at once instead
    of leaving it to wait out its deadline. Only the last few hundred bytes are read.

    Args:
        frame: The request's first frame.

    Returns:
        The claimed request id, or None when the frame does not end like a labwire request.
    """
    tail = bytes(frame[-_CLAIM_WINDOW:]).rstrip()
    match = _COMPACT_TAIL.search(tail)
    if match is not None:
        return int(match.group(1))
    match = _OBJECT_TAIL.search(tail)
    if match is None:
        return None
    try:
        extension = msgspec.json.decode(match.group(1))
    except msgspec.DecodeError:
        return None
    rid = extension.get("rid")
    return rid if type(rid) is int and 0 <= rid < 2**63 else None


# --------------------------------------------------------------------------- requests


class Request(msgspec.Struct):
    """A decoded, validated request.

    Attributes:
        event: The event name (an RPCEvents value or a labwire extension event).
        name: Method name (METHOD_CALL) or property name (PROPERTY_GET/SET), else "".
        args: Positional arguments of a METHOD_CALL.
        kwargs: Keyword arguments of a METHOD_CALL.
        value: The value of a PROPERTY_SET.
        version: labwire protocol version of the sender, or None for a deployed client.
        client_id: Sender's client id ("" for deployed clients).
        request_id: Sender's request id (None for deployed clients).
        ttl_ms: How long the sender waits, in ms, or None.
        expiry: Expiry on the server's monotonic clock, or None.
        server_id: The server incarnation the expiry refers to.
    """

    event: str
    name: str = ""
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    value: Any = None
    version: int | None = None
    client_id: str = ""
    request_id: int | None = None
    ttl_ms: float | None = None
    expiry: float | None = None
    server_id: str = ""

    @property
    def is_labwire(self) -> bool:
        """Whether the sender speaks the labwire extensions."""
        return self.version is not None


def _expect(header: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in header:
        raise ProtocolError(f"{what} needs a {key!r} field")
    value = header[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ProtocolError(f"field {key!r} of {what} has the wrong type ({type(value).__name__})")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _number_or_none(extension: dict[str, Any], key: str) -> float | None:
    value = extension.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"field 'lw.{key}' must be a number or null")
    return float(value)


def parse_request(header: dict[str, Any], buffers: Sequence[memoryview] = ()) -> Request:
    """Validate a request header (and its buffers) and build a :class:`Request`.

    Args:
        header: The decoded JSON header.
        buffers: The buffer frames that followed the header.

    Returns:
        The request, with buffer placeholders in arguments and values restored.

    Raises:
        ProtocolError: The request is malformed; the message names the field.
    """
    event = _expect(header, "event", str, "a request")
    if event not in _ALL_EVENTS:
        raise ProtocolError(f"unknown event {event[:64]!r}")
    request = Request(event=event)
    extension = header.get("lw")
    if extension is not None:
        if not isinstance(extension, dict):
            raise ProtocolError("field 'lw' must be an object")
        version = extension.get("v")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ProtocolError("field 'lw.v' must be a positive integer")
        request.version = version
        client_id = extension.get("cid", "")
        request_id = extension.get("rid")
        if not isinstance(client_id, str) or len(client_id) > 64:
            raise ProtocolError("field 'lw.cid' must be a string of at most 64 characters")
        if request_id is not None and (
            not isinstance(request_id, int) or isinstance(request_id, bool)
        ):
            raise ProtocolError("field 'lw.rid' must be an integer")
        server_id = extension.get("sid") or ""
        if not isinstance(server_id, str):
            raise ProtocolError("field 'lw.sid' must be a string")
        request.client_id, request.request_id, request.server_id = client_id, request_id, server_id
        request.ttl_ms = _number_or_none(extension, "ttl")
        request.expiry = _number_or_none(extension, "exp")
        nbuf = extension.get("nbuf", 0)
        if not isinstance(nbuf, int) or isinstance(nbuf, bool) or nbuf != len(buffers):
            raise ProtocolError(f"'lw.nbuf' says {nbuf!r} buffers but {len(buffers)} followed")
    elif buffers:
        raise ProtocolError(f"request has {len(buffers) + 1} frames; a plain request has one")

    if event == RPCEvents.METHOD_CALL:
        request.name = _expect(header, "method", str, "METHOD_CALL")
        args, kwargs = _params(header)
        request.args = _restore_request_field(args, buffers)
        request.kwargs = _restore_request_field(kwargs, buffers)
    elif event in (RPCEvents.PROPERTY_GET, RPCEvents.PROPERTY_SET):
        request.name = _expect(header, "property", str, event)
        if event == RPCEvents.PROPERTY_SET:
            if "value" not in header:
                raise ProtocolError("PROPERTY_SET needs a 'value' field")
            request.value = _restore_request_field(header["value"], buffers)
    elif event == ExtensionEvents.SIGNAL_CHECK:
        token = _expect(header, "token", str, event)
        if not 1 <= len(token) <= 64:
            raise ProtocolError("field 'token' of SIGNAL_CHECK must have 1 to 64 characters")
        request.name = token
    elif event == ExtensionEvents.OP_START:
        request.name = _expect(header, "method", str, event)
        args, kwargs = _params(header)
        request.args = _restore_request_field(args, buffers)
        request.kwargs = _restore_request_field(kwargs, buffers)
        deadline = header.get("deadline")
        if deadline is not None and (
            isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline < 0
        ):
            raise ProtocolError("field 'deadline' of OP_START must be null or milliseconds >= 0")
        request.value = deadline
    elif event in (ExtensionEvents.OP_POLL, ExtensionEvents.OP_CANCEL):
        operation = _expect(header, "op", str, event)
        if not 1 <= len(operation) <= 64:
            raise ProtocolError(f"field 'op' of {event} must have 1 to 64 characters")
        request.name = operation
        if event == ExtensionEvents.OP_POLL:
            after = header.get("after", 0)
            if isinstance(after, bool) or not isinstance(after, int) or after < 0:
                raise ProtocolError("field 'after' of OP_POLL must be an integer >= 0")
            request.value = after
        else:
            reason = header.get("reason", "")
            if not isinstance(reason, str) or len(reason) > 256:
                raise ProtocolError("field 'reason' of OP_CANCEL must be at most 256 characters")
            request.value = reason
    return request


def _params(header: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments of a METHOD_CALL or OP_START."""
    params = header.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("field 'params' must be an object with 'args' and 'kwargs'")
    args = params.get("args", [])
    kwargs = params.get("kwargs", {})
    if args is None:
        args = []
    if kwargs is None:
        kwargs = {}
    if not isinstance(args, list):
        raise ProtocolError("field 'params.args' must be a list")
    if not isinstance(kwargs, dict):
        raise ProtocolError("field 'params.kwargs' must be an object")
    return args, kwargs


def reply_extension(request: Request, server_id: str, **fields: Any) -> dict[str, Any]:
    """The ``"lw"`` object of a reply to a labwire request."""
    extension: dict[str, Any] = {"v": PROTOCOL_VERSION, "rid": request.request_id, "sid": server_id}
    extension.update(fields)
    return extension


# --------------------------------------------------------------------------- compact layout
#
# labwire's own small calls are JSON arrays, decoded into these typed structs in one pass.
# msgspec is as strict as the general path about UTF-8, surrogates and NaN, but keeps the last
# of duplicate keys. The only objects in a compact request are its keyword arguments and any
# among its arguments; a message takes the fast path only when they provably repeat no key
# (see _keys_unique), so it cannot accept what the general path refuses.

_ClientId = Annotated[str, msgspec.Meta(max_length=64)]
# Plain strings, not enum members: msgspec writes them faster, and each read of an enum member
# costs a descriptor lookup.
_METHOD_CALL = "METHOD_CALL"
_PROPERTY_GET = "PROPERTY_GET"


class CompactCall(
    msgspec.Struct, gc=False, array_like=True, forbid_unknown_fields=True, tag="METHOD_CALL"
):
    """A method call in the compact layout, as :func:`decode_compact` returns it.

    Attributes:
        method: The method's name.
        args: Positional arguments.
        kwargs: Keyword arguments.
        cid: Client id.
        rid: Request id.
        ttl: Milliseconds the caller waits, or None.
        exp: Expiry on the server's monotonic clock, or None.
        sid: The server incarnation ``exp`` was computed against.
    """

    method: str
    args: list[Any]
    kwargs: dict[str, Any]
    cid: _ClientId
    rid: Int64
    ttl: Int64 | None
    exp: float | None
    sid: str

    def request(self) -> Request:
        """The same call as the general path's :class:`Request`."""
        return _request_of(self, _METHOD_CALL, self.method, self.args, self.kwargs)


class CompactGet(
    msgspec.Struct, gc=False, array_like=True, forbid_unknown_fields=True, tag="PROPERTY_GET"
):
    """A property read in the compact layout, as :func:`decode_compact` returns it.

    Attributes:
        property: The property's name.
        cid: Client id (the five fields from here on are :class:`CompactCall`'s).
        rid: Request id.
        ttl: Milliseconds the caller waits, or None.
        exp: Expiry on the server's clock, or None.
        sid: The server incarnation of ``exp``.
    """

    property: str
    cid: _ClientId
    rid: Int64
    ttl: Int64 | None
    exp: float | None
    sid: str

    def request(self) -> Request:
        """The same read as the general path's :class:`Request`."""
        return _request_of(self, _PROPERTY_GET, self.property, [], {})


def _request_of(
    message: CompactCall | CompactGet,
    event: str,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Request:
    """The :class:`Request` a compact message stands for."""
    return Request(
        event,
        name,
        args,
        kwargs,
        None,
        PROTOCOL_VERSION,
        message.cid,
        message.rid,
        message.ttl,
        message.exp,
        message.sid,
    )


_REQUEST_DECODER = msgspec.json.Decoder(CompactCall | CompactGet)
#: A compact reply: a tuple, not a Struct, which takes a third more to decode.
_REPLY_DECODER = msgspec.json.Decoder(tuple[Int64, str, Any])
_ENCODER = msgspec.json.Encoder()
#: How deep the containers of the layouts go (a call's argument list is at depth 2).
_REQUEST_DEPTH = 2
_REPLY_DEPTH = 1
#: A compact request's last fields, in order: the general path reads them as its "lw" object.
_LW_FIELDS = ("cid", "rid", "ttl", "exp", "sid")
_PLAIN_TYPES = frozenset({int, str, bool, type(None)})
_SCALARS = frozenset({str, float, bool, type(None)})
_BUFFER_KEY_BYTES = b'"' + BUFFER_KEY.encode() + b'"'
#: An int, not b":": ``bytes in bytes`` raises and clears an exception inside, ten times slower.
_COLON = ord(":")


def _is_plain(value: Any) -> bool:
    """Whether ``value`` is plain JSON data the compact layouts carry as it is.

    Plain: str, int, bool, None, finite floats, and lists, tuples and str-keyed dicts of them
    (a dict may not use the buffer placeholder's key). Buffers, numpy values, NaN/Infinity
    and anything else need the general layout, which moves buffers as frames of their own and
    names what cannot be sent.
    """
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return True
    if kind is float:
        return math.isfinite(value)
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _PLAIN_TYPES:
            continue
        if kind is float:
            if not math.isfinite(item):
                return False
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is dict:
            if BUFFER_KEY in item:
                return False
            for key in item:
                if type(key) is not str:
                    return False
            stack.extend(item.values())
        else:
            return False
    return True


def _keys_unique(data: bytes, message: Any, keys: int) -> bool:
    """Whether no JSON object in ``data`` (decoded as ``message``, ``keys`` keys) repeats a key.

    Every key in JSON text is followed by a colon, and the text has each of the message's
    keys at least once: so when it has exactly ``keys`` colons, no key appears twice.
    Otherwise (a colon inside a string, an object among the arguments) the text must be
    exactly what re-encoding the message gives, which it cannot be with a key repeated.
    """
    if data.count(b":") == keys:
        return True
    try:
        return _ENCODER.encode(message) == data
    except (msgspec.EncodeError, UnicodeError):
        return False


def _within_limits(data: bytes, values: Iterable[Any], limits: Limits) -> bool:
    """Whether decoded ``values`` from ``data`` hold nothing the general path would refuse.

    Scalars are checked by value; containers need the text to prove the limits (its digit
    runs cover the integers) and to hold no buffer placeholder.
    """
    return scalars_within_limits(values, limits) or (
        data.find(_BUFFER_KEY_BYTES) < 0 and within_limits_by_text(data, limits)
    )


def decode_compact(data: bytes, limits: Limits) -> CompactCall | CompactGet | None:
    """Decode a compact request: a labwire client's method call or property read.

    Args:
        data: The request's only frame.
        limits: Limits to enforce.

    Returns:
        The call or read (its ``request()`` is the general path's :class:`Request`); or None
        when the message is anything else (then decode it with :func:`decode_frames` and
        :func:`parse_request`, which also explain what is wrong).
    """
    # Written out, as is decode_plain_reply: this runs on every call, and each function call
    # costs about as much as the checks it would hold.
    if len(data) > limits.short_json_bytes or limits.max_depth < _REQUEST_DEPTH:
        return None
    try:
        message: CompactCall | CompactGet = _REQUEST_DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeError, RecursionError, ValueError):
        return None
    bound = limits.int_bound
    ttl = message.ttl
    if bound <= INT64_MAX and (
        not -bound < message.rid < bound or (ttl is not None and not -bound < ttl < bound)
    ):
        return None
    if type(message) is CompactGet:  # not isinstance(): on a Struct that costs 6 times more
        return message
    call = cast(CompactCall, message)
    kwargs = call.kwargs
    # Without a colon the text has no object keys at all; with one, the keys must be the
    # keyword arguments' (or the text exactly what labwire writes).
    if kwargs or _COLON in data:
        if BUFFER_KEY in kwargs:  # a placeholder without its frame: the general path refuses
            return None
        if not _keys_unique(data, call, len(kwargs)):
            return None
        if not _within_limits(data, kwargs.values(), limits):
            return None
    # scalars_within_limits(), written out: nearly every call has only scalars.
    args = call.args
    for value in args:
        kind = type(value)
        if kind is int:
            if abs(value) >= bound:
                return None
        elif kind not in _SCALARS:
            if not _within_limits(data, args, limits):
                return None
            break
    return call


def expand_compact_request(items: list[Any]) -> dict[str, Any]:
    """The header a compact request stands for, for :func:`parse_request` to check.

    Raises:
        ProtocolError: ``items`` is not a compact method call or property read.
    """
    event = items[0] if items else None
    if event == _METHOD_CALL and len(items) == 9:
        _, method, args, kwargs, *lw = items
        header = {"event": event, "method": method, "params": {"args": args, "kwargs": kwargs}}
    elif event == _PROPERTY_GET and len(items) == 7:
        _, name, *lw = items
        header = {"event": event, "property": name}
    else:
        raise ProtocolError(
            'a compact request is ["METHOD_CALL", method, args, kwargs, cid, rid, ttl, exp, '
            'sid] or ["PROPERTY_GET", property, cid, rid, ttl, exp, sid]'
        )
    header["lw"] = {"v": PROTOCOL_VERSION, **dict(zip(_LW_FIELDS, lw, strict=True))}
    return header


def encode_call(
    method: str,
    args: list[Any],
    kwargs: dict[str, Any],
    client_id: str,
    request_id: int,
    ttl_ms: int | None,
    expiry: float | None,
    server_id: str,
) -> bytes | None:
    """Encode a METHOD_CALL whose arguments are plain JSON data, in the compact layout.

    Returns:
        The request's only frame; None when an argument needs the general path (buffers,
        numpy values, NaN/Infinity, anything else :func:`_is_plain` refuses): use
        :func:`encode_frames`.
    """
    if type(args) is not list or type(kwargs) is not dict:
        return None
    # The scalar check written out: this runs on every call, and most arguments are scalars.
    for value in args:
        kind = type(value)
        if kind not in _PLAIN_TYPES and not _is_plain(value):
            return None
    if kwargs:
        if BUFFER_KEY in kwargs:  # reserved: the general path names the problem
            return None
        for value in kwargs.values():
            kind = type(value)
            if kind not in _PLAIN_TYPES and not _is_plain(value):
                return None
    message = (_METHOD_CALL, method, args, kwargs, client_id, request_id, ttl_ms, expiry, server_id)
    try:
        return _ENCODER.encode(message)
    except (msgspec.EncodeError, UnicodeError):
        return None  # e.g. a lone surrogate: the general path names the problem


def encode_get(
    name: str,
    client_id: str,
    request_id: int,
    ttl_ms: int | None,
    expiry: float | None,
    server_id: str,
) -> bytes | None:
    """Encode a PROPERTY_GET in the compact layout.

    Returns:
        The request's only frame; None when a field cannot be encoded (a lone surrogate in
        the name): use :func:`encode_frames`, which names the problem.
    """
    message = (_PROPERTY_GET, name, client_id, request_id, ttl_ms, expiry, server_id)
    try:
        return _ENCODER.encode(message)
    except (msgspec.EncodeError, UnicodeError):
        return None


def encode_plain_reply(request_id: int | None, server_id: str, value: Any) -> bytes | None:
    """Encode a compact success reply, ``[rid, sid, value]``, for plain JSON data ``value``.

    Returns:
        The reply's only frame; None when ``value`` (or a missing request id) needs the
        general layout.
    """
    if request_id is None or (type(value) not in _PLAIN_TYPES and not _is_plain(value)):
        return None
    try:
        return _ENCODER.encode((request_id, server_id, value))
    except (msgspec.EncodeError, UnicodeError):
        return None


#: Returned by :func:`decode_plain_reply` for a reply that needs the general path.
NOT_PLAIN: Any = object()


def decode_plain_reply(data: bytes, request_id: int, server_id: str, limits: Limits) -> Any:
    """Decode a compact success reply to one request, if it is one.

    Args:
        data: The reply's only frame.
        request_id: The request it must answer.
        server_id: The server incarnation it must come from.
        limits: Limits to enforce.

    Returns:
        The method's result or the property's value; or :data:`NOT_PLAIN` when the reply is
        anything else (a failure, buffers, another request's reply, another incarnation,
        another layout): decode it with :func:`decode_frames`, which also explains what is
        wrong.
    """
    if len(data) > limits.short_json_bytes or limits.max_depth < _REPLY_DEPTH:
        return NOT_PLAIN
    try:
        reply: tuple[int, str, Any] = _REPLY_DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeError, RecursionError, ValueError):
        return NOT_PLAIN
    rid, sid, value = reply
    if rid != request_id or sid != server_id:
        return NOT_PLAIN
    kind = type(value)
    if kind is int:
        bound = limits.int_bound
        if abs(value) < bound:
            return value
        return NOT_PLAIN
    if kind in _SCALARS:
        return value
    # A container: hold it to the rules the general path's decoder enforces.
    if not _keys_unique(data, reply, 0) or not _within_limits(data, (value,), limits):
        return NOT_PLAIN
    return value


def encode_buffer_reply(
    request: Request, server_id: str, buffer: Buffer, info: Any
) -> list[Buffer]:
    """Encode a labwire buffer method's success reply, without the general reply's glue.

    The frames are those :func:`encode_frames` writes for the payload
    ``{"result": [buffer, info]}``, byte for byte.

    Args:
        request: The request answered (a labwire request).
        server_id: This server's incarnation id.
        buffer: The method's buffer; it travels as frame 1 (without a copy when contiguous).
        info: The method's info; buffers inside it travel as frames 2 and up.

    Raises:
        TypeError: ``info`` cannot be encoded (the message names it).
    """
    buffers: list[Buffer] = []
    result = [_extract(buffer, buffers), _extract(info, buffers)]
    extension = reply_extension(request, server_id, nbuf=len(buffers))
    return [encode_json({"success": True, "lw": extension, "result": result}), *buffers]


def decode_buffer_reply(
    head: bytes | memoryview,
    buffers: Sequence[memoryview],
    request_id: int,
    server_id: str,
    limits: Limits,
) -> Any:
    """Decode a labwire buffer method's success reply to one request, if it is the usual one.

    The usual one is what :func:`encode_buffer_reply` writes for an ``info`` without buffers:
    two frames, the header's result ``[{"$lwbuf": 0, "kind": "buffer"}, info]``.

    Returns:
        ``(buffer, info)``, the buffer being frame 1 as it is; or :data:`NOT_PLAIN` for
        anything else (a failure, more frames, another request's reply, another incarnation,
        a malformed message): read it with :func:`decode_frames`, which explains what is wrong.
    """
    if len(buffers) != 1:
        return NOT_PLAIN
    try:
        check_frame_sizes((len(head), buffers[0].nbytes), limits)
        header = decode_json(head, limits)
    except ProtocolError:
        return NOT_PLAIN
    if type(header) is not dict or header.get("success") is not True or "error" in header:
        return NOT_PLAIN
    lw = header.get("lw")
    if type(lw) is not dict or lw.get("rid") != request_id or lw.get("sid") != server_id:
        return NOT_PLAIN
    result = header.get("result")
    if type(result) is not list or len(result) != 2:
        return NOT_PLAIN
    placeholder, info = result
    if (
        type(placeholder) is not dict
        or type(placeholder.get(BUFFER_KEY)) is not int
        or placeholder[BUFFER_KEY] != 0
        or placeholder.get("kind") != "buffer"
        or _find_placeholder(info) is not None
    ):
        return NOT_PLAIN
    return buffers[0], info


def expand_compact_reply(items: list[Any]) -> dict[str, Any]:
    """The header a compact reply stands for (its value is both a result and a value).

    Raises:
        ProtocolError: ``items`` is not ``[rid, sid, value]``.
    """
    if len(items) != 3:
        raise ProtocolError("a compact reply is [rid, sid, value]")
    rid, sid, value = items
    lw = {"v": PROTOCOL_VERSION, "rid": rid, "sid": sid}
    return {"success": True, "result": value, "value": value, "lw": lw}
