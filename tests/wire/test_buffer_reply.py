"""The buffer-reply fast paths: encode_buffer_reply and decode_buffer_reply.

encode_buffer_reply writes what encode_frames writes (the usual reply in one typed pass);
decode_buffer_reply accepts only the usual reply, reads it as decode_frames does, and leaves
everything else to decode_frames.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labwire.errors import ProtocolError
from labwire.wire.limits import Limits
from labwire.wire.rpc import (
    NOT_PLAIN,
    PROTOCOL_VERSION,
    Request,
    decode_buffer_reply,
    decode_frames,
    encode_buffer_reply,
    encode_frames,
    restore_buffers,
)
from tests.wire.test_codec import json_values

pytestmark = pytest.mark.timeout(30)

LIMITS = Limits()
BUFFER = memoryview(bytearray(b"pixels" * 100))
REQUEST = Request("METHOD_CALL", "grab", version=PROTOCOL_VERSION, client_id="c", request_id=7)


@pytest.mark.parametrize(
    "info",
    [
        {},
        {"size": 3},
        {"a": [1, 2.5, None, "x"], "t": (1, 2)},
        {"raw": b"xy"},
        {"array": np.arange(3)},
        {"n": np.int64(4)},
        [1, 2],
        5,
        None,
    ],
)
@pytest.mark.parametrize(
    "buffer",
    [BUFFER, memoryview(np.arange(12).reshape(3, 4)[:, ::2]), np.arange(4.0)],
    ids=["contiguous", "strided", "ndarray"],
)
def test_encode_buffer_reply_is_byte_identical_to_encode_frames(buffer: Any, info: Any) -> None:
    header = {"success": True, "lw": {"v": PROTOCOL_VERSION, "rid": 7, "sid": "s1"}}
    expected = encode_frames(header, {"result": [buffer, info]})
    frames = encode_buffer_reply(REQUEST, "s1", buffer, info)
    assert [bytes(f) for f in frames] == [bytes(f) for f in expected]
    if buffer is BUFFER:
        assert frames[1] is BUFFER  # zero-copy: the caller's buffer itself


@pytest.mark.parametrize("info", [{"$lwbuf": 1}, {"x": float("nan")}, {"o": object()}])
def test_encode_buffer_reply_refuses_what_encode_frames_refuses(info: Any) -> None:
    with pytest.raises(TypeError):
        encode_buffer_reply(REQUEST, "s1", BUFFER, info)


USUAL = (
    b'{"success":true,"lw":{"v":1,"rid":7,"sid":"s1","nbuf":1},'
    b'"result":[{"$lwbuf":0,"kind":"buffer"},{"size":600}]}'
)


def test_decode_buffer_reply_takes_the_usual_reply_without_copies() -> None:
    buffer, info = decode_buffer_reply(USUAL, [BUFFER], 7, "s1", LIMITS)
    assert buffer is BUFFER and info == {"size": 600}


@pytest.mark.parametrize(
    "head",
    [
        USUAL.replace(b'"rid":7', b'"rid":8'),  # another request's (late) reply
        USUAL.replace(b'"sid":"s1"', b'"sid":"s2"'),  # another incarnation
        USUAL.replace(b'"$lwbuf":0', b'"$lwbuf":false'),
        USUAL.replace(b'"$lwbuf":0', b'"$lwbuf":0.0'),
        USUAL.replace(b'"kind":"buffer"', b'"kind":"bytes"'),
        USUAL.replace(b'{"size":600}', b'{"p":{"$lwbuf":0,"kind":"buffer"}}'),
        USUAL.replace(b'{"size":600}', b'{"p":{"\\u0024lwbuf":0,"kind":"buffer"}}'),
        USUAL.replace(b'{"success":true,', b'{"success":true,"success":true,'),
        USUAL.replace(b"600", b"1" * 30),  # over the integer limit
        USUAL.replace(b'"v":1', b'"v":' + b"1" * 30),
        USUAL.replace(b'"nbuf":1', b'"nbuf":2'),
        USUAL.replace(b'"nbuf":1', b'"nbuf":1,"x":0'),  # a field labwire does not write
        USUAL.replace(b'"kind":"buffer"', b'"kind":"buffer","x":0'),
        USUAL.replace(b"600", b'{"b":{"c":1}}'),  # deeper than the usual reply
        USUAL.replace(b"600}]}", b'600}],"x":0}'),
        b'{"success":false,"error":"x","lw":{"v":1,"rid":7,"sid":"s1"}}',
        b'[7,"s1",5]',
        b"not json",
    ],
)
def test_decode_buffer_reply_leaves_anything_else_to_the_general_path(head: bytes) -> None:
    assert decode_buffer_reply(head, [BUFFER], 7, "s1", LIMITS) is NOT_PLAIN


def test_decode_buffer_reply_needs_exactly_one_buffer_frame() -> None:
    assert decode_buffer_reply(USUAL, [], 7, "s1", LIMITS) is NOT_PLAIN
    assert decode_buffer_reply(USUAL, [BUFFER, BUFFER], 7, "s1", LIMITS) is NOT_PLAIN


def general(head: bytes, limits: Limits) -> tuple[Any, Any] | ProtocolError:
    """What the general path reads from the reply: its buffer and info, or its error."""
    try:
        header, buffers = decode_frames([memoryview(head), BUFFER], limits)
        result = restore_buffers(header["result"], buffers)
        return result[0], result[1]
    except ProtocolError as exc:
        return exc


@given(json_values, st.sampled_from([LIMITS, Limits(max_depth=4, max_int_digits=5)]))
@settings(max_examples=300, deadline=None)
def test_decode_buffer_reply_reads_what_the_general_path_reads(info: Any, limits: Limits) -> None:
    """It never accepts what the general path refuses, nor reads it differently."""
    try:
        head = msgspec.json.encode(
            {
                "success": True,
                "lw": {"v": 2, "rid": 7, "sid": "s1", "nbuf": 1},
                "result": [{"$lwbuf": 0, "kind": "buffer"}, {"info": info, "n": 1}],
            }
        )
    except (msgspec.EncodeError, UnicodeEncodeError):
        return
    quick = decode_buffer_reply(head, [BUFFER], 7, "s1", limits)
    if quick is not NOT_PLAIN:
        buffer, parsed = general(head, limits)
        assert quick[0] is BUFFER and bytes(buffer) == bytes(BUFFER) and quick[1] == parsed


def test_decode_buffer_reply_reads_the_usual_reply_of_any_plain_info() -> None:
    for info in ({}, {"shape": [480, 640], "dtype": "<u2"}, {"t": "a:b", "k": {"x": 1.5}}):
        head = bytes(encode_buffer_reply(REQUEST, "s1", BUFFER, info)[0])
        assert decode_buffer_reply(head, [BUFFER], 7, "s1", LIMITS) == (BUFFER, info)
