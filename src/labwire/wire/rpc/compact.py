"""The compact layout: labwire's own small calls, property reads and plain replies.

labwire's own small calls are JSON arrays, decoded into these typed structs in one pass.
msgspec is as strict as the general path about UTF-8, surrogates and NaN, but keeps the last
of duplicate keys. The only objects in a compact request are its keyword arguments and any
among its arguments; a message takes the fast path only when they provably repeat no key
(see ``_keys_unique``), so it cannot accept what the general path refuses. The functions here
are written out for speed: they run on every call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, cast

import msgspec

from labwire.errors import ProtocolError
from labwire.wire.codec import (
    INT64_MAX,
    Int64,
    decode_json,
    encode_json,
    scalars_within_limits,
    within_limits_by_text,
)
from labwire.wire.limits import Limits
from labwire.wire.rpc.buffers import BUFFER_KEY, Buffer, _extract, _find_placeholder
from labwire.wire.rpc.events import PROTOCOL_VERSION
from labwire.wire.rpc.frames import Request, check_frame_sizes, reply_extension

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
_NUMBERS = frozenset({int, float, bool})
#: Frames up to this long are checked by their text first (see _within_limits).
_SHORT_TEXT_BYTES = 512
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
            # Arrays of scalars (readings, coordinates) are checked at C speed: by the set of
            # their item types, and their floats by their sum, finite only if each one is.
            kinds = set(map(type, item))
            if kinds <= _PLAIN_TYPES:
                continue
            if kinds <= _NUMBERS:
                try:
                    if math.isfinite(sum(item)):
                        continue
                except OverflowError:  # an integer too large for a float: look at each
                    pass
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


def _keys_unique(data: bytes, message: Any, keys: int, *groups: Iterable[Any]) -> bool:
    """Whether no JSON object in ``data`` (decoded as ``message``) repeats a key.

    ``keys`` keys of the message are known; the keys of the dicts among the values of
    ``groups`` count too. Every key in JSON text is followed by a colon, and the text has each
    decoded key at least once: so when it has exactly as many colons as keys counted, no key
    appears twice (keys left uncounted, in deeper objects, only make the counts differ).
    Otherwise (a colon inside a string, a nested object) the text must be exactly what
    re-encoding the message gives, which it cannot be with a key repeated.
    """
    colons = data.count(b":")
    if colons == keys:
        return True
    for values in groups:
        for value in values:
            if type(value) is dict:
                keys += len(value)
    if colons == keys:
        return True
    try:
        return _ENCODER.encode(message) == data
    except (msgspec.EncodeError, UnicodeError):
        return False


def _within_limits(data: bytes, values: Iterable[Any], limits: Limits, depth: int) -> bool:
    """Whether decoded ``values`` from ``data`` hold nothing the general path would refuse.

    Either check proves it: the text's (no buffer placeholder, and the limits by
    :func:`~labwire.wire.codec.within_limits_by_text`, whose digit runs cover the integers)
    or the values' own (:func:`_flat_within_limits`, for scalars and lists and dicts of them
    at ``depth``). The cheaper goes first: the text's costs microseconds per kilobyte.
    """
    if len(data) <= _SHORT_TEXT_BYTES:
        return _text_within_limits(data, limits) or _flat_within_limits(values, limits, depth)
    return _flat_within_limits(values, limits, depth) or _text_within_limits(data, limits)


def _text_within_limits(data: bytes, limits: Limits) -> bool:
    return data.find(_BUFFER_KEY_BYTES) < 0 and within_limits_by_text(data, limits)


def _flat_within_limits(values: Iterable[Any], limits: Limits, depth: int) -> bool:
    """Whether ``values`` are scalars, or lists and dicts of scalars, within ``limits``.

    See :func:`~labwire.wire.codec.scalars_within_limits`; a dict with the buffer
    placeholder's key is a placeholder without its frame, which the general path refuses.
    False means "look at the text", not "over a limit".
    """
    for value in values:
        if type(value) is dict and BUFFER_KEY in value:
            return False
    return scalars_within_limits(values, limits, depth)


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
    # Written out, as is read_plain_reply: this runs on every call, and each function call
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
        args = call.args
        if not _keys_unique(data, call, len(kwargs), args, kwargs.values()):
            return None
        # One check for both: the text's covers every argument at once.
        if not _within_limits(data, (*args, *kwargs.values()), limits, _REQUEST_DEPTH + 1):
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
            if not _within_limits(data, args, limits, _REQUEST_DEPTH + 1):
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
    plain = read_plain_reply(data, server_id, limits)
    if plain is None or plain[0] != request_id:
        return NOT_PLAIN
    return plain[1]


def read_plain_reply(data: bytes, server_id: str, limits: Limits) -> tuple[int, Any] | None:
    """Decode a compact success reply from one server incarnation, whatever it answers.

    Args:
        data: The reply's only frame.
        server_id: The server incarnation it must come from.
        limits: Limits to enforce.

    Returns:
        The id of the request answered and the result or value; or None when the reply is
        anything else (see :func:`decode_plain_reply`).
    """
    if len(data) > limits.short_json_bytes or limits.max_depth < _REPLY_DEPTH:
        return None
    try:
        reply: tuple[int, str, Any] = _REPLY_DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeError, RecursionError, ValueError):
        return None
    rid, sid, value = reply
    if sid != server_id:
        return None
    kind = type(value)
    if kind is int:
        if abs(value) < limits.int_bound:
            return rid, value
        return None
    if kind in _SCALARS:
        return rid, value
    # A container: hold it to the rules the general path's decoder enforces.
    if kind is dict:
        unique = _keys_unique(data, reply, len(value), value.values())
    else:
        unique = _keys_unique(data, reply, 0, value)
    if not unique or not _within_limits(data, (value,), limits, _REPLY_DEPTH + 1):
        return None
    return rid, value


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
