"""Strict JSON codec: round trips, every documented rejection, and fuzzing."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labwire.errors import LimitExceeded, ProtocolError
from labwire.wire.codec import decode_json, encode_json
from labwire.wire.limits import Limits

pytestmark = pytest.mark.timeout(30)

LIMITS = Limits()

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**19), max_value=10**19)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


class Colour(enum.StrEnum):
    RED = "red"


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(10**19),
        10**19,
        1.5,
        -0.0,
        1e308,
        5e-324,
        "",
        "héllo ✓ 𝄞",
        '\x00\n"\\',
        [],
        {},
        {"a": [1, 2, {"b": None}], "c": "d"},
    ],
)
def test_round_trip(value: Any) -> None:
    assert decode_json(encode_json(value), LIMITS) == value


def test_encode_is_compact_utf8() -> None:
    assert encode_json({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()


def test_encode_tuple_and_str_enum() -> None:
    assert encode_json((1, 2)) == b"[1,2]"
    assert encode_json({"colour": Colour.RED}) == b'{"colour":"red"}'


def test_decode_accepts_bytearray_and_memoryview() -> None:
    assert decode_json(bytearray(b"[1]"), LIMITS) == [1]
    assert decode_json(memoryview(b'{"a":1}'), LIMITS) == {"a": 1}


def test_decode_accepts_limits_exactly() -> None:
    limits = Limits(max_depth=3, max_string_chars=4, max_int_digits=3, max_json_bytes=64)
    assert decode_json(b'[[{"abcd":"wxyz"}]]', limits) == [[{"abcd": "wxyz"}]]
    assert decode_json(b"[-999, 999]", limits) == [-999, 999]


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", ProtocolError, "malformed JSON"),
        (b"{", ProtocolError, "malformed JSON"),
        (b"{'a': 1}", ProtocolError, "malformed JSON"),
        (b"[1,]", ProtocolError, "malformed JSON"),
        (b"[1] [2]", ProtocolError, "malformed JSON"),
        (b"\xef\xbb\xbf{}", ProtocolError, "malformed JSON"),
        (b'"\xff"', ProtocolError, "not valid UTF-8"),
        (b'"\xc3"', ProtocolError, "not valid UTF-8"),
        (b'"\xed\xa0\x80"', ProtocolError, "not valid UTF-8"),
        (b"NaN", ProtocolError, "NaN"),
        (b"[Infinity]", ProtocolError, "Infinity"),
        (b'{"a": -Infinity}', ProtocolError, "Infinity"),
        (b"1e400", ProtocolError, "Infinity"),
        (b"[-1e999]", ProtocolError, "Infinity"),
        (b'"\\ud800"', ProtocolError, "lone surrogate"),
        (b'"a\\udfffb"', ProtocolError, "lone surrogate"),
        (b'{"\\udc00": 1}', ProtocolError, "lone surrogate"),
        (b'{"a": 1, "a": 2}', ProtocolError, "duplicate key 'a'"),
        (b'[{"x": {"k": 1, "k": 1}}]', ProtocolError, "duplicate key 'k'"),
        (b"[" * 65 + b"]" * 65, LimitExceeded, "nesting deeper than 64"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, LimitExceeded, "nesting deeper than 64"),
        (b"[" * 100_000 + b"]" * 100_000, LimitExceeded, "nesting deeper than 64"),
        (b"1" * 21, LimitExceeded, "more than 20 digits"),
        (b"[-" + b"9" * 21 + b"]", LimitExceeded, "more than 20 digits"),
        (b"1" * 10_000, LimitExceeded, "more than 20 digits"),
    ],
)
def test_rejects_bad_input(data: bytes, error: type[ProtocolError], words: str) -> None:
    with pytest.raises(error, match=words):
        decode_json(data, LIMITS)


def test_surrogate_pair_is_fine() -> None:
    assert decode_json(b'"\\ud834\\udd1e"', LIMITS) == "𝄞"


def test_rejects_over_long_strings() -> None:
    limits = Limits(max_string_chars=8)
    assert decode_json(b'"12345678"', limits) == "12345678"
    with pytest.raises(LimitExceeded, match="string longer than 8"):
        decode_json(b'"123456789"', limits)
    with pytest.raises(LimitExceeded, match="string longer than 8"):
        decode_json(b'{"123456789": 1}', limits)
    with pytest.raises(LimitExceeded, match="string longer than 8"):
        decode_json(b'[[["123456789"]]]', limits)


def test_rejects_oversized_frames() -> None:
    limits = Limits(max_json_bytes=16)
    assert decode_json(b'"' + b"x" * 14 + b'"', limits) == "x" * 14
    with pytest.raises(LimitExceeded, match="17 bytes exceeds 16"):
        decode_json(b'"' + b"x" * 15 + b'"', limits)


def test_default_frame_limit() -> None:
    data = b'"' + b"x" * (LIMITS.max_json_bytes - 1) + b'"'
    with pytest.raises(LimitExceeded, match="exceeds"):
        decode_json(data, LIMITS)


def test_rejects_deep_nesting_under_custom_limit() -> None:
    limits = Limits(max_depth=2)
    assert decode_json(b"[[1]]", limits) == [[1]]
    with pytest.raises(LimitExceeded, match="deeper than 2"):
        decode_json(b"[[[1]]]", limits)
    with pytest.raises(LimitExceeded, match="deeper than 2"):
        decode_json(b'{"a": {"b": {}}}', limits)


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        decode_json(b"{", LIMITS)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (float("nan"), "NaN and Infinity"),
        ([1.0, {"x": float("inf")}], "NaN and Infinity"),
        ((float("-inf"),), "NaN and Infinity"),
        (object(), "not JSON serialisable"),
        ({"a": [1, 2j]}, "not JSON serialisable"),
        ("\ud800", "not JSON serialisable"),
    ],
)
def test_encode_refuses(value: Any, words: str) -> None:
    with pytest.raises(TypeError, match=words):
        encode_json(value)


def test_encode_keeps_literal_null() -> None:
    assert encode_json([None, 1.0]) == b"[null,1.0]"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "5"])
def test_limits_must_be_positive_integers(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_depth must be a positive integer"):
        Limits(max_depth=bad)


# --------------------------------------------------------------------------- properties


@given(json_values)
def test_property_round_trip(value: Any) -> None:
    assert decode_json(encode_json(value), LIMITS) == value


@given(json_values)
def test_property_agrees_with_stdlib(value: Any) -> None:
    assert json.loads(encode_json(value)) == value


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_property_any_bytes_decode_or_protocol_error(data: bytes) -> None:
    try:
        decode_json(data, LIMITS)
    except ProtocolError as exc:
        assert str(exc)


_json_tokens = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b'"a"',
        b'"\\ud800"',
        b'"\\u0041"',
        b'"\xff"',
        b"1",
        b"-0",
        b"1e400",
        b"1.5",
        b"99999999999999999999999",
        b"NaN",
        b"-Infinity",
        b"true",
        b"null",
        b" ",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_json_tokens, max_size=40).map(b"".join))
def test_property_json_like_bytes_decode_or_protocol_error(data: bytes) -> None:
    limits = Limits(max_depth=4, max_string_chars=16, max_int_digits=10)
    try:
        value = decode_json(data, limits)
    except ProtocolError as exc:
        assert str(exc)
    else:
        assert _is_strict_json(value)
        assert decode_json(encode_json(value), limits) == value


def _is_strict_json(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
    if isinstance(value, list):
        return all(_is_strict_json(item) for item in value)
    if isinstance(value, dict):
        return all(_is_strict_json(k) and _is_strict_json(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int))
