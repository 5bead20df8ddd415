"""The compact layout of small calls: the same requests and replies as the general path, or none.

``decode_compact`` and ``decode_plain_reply`` may only decline a message (None / NOT_PLAIN), never
accept one the general path refuses nor read one differently; ``encode_call``, ``encode_get``
and ``encode_plain_reply`` must write what the general path reads back to the same values.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labwire.errors import ProtocolError
from labwire.wire.limits import Limits
from labwire.wire.rpc import (
    NOT_PLAIN,
    PROTOCOL_VERSION,
    Request,
    RPCEvents,
    decode_compact,
    decode_frames,
    decode_plain_reply,
    encode_call,
    encode_get,
    encode_plain_reply,
    expand_compact_reply,
    expand_compact_request,
    parse_request,
)
from tests.wire.test_codec import json_values

pytestmark = pytest.mark.timeout(60)

LIMITS = Limits()
SID = "5e4ee1d0c0ffee00"


def fast_request(data: bytes, limits: Limits) -> Request | None:
    """What the compact decoder makes of a request, as the general path's request, or None."""
    message = decode_compact(data, limits)
    return None if message is None else message.request()


def general(data: bytes, limits: Limits = LIMITS) -> Request | ProtocolError:
    """What the general path makes of a one-frame request: a request or its error."""
    try:
        header, buffers = decode_frames([memoryview(data)], limits, expand_compact_request)
        return parse_request(header, buffers)
    except ProtocolError as exc:
        return exc


def general_reply(data: bytes, limits: Limits = LIMITS) -> dict[str, Any] | ProtocolError:
    """What the general path makes of a one-frame reply: its header or its error."""
    try:
        return decode_frames([memoryview(data)], limits, expand_compact_reply)[0]
    except ProtocolError as exc:
        return exc


def layout(args: Any, kwargs: Any, rid: Any = 7, ttl: Any = 1000, exp: Any = 12.5) -> bytes:
    """The compact call layout with any JSON in it (encode_call only writes scalars)."""
    return msgspec.json.encode(["METHOD_CALL", "m", args, kwargs, "c0ffee", rid, ttl, exp, SID])


# --------------------------------------------------------------------------- requests


@given(
    st.lists(json_values, max_size=4),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
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
    slow = general(data)
    assert isinstance(slow, Request)
    assert slow.event == RPCEvents.METHOD_CALL
    assert (slow.name, slow.args, slow.kwargs) == ("m", args, kwargs)
    assert (slow.client_id, slow.request_id, slow.ttl_ms, slow.expiry) == ("c0ffee", rid, ttl, exp)
    assert (slow.version, slow.server_id) == (PROTOCOL_VERSION, SID)
    fast = fast_request(data, LIMITS)
    assert fast is None or fast == slow
    if all(type(v) is not dict and type(v) is not list for v in [*args, *kwargs.values()]):
        assert fast == slow  # scalars: always read by the compact decoder


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
        Limits(max_depth=3, max_int_digits=5, max_string_chars=60),
        Limits(max_depth=2),
    ):
        fast = fast_request(data, limits)
        if fast is not None:
            assert fast == general(data, limits)


