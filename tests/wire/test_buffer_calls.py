"""Compact calls with buffer arguments: the same requests on both paths, or none on the fast one.

``encode_call_frames`` writes a call whose arguments include buffers as the compact array with
placeholders, then the buffers as frames; ``decode_compact`` reads it in one pass or declines
it, and never accepts what the general path (``decode_frames`` and ``parse_request``) refuses.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labwire.errors import ProtocolError
from labwire.wire.limits import Limits
from labwire.wire.rpc import (
    Request,
    decode_compact,
    decode_frames,
    encode_call,
    encode_call_frames,
    expand_compact_reply,
    expand_compact_request,
    parse_request,
)
from tests.wire.test_codec import json_values
from tests.wire.test_fast_path import LIMITS, SID

pytestmark = pytest.mark.timeout(60)


def views(frames: list[Any]) -> list[memoryview]:
    return [memoryview(frame).cast("B") for frame in frames]


def fast(frames: list[Any], limits: Limits = LIMITS) -> Request | None:
    """What the server's fast path makes of a request's frames, or None."""
    parts = views(frames)
    message = decode_compact(bytes(parts[0]), limits, parts[1:])
    return None if message is None else message.request()


def general(frames: list[Any], limits: Limits = LIMITS) -> Request | ProtocolError:
    """What the general path makes of a request's frames: a request or its error."""
    try:
        header, buffers = decode_frames(views(frames), limits, expand_compact_request)
        return parse_request(header, buffers)
    except ProtocolError as exc:
        return exc


def call_frames(args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    frames = encode_call_frames("m", args, kwargs, "c0ffee", 7, 1000, 12.5, SID)
    assert frames is not None
    return frames


def plain(value: Any) -> Any:
    """A restored argument, comparable with what was sent."""
    if isinstance(value, numpy.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ("bytes", bytes(value))
    return value


buffers = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(bytearray),
    st.binary(max_size=64).map(memoryview),
    st.lists(st.floats(allow_nan=False), max_size=8).map(numpy.array),
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=6, max_size=6).map(
        lambda items: numpy.array(items, dtype="<i4").reshape(2, 3)
    ),
)


