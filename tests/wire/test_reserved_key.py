"""The reserved buffer key as a keyword argument: both request paths refuse it alike."""

from __future__ import annotations

import msgspec
import pytest

from labwire.errors import ProtocolError
from labwire.wire.limits import Limits
from labwire.wire.rpc import (
    decode_compact,
    decode_frames,
    encode_call,
    expand_compact_request,
    parse_request,
)


def test_a_keyword_named_like_a_placeholder_never_takes_the_fast_path() -> None:
    assert encode_call("m", [], {"$lwbuf": None}, "c0ffee", 1, None, None, "") is None
    data = msgspec.json.encode(["METHOD_CALL", "m", [], {"$lwbuf": None}, "c0", 1, None, None, ""])
    assert decode_compact(data, Limits()) is None
    header, buffers = decode_frames([memoryview(data)], Limits(), expand_compact_request)
    with pytest.raises(ProtocolError, match="missing frame"):
        parse_request(header, buffers)
