"""The sans-IO rig core: messages, payloads, datagrams, status table, URIs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labwire.errors import ConfigurationError, EndpointError, ProtocolError
from labwire.wire.rigs import (
    LISTEN_PORT,
    TRANSITIONS,
    Datagram,
    ExpMessage,
    ExpStatus,
    IllegalTransition,
    Start,
    build_payload,
    decode_datagram,
    encode_datagram,
    encode_error,
    error_details,
    next_status,
    parse_message,
    parse_rig_uri,
    payload_from_items,
)


def test_codes_match_the_deployed_protocol():
    from iblutil.io.net import base

    for member in base.ExpMessage.__members__.values():
        assert int(ExpMessage[member.name]) == int(member)
    for member in base.ExpStatus:
        assert int(ExpStatus[member.name]) == int(member)
    assert base.LISTEN_PORT == LISTEN_PORT


@pytest.mark.parametrize("value", [ExpMessage.EXPINIT, "EXPINIT", " expinit ", 1])
def test_message_given_as_enum_name_or_code(value):
    assert parse_message(value) is ExpMessage.EXPINIT


@pytest.mark.parametrize("value", ["EXPGO", 3, 0, 256, ExpMessage.EXPINIT | ExpMessage.EXPEND])
def test_unknown_or_compound_messages_are_refused(value):
    with pytest.raises(ConfigurationError, match="unknown experiment message"):
        parse_message(value)


def test_message_of_wrong_type_is_refused():
    with pytest.raises(TypeError):
        parse_message(1.5)


def test_payloads_follow_the_deployed_signatures():
    assert build_payload("EXPINIT").items() == [None]
    assert build_payload("EXPSTART", "2024-01-01_1_mouse", {"a": 1}).items() == [
        "2024-01-01_1_mouse",
        {"a": 1},
    ]
    ref = {"date": "2024-01-01", "sequence": "2", "subject": "m"}
    assert build_payload("EXPSTART", ref).items() == ["2024-01-01_2_m", None]
    assert build_payload("EXPSTATUS", "running").items() == [20]
    assert build_payload("EXPINFO", ExpStatus.STOPPED, {"x": 1}).items() == [30, {"x": 1}]
    assert build_payload("ALYX").items() == [None, {}]
    token = {"me": "t"}
    assert build_payload("ALYX", "https://alyx", token).items() == ["https://alyx", token]


@pytest.mark.parametrize(
    ("message", "args", "error"),
    [
        ("EXPINIT", (1, 2), TypeError),
        ("EXPSTART", (42,), TypeError),
        ("EXPSTATUS", (), TypeError),
        ("EXPSTATUS", ("DANCING",), ConfigurationError),
        ("EXPINFO", (99,), ConfigurationError),
        ("EXPINIT", ({"f": float("nan")},), TypeError),
        ("EXPINIT", (object(),), TypeError),
        ("ALYX", ("url", "token-not-a-dict"), TypeError),
    ],
)
def test_wrong_arguments_fail_at_the_caller(message, args, error):
    with pytest.raises(error, match=message):
        build_payload(message, *args)


def test_received_items_are_checked():
    assert payload_from_items(ExpMessage.EXPSTART, ["r", None]) == Start("r", None)
    assert payload_from_items(ExpMessage.EXPINIT, []).items() == [None]
    with pytest.raises(ProtocolError, match="at most 1"):
        payload_from_items(ExpMessage.EXPEND, [1, 2])
    with pytest.raises(ProtocolError, match="EXPSTATUS"):
        payload_from_items(ExpMessage.EXPSTATUS, ["bogus"])
    with pytest.raises(ProtocolError, match="exp_ref"):
        payload_from_items(ExpMessage.EXPSTART, [5])


def test_datagram_round_trip_and_deployed_error_reply():
    data = encode_datagram(ExpMessage.EXPINFO, [10, {"a": [1, 2]}])
    assert data == b'[64,10,{"a":[1,2]}]'
    assert decode_datagram(data) == Datagram(64, (10, {"a": [1, 2]}))
    error = decode_datagram(encode_error("ValueError", "bad: thing", 2))
    assert error.is_error and error.error == ("ValueError", "bad: thing", 2)
    assert decode_datagram(b'[0, "no type here", 4]').error == ("RemoteError", "no type here", 4)
    assert decode_datagram(b"[3]").message is None


def test_oversized_datagram_is_refused_at_the_sender():
    with pytest.raises(ConfigurationError, match="UDP datagram"):
        encode_datagram(1, ["x" * 70000])


@pytest.mark.parametrize(
    "data", [b"", b"{}", b"[]", b'["1"]', b"[-1]", b"[true]", b"[1,NaN]", b"\xff", b"[1,"]
)
def test_bad_datagrams_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        decode_datagram(data)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_protocol_error(data):
    try:
        decoded = decode_datagram(data)
    except ProtocolError:
        return
    assert isinstance(decoded, Datagram)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@given(st.sampled_from(list(ExpMessage)), st.lists(json_values, max_size=3))
def test_encode_decode_round_trip(message, items):
    decoded = decode_datagram(encode_datagram(message, items))
    assert decoded.message is message
    assert list(decoded.items) == items


def test_status_table():
    assert next_status(ExpStatus.CONNECTED, ExpMessage.EXPINIT) is ExpStatus.INITIALIZED
    assert next_status(ExpStatus.INITIALIZED, ExpMessage.EXPSTART) is ExpStatus.RUNNING
    assert next_status(ExpStatus.RUNNING, ExpMessage.EXPINTERRUPT) is ExpStatus.STOPPED
    assert next_status(ExpStatus.STOPPED, ExpMessage.EXPCLEANUP) is ExpStatus.CONNECTED
    for status in ExpStatus:
        for message in (ExpMessage.EXPSTATUS, ExpMessage.EXPINFO, ExpMessage.ALYX):
            assert TRANSITIONS[status][message] is status
    with pytest.raises(IllegalTransition, match="EXPSTART is not allowed while the rig is CONN"):
        next_status(ExpStatus.CONNECTED, ExpMessage.EXPSTART)
    with pytest.raises(IllegalTransition):
        next_status(ExpStatus.RUNNING, ExpMessage.EXPCLEANUP)


def test_error_details_carry_type_message_and_traceback():
    try:
        raise RuntimeError("lick detector unplugged")
    except RuntimeError as exc:
        details = error_details(exc)
    assert details["type"] == "RuntimeError"
    assert details["message"] == "lick detector unplugged"
    assert "raise RuntimeError" in details["traceback"]


@pytest.mark.parametrize(
    ("uri", "link", "url"),
    [
        ("udp://10.0.0.2", "udp", "udp://10.0.0.2:11001"),
        ("udp://camera-pc:9998", "udp", "udp://camera-pc:9998"),
        ("10.0.0.2", "udp", "udp://10.0.0.2:11001"),
        ("10.0.0.2:9998", "udp", "udp://10.0.0.2:9998"),
        ("localhost", "udp", "udp://localhost:11001"),
        ("[::1]:9000", "udp", "udp://[::1]:9000"),
        ("tcp://10.0.0.2:7000", "zmq", "tcp://10.0.0.2:7000"),
        ("camera-left", "name", "camera-left"),
    ],
)
def test_the_uri_chooses_the_link(uri, link, url):
    address = parse_rig_uri(uri)
    assert (address.link, address.url) == (link, url)


@pytest.mark.parametrize("uri", ["", "http://x", "udp://:5", "10.0.0.2:99999", "a b", None])
def test_bad_uris_are_refused(uri):
    with pytest.raises(EndpointError):
        parse_rig_uri(uri)