TIGHT = Limits(max_depth=3, max_string_chars=60)


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (layout([1], {}, rid=10**25), LIMITS),  # over the integer limit
        (layout([1], {}, ttl=10**25), LIMITS),
        (layout([10**25], {}), LIMITS),
        (layout([1], {"a": 10**25}), LIMITS),
        (layout([10**25], {"a": 1}), LIMITS),  # in an argument beside keyword arguments
        (layout([[0.5, 10**25]], {"a": 1}), LIMITS),
        (layout([[1, 2.5, 10**25]], {}), LIMITS),  # in a list of numbers
        (layout([[0.5, 10**20]], {}), LIMITS),  # at the bound
        (layout([[0.5, -(10**23)]], {}), Limits(max_int_digits=23)),  # a bound floats round
        (layout([[1, "x", None, -(10**25)]], {}), LIMITS),  # in a list of scalars
        (layout([{"a": 1, "b": 10**25}], {}), LIMITS),  # in a dict argument
        (layout([1], {"a": [10**25]}), LIMITS),  # in a list keyword argument
        (layout([[1.5, 2.5]], {}), Limits(max_depth=2)),  # a list the depth limit excludes
        (layout([1], {}, rid=2**63), LIMITS),  # beyond the fast path's integers
        (layout([1], {}, rid=7), Limits(max_int_digits=1)),  # over a tighter integer limit
        (layout([[[[1]]]], {}), TIGHT),  # over the depth limit
        (layout(["x" * 70], {}), Limits(max_string_chars=60)),  # over the string limit
        (layout([{"$lwbuf": 0, "kind": "bytes"}], {}), LIMITS),  # a placeholder, no frame
        (layout([1], {"a": 1}).replace(b'{"a":1}', b'{"a":1,"a":2}'), LIMITS),
        (layout([1], {"a": 1}).replace(b'{"a":1}', b'{"a" : 1 , "a" : 2}'), LIMITS),
        (layout([{"a": 1}], {}).replace(b'{"a":1}', b'{"a":1,"a":2}'), LIMITS),  # in an argument
        # ... in one of several dict arguments, or in a dict keyword argument
        (layout([{"a": 1}, {"b": 2}], {"k": {}}).replace(b'{"b":2}', b'{"b":2,"b":3}'), LIMITS),
        (layout([1], {"k": {"c": 3}}).replace(b'{"c":3}', b'{"c":3,"c":4}'), LIMITS),
        (layout([{"a": {"x": 1}}], {}).replace(b'{"x":1}', b'{"x":1,"x":2}'), LIMITS),  # nested
        (layout([1], {}).replace(b',"c0ffee"', b""), LIMITS),  # a field short
        (layout([1], {})[:-1] + b',"extra"]', LIMITS),  # a field too many
        (layout([1], {}).replace(b'"METHOD_CALL"', b'"PROPERTY_SET"'), LIMITS),  # the general's
        (layout([1], {}).replace(b'"c0ffee"', b'"' + b"c" * 65 + b'"'), LIMITS),  # long id
        (layout([1], {}).replace(b"[1]", b'"1"'), LIMITS),  # arguments not a list
        (layout([1], {}, rid=True), LIMITS),
        (layout([1], {}, ttl=1.5), LIMITS),  # a number the general path reads, but not ours
        (msgspec.json.encode({"event": "METHOD_CALL", "method": "m"}), LIMITS),  # an object
    ],
)
def test_fast_request_declines_what_it_must_not_read(data: bytes, limits: Limits) -> None:
    assert fast_request(data, limits) is None


def test_fast_request_reads_flat_lists_and_dicts_of_scalars() -> None:
    # Readings, coordinates and settings: checked by value, not declined to the general path.
    data = layout([[0.5] * 100, {"a": 1, "b": "text"}, [1, -2, True, None, "x"]], {"k": [3, 4]})
    fast = fast_request(data, LIMITS)
    assert fast is not None and fast == general(data)
    for near in ([0.5, 10**20 - 1], [-(10**20) + 1], [1e300, 1e300]):  # within, but close
        data = layout([near], {})
        fast = fast_request(data, LIMITS)
        assert fast is not None and fast == general(data)


def test_fast_request_reads_other_spellings_as_the_general_path_does() -> None:
    for data in (
        layout([1], {}).replace(b"[1]", b"[1.0e0]"),
        layout([1], {"a": 2}).replace(b":", b" : ").replace(b",", b" , "),
        layout([1], {}).replace(b'"m"', b'"\\u006d"'),
        layout(["a:b"], {"a": 1}),  # a colon in a string
        layout([{"a": 1}, [2]], {}),  # containers among the arguments
        layout([1], {}, ttl=None, exp=3),
    ):
        fast = fast_request(data, LIMITS)
        assert fast is not None
        assert fast == general(data)


