"""Strict JSON for the wire: one decoder that accepts only what both sides can trust.

Decoding rejects, with one :class:`~labwire.errors.ProtocolError` naming the problem: invalid
UTF-8, malformed JSON, ``NaN``/``Infinity``, lone surrogates, duplicate object keys, integers with
more digits than allowed, nesting deeper than allowed and over-long strings. Encoding refuses
NaN/Infinity and anything that is not plain JSON data, instead of silently writing ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec

from labwire.errors import LimitExceeded, ProtocolError
from labwire.wire.limits import Limits

__all__ = [
    "INT64_MAX",
    "Int64",
    "decode_json",
    "encode_json",
    "scalars_within_limits",
    "within_limits_by_text",
]

INT64_MAX = 2**63 - 1
#: The integers typed fast-path decoders accept. With the default limits (20 digits) all of
#: them are within the integer limit; tighter limits are checked after decoding.
Int64 = Annotated[int, msgspec.Meta(ge=-INT64_MAX, le=INT64_MAX)]
_DECODED_SCALARS = frozenset({str, float, bool, type(None)})
#: What a list or dict may hold for scalars_within_limits() to check it by its values.
_FLAT_ITEMS = frozenset({int, float, bool, str, type(None)})

_ENCODER = msgspec.json.Encoder()


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"JSON constant {name} is not allowed (NaN and Infinity are refused)")


def _parse_finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"JSON number {text[:32]} overflows to Infinity (not allowed)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ProtocolError(f"duplicate key {key!r} in JSON object")
            seen.add(key)
    return result


def _check_tree(value: Any, limits: Limits) -> None:
    """Walk decoded JSON once, checking depth, string lengths and integer sizes."""
    max_depth = limits.max_depth
    max_chars = limits.max_string_chars
    int_bound = limits.int_bound
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            if len(item) > max_chars or not item.isascii():
                _check_string(item, max_chars)
        elif kind is int:
            if not -int_bound < item < int_bound:
                raise LimitExceeded(f"JSON integer with more than {limits.max_int_digits} digits")
        elif kind is dict:
            if depth > max_depth:
                raise LimitExceeded(f"JSON nesting deeper than {max_depth} levels")
            for key, sub in item.items():
                if len(key) > max_chars or not key.isascii():
                    _check_string(key, max_chars)
                stack.append((sub, depth + 1))
        elif kind is list:
            if depth > max_depth:
                raise LimitExceeded(f"JSON nesting deeper than {max_depth} levels")
            stack.extend((sub, depth + 1) for sub in item)


def _check_string(text: str, max_chars: int) -> None:
    if len(text) > max_chars:
        raise LimitExceeded(f"JSON string longer than {max_chars} characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError("JSON string contains a lone surrogate") from None


_FAST_DECODER = msgspec.json.Decoder()


def decode_json(data: bytes | bytearray | memoryview, limits: Limits) -> Any:
    """Decode one JSON document under ``limits``.

    Args:
        data: UTF-8 encoded JSON.
        limits: The limits to enforce.

    Returns:
        The decoded value (dict, list, str, int, float, bool or None).

    Raises:
        ProtocolError: The bytes are not strict JSON; the message says why.
        LimitExceeded: The document is over one of ``limits``.
    """
    size = len(data)
    if size > limits.max_json_bytes:
        raise LimitExceeded(f"JSON frame of {size} bytes exceeds {limits.max_json_bytes}")
    # Fast path: msgspec is strict about UTF-8, NaN and surrogates but keeps the last of
    # duplicate keys. Re-encoding gives back the input byte for byte only when the input was
    # compact JSON without duplicates (what labwire peers send); anything else takes the
    # slow path, which is the authority on what is accepted and why.
    raw = data if isinstance(data, bytes) else bytes(data)
    try:
        value = _FAST_DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        return _decode_strict(raw, limits)
    if _ENCODER.encode(value) != raw:
        return _decode_strict(raw, limits)
    # Skip the walk when the text itself proves every limit holds: no more brackets than the
    # depth limit, no more bytes than the string limit, and no long run of digits.
    if not within_limits_by_text(raw, limits):
        _check_tree(value, limits)
    return value


#: Maps digits to "0", brackets that open an array or object to "[", anything else to " ".
_SHAPE = bytes(
    0x30 if 0x30 <= byte <= 0x39 else 0x5B if byte in (0x5B, 0x7B) else 0x20 for byte in range(256)
)


def within_limits_by_text(raw: bytes, limits: Limits) -> bool:
    """Whether the JSON text alone proves that its decoded value is within ``limits``.

    True when the text has no more opening brackets than the depth limit, no more bytes than
    the string limit, and no run of digits longer than the integer limit. False means "walk
    the decoded value to find out", not "over a limit". One pass over the text in C, well
    under a microsecond for a small message.
    """
    if len(raw) > limits.max_string_chars:
        return False
    shape = raw.translate(_SHAPE)
    digits = b"0" * (limits.max_int_digits + 1)
    return shape.count(b"[") <= limits.max_depth and shape.find(digits) < 0


def scalars_within_limits(values: Iterable[Any], limits: Limits, depth: int | None = None) -> bool:
    """Whether decoded JSON ``values`` are all scalars, their integers within the limit.

    Decoded from a frame no longer than ``limits.short_json_bytes``, such values are within
    every other limit too: no nesting, and no string longer than the frame (the decoder
    refuses lone surrogates). With ``depth``, lists and dicts of scalars are accepted too when
    they sit at that depth within the depth limit: what devices send most (readings,
    coordinates, settings), checked mostly at C speed where the text check
    (:func:`within_limits_by_text`) costs microseconds per kilobyte. False means "not shown
    by the values", not "over a limit".
    """
    bound = limits.int_bound
    for value in values:
        kind = type(value)
        if kind is int:
            if abs(value) >= bound:
                return False
            continue
        if kind in _DECODED_SCALARS:
            continue
        if depth is None or depth > limits.max_depth:
            return False
        if kind is dict:
            items: Any = value.values()
        elif kind is list:
            items = value
        else:
            return False
        try:
            # Numbers only (hypot() refuses anything else), and none near the bound, at C
            # speed: hypot() is at least each item's size as a float, and an integer at the
            # bound is at least half the bound as a float, however it rounds.
            if math.hypot(*items) < bound / 2:
                continue
        except (TypeError, OverflowError):
            pass
        kinds = set(map(type, items))
        if not kinds <= _FLAT_ITEMS:
            return False
        if int in kinds and not all(abs(item) < bound for item in items if type(item) is int):
            return False
    return True


def _decode_strict(data: bytes, limits: Limits) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"JSON frame is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    max_digits = limits.max_int_digits

    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > max_digits:
            raise LimitExceeded(f"JSON integer with more than {max_digits} digits")
        return int(digits)

    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_reject_constant,
            parse_float=_parse_finite_float,
            parse_int=parse_int,
        )
    except ProtocolError:
        raise
    except RecursionError:
        raise LimitExceeded(f"JSON nesting deeper than {limits.max_depth} levels") from None
    except ValueError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    _check_tree(value, limits)
    return value


def _find_special_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, msgspec.Struct):
            stack.extend(msgspec.structs.astuple(item))
    return False


def encode_json(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON.

    Args:
        value: JSON data: dict (str keys), list, tuple, str, int, float, bool or None, or a
            ``msgspec.Struct`` of them. ``str`` subclasses such as ``StrEnum`` members encode
            as their value.

    Returns:
        The encoded bytes.

    Raises:
        TypeError: ``value`` holds something JSON cannot carry, or a NaN/Infinity float.
    """
    try:
        encoded = _ENCODER.encode(value)
    except (TypeError, msgspec.EncodeError, UnicodeEncodeError) as exc:
        raise TypeError(f"value is not JSON serialisable: {exc}") from None
    # find(), not "in": bytes.__contains__ raises and clears an exception before it searches.
    if encoded.find(b"null") >= 0 and _find_special_float(value):
        raise TypeError("NaN and Infinity cannot be sent as JSON")
    return encoded
