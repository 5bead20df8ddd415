"""Sans-IO protocol core: message formats, codec, limits and sequencing.

Nothing here performs I/O or reads a clock: callers pass bytes in and get messages out, and pass
"now" in where time matters. The RPC wire format is documented frame by frame in
:mod:`labwire.wire.rpc`; signals in :mod:`labwire.wire.signals`.
"""

from labwire.wire.codec import decode_json, encode_json
from labwire.wire.limits import Limits
from labwire.wire.rpc import PROTOCOL_VERSION, Request, RPCEvents, parse_request
from labwire.wire.signals import SequenceTracker, SignalMessage, Verdict

__all__ = [
    "PROTOCOL_VERSION",
    "Limits",
    "RPCEvents",
    "Request",
    "SequenceTracker",
    "SignalMessage",
    "Verdict",
    "decode_json",
    "encode_json",
    "parse_request",
]
