"""Replies without the general path's glue: compact successes and buffer methods' replies.

A labwire server answers a labwire request that succeeded with a plain JSON value in one
frame, ``[rid, sid, value]`` (:func:`encode_plain_reply`), which the client reads in one typed
pass (:func:`decode_plain_reply`, :func:`read_plain_reply`) or declines, and then the general
path reads the array as the header it stands for (:func:`expand_compact_reply`). A buffer
method's usual reply is written and read without the general path's glue too
(:func:`encode_buffer_reply`, :func:`decode_buffer_reply`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from labwire.errors import ProtocolError
from labwire.wire.codec import Int64, encode_json
from labwire.wire.limits import Limits
from labwire.wire.rpc.buffers import BUFFER_KEY, Buffer, _extract
from labwire.wire.rpc.events import PROTOCOL_VERSION
from labwire.wire.rpc.frames import Request, check_frame_sizes, reply_extension
from labwire.wire.rpc.plain import (
    _ENCODER,
    _PLAIN_TYPES,
    _SCALARS,
    _flat_within_limits,
    _is_plain,
    _keys_unique,
    _within_limits,
)


class _Placeholder(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The placeholder of the usual reply's buffer: frame 1, as it is."""

    index: Literal[0] = msgspec.field(name=BUFFER_KEY)
    kind: Literal["buffer"]


class _BufferReplyLw(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The ``"lw"`` object of a buffer method's usual reply, its keys in the order written."""

    v: Int64
    rid: Int64
    sid: str
    nbuf: Literal[1]


class _BufferReply(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A buffer method's usual success reply: written by servers, the only one clients read fast."""

    success: Literal[True]
    lw: _BufferReplyLw
    result: tuple[_Placeholder, dict[str, Any]]


_PLACEHOLDER = _Placeholder(0, "buffer")
_BUFFER_REPLY_DECODER = msgspec.json.Decoder(_BufferReply)
#: How deep a buffer reply's info is: in the result list, in the reply object.
_BUFFER_INFO_DEPTH = 3

#: A compact reply: a tuple, not a Struct, which takes a third more to decode.
_REPLY_DECODER = msgspec.json.Decoder(tuple[Int64, str, Any])
#: How deep the containers of the layout go: a value is at depth 1.
_REPLY_DEPTH = 1


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
    rid = request.request_id
    if (
        rid is not None
        and type(buffer) is memoryview
        and buffer.contiguous
        and type(info) is dict
        and _is_plain(info)
    ):
        # The usual reply, written in one pass: the same bytes as below.
        lw = _BufferReplyLw(PROTOCOL_VERSION, rid, server_id, 1)
        try:
            return [_ENCODER.encode(_BufferReply(True, lw, (_PLACEHOLDER, info))), buffer]
        except (msgspec.EncodeError, UnicodeError):
            pass  # e.g. a lone surrogate: the general encoder names the problem
    buffers: list[Buffer] = []
    result = [_extract(buffer, buffers), _extract(info, buffers)]
    extension = reply_extension(request, server_id, nbuf=len(buffers))
    return [encode_json({"success": True, "lw": extension, "result": result}), *buffers]


def decode_buffer_reply(
    head: bytes,
    buffers: Sequence[memoryview],
    request_id: int,
    server_id: str,
    limits: Limits,
) -> Any:
    """Decode a labwire buffer method's success reply to one request, if it is the usual one.

    The usual one is what :func:`encode_buffer_reply` writes for a plain JSON ``info``: two
    frames, the header's result ``[{"$lwbuf": 0, "kind": "buffer"}, info]``, read in one typed
    pass; its keys are proved unique by counting them, and ``info`` is held to the limits.

    Returns:
        ``(buffer, info)``, the buffer being frame 1 as it is; or :data:`NOT_PLAIN` for
        anything else (a failure, more frames, another request's reply, another incarnation,
        a malformed message): read it with :func:`decode_frames`, which explains what is wrong.
    """
    if len(buffers) != 1 or len(head) > limits.short_json_bytes:
        return NOT_PLAIN
    try:
        check_frame_sizes((len(head), buffers[0].nbytes), limits)
        reply: _BufferReply = _BUFFER_REPLY_DECODER.decode(head)
    except (msgspec.DecodeError, UnicodeError, RecursionError, ValueError, ProtocolError):
        return NOT_PLAIN
    lw, info = reply.lw, reply.result[1]
    if (
        lw.rid != request_id
        or lw.sid != server_id
        or limits.max_depth < _BUFFER_INFO_DEPTH
        or not -limits.int_bound < lw.v < limits.int_bound
        # Keys: success, lw, result; lw's four; the placeholder's two; and the info's.
        or not _keys_unique(head, reply, 9 + len(info), info.values())
        or not _flat_within_limits(info.values(), limits, _BUFFER_INFO_DEPTH + 1)
    ):
        return NOT_PLAIN
    return buffers[0], info


def expand_compact_reply(items: list[Any], nbuf: int = 0) -> dict[str, Any]:
    """The header a compact reply stands for (its value is both a result and a value).

    Args:
        items: The decoded array.
        nbuf: How many frames followed it: a compact reply has none.

    Raises:
        ProtocolError: ``items`` is not ``[rid, sid, value]``, or frames followed it.
    """
    if nbuf:
        raise ProtocolError(f"a compact reply has one frame, not {nbuf + 1}")
    if len(items) != 3:
        raise ProtocolError("a compact reply is [rid, sid, value]")
    rid, sid, value = items
    lw = {"v": PROTOCOL_VERSION, "rid": rid, "sid": sid}
    return {"success": True, "result": value, "value": value, "lw": lw}