def test_labwire_calls_prove_their_keys_unique_by_counting() -> None:
    # The fast path re-encodes a call only when the colons in the text are not exactly its
    # keyword arguments' keys; what labwire writes must never need that.
    assert encode_call("m", [1, "x"], {}, "c", 1, 100, 2.5, SID) == (
        b'["METHOD_CALL","m",[1,"x"],{},"c",1,100,2.5,"' + SID.encode() + b'"]'
    )
    call = encode_call("m", [1, "x"], {"a": 1, "b": None}, "c", 1, 100, 2.5, SID)
    assert call is not None and call.count(b":") == 2
    # Dicts among the arguments and keyword arguments: their keys are counted too.
    call = encode_call("m", [{"a": 1}, [2]], {"k": {"b": 2}, "c": 3}, "c", 1, 100, 2.5, SID)
    assert call is not None and call.count(b":") == 2 + 1 + 1
    fast = fast_request(call, LIMITS)
    assert fast is not None and fast == general(call)


def test_fast_request_declines_under_a_depth_limit_its_layout_exceeds() -> None:
    data = layout([1], {})
    assert fast_request(data, Limits(max_depth=1)) is None
    assert isinstance(general(data, Limits(max_depth=1)), ProtocolError)


@given(st.text(max_size=12), st.integers(min_value=0, max_value=2**63 - 1))
@settings(max_examples=100, deadline=None)
def test_encode_get_reads_back_the_same_on_both_paths(name: str, rid: int) -> None:
    data = encode_get(name, "c", rid, 500, None, "")
    if data is None:
        return
    fast = fast_request(data, LIMITS)
    assert fast is not None and fast == general(data)
    assert (fast.event, fast.name, fast.request_id, fast.ttl_ms) == ("PROPERTY_GET", name, rid, 500)


def test_encode_call_writes_plain_containers_compactly() -> None:
    args = [{"a": 1, "b": "text"}, [float(i) for i in range(100)], "x" * 1000, (1, [2])]
    data = encode_call("m", args, {"speed": {"x": 0.5}}, "c", 1, 1000, 2.0, SID)
    assert data is not None
    fast = fast_request(data, LIMITS)
    assert fast is not None and fast == general(data)
    assert fast.args == [*args[:3], [1, [2]]] and fast.kwargs == {"speed": {"x": 0.5}}


