"""The compact layout of requests: labwire's own method calls and property reads.

labwire's own small calls are JSON arrays, decoded into these typed structs in one pass.
msgspec is as strict as the general path about UTF-8, surrogates and NaN, but keeps the last
of duplicate keys. The only objects in a compact request are its keyword arguments and any
among its arguments; a message takes the fast path only when they provably repeat no key
(see :mod:`~labwire.wire.rpc.plain`), so it cannot accept what the general path refuses.
The functions here are written out for speed: they run on every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, cast

import msgspec

from labwire.errors import ProtocolError
from labwire.wire.codec import INT64_MAX, Int64
from labwire.wire.limits import Limits
from labwire.wire.rpc.buffers import BUFFER_KEY, Buffer, _buffer_from_placeholder, _extract
from labwire.wire.rpc.events import PROTOCOL_VERSION
from labwire.wire.rpc.frames import Request, check_frame_sizes
from labwire.wire.rpc.plain import (
    _ENCODER,
    _PLAIN_TYPES,
    _SCALARS,
    _flat_within_limits,
    _is_plain,
    _keys_unique,
    _within_limits,
)

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
#: How deep the containers of the layout go (a call's argument list is at depth 2).
_REQUEST_DEPTH = 2
#: A compact request's last fields, in order: the general path reads them as its "lw" object.
_LW_FIELDS = ("cid", "rid", "ttl", "exp", "sid")
#: An int, not b":": ``bytes in bytes`` raises and clears an exception inside, ten times slower.
_COLON = ord(":")


class _NotCompact(Exception):
    """An argument the compact layout cannot carry."""


def decode_compact(
    data: bytes | memoryview, limits: Limits, buffers: Sequence[memoryview] = ()
) -> CompactCall | CompactGet | None:
    """Decode a compact request: a labwire client's method call or property read.

    Args:
        data: The request's first frame.
        limits: Limits to enforce.
        buffers: The frames after it: a call's buffer arguments (see
            :func:`encode_call_frames`), restored in the call's arguments.

    Returns:
        The call or read (its ``request()`` is the general path's :class:`Request`); or None
        when the message is anything else (then decode it with :func:`decode_frames` and
        :func:`parse_request`, which also explain what is wrong).
    """
    # Written out, as is read_plain_reply: this runs on every call, and each function call
    # costs about as much as the checks it would hold.
    if len(data) > limits.short_json_bytes or limits.max_depth < _REQUEST_DEPTH:
        return None
    text = data if type(data) is bytes else bytes(data)
    try:
        message: CompactCall | CompactGet = _REQUEST_DECODER.decode(text)
    except (msgspec.DecodeError, UnicodeError, RecursionError, ValueError):
        return None
    bound = limits.int_bound
    ttl = message.ttl
    if bound <= INT64_MAX and (
        not -bound < message.rid < bound or (ttl is not None and not -bound < ttl < bound)
    ):
        return None
    if type(message) is CompactGet:  # not isinstance(): on a Struct that costs 6 times more
        return None if buffers else message
    call = cast(CompactCall, message)
    if buffers:
        return _restored(text, call, buffers, limits)
    kwargs = call.kwargs
    # Without a colon the text has no object keys at all; with one, the keys must be the
    # keyword arguments' (or the text exactly what labwire writes).
    if kwargs or _COLON in text:
        if BUFFER_KEY in kwargs:  # a placeholder without its frame: the general path refuses
            return None
        args = call.args
        if not _keys_unique(text, call, len(kwargs), args, kwargs.values()):
            return None
        # One check for both: the text's covers every argument at once.
        if not _within_limits(text, (*args, *kwargs.values()), limits, _REQUEST_DEPTH + 1):
            return None
        return call
    # scalars_within_limits(), written out: nearly every call has only scalars.
    args = call.args
    for value in args:
        kind = type(value)
        if kind is int:
            if abs(value) >= bound:
                return None
        elif kind not in _SCALARS:
            if not _within_limits(text, args, limits, _REQUEST_DEPTH + 1):
                return None
            break
    return call


def _restored(
    data: bytes, call: CompactCall, buffers: Sequence[memoryview], limits: Limits
) -> CompactCall | None:
    """``call`` with its buffer arguments restored from ``buffers``; None: the general path.

    Only what :func:`encode_call_frames` writes is read here: placeholders as top-level
    arguments, numbered in order, one per frame, and plain JSON data besides them.
    """
    kwargs = call.kwargs
    if BUFFER_KEY in kwargs:
        return None
    if not _keys_unique(data, call, len(kwargs), call.args, kwargs.values()):
        return None
    plain: list[Any] = []  # the arguments that are not buffers
    count = 0  # the buffers restored so far

    def restore(value: Any) -> Any:
        nonlocal count
        if type(value) is not dict or BUFFER_KEY not in value:
            plain.append(value)
            return value
        if not _placeholder_within_limits(value, count, limits):
            raise _NotCompact
        count += 1
        return _buffer_from_placeholder(value, buffers)

    try:
        check_frame_sizes((len(data), *(buffer.nbytes for buffer in buffers)), limits)
        call.args = [restore(value) for value in call.args]
        call.kwargs = {key: restore(value) for key, value in kwargs.items()}
    except (_NotCompact, ProtocolError):  # the general path says what is wrong
        return None
    if count != len(buffers) or not _flat_within_limits(plain, limits, _REQUEST_DEPTH + 1):
        return None
    return call


def _placeholder_within_limits(placeholder: dict[str, Any], index: int, limits: Limits) -> bool:
    """Whether ``placeholder`` is the ``index``-th as labwire writes it, within ``limits``.

    It sits where a dict argument does; an array's shape is a list inside it.
    """
    if type(placeholder[BUFFER_KEY]) is not int or placeholder[BUFFER_KEY] != index:
        return False
    bound = limits.int_bound
    kind = placeholder.get("kind")
    if kind == "bytes" or kind == "buffer":
        return len(placeholder) == 2 and index < bound and limits.max_depth > _REQUEST_DEPTH
    shape = placeholder.get("shape")
    return (
        kind == "ndarray"
        and len(placeholder) == 4
        and type(placeholder.get("dtype")) is str
        and type(shape) is list
        and limits.max_depth > _REQUEST_DEPTH + 1
        and index < bound
        and all(type(size) is int and 0 <= size < bound for size in shape)
    )


def expand_compact_request(items: list[Any], nbuf: int = 0) -> dict[str, Any]:
    """The header a compact request stands for, for :func:`parse_request` to check.

    Args:
        items: The decoded array.
        nbuf: How many buffer frames followed it.

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
    if nbuf:
        header["lw"]["nbuf"] = nbuf
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


def encode_call_frames(
    method: str,
    args: list[Any],
    kwargs: dict[str, Any],
    client_id: str,
    request_id: int,
    ttl_ms: int | None,
    expiry: float | None,
    server_id: str,
) -> list[Buffer] | None:
    """Encode a METHOD_CALL with buffer arguments in the compact layout, buffers as frames.

    An argument (positional or keyword) that is bytes, a bytearray, a memoryview or a numpy
    array travels as a frame of its own, without a copy when contiguous; the compact frame has
    its placeholder where the argument was. The other arguments must be plain JSON data, as
    for :func:`encode_call`.

    Returns:
        The compact frame, then the buffers; None when no argument is a buffer or one needs
        the general layout (a buffer inside a container, anything :func:`encode_call`
        declines): use :func:`encode_frames`, which also names what cannot be sent.
    """
    if type(args) is not list or type(kwargs) is not dict or BUFFER_KEY in kwargs:
        return None
    buffers: list[Buffer] = []
    try:
        args = [_argument(value, buffers) for value in args]
        kwargs = {key: _argument(value, buffers) for key, value in kwargs.items()}
        if not buffers:
            return None
        frame = _ENCODER.encode(
            (_METHOD_CALL, method, args, kwargs, client_id, request_id, ttl_ms, expiry, server_id)
        )
    except (_NotCompact, TypeError, msgspec.EncodeError, UnicodeError):
        return None
    return [frame, *buffers]


def _argument(value: Any, buffers: list[Buffer]) -> Any:
    """A call argument as the compact layout carries it: a buffer becomes a placeholder.

    Raises:
        _NotCompact: ``value`` is neither a buffer nor plain JSON data.
    """
    if type(value) in _PLAIN_TYPES or _is_plain(value):
        return value
    count = len(buffers)
    placeholder = _extract(value, buffers)
    if len(buffers) != count + 1 or type(placeholder) is not dict or BUFFER_KEY not in placeholder:
        raise _NotCompact
    return placeholder


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