@given(
    st.lists(json_values | buffers, max_size=4),
    st.dictionaries(st.text(max_size=8), json_values | buffers, max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_encode_call_frames_reads_back_the_same_on_both_paths(
    args: list[Any], kwargs: dict[str, Any]
) -> None:
    frames = encode_call_frames("m", args, kwargs, "c0ffee", 7, 1000, 12.5, SID)
    count = sum(
        isinstance(v, (bytes, bytearray, memoryview, numpy.ndarray))
        for v in [*args, *kwargs.values()]
    )
    if count == 0:
        assert frames is None  # nothing for frames to carry: encode_call's layout
        return
    if frames is None:  # a lone surrogate in a string: the general path names it
        return
    assert len(frames) == count + 1
    slow = general(frames)
    assert isinstance(slow, Request), slow
    assert [plain(v) for v in slow.args] == [plain(v) for v in args]
    assert {k: plain(v) for k, v in slow.kwargs.items()} == {k: plain(v) for k, v in kwargs.items()}
    assert (slow.client_id, slow.request_id, slow.ttl_ms, slow.expiry) == ("c0ffee", 7, 1000, 12.5)
    quick = fast(frames)
    if all(type(v) is not dict and type(v) is not list for v in [*args, *kwargs.values()]):
        assert quick is not None  # scalars and buffers: always read by the compact decoder
    if quick is not None:
        assert [plain(v) for v in quick.args] == [plain(v) for v in slow.args]
        assert {k: plain(v) for k, v in quick.kwargs.items()} == {
            k: plain(v) for k, v in slow.kwargs.items()
        }
        assert (quick.name, quick.request_id, quick.server_id) == ("m", 7, SID)


def test_buffers_travel_as_frames_without_copies() -> None:
    data = memoryview(bytearray(1 << 16))
    frames = call_frames([data, 1], {"mode": "fast"})
    assert frames[1] is data
    request = fast(frames)
    assert request is not None
    assert type(request.args[0]) is memoryview and request.args[0].nbytes == 1 << 16
    assert request.args[1:] == [1] and request.kwargs == {"mode": "fast"}


def test_encode_call_frames_declines_what_needs_the_general_path() -> None:
    encode = encode_call_frames
    assert encode("m", [1, "x"], {}, "c", 1, None, None, SID) is None  # no buffer
    assert encode("m", [[b"x"]], {}, "c", 1, None, None, SID) is None  # inside a list
    assert encode("m", [{"a": b"x"}], {}, "c", 1, None, None, SID) is None  # inside a dict
    assert encode("m", [b"x", float("nan")], {}, "c", 1, None, None, SID) is None
    assert encode("m", [b"x", object()], {}, "c", 1, None, None, SID) is None
    assert encode("m", [b"x"], {"$lwbuf": 1}, "c", 1, None, None, SID) is None
    assert encode("m", [numpy.array([object()])], {}, "c", 1, None, None, SID) is None
    assert encode_call("m", [b"x"], {}, "c", 1, None, None, SID) is None  # never one frame


def layout(args: Any, kwargs: Any = None) -> bytes:
    """The compact call layout with any JSON in it."""
    items = ["METHOD_CALL", "m", args, kwargs or {}, "c0ffee", 7, 1000, 12.5, SID]
    return msgspec.json.encode(items)


def slot(index: Any, kind: str = "buffer", **extra: Any) -> dict[str, Any]:
    return {"$lwbuf": index, "kind": kind, **extra}


@pytest.mark.parametrize(
    ("frames", "limits"),
    [
        ([layout([slot(1)]), b"x"], LIMITS),  # a frame that is not there
        ([layout([slot(0), slot(0)]), b"x", b"y"], LIMITS),  # one frame twice
        ([layout([slot(1), slot(0)]), b"x", b"y"], LIMITS),  # out of order
        ([layout([1]), b"x"], LIMITS),  # a frame no placeholder refers to
        ([layout([slot(True)]), b"x"], LIMITS),
        ([layout([slot(0, "tape")]), b"x"], LIMITS),  # an unknown kind
        ([layout([slot(0, extra=1)]), b"x"], LIMITS),  # a field labwire does not write
        ([layout([[slot(0)]]), b"x"], LIMITS),  # inside a list
        ([layout([{"a": slot(0)}]), b"x"], LIMITS),  # inside a dict
        ([layout([slot(0, "ndarray", dtype="<f8", shape=[3])]), b"x"], LIMITS),  # wrong size
        ([layout([slot(0, "ndarray", dtype="O", shape=[1])]), b"x" * 8], LIMITS),
        ([layout([slot(0, "ndarray", dtype="<f8", shape=[10**25])]), b"x"], LIMITS),
        ([layout([slot(0, "ndarray", dtype="<u1", shape=[1])]), b"x"], Limits(max_depth=3)),
        ([layout([slot(0)]), b"x"], Limits(max_depth=2)),
        ([layout([slot(0), 10**25]), b"x"], LIMITS),  # an integer over the limit beside it
        ([layout([slot(0)], {"a": [[[1]]]}), b"x"], Limits(max_depth=4)),  # too deep beside it
        ([layout([slot(0), {"a": 1}]).replace(b'{"a":1}', b'{"a":1,"a":2}'), b"x"], LIMITS),
        ([layout([slot(0)]), b"x" * 70_000], Limits(max_frame_bytes=65_536)),
        ([layout([slot(i) for i in range(4)]), *[b"x"] * 4], Limits(max_frames=4)),
        ([layout([], slot(0)), b"x"], LIMITS),  # the keyword arguments a placeholder
        ([msgspec.json.encode(["PROPERTY_GET", "p", "c", 1, None, None, SID]), b"x"], LIMITS),
    ],
)
def test_fast_path_declines_what_it_must_not_read(frames: list[Any], limits: Limits) -> None:
    assert fast(frames, limits) is None


@given(
    st.lists(json_values | st.integers(0, 3).map(slot), max_size=3),
    st.dictionaries(st.text(max_size=4), json_values | st.integers(0, 3).map(slot), max_size=2),
    st.integers(0, 3),
)
@settings(max_examples=300, deadline=None)
def test_fast_path_never_accepts_what_the_general_path_refuses(
    args: list[Any], kwargs: dict[str, Any], count: int
) -> None:
    try:
        head = layout(args, kwargs)
    except (msgspec.EncodeError, UnicodeEncodeError):
        return
    frames = [head, *[b"ab"] * count]
    for limits in (LIMITS, Limits(max_depth=3, max_int_digits=5, max_string_chars=60)):
        quick = fast(frames, limits)
        if quick is not None:
            assert quick == general(frames, limits)


def test_compact_replies_have_one_frame() -> None:
    frames = views([b'[7,"s",1]', b"x"])
    with pytest.raises(ProtocolError, match="a compact reply has one frame, not 2"):
        decode_frames(frames, LIMITS, expand_compact_reply)
