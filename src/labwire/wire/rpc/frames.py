"""Frames and the general request: encoding, size checks, decoding and validation."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from labwire.errors import LimitExceeded, ProtocolError
from labwire.wire.codec import decode_json, encode_json
from labwire.wire.limits import Limits
from labwire.wire.rpc.buffers import Buffer, _extract, _restore_request_field
from labwire.wire.rpc.events import _ALL_EVENTS, PROTOCOL_VERSION, ExtensionEvents, RPCEvents


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
    compact: Callable[[list[Any], int], dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[memoryview]]:
    """Decode the JSON header of a message and return it with the buffer frames.

    Args:
        frames: The message body (envelope already removed).
        limits: Limits to enforce.
        compact: How to read a message in the compact layout (a JSON array, then the number
            of frames after it) as the header it stands for (:func:`expand_compact_request`
            or :func:`expand_compact_reply`); None refuses arrays.

    Returns:
        The header object and the remaining frames.

    Raises:
        ProtocolError: The message breaks the format (the message says how).
    """
    check_frame_sizes([frame.nbytes for frame in frames], limits)
    header = decode_json(frames[0], limits)
    if type(header) is list and compact is not None:
        header = compact(header, len(frames) - 1)
    if not isinstance(header, dict):
        raise ProtocolError(f"frame 0 must be a JSON object, got {type(header).__name__}")
    return header, list(frames[1:])


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
