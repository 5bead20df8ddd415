"""RPC framing: encode_frames/decode_frames/parse_request, buffers, and malformed requests."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labwire.errors import LimitExceeded, ProtocolError
from labwire.wire.codec import encode_json
from labwire.wire.limits import Limits
from labwire.wire.rpc import (
    BUFFER_KEY,
    PROTOCOL_VERSION,
    Request,
    RPCEvents,
    claimed_request_id,
    decode_frames,
    encode_call,
    encode_frames,
    is_private_name,
    parse_request,
    restore_buffers,
)

pytestmark = pytest.mark.timeout(30)

LIMITS = Limits()


def lw(**fields: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "cid": "c0ffee", "rid": 1, **fields}


def receive(frames: list[Any], limits: Limits = LIMITS) -> Request:
    """What a server does with a message body: decode, then parse."""
    header, buffers = decode_frames([memoryview(frame) for frame in frames], limits)
    return parse_request(header, buffers)


def call_frames(*args: Any, **kwargs: Any) -> list[Any]:
    header = {"event": "METHOD_CALL", "method": "m", "lw": lw()}
    return encode_frames(header, {"params": {"args": list(args), "kwargs": kwargs}})


# --------------------------------------------------------------------------- round trips


def test_deployed_method_call() -> None:
    frames = encode_frames(
        {"event": "METHOD_CALL", "method": "add", "params": {"args": [1, 2], "kwargs": {"c": 3}}}
    )
    assert frames == [
        b'{"event":"METHOD_CALL","method":"add","params":{"args":[1,2],"kwargs":{"c":3}}}'
    ]
    request = receive(frames)
    assert request == Request(event="METHOD_CALL", name="add", args=[1, 2], kwargs={"c": 3})
    assert not request.is_labwire
    assert request.request_id is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"event": "GET_INVENTORY"}, Request(event="GET_INVENTORY")),
        ({"event": "STOP_SERVER"}, Request(event="STOP_SERVER")),
        ({"event": "INIT_SIGNALS_HANDLING"}, Request(event="INIT_SIGNALS_HANDLING")),
        ({"event": "PROPERTY_GET", "property": "mode"}, Request(event="PROPERTY_GET", name="mode")),
        (
            {"event": "PROPERTY_SET", "property": "mode", "value": None},
            Request(event="PROPERTY_SET", name="mode", value=None),
        ),
        (
            {"event": "PROPERTY_SET", "property": "roi", "value": [1, 2]},
            Request(event="PROPERTY_SET", name="roi", value=[1, 2]),
        ),
        ({"event": "METHOD_CALL", "method": "m"}, Request(event="METHOD_CALL", name="m")),
        (
            {"event": "METHOD_CALL", "method": "m", "params": None},
            Request(event="METHOD_CALL", name="m"),
        ),
        (
            {"event": "METHOD_CALL", "method": "m", "params": {"args": None, "kwargs": None}},
            Request(event="METHOD_CALL", name="m"),
        ),
        (
            {"event": "PING", "lw": lw()},
            Request(event="PING", version=PROTOCOL_VERSION, client_id="c0ffee", request_id=1),
        ),
    ],
)
def test_parse_valid_requests(header: dict[str, Any], expected: Request) -> None:
    assert receive(encode_frames(copy.deepcopy(header))) == expected


def test_labwire_extension_fields() -> None:
    header = {
        "event": "PROPERTY_GET",
        "property": "mode",
        "lw": lw(rid=42, ttl=1500, exp=123.25, sid="a1b2"),
        "unknown": "ignored",
    }
    request = receive(encode_frames(header))
    assert request.is_labwire
    assert (request.version, request.client_id, request.request_id) == (
        PROTOCOL_VERSION,
        "c0ffee",
        42,
    )
    assert (request.ttl_ms, request.expiry, request.server_id) == (1500.0, 123.25, "a1b2")
    no_deadline = receive(encode_frames({"event": "GET_INVENTORY", "lw": lw(ttl=None, exp=None)}))
    assert no_deadline.ttl_ms is None
    assert no_deadline.expiry is None


def test_bytes_round_trip_without_copy() -> None:
    data = b"\x00\x01raw"
    frames = call_frames(data, blob=bytearray(b"xy"))
    assert len(frames) == 3
    assert frames[1] is data
    request = receive(frames)
    assert request.args == [data]
    assert request.kwargs == {"blob": b"xy"}
    assert type(request.kwargs["blob"]) is bytes


def test_header_counts_buffers() -> None:
    header = {"event": "METHOD_CALL", "method": "m", "lw": lw()}
    encode_frames(header, {"params": {"args": [b"a", [b"b", {"c": b"c"}]], "kwargs": {}}})
    assert header["lw"]["nbuf"] == 3
    assert header["params"]["args"][1][1]["c"] == {BUFFER_KEY: 2, "kind": "bytes"}


def test_memoryview_round_trip() -> None:
    view = memoryview(bytearray(b"abcdef"))
    frames = call_frames(view)
    assert frames[1] is view
    received = receive(frames).args[0]
    assert isinstance(received, memoryview)
    assert received.tobytes() == b"abcdef"


def test_non_contiguous_memoryview_is_copied() -> None:
    view = memoryview(b"abcdef")[::2]
    frames = call_frames(view)
    assert bytes(frames[1]) == b"ace"
    assert receive(frames).args[0].tobytes() == b"ace"


def test_received_buffer_is_the_frame() -> None:
    frames = call_frames(memoryview(b"abc"))
    body = [memoryview(frame) for frame in frames]
    header, buffers = decode_frames(body, LIMITS)
    assert parse_request(header, buffers).args[0] is buffers[0]


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.arange(6, dtype=">i4").reshape(2, 3),
        np.linspace(0, 1, 5, dtype=np.float16),
        np.array([1 + 2j, -3j], dtype=np.complex128),
        np.array([True, False]),
        np.array(7, dtype=np.int64),
        np.zeros((0, 3), dtype=np.float32),
        np.zeros((2, 0, 2), dtype=np.uint16),
        np.array([b"ab", b"c"], dtype="S2"),
        np.array(["ab", "ç"], dtype="U2"),
        np.arange(24, dtype=np.float64).reshape(2, 3, 4),
    ],
    ids=lambda array: f"{array.dtype.str}{list(array.shape)}",
)
def test_ndarray_round_trip(array: np.ndarray) -> None:
    frames = call_frames(array)
    received = receive(frames).args[0]
    assert isinstance(received, np.ndarray)
    assert received.dtype == array.dtype
    assert received.shape == array.shape
    np.testing.assert_array_equal(received, array)


def test_contiguous_ndarray_is_sent_without_copy() -> None:
    array = np.arange(1000, dtype=np.float64).reshape(10, 100)
    frames = call_frames(array)
    assert np.shares_memory(np.frombuffer(frames[1], dtype=np.uint8), array)


def test_received_ndarray_is_a_view_of_the_frame() -> None:
    frames = call_frames(np.arange(4, dtype=np.int32))
    body = [memoryview(bytearray(frame)) for frame in frames]
    header, buffers = decode_frames(body, LIMITS)
    received = parse_request(header, buffers).args[0]
    assert np.shares_memory(received, np.frombuffer(buffers[0], dtype=np.uint8))


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.int16).reshape(3, 4).T,
        np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        np.arange(10, dtype=np.uint8)[::3],
    ],
    ids=["transposed", "fortran", "strided"],
)
def test_non_contiguous_ndarray_keeps_values(array: np.ndarray) -> None:
    received = receive(call_frames(array)).args[0]
    assert received.shape == array.shape
    np.testing.assert_array_equal(received, array)


def test_numpy_scalars_travel_as_json() -> None:
    frames = call_frames(np.float32(1.5), np.int64(3), flag=np.bool_(True))
    assert len(frames) == 1
    request = receive(frames)
    assert request.args == [1.5, 3]
    assert request.kwargs == {"flag": True}


def test_property_set_with_buffer() -> None:
    header = {"event": "PROPERTY_SET", "property": "lut", "lw": lw()}
    frames = encode_frames(header, {"value": np.arange(3, dtype=np.uint8)})
    request = receive(frames)
    assert request.name == "lut"
    np.testing.assert_array_equal(request.value, [0, 1, 2])


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"value": np.array([object()])}, "Python objects"),
        ({"value": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])}, "cannot be sent"),
        ({"value": np.array(["2020-01-01"], dtype="M8[D]")}, "cannot be sent"),
        ({"value": {BUFFER_KEY: 0}}, "reserved"),
        ({"value": object()}, "not JSON serialisable"),
        ({"value": float("nan")}, "NaN"),
    ],
)
def test_encode_refuses(payload: dict[str, Any], words: str) -> None:
    with pytest.raises(TypeError, match=words):
        encode_frames({"event": "PROPERTY_SET", "property": "p", "lw": lw()}, payload)


def test_buffers_need_a_labwire_peer() -> None:
    with pytest.raises(TypeError, match="only be sent to labwire peers"):
        encode_frames({"event": "METHOD_CALL", "method": "m"}, {"params": {"args": [b"x"]}})


def test_restore_without_buffers_is_identity() -> None:
    value = {"a": [{BUFFER_KEY: 0, "kind": "bytes"}]}
    assert restore_buffers(value, []) is value


def test_private_names() -> None:
    assert is_private_name("_secret")
    assert is_private_name("__class__")
    assert not is_private_name("get_image")


def test_events_are_the_deployed_strings() -> None:
    assert {event.value for event in RPCEvents} == {
        "PROPERTY_GET",
        "PROPERTY_SET",
        "METHOD_CALL",
        "GET_INVENTORY",
        "STOP_SERVER",
        "INIT_SIGNALS_HANDLING",
        "EMIT_SIGNAL",
    }


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("frames", "error", "words"),
    [
        ([], ProtocolError, "no frames"),
        ([b"[1, 2]"], ProtocolError, "must be a JSON object"),
        ([b'"GET_INVENTORY"'], ProtocolError, "must be a JSON object"),
        ([b"{"], ProtocolError, "malformed JSON"),
        ([b"\xff"], ProtocolError, "UTF-8"),
        ([b"{}"] * 5, LimitExceeded, "5 frames; the limit is 4"),
        ([b"{}", b"x" * 101], LimitExceeded, "frame of 101 bytes exceeds 100"),
        ([b"{}", b"x" * 100, b"x" * 100], LimitExceeded, "message of 202 bytes exceeds 150"),
        ([b'{"event": "' + b"x" * 60 + b'"}'], LimitExceeded, "exceeds 64"),
    ],
)
def test_decode_frames_rejects(frames: list[bytes], error: type[Exception], words: str) -> None:
    limits = Limits(max_frames=4, max_frame_bytes=100, max_total_bytes=150, max_json_bytes=64)
    with pytest.raises(error, match=words):
        decode_frames([memoryview(frame) for frame in frames], limits)


def test_decode_frames_rejects_thousands_of_frames() -> None:
    frames = [memoryview(b"{}")] * (LIMITS.max_frames + 1)
    with pytest.raises(LimitExceeded, match="frames"):
        decode_frames(frames, LIMITS)


PLACEHOLDER = {BUFFER_KEY: 0, "kind": "bytes"}


def _call(args: Any, nbuf: int = 1) -> dict[str, Any]:
    return {"event": "METHOD_CALL", "method": "m", "params": {"args": args}, "lw": lw(nbuf=nbuf)}


@pytest.mark.parametrize(
    ("header", "nbuffers", "words"),
    [
        ({}, 0, "needs a 'event' field"),
        ({"event": 1}, 0, "'event' of a request has the wrong type"),
        ({"event": None}, 0, "wrong type"),
        ({"event": True}, 0, "wrong type"),
        ({"event": ["METHOD_CALL"]}, 0, "wrong type"),
        ({"event": "FOO"}, 0, "unknown event 'FOO'"),
        ({"event": "method_call"}, 0, "unknown event"),
        ({"event": "X" * 10_000}, 0, "unknown event"),
        ({"event": "GET_INVENTORY"}, 1, "2 frames; a plain request has one"),
        ({"event": "GET_INVENTORY", "lw": []}, 0, "'lw' must be an object"),
        ({"event": "GET_INVENTORY", "lw": {}}, 0, "'lw.v' must be a positive integer"),
        ({"event": "GET_INVENTORY", "lw": {"v": 0}}, 0, "'lw.v'"),
        ({"event": "GET_INVENTORY", "lw": {"v": True}}, 0, "'lw.v'"),
        ({"event": "GET_INVENTORY", "lw": {"v": "1"}}, 0, "'lw.v'"),
        ({"event": "GET_INVENTORY", "lw": lw(cid=5)}, 0, "'lw.cid'"),
        ({"event": "GET_INVENTORY", "lw": lw(cid="c" * 65)}, 0, "'lw.cid'"),
        ({"event": "GET_INVENTORY", "lw": lw(rid="1")}, 0, "'lw.rid' must be an integer"),
        ({"event": "GET_INVENTORY", "lw": lw(rid=True)}, 0, "'lw.rid'"),
        ({"event": "GET_INVENTORY", "lw": lw(rid=1.5)}, 0, "'lw.rid'"),
        ({"event": "GET_INVENTORY", "lw": lw(sid=5)}, 0, "'lw.sid' must be a string"),
        ({"event": "GET_INVENTORY", "lw": lw(ttl="1s")}, 0, "'lw.ttl' must be a number"),
        ({"event": "GET_INVENTORY", "lw": lw(ttl=True)}, 0, "'lw.ttl'"),
        ({"event": "GET_INVENTORY", "lw": lw(exp=[1])}, 0, "'lw.exp' must be a number"),
        ({"event": "GET_INVENTORY", "lw": lw(nbuf=2)}, 1, "says 2 buffers but 1 followed"),
        ({"event": "GET_INVENTORY", "lw": lw()}, 1, "says 0 buffers but 1 followed"),
        ({"event": "GET_INVENTORY", "lw": lw(nbuf=1)}, 0, "says 1 buffers but 0 followed"),
        ({"event": "GET_INVENTORY", "lw": lw(nbuf=True)}, 1, "'lw.nbuf' says True"),
        ({"event": "GET_INVENTORY", "lw": lw(nbuf=1.0)}, 1, "'lw.nbuf' says 1.0"),
        ({"event": "GET_INVENTORY", "lw": lw(nbuf="1")}, 1, "'lw.nbuf'"),
        ({"event": "METHOD_CALL"}, 0, "METHOD_CALL needs a 'method' field"),
        ({"event": "METHOD_CALL", "method": 3}, 0, "'method' of METHOD_CALL has the wrong type"),
        ({"event": "METHOD_CALL", "method": "m", "params": [1]}, 0, "'params' must be an object"),
        ({"event": "METHOD_CALL", "method": "m", "params": "x"}, 0, "'params' must be an object"),
        (
            {"event": "METHOD_CALL", "method": "m", "params": {"args": {"a": 1}}},
            0,
            "'params.args' must be a list",
        ),
        (
            {"event": "METHOD_CALL", "method": "m", "params": {"kwargs": [1]}},
            0,
            "'params.kwargs' must be an object",
        ),
        ({"event": "PROPERTY_GET"}, 0, "PROPERTY_GET needs a 'property' field"),
        ({"event": "PROPERTY_GET", "property": None}, 0, "'property' of PROPERTY_GET"),
        ({"event": "PROPERTY_SET", "property": ["a"]}, 0, "'property' of PROPERTY_SET"),
        ({"event": "PROPERTY_SET", "property": "mode"}, 0, "PROPERTY_SET needs a 'value' field"),
        (_call([{BUFFER_KEY: 1, "kind": "bytes"}]), 1, "refers to missing frame 1"),
        (_call([{BUFFER_KEY: -1, "kind": "bytes"}]), 1, "refers to missing frame -1"),
        (_call([{BUFFER_KEY: "0", "kind": "bytes"}]), 1, "refers to missing frame '0'"),
        (_call([{BUFFER_KEY: True, "kind": "bytes"}]), 1, "refers to missing frame True"),
        (_call([{BUFFER_KEY: 0}]), 1, "unknown buffer kind None"),
        (_call([{BUFFER_KEY: 0, "kind": "pickle"}]), 1, "unknown buffer kind 'pickle'"),
        (_call([{BUFFER_KEY: 0, "kind": "ndarray"}]), 1, "needs a 'dtype' string"),
        (_call([{BUFFER_KEY: 0, "kind": "ndarray", "dtype": "u1"}]), 1, "'shape' list"),
        (
            _call([{BUFFER_KEY: 0, "kind": "ndarray", "dtype": "u1", "shape": [-1]}]),
            1,
            "non-negative integers",
        ),
        (
            _call([{BUFFER_KEY: 0, "kind": "ndarray", "dtype": "u1", "shape": [True]}]),
            1,
            "non-negative integers",
        ),
        (
            _call([{BUFFER_KEY: 0, "kind": "ndarray", "dtype": "u1", "shape": [3]}]),
            1,
            "does not match its frame",
        ),
        (
            _call([{BUFFER_KEY: 0, "kind": "ndarray", "dtype": "<i4", "shape": [1]}]),
            1,
            "does not match its frame",
        ),
        (
            _call([{BUFFER_KEY: 0, "kind": "ndarray", "dtype": "O", "shape": [1]}]),
            1,
            "does not match its frame",
        ),
        (
            _call([{BUFFER_KEY: 0, "kind": "ndarray", "dtype": "not a dtype", "shape": [1]}]),
            1,
            "does not match its frame",
        ),
        (
            {
                "event": "PROPERTY_SET",
                "property": "p",
                "value": {"x": {BUFFER_KEY: 5, "kind": "bytes"}},
                "lw": lw(nbuf=1),
            },
            1,
            "missing frame 5",
        ),
    ],
)
def test_parse_request_rejects(header: dict[str, Any], nbuffers: int, words: str) -> None:
    frames = [encode_json(header), *[b"\x00\x01"] * nbuffers]
    with pytest.raises(ProtocolError, match=words):
        receive(frames)


def test_shape_mismatch_on_multi_dimensional_arrays() -> None:
    header = _call([{BUFFER_KEY: 0, "kind": "ndarray", "dtype": "u1", "shape": [2, 3]}])
    with pytest.raises(ProtocolError, match="does not match its frame"):
        receive([encode_json(header), b"\x00" * 5])


# --------------------------------------------------------------------------- fuzzing

_small_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2) | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
_placeholders = st.fixed_dictionaries(
    {BUFFER_KEY: st.integers(-1, 3) | _small_json},
    optional={
        "kind": st.sampled_from(["bytes", "buffer", "ndarray", "x"]) | _small_json,
        "dtype": st.sampled_from(
            ["u1", "<i4", ">f8", "O", "V3", "<M8[s]", "(2,)i4", "i4,f8", "S0", "U1", "garbage"]
        )
        | _small_json,
        "shape": st.lists(st.integers(-1, 10**12), max_size=3) | _small_json,
    },
)
_values = st.recursive(
    _small_json | _placeholders,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
_extensions = st.fixed_dictionaries(
    {},
    optional={
        "v": st.integers(-1, 3) | _small_json,
        "cid": st.text(max_size=70) | _small_json,
        "rid": st.integers() | _small_json,
        "ttl": st.floats(allow_nan=False, allow_infinity=False) | _small_json,
        "exp": st.floats(allow_nan=False, allow_infinity=False) | _small_json,
        "sid": _small_json,
        "nbuf": st.integers(0, 4) | _small_json,
    },
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from([*RPCEvents, "PING", "GET_PROPERTIES", "NOPE"]) | _small_json,
        "method": st.text(max_size=8) | _small_json,
        "property": st.text(max_size=8) | _small_json,
        "value": _values,
        "params": st.fixed_dictionaries({}, optional={"args": _values, "kwargs": _values})
        | _small_json,
        "lw": _extensions | _small_json,
    },
)
_buffer_frames = st.lists(st.binary(max_size=24), max_size=4)


@settings(max_examples=400, deadline=None)
@given(_headers, _buffer_frames)
def test_property_structured_requests_parse_or_protocol_error(
    header: dict[str, Any], buffers: list[bytes]
) -> None:
    try:
        request = receive([encode_json(header), *buffers])
    except ProtocolError as exc:
        assert str(exc)
    else:
        assert request.event == header["event"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_property_arbitrary_frames_parse_or_protocol_error(frames: list[bytes]) -> None:
    limits = Limits(max_frames=5, max_frame_bytes=60, max_total_bytes=200)
    try:
        receive(frames, limits)
    except ProtocolError as exc:
        assert str(exc)


@given(_small_json, st.lists(st.binary(max_size=16), max_size=3))
def test_property_labwire_call_round_trip(value: Any, blobs: list[bytes]) -> None:
    args = [value, *blobs]
    request = receive(call_frames(*args, extra=value))
    assert request.args == args
    assert request.kwargs == {"extra": value}


# ------------------------------------------------------------------ claimed request ids

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(
    st.integers(0, 2**63 - 1),
    st.lists(json_values, max_size=4),
    st.none() | st.integers(0, 10**9),
    st.none() | st.floats(0, 1e9),
)
def test_a_request_in_either_layout_names_its_request_id_at_its_end(
    rid: int, args: list[Any], ttl: int | None, expiry: float | None
) -> None:
    compact = encode_call("m", args, {}, "c0ffee", rid, ttl, expiry, "5e4d")
    general = encode_frames(
        {"event": "METHOD_CALL", "method": "m", "lw": lw(rid=rid, ttl=ttl, exp=expiry)},
        {"params": {"args": args, "kwargs": {"k": args}}},
    )[0]
    for frame in (compact, general):
        if frame is not None:
            assert claimed_request_id(memoryview(bytes(frame))) == rid


@given(st.binary(max_size=600))
def test_bytes_that_do_not_end_like_a_request_claim_nothing_or_an_integer(data: bytes) -> None:
    claimed = claimed_request_id(data)
    assert claimed is None or 0 <= claimed < 2**63


def test_a_deployed_request_claims_no_request_id() -> None:
    deployed = b'{"event":"METHOD_CALL","method":"m","params":{"args":[1],"kwargs":{}}}'
    assert claimed_request_id(deployed) is None
