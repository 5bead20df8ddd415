"""Signal frames, subscription prefixes and the (epoch, seq) tracker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labwire.errors import ProtocolError
from labwire.wire.codec import decode_json
from labwire.wire.limits import Limits
from labwire.wire.signals import (
    SequenceTracker,
    SignalMessage,
    Verdict,
    decode_signal,
    encode_signal,
    probe_prefix,
    probe_token,
    subscription_prefix,
)
from tests.wire.test_codec import json_values

pytestmark = pytest.mark.timeout(30)

LIMITS = Limits()

NAMES = ["mode", "modeChanged", "mode2", "Mode", "mod", 'mode"', "modé", "a,b", "", "x" * 100]


# --------------------------------------------------------------------------- frames


def test_round_trip() -> None:
    frame = encode_signal("modeChanged", ("preview", 3), "e1", 7)
    assert decode_signal(frame, LIMITS) == SignalMessage("modeChanged", ["preview", 3], "e1", 7)
    assert decode_signal(memoryview(frame), LIMITS).seq == 7


def test_frame_carries_the_deployed_fields() -> None:
    frame = encode_signal("modeChanged", ["preview"], "e1", 1)
    assert frame.startswith(b'{"signal":"modeChanged",')
    message = json.loads(frame)
    assert message["event"] == "EMIT_SIGNAL"
    assert message["args"] == ["preview"]
    assert message["blocking"] is False


def test_decodes_deployed_frame() -> None:
    frame = (
        b'{"event": "EMIT_SIGNAL", "signal": "modeChanged", "args": ["idle"], "blocking": false}'
    )
    assert decode_signal(frame, LIMITS) == SignalMessage("modeChanged", ["idle"], "", 0)


def test_args_default_to_empty() -> None:
    assert decode_signal(b'{"signal": "tick"}', LIMITS) == SignalMessage("tick", [])


def test_encode_refuses_non_json_args() -> None:
    with pytest.raises(TypeError):
        encode_signal("s", [object()], "e", 1)
    with pytest.raises(TypeError):
        encode_signal("s", [float("nan")], "e", 1)


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (b"[]", "must be a JSON object"),
        (b'"modeChanged"', "must be a JSON object"),
        (b"{}", "needs a 'signal' string"),
        (b'{"signal": 1}', "needs a 'signal' string"),
        (b'{"signal": null}', "needs a 'signal' string"),
        (b'{"signal": "s", "args": {"a": 1}}', "'args' must be a list"),
        (b'{"signal": "s", "args": "abc"}', "'args' must be a list"),
        (b'{"signal": "s", "epoch": 5}', "'epoch' must be a string"),
        (b'{"signal": "s", "epoch": "e", "seq": "1"}', "'seq' an integer"),
        (b'{"signal": "s", "epoch": "e", "seq": 1.0}', "'seq' an integer"),
        (b'{"signal": "s", "epoch": "e", "seq": true}', "'seq' an integer"),
        (b'{"signal": "s",', "malformed JSON"),
        (b'{"signal": "s", "signal": "t"}', "duplicate key"),
        (b'{"signal": "s", "args": [NaN]}', "NaN"),
        (b"\xfe", "UTF-8"),
    ],
)
def test_decode_rejects(frame: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        decode_signal(frame, LIMITS)


def emission(args: str) -> bytes:
    """A frame in the exact layout labwire publishers write, with ``args`` as raw JSON."""
    return (
        b'{"signal":"s","event":"EMIT_SIGNAL","args":'
        + args.encode()
        + b',"blocking":false,"epoch":"e","seq":1}'
    )


@pytest.mark.parametrize(
    ("frame", "limits", "words"),
    [
        (emission('["' + "x" * 50 + '"]'), Limits(max_string_chars=40), "longer than 40"),
        (emission("[" + "9" * 25 + "]"), LIMITS, "more than 20 digits"),
        (emission("[" * 70 + "]" * 70), LIMITS, "deeper than 64"),
        (emission('[{"a":1,"a":2}]'), LIMITS, "duplicate key 'a'"),
        (emission("[1]").replace(b'"epoch":"e"', b'"epoch":"e","epoch":"f"'), LIMITS, "duplicate"),
        (emission("[1]").replace(b'"seq":1', b'"seq":' + b"1" * 25), LIMITS, "more than 20"),
    ],
)
def test_decode_holds_labwire_frames_to_the_limits(
    frame: bytes, limits: Limits, words: str
) -> None:
    with pytest.raises(ProtocolError, match=words):
        decode_signal(frame, limits)


@given(st.lists(json_values, max_size=4))
@settings(max_examples=200, deadline=None)
def test_property_encoded_frames_decode_to_their_arguments(args: list[Any]) -> None:
    try:
        frame = encode_signal("s", args, "e", 3)
    except TypeError:  # a lone surrogate
        return
    for limits in (LIMITS, Limits(max_depth=2, max_int_digits=5, max_string_chars=60)):
        try:
            strict = decode_json(frame, limits)
        except ProtocolError:
            with pytest.raises(ProtocolError):
                decode_signal(frame, limits)
            continue
        assert decode_signal(frame, limits) == SignalMessage("s", strict["args"], "e", 3)


@given(st.binary(max_size=100))
def test_property_any_bytes_decode_or_protocol_error(data: bytes) -> None:
    try:
        decode_signal(data, LIMITS)
    except ProtocolError as exc:
        assert str(exc)


# --------------------------------------------------------------------------- prefixes


@pytest.mark.parametrize("name", NAMES)
def test_prefix_matches_only_its_own_signal(name: str) -> None:
    prefix = subscription_prefix(name)
    for other in NAMES:
        frame = encode_signal(other, [1], "e", 1)
        assert frame.startswith(prefix) == (other == name), (name, other)


def test_mode_prefix_does_not_match_mode_changed() -> None:
    frame = encode_signal("modeChanged", ["idle"], "e", 1)
    assert not frame.startswith(subscription_prefix("mode"))
    assert frame.startswith(subscription_prefix("modeChanged"))


def test_prefix_does_not_match_deployed_frames() -> None:
    deployed = b'{"event": "EMIT_SIGNAL", "signal": "mode", "args": [], "blocking": false}'
    assert not deployed.startswith(subscription_prefix("mode"))


@given(st.text(max_size=12), st.text(max_size=12), st.lists(st.integers(), max_size=3))
def test_property_prefix_is_exact(name: str, other: str, args: list[Any]) -> None:
    assert encode_signal(name, args, "e", 1).startswith(subscription_prefix(name))
    if other != name:
        assert not encode_signal(other, args, "e", 1).startswith(subscription_prefix(name))


# --------------------------------------------------------------------------- tracker


def msg(seq: int, epoch: str = "e1", signal: str = "s") -> SignalMessage:
    return SignalMessage(signal, [], epoch, seq)


def test_tracker_first_next_gap() -> None:
    tracker = SequenceTracker()
    assert tracker.observe(msg(5)) == (Verdict.FIRST, 0)
    assert tracker.observe(msg(6)) == (Verdict.NEXT, 0)
    assert tracker.observe(msg(9)) == (Verdict.GAP, 2)
    assert tracker.observe(msg(10)) == (Verdict.NEXT, 0)
    assert tracker.observe(msg(20)) == (Verdict.GAP, 9)
    assert tracker.gaps == 11
    assert (tracker.restarts, tracker.stale) == (0, 0)


def test_tracker_stale_and_repeated() -> None:
    tracker = SequenceTracker()
    tracker.observe(msg(1))
    tracker.observe(msg(4))
    assert tracker.observe(msg(4)) == (Verdict.STALE, 0)
    assert tracker.observe(msg(2)) == (Verdict.STALE, 0)
    assert tracker.stale == 2
    assert tracker.observe(msg(5)) == (Verdict.NEXT, 0)
    assert tracker.gaps == 2


def test_tracker_restart() -> None:
    tracker = SequenceTracker()
    tracker.observe(msg(1, signal="a"))
    tracker.observe(msg(2, signal="a"))
    tracker.observe(msg(1, signal="b"))
    assert tracker.observe(msg(1, epoch="e2", signal="a")) == (Verdict.RESTART, 0)
    assert tracker.restarts == 1
    assert tracker.observe(msg(1, epoch="e2", signal="b")) == (Verdict.FIRST, 0)
    assert tracker.observe(msg(2, epoch="e2", signal="a")) == (Verdict.NEXT, 0)
    assert tracker.observe(msg(3, epoch="e3", signal="b")) == (Verdict.RESTART, 0)
    assert tracker.restarts == 2
    assert (tracker.gaps, tracker.stale) == (0, 0)


def test_tracker_signals_are_independent() -> None:
    tracker = SequenceTracker()
    assert tracker.observe(msg(1, signal="a")) == (Verdict.FIRST, 0)
    assert tracker.observe(msg(7, signal="b")) == (Verdict.FIRST, 0)
    assert tracker.observe(msg(2, signal="a")) == (Verdict.NEXT, 0)
    assert tracker.observe(msg(9, signal="b")) == (Verdict.GAP, 1)


def test_tracker_unsequenced_deployed_messages() -> None:
    tracker = SequenceTracker()
    for _ in range(3):
        assert tracker.observe(SignalMessage("modeChanged", ["idle"])) == (Verdict.UNSEQUENCED, 0)
    assert (tracker.gaps, tracker.restarts, tracker.stale) == (0, 0, 0)


def test_tracker_forget() -> None:
    tracker = SequenceTracker()
    tracker.observe(msg(1))
    tracker.observe(msg(2))
    tracker.forget("s")
    tracker.forget("never-seen")
    assert tracker.observe(msg(10)) == (Verdict.FIRST, 0)
    assert tracker.gaps == 0


@given(st.sets(st.integers(1, 200), min_size=1))
def test_property_gaps_count_missing_messages(delivered: set[int]) -> None:
    tracker = SequenceTracker()
    seqs = sorted(delivered)
    verdicts = [tracker.observe(msg(seq)) for seq in seqs]
    assert verdicts[0] == (Verdict.FIRST, 0)
    assert all(v in (Verdict.NEXT, Verdict.GAP) for v, _ in verdicts[1:])
    assert tracker.gaps == sum(n for _, n in verdicts) == seqs[-1] - seqs[0] + 1 - len(seqs)


@given(st.lists(st.integers(1, 50), min_size=1, max_size=60))
def test_property_delivery_is_in_order_and_at_most_once(arrivals: list[int]) -> None:
    tracker = SequenceTracker()
    delivered = [seq for seq in arrivals if tracker.observe(msg(seq))[0] is not Verdict.STALE]
    assert delivered == sorted(set(delivered))
    assert tracker.stale == len(arrivals) - len(delivered)


@given(st.text(min_size=1, max_size=64))
def test_a_probe_subscription_names_its_token_and_matches_no_emission(token: str) -> None:
    prefix = probe_prefix(token)
    assert probe_token(b"\x01" + prefix) == token
    assert probe_token(b"\x00" + prefix) is None  # an unsubscribe is not a probe's arrival
    assert not encode_signal(token, [], "e", 1).startswith(prefix)
    assert probe_token(b"\x01" + subscription_prefix(token)) is None
