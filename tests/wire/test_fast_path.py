"""The small-call fast path: the same requests and replies as the general path, or none.

``fast_request`` and ``decode_plain_reply`` may only decline a message (None / NOT_PLAIN), never
accept one the general path refuses nor read one differently; ``encode_call`` and
``encode_plain_reply`` must write what the general path reads back to the same values.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labwire.errors import ProtocolError
from labwire.wire.codec import decode_json
from labwire.wire.limits import Limits
from labwire.wire.rpc import (
    _CALL_KEYS,
    _GET_KEYS,
    _RESULT_KEYS,
    NOT_PLAIN,
    PROTOCOL_VERSION,
    Request,
    RPCEvents,
    decode_frames,
    decode_plain_reply,
    encode_call,
    encode_frames,
    encode_plain_reply,
    fast_request,
    parse_request,
    reply_extension,
)
from tests.wire.test_codec import json_scalars, json_values

pytestmark = pytest.mark.timeout(60)

LIMITS = Limits()
SID = "5e4ee1d0c0ffee00"


def general(data: bytes, limits: Limits = LIMITS) -> Request | ProtocolError:
    """What the general path makes of a one-frame request: a request or its error."""
    try:
        header, buffers = decode_frames([memoryview(data)], limits)
        return parse_request(header, buffers)
    except ProtocolError as exc:
        return exc


def layout(args: Any, kwargs: Any, rid: Any = 7, ttl: Any = 1000, exp: Any = 12.5) -> bytes:
    """The fast-path layout with any JSON in it (encode_call only writes scalars)."""
    header = {
        "event": "METHOD_CALL",
        "method": "m",
        "params": {"args": args, "kwargs": kwargs},
        "lw": {"v": 1, "cid": "c0ffee", "rid": rid, "ttl": ttl, "exp": exp, "sid": SID},
    }
    return msgspec.json.encode(header)


# --------------------------------------------------------------------------- requests


@given(
    st.lists(json_scalars, max_size=4),
    st.dictionaries(st.text(max_size=8), json_scalars, max_size=4),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.none() | st.integers(min_value=0, max_value=10**9),
    st.none() | st.floats(allow_nan=False, allow_infinity=False),
)
@settings(max_examples=300, deadline=None)
def test_encode_call_reads_back_the_same_on_both_paths(
    args: list[Any], kwargs: dict[str, Any], rid: int, ttl: int | None, exp: float | None
) -> None:
    data = encode_call("m", args, kwargs, "c0ffee", rid, ttl, exp, SID)
    if data is None:  # a lone surrogate in a string: the general path names it
        return
    fast = fast_request(data, LIMITS)
    slow = general(data)
    assert isinstance(slow, Request)
    assert fast == slow
    assert fast is not None and fast.event == RPCEvents.METHOD_CALL
    assert (fast.name, fast.args, fast.kwargs) == ("m", args, kwargs)
    assert (fast.client_id, fast.request_id, fast.ttl_ms, fast.expiry) == ("c0ffee", rid, ttl, exp)


@given(st.lists(json_values, max_size=3), st.dictionaries(st.text(max_size=8), json_values))
@settings(max_examples=300, deadline=None)
def test_fast_request_never_accepts_what_the_general_path_refuses(
    args: list[Any], kwargs: dict[str, Any]
) -> None:
    try:
        data = layout(args, kwargs)
    except (msgspec.EncodeError, UnicodeEncodeError):
        return
    for limits in (
        LIMITS,
        Limits(max_depth=3, max_int_digits=5, max_string_chars=40),
        Limits(max_depth=1),
    ):
        fast = fast_request(data, limits)
        if fast is not None:
            assert fast == general(data, limits)


TIGHT = Limits(max_depth=3, max_string_chars=40)


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (layout([1], {}, rid=10**25), LIMITS),  # over the integer limit
        (layout([1], {}, ttl=10**25), LIMITS),
        (layout([1], {}, rid=2**63), LIMITS),  # beyond the fast path's integers
        (layout([[[[1]]]], {}), TIGHT),  # over the depth limit
        (layout(["x" * 50], {}), Limits(max_string_chars=40)),  # over the string limit
        (layout([{"$lwbuf": 0, "kind": "bytes"}], {}), LIMITS),  # a placeholder, no frame
        (layout([1], {}).replace(b'"kwargs":{}', b'"kwargs":{"a":1,"a":2}'), LIMITS),
        (layout([1], {}).replace(b'"method":"m"', b'"method":"m","method":"_m"'), LIMITS),
        (layout([1], {}).replace(b'"sid":', b'"nbuf":1,"sid":'), LIMITS),  # buffers promised
        (layout([1], {}).replace(b'"rid":7', b'"rid":7,"rid":8'), LIMITS),
        (layout([1], {}).replace(b'"rid":7', b'"rid" : 7 , "rid" : 8'), LIMITS),
        (layout([1], {}).replace(b'"event":"METHOD_CALL",', b""), LIMITS),  # no event
        (layout([1], {}).replace(b'"v":1', b'"v":0'), LIMITS),  # not a version
        (layout([1], {}).replace(b'"v":1', b'"v":' + b"1" * 25), LIMITS),  # over the limit
        (layout([1], {}).replace(b'"c0ffee"', b'"' + b"c" * 65 + b'"'), LIMITS),  # long id
        (
            b'{"event":"PROPERTY_SET","property":"p","value":1,"lw":{"v":1,"cid":"c","rid":1,'
            b'"ttl":null,"exp":null,"sid":""}}',
            LIMITS,
        ),  # another event: the general path's
    ],
)
def test_fast_request_declines_what_it_must_not_read(data: bytes, limits: Limits) -> None:
    assert fast_request(data, limits) is None


def test_fast_request_reads_other_spellings_as_the_general_path_does() -> None:
    for data in (
        layout([1], {}).replace(b"[1]", b"[1.0e0]"),
        layout([1], {"a": 2}).replace(b":", b" : ").replace(b",", b" , "),
        layout([1], {}).replace(b'"m"', b'"\\u006d"'),
        layout([1], {"a": 1}).replace(b'"method":"m"', b'"method":"m:"'),  # a colon in a string
    ):
        fast = fast_request(data, LIMITS)
        assert fast is not None
        assert fast == general(data)


def test_small_calls_are_recognised_by_their_key_count() -> None:
    # The fast path skips re-encoding when the colons in the text match the layout's keys;
    # the counts must match what labwire itself writes, or every call pays for the fallback.
    call = encode_call("m", [1, "x"], {"a": 1, "b": None}, "c", 1, 100, 2.5, SID)
    assert call is not None and call.count(b":") == _CALL_KEYS + 2
    reply = encode_plain_reply(1, SID, "result", 3)
    assert reply is not None and reply.count(b":") == _RESULT_KEYS
    get = msgspec.json.encode(
        {
            "event": "PROPERTY_GET",
            "property": "p",
            "lw": {"v": 1, "cid": "c", "rid": 3, "ttl": 500, "exp": None, "sid": ""},
        }
    )
    assert get.count(b":") == _GET_KEYS


def test_fast_request_declines_under_a_depth_limit_its_layout_exceeds() -> None:
    data = layout([1], {})
    assert fast_request(data, Limits(max_depth=2)) is None
    assert isinstance(general(data, Limits(max_depth=2)), ProtocolError)


def test_fast_request_reads_a_property_get() -> None:
    data = msgspec.json.encode(
        {
            "event": "PROPERTY_GET",
            "property": "exposure",
            "lw": {"v": 1, "cid": "c", "rid": 3, "ttl": 500, "exp": None, "sid": ""},
        }
    )
    assert fast_request(data, LIMITS) == general(data)


def test_encode_call_declines_what_needs_the_general_path() -> None:
    for args, kwargs in (([b"bytes"], {}), ([[1, 2]], {}), ([float("nan")], {}), ([], {"a": {}})):
        assert encode_call("m", args, kwargs, "c", 1, None, None, "") is None


# --------------------------------------------------------------------------- replies


@given(json_scalars, st.sampled_from(["result", "value"]))
@settings(max_examples=200, deadline=None)
def test_encode_plain_reply_writes_what_the_general_path_writes(value: Any, key: str) -> None:
    request = Request(RPCEvents.METHOD_CALL, "m", version=1, client_id="c", request_id=9)
    header: dict[str, Any] = {"success": True, "lw": reply_extension(request, SID)}
    try:
        expected = encode_frames(header, {key: value})[0]
    except TypeError:  # a lone surrogate
        assert encode_plain_reply(9, SID, key, value) is None
        return
    assert encode_plain_reply(9, SID, key, value) == expected


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_decode_plain_reply_reads_what_the_general_path_reads(result: Any) -> None:
    header = {"success": True, "lw": {"v": PROTOCOL_VERSION, "rid": 9, "sid": SID}}
    try:
        data = encode_frames(header, {"result": result})[0]
    except TypeError:
        return
    value = decode_plain_reply(bytes(data), 9, SID, LIMITS)
    assert value is NOT_PLAIN or value == decode_json(data, LIMITS)["result"]
    if not isinstance(result, (list, dict)):
        assert value == result


@pytest.mark.parametrize(
    ("data", "rid", "sid"),
    [
        (b'{"success":true,"lw":{"v":1,"rid":9,"sid":"s"},"result":1}', 8, "s"),  # another call
        (b'{"success":true,"lw":{"v":1,"rid":9,"sid":"s"},"result":1}', 9, "t"),  # a restart
        (b'{"success":false,"lw":{"v":1,"rid":9,"sid":"s"},"result":1}', 9, "s"),
        (b'{"success":true,"lw":{"v":1,"rid":9,"sid":"s"},"result":1,"result":2}', 9, "s"),
        (b'{"success":true,"lw":{"v":1,"rid":9,"sid":"s","nbuf":1},"result":1}', 9, "s"),
        (b'{"success":true,"lw":{"v":1,"rid":9,"sid":"s"},"result":' + b"9" * 25 + b"}", 9, "s"),
        (b'{"success":true,"result":1}', 9, "s"),  # a deployed server's reply
        (b'{"success":true,"lw":{"v":' + b"1" * 25 + b',"rid":9,"sid":"s"},"result":1}', 9, "s"),
    ],
)
def test_decode_plain_reply_declines_anything_else(data: bytes, rid: int, sid: str) -> None:
    assert decode_plain_reply(data, rid, sid, LIMITS) is NOT_PLAIN