def test_encode_call_declines_what_needs_the_general_path() -> None:
    declined = (
        ([b"bytes"], {}),
        ([[1, memoryview(b"x")]], {}),
        ([float("nan")], {}),
        ([[1.0, float("inf")]], {}),
        ([{1: "int key"}], {}),
        ([{"$lwbuf": 0}], {}),
        ([], {"a": {"deep": [bytearray(2)]}}),
        ([object()], {}),
    )
    for args, kwargs in declined:
        assert encode_call("m", args, kwargs, "c", 1, None, None, "") is None
    assert encode_call("m", ["\ud800"], {}, "c", 1, None, None, "") is None  # a lone surrogate
    assert encode_get("\ud800", "c", 1, None, None, "") is None


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ([], "a compact request is"),
        (["METHOD_CALL", "m", [], {}], "a compact request is"),
        (["PROPERTY_GET", "p", "c", 1, None, None, "", "extra"], "a compact request is"),
        (["GET_INVENTORY", "c", 1, None, None, ""], "a compact request is"),
    ],
)
def test_expand_compact_request_refuses_other_arrays(items: list[Any], words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        expand_compact_request(items)


# --------------------------------------------------------------------------- replies


@given(json_values, st.integers(min_value=0, max_value=2**63 - 1))
@settings(max_examples=200, deadline=None)
def test_encode_plain_reply_reads_back_the_same_on_both_paths(value: Any, rid: int) -> None:
    data = encode_plain_reply(rid, SID, value)
    if data is None:  # a lone surrogate: the general layout names it
        return
    header = general_reply(data)
    assert isinstance(header, dict)
    assert header["result"] == header["value"] == value
    assert header["lw"] == {"v": PROTOCOL_VERSION, "rid": rid, "sid": SID}
    fast = decode_plain_reply(data, rid, SID, LIMITS)
    assert fast is NOT_PLAIN or fast == value
    if type(value) is not dict and type(value) is not list:
        assert fast == value  # scalars: always read by the compact decoder


def test_encode_plain_reply_declines_what_needs_the_general_layout() -> None:
    for value in (b"x", float("inf"), [1, float("nan")], {2: "int key"}, {"a": [bytearray(1)]}):
        assert encode_plain_reply(1, SID, value) is None
    assert encode_plain_reply(1, SID, {"a": [1, "b"]}) is not None
    assert encode_plain_reply(None, SID, 1) is None  # no request id to answer


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_decode_plain_reply_reads_what_the_general_path_reads(value: Any) -> None:
    try:
        data = msgspec.json.encode([9, SID, value])
    except (msgspec.EncodeError, UnicodeEncodeError):
        return
    for limits in (LIMITS, Limits(max_depth=2, max_int_digits=5, max_string_chars=60)):
        fast = decode_plain_reply(data, 9, SID, limits)
        slow = general_reply(data, limits)
        if fast is not NOT_PLAIN:
            assert isinstance(slow, dict) and fast == slow["result"]
        elif limits is LIMITS and not isinstance(value, (list, dict)):
            pytest.fail(f"a scalar reply took the general path: {data!r}")


@pytest.mark.parametrize(
    ("data", "rid", "sid"),
    [
        (b'[9,"s",1]', 8, "s"),  # another call
        (b'[9,"s",1]', 9, "t"),  # a restart
        (b'[9,"s",' + b"9" * 25 + b"]", 9, "s"),  # over the integer limit
        (b'[9,"s",{"a":1,"a":2}]', 9, "s"),  # a repeated key
        (b'[9,"s",{"a":{"x":1,"x":2},"b":1}]', 9, "s"),  # ... in a dict inside the value
        (b'[9,"s",[{"x":1},{"y":1,"y":2}]]', 9, "s"),  # ... in a list of dicts
        (b'[9,"s",' + b"[" * 70 + b"1" + b"]" * 71, 9, "s"),  # over the depth limit
        (b'[9,"s",{"$lwbuf":0,"kind":"bytes"}]', 9, "s"),  # a placeholder, no frame
        (b'[9,"s",[0.5,' + b"9" * 25 + b"]]", 9, "s"),  # over the integer limit, in a list
        (b'[9,"s",{"a":"x","b":-' + b"9" * 25 + b"}]", 9, "s"),  # in a dict
        (b'[9,"s",1,2]', 9, "s"),
        (b'[9,"s"]', 9, "s"),
        (b'{"success":true,"lw":{"v":1,"rid":9,"sid":"s"},"result":1}', 9, "s"),  # an object
        (b'{"success":true,"result":1}', 9, "s"),  # a deployed server's reply
    ],
)
def test_decode_plain_reply_declines_anything_else(data: bytes, rid: int, sid: str) -> None:
    assert decode_plain_reply(data, rid, sid, LIMITS) is NOT_PLAIN


def test_decode_plain_reply_reads_flat_containers_within_the_depth_limit_only() -> None:
    data = b'[9,"s",[0.5,1,"x",null]]'
    assert decode_plain_reply(data, 9, "s", LIMITS) == [0.5, 1, "x", None]
    assert decode_plain_reply(b'[9,"s",{"a":[1]}]', 9, "s", LIMITS) == {"a": [1]}  # by text
    assert decode_plain_reply(data, 9, "s", Limits(max_depth=1)) is NOT_PLAIN


def test_expand_compact_reply_refuses_other_arrays() -> None:
    for items in ([], [9, "s"], [9, "s", 1, 2]):
        with pytest.raises(ProtocolError, match=r"a compact reply is \[rid, sid, value\]"):
            expand_compact_reply(items)
