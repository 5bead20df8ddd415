"""Plain JSON data in the compact layouts: what they carry as it is, and the proofs of limits.

The compact decoders accept a message only when these checks prove that the general path would
read it the same: its keys unique (:func:`_keys_unique`) and its values within the limits
(:func:`_within_limits`). Each check may fail to prove; then the general path decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec

from labwire.wire.codec import scalars_within_limits, within_limits_by_text
from labwire.wire.limits import Limits
from labwire.wire.rpc.buffers import BUFFER_KEY

_ENCODER = msgspec.json.Encoder()
_PLAIN_TYPES = frozenset({int, str, bool, type(None)})
_SCALARS = frozenset({str, float, bool, type(None)})
_NUMBERS = frozenset({int, float, bool})
#: Frames up to this long are checked by their text first (see _within_limits).
_SHORT_TEXT_BYTES = 512
_BUFFER_KEY_BYTES = b'"' + BUFFER_KEY.encode() + b'"'


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
