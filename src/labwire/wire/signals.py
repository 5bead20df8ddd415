"""Signal messages and the receiver-side sequence tracker.

Each publisher has an *epoch* (a random id drawn when it starts) and numbers the emissions of
each signal 1, 2, 3... A subscriber keeps, per signal, the last (epoch, seq) it saw and so tells
apart: the next message, a gap (messages dropped between publisher and subscriber), a publisher
restart (new epoch), and a stale or repeated message (which it drops: delivery is at most once).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

import msgspec

from labwire.errors import ProtocolError
from labwire.wire.codec import Int64, decode_json, encode_json, scalars_within_limits
from labwire.wire.limits import Limits

__all__ = [
    "SequenceTracker",
    "SignalMessage",
    "Verdict",
    "decode_signal",
    "encode_signal",
    "probe_prefix",
    "probe_token",
    "subscription_prefix",
]


class SignalMessage(msgspec.Struct, frozen=True):
    """One signal emission as received.

    Attributes:
        signal: Signal name.
        args: Positional arguments of the emission.
        epoch: Publisher incarnation ("" from a deployed publisher).
        seq: Sequence number of this emission of this signal (0 from a deployed publisher).
    """

    signal: str
    args: list[Any] = msgspec.field(default_factory=list)
    epoch: str = ""
    seq: int = 0


def subscription_prefix(signal: str) -> bytes:
    """The exact SUB prefix that matches ``signal`` and no other signal."""
    return b'{"signal":' + encode_json(signal) + b","


#: Starts every probe subscription: no emission (a JSON object) ever starts with it, and it
#: sorts after ``{``, so a subscriber resending its subscriptions sends probes last.
_PROBE = b"~labwire-probe:"


def probe_prefix(token: str) -> bytes:
    """A subscription that matches no emission; its arrival at a publisher marks a point.

    See ``SIGNAL_CHECK`` in :mod:`labwire.wire.rpc`.
    """
    return _PROBE + token.encode("utf-8")


def probe_token(subscription: bytes) -> str | None:
    """The token of a probe, from a subscribe message an XPUB socket reads (byte 1, prefix)."""
    if subscription[:1] != b"\x01" or not subscription.startswith(_PROBE, 1):
        return None
    return subscription[1 + len(_PROBE) :].decode("utf-8", "replace")


class _Emission(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A signal frame exactly as labwire publishers write it (keys in this order)."""

    signal: str
    event: Literal["EMIT_SIGNAL"]
    args: list[Any]
    blocking: bool
    epoch: str
    seq: Int64


def encode_signal(signal: str, args: Any, epoch: str, seq: int) -> bytes:
    """Encode one emission as a single JSON frame that starts with the signal name.

    Raises:
        TypeError: The arguments cannot be sent as JSON.
    """
    return encode_json(_Emission(signal, "EMIT_SIGNAL", list(args), False, epoch, seq))


_EMISSION_DECODER = msgspec.json.Decoder(_Emission)
#: The keys of an emission: as many colons in a frame prove that none of them repeats.
_EMISSION_KEYS = len(_Emission.__struct_fields__)
#: How deep an emission's containers go (its args list is at depth 2).
_EMISSION_DEPTH = 2


def _fast_signal(raw: bytes, limits: Limits) -> SignalMessage | None:
    """Decode a frame written the way labwire publishers write them, or None for the rest.

    None also for anything the general path may refuse: a repeated key (the typed decoder
    keeps the last), a value over the limits, a container among the arguments.
    """
    if len(raw) > limits.short_json_bytes or limits.max_depth < _EMISSION_DEPTH:
        return None
    if raw.count(b":") != _EMISSION_KEYS:
        return None
    try:
        emission = _EMISSION_DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeError, RecursionError, ValueError):
        return None
    bound = limits.int_bound
    if not -bound < emission.seq < bound or not scalars_within_limits(emission.args, limits):
        return None
    return SignalMessage(emission.signal, emission.args, emission.epoch, emission.seq)


def decode_signal(data: bytes | memoryview, limits: Limits) -> SignalMessage:
    """Decode and validate one signal frame.

    Frames as labwire publishers write them are decoded in one typed pass; anything else
    goes through the strict decoder, which also names what is wrong.

    Raises:
        ProtocolError: The frame is not a valid signal message.
    """
    raw = data if type(data) is bytes else bytes(data)
    fast = _fast_signal(raw, limits)
    if fast is not None:
        return fast
    message = decode_json(raw, limits)
    if not isinstance(message, dict):
        raise ProtocolError("signal frame must be a JSON object")
    signal, args = message.get("signal"), message.get("args", [])
    if not isinstance(signal, str):
        raise ProtocolError("signal frame needs a 'signal' string")
    if not isinstance(args, list):
        raise ProtocolError("signal 'args' must be a list")
    epoch, seq = message.get("epoch", ""), message.get("seq", 0)
    if not isinstance(epoch, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise ProtocolError("signal 'epoch' must be a string and 'seq' an integer")
    return SignalMessage(signal, args, epoch, seq)


class Verdict(Enum):
    """What a received message means for its signal's stream."""

    NEXT = "next"
    FIRST = "first"
    GAP = "gap"
    RESTART = "restart"
    STALE = "stale"
    UNSEQUENCED = "unsequenced"


_NEXT = (Verdict.NEXT, 0)
_FIRST = (Verdict.FIRST, 0)
_RESTART = (Verdict.RESTART, 0)
_STALE = (Verdict.STALE, 0)
_UNSEQUENCED = (Verdict.UNSEQUENCED, 0)


class SequenceTracker:
    """Per-signal (epoch, seq) bookkeeping for one subscriber.

    Attributes:
        gaps: Total number of messages known to be missing, over all signals.
        restarts: Number of publisher restarts seen.
        stale: Number of repeated or out-of-date messages dropped.
    """

    def __init__(self) -> None:
        self._epoch = ""
        self._last: dict[str, int] = {}
        self.gaps = 0
        self.restarts = 0
        self.stale = 0

    def observe(self, message: SignalMessage) -> tuple[Verdict, int]:
        """Record ``message`` and classify it.

        Returns:
            The verdict and, for :attr:`Verdict.GAP`, how many messages were missed (else 0).
            Messages judged :attr:`Verdict.STALE` must not be delivered.
        """
        # Verdicts from module constants: reading an Enum member costs a few hundred ns, and
        # this runs for every emission received.
        if not message.epoch:
            return _UNSEQUENCED
        if message.epoch != self._epoch:
            restarted = bool(self._epoch)
            self._epoch = message.epoch
            self._last = {message.signal: message.seq}
            if restarted:
                self.restarts += 1
                return _RESTART
            return _FIRST
        seq = self._last.get(message.signal)
        self._last[message.signal] = max(message.seq, seq or 0)
        if seq is None:
            return _FIRST
        if message.seq <= seq:
            self.stale += 1
            return _STALE
        missed = message.seq - seq - 1
        if missed:
            self.gaps += missed
            return Verdict.GAP, missed
        return _NEXT

    def forget(self, signal: str) -> None:
        """Drop the history of ``signal`` (after unsubscribing from it)."""
        self._last.pop(signal, None)
