"""The sans-IO part: durations, group ports, beacons, data-link messages, derived keys."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labwire.errors import ProtocolError
from labwire.transport.security import is_key_text, public_key_from_secret
from labwire.wire.cluster import (
    MAX_BEACON_BYTES,
    MAX_NAME_CHARS,
    Answer,
    Beacon,
    Call,
    Catalog,
    CatalogQuery,
    Direct,
    Event,
    beacon_key,
    check_name,
    curve_secret_from_key,
    decode_beacon,
    decode_message,
    duration_to_seconds,
    encode_beacon,
    encode_message,
    group_to_multicast,
    group_to_port,
)
from labwire.wire.limits import Limits

LIMITS = Limits()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (5, 5),
        (0.25, 0.25),
        ("100ms", 0.1),
        ("100 milliseconds", 0.1),
        ("1 millisecond", 0.001),
        ("1.5s", 1.5),
        ("2 seconds", 2.0),
        ("1 second", 1.0),
        ("3m", 180.0),
        ("1 minute", 60.0),
        ("2minutes", 120.0),
        ("1h", 3600.0),
        ("2 hours", 7200.0),
        (".5s", 0.5),
        ("7", 7.0),
        (" 10 MS ", 0.01),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert math.isclose(duration_to_seconds(text), seconds)


@pytest.mark.parametrize(
    "garbage",
    ["", "soon", "5 parsecs", "ms", "-1s", "1e3s", "nan", "1.2.3s", None, True, [1], float("inf")],
)
def test_garbage_durations_are_minus_one(garbage: object) -> None:
    assert duration_to_seconds(garbage) == -1


@given(st.text(max_size=20))
def test_any_text_is_a_duration_or_minus_one(text: str) -> None:
    value = duration_to_seconds(text)
    assert value == -1 or value >= 0


def test_group_ports_are_stable_and_in_range() -> None:
    ports = {group_to_port(f"group-{n}") for n in range(500)}
    assert all(10000 <= port < 32768 for port in ports)
    assert len(ports) > 490
    assert group_to_port("rover") == group_to_port("rover") != group_to_port("rover2")


@pytest.mark.parametrize("bad", ["", "a/b", "x" * (MAX_NAME_CHARS + 1), "tab\there", 3])
def test_names_are_checked(bad: object) -> None:
    with pytest.raises(ValueError, match="name"):
        check_name(bad, "device name")


def test_beacons_round_trip_and_stay_small() -> None:
    key = beacon_key("rover", "secret")
    beacon = Beacon("rover", "gps", "0123456789abcdef", 5555, 3, "")
    assert decode_beacon(encode_beacon(beacon, key), key) == beacon
    huge = Beacon("é" * MAX_NAME_CHARS, '"' * MAX_NAME_CHARS, "f" * 16, 65535, 2**63, "k" * 40)
    packet = encode_beacon(huge, key)
    assert len(packet) <= MAX_BEACON_BYTES
    assert decode_beacon(packet, key) == huge


def test_beacons_of_other_keys_groups_or_tampered_are_refused() -> None:
    key = beacon_key("rover", "secret")
    packet = encode_beacon(Beacon("rover", "gps", "u", 5555, 0), key)
    with pytest.raises(ProtocolError, match="authentication failed"):
        decode_beacon(packet, beacon_key("rover", "guess"))
    with pytest.raises(ProtocolError, match="authentication failed"):
        decode_beacon(packet, beacon_key("rover", None))
    with pytest.raises(ProtocolError, match="authentication failed"):
        decode_beacon(packet, beacon_key("arm", "secret"))
    tampered = packet.replace(b"5555", b"6666")
    with pytest.raises(ProtocolError, match="authentication failed"):
        decode_beacon(tampered, key)
    with pytest.raises(ProtocolError, match="version"):
        decode_beacon(packet[:4] + b"\x09" + packet[5:], key)
    with pytest.raises(ProtocolError, match="not a labwire"):
        decode_beacon(b"hello", key)
    with pytest.raises(ProtocolError, match="over"):
        decode_beacon(b"LWCB\x01" + b" " * MAX_BEACON_BYTES, key)


def test_signed_but_malformed_beacons_are_refused() -> None:
    import hmac

    key = beacon_key("rover", None)
    for body in (b"[1,2]", b'["rover","a/b","u",1,0]', b'["rover","gps","u",0,0]', b"{"):
        packet = b"LWCB\x01" + body
        packet += hmac.digest(key, packet, "sha256")
        with pytest.raises(ProtocolError):
            decode_beacon(packet, key)


@given(st.binary(max_size=200))
def test_any_datagram_is_a_beacon_or_a_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_beacon(data, beacon_key("g", None))


MESSAGES = [
    Event("gps", "u1", "GPSPosition", {"lat": 1.5}),
    Direct("joy", "u2", "drive", [0.5, 0.5]),
    Call("nav", "u3", 7, "route", [1, 2], {"fast": True}),
    Answer("nav", "u3", 7, "ok", ["a", "b"]),
    Answer("nav", "u3", 8, "error", error_type="ValueError", error="bad", traceback="tb"),
    CatalogQuery("gps", "u1"),
    Catalog("nav", "u3", 4, ["*/GPSPosition"], ["route"], ["drive"]),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_round_trip(message: object) -> None:
    assert decode_message(encode_message(message), LIMITS) == message  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"[]",
        b'{"kind":"event"}',
        b'{"kind":"nope","sender":"a","uid":"b"}',
        b'{"kind":"request","sender":"a","uid":"b","id":"1","endpoint":"x"}',
        b'{"kind":"event","sender":"a","uid":"b","topic":"t","data":NaN}',
        b'{"kind":"event","sender":"a","uid":"b","topic":"t","topic":"u"}',
        b"[" * 100 + b"]" * 100,
    ],
)
def test_bad_frames_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(frame, LIMITS)


@given(st.binary(max_size=200))
def test_any_frame_is_a_message_or_a_protocol_error(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(frame, LIMITS)


def test_curve_keys_derived_from_a_group_key() -> None:
    secret = curve_secret_from_key("rover", "secret")
    assert is_key_text(secret)
    assert secret == curve_secret_from_key("rover", b"secret")
    assert secret != curve_secret_from_key("rover", "other")
    assert secret != curve_secret_from_key("arm", "secret")
    assert is_key_text(public_key_from_secret(secret))


def test_group_multicast_addresses_are_site_local_and_stable() -> None:
    import ipaddress

    addresses = {group_to_multicast(f"g{n}") for n in range(200)}
    assert all(
        ipaddress.IPv4Address(a) in ipaddress.IPv4Network("239.255.0.0/16") for a in addresses
    )
    assert group_to_multicast("rover") == group_to_multicast("rover")
    assert len(addresses) > 190


def test_beacons_from_newer_peers_with_more_fields_decode() -> None:
    import hmac

    key = beacon_key("rover", None)
    packet = b'LWCB\x01["rover","gps","u",5555,2,"",500,"a field from later"]'
    packet += hmac.digest(key, packet, "sha256")
    assert decode_beacon(packet, key) == Beacon("rover", "gps", "u", 5555, 2, "", 500)
