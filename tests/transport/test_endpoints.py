"""Endpoint parsing: what is accepted, what is refused, and why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labwire.errors import ConfigurationError, EndpointError
from labwire.transport.endpoints import Endpoint, parse_endpoint

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://localhost:5555", Endpoint("tcp", "localhost", 5555)),
        ("tcp://rpi-camera-2:5000", Endpoint("tcp", "rpi-camera-2", 5000)),
        (
            "tcp://rpi-camera-2.lab.example.org:1",
            Endpoint("tcp", "rpi-camera-2.lab.example.org", 1),
        ),
        ("tcp://cam_3:65535", Endpoint("tcp", "cam_3", 65535)),
        ("tcp://192.168.1.20:5555", Endpoint("tcp", "192.168.1.20", 5555)),
        ("tcp://127.0.0.1:80", Endpoint("tcp", "127.0.0.1", 80)),
        ("tcp://[::1]:5555", Endpoint("tcp", "::1", 5555)),
        ("tcp://[fe80::1%eth0]:5555", Endpoint("tcp", "fe80::1%eth0", 5555)),
        ("tcp://[2001:DB8::1]:5555", Endpoint("tcp", "2001:db8::1", 5555)),
        ("ipc:///tmp/labwire/cam.sock", Endpoint("ipc", path="/tmp/labwire/cam.sock")),
        ("ipc://@abstract-name", Endpoint("ipc", path="@abstract-name")),
        ("inproc://camera-1", Endpoint("inproc", path="camera-1")),
    ],
)
def test_accepts(url: str, expected: Endpoint) -> None:
    assert parse_endpoint(url) == expected
    assert parse_endpoint(url, for_bind=True) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://*:5555", Endpoint("tcp", "*", 5555)),
        ("tcp://*:*", Endpoint("tcp", "*", 0)),
        ("tcp://*:0", Endpoint("tcp", "*", 0)),
        ("tcp://*", Endpoint("tcp", "*", 0)),
        ("tcp://127.0.0.1:0", Endpoint("tcp", "127.0.0.1", 0)),
        ("tcp://127.0.0.1:*", Endpoint("tcp", "127.0.0.1", 0)),
        ("tcp://127.0.0.1", Endpoint("tcp", "127.0.0.1", 0)),
        ("tcp://[::1]:0", Endpoint("tcp", "::1", 0)),
        ("tcp://[::]:*", Endpoint("tcp", "::", 0)),
        ("tcp://0.0.0.0:7000", Endpoint("tcp", "0.0.0.0", 7000)),
    ],
)
def test_bind_only_forms(url: str, expected: Endpoint) -> None:
    assert parse_endpoint(url, for_bind=True) == expected
    if expected.port == 0 or expected.host == "*":
        with pytest.raises(EndpointError, match=r"can only be bound|cannot connect|missing port"):
            parse_endpoint(url)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("tcp://host:5555:5556", "more than one ':'"),
        ("tcp://10.0.0.1:5555:5555", "more than one ':'"),
        ("tcp://::1:5555", "IPv6 addresses need"),
        ("tcp://:5555", "empty host"),
        ("tcp://", "empty host"),
        ("tcp://[]:5555", "brackets are for IPv6"),
        ("tcp://[1.2.3.4]:5555", "brackets are for IPv6"),
        ("tcp://[::1:5555", "unclosed"),
        ("tcp://[::1]5555", "expected ':' after ']'"),
        ("tcp://[::g]:5555", "invalid IPv6 address"),
        ("tcp://-camera:5555", "invalid host"),
        ("tcp://cam..lab:5555", "invalid host"),
        ("tcp://cam/x:5555", "invalid host"),
        ("tcp://cåm:5555", "invalid host"),
        ("tcp://" + "a" * 64 + ":5555", "invalid host"),
        ("tcp://host:", "missing port"),
        ("tcp://host", "missing port"),
        ("tcp://[::1]:", "missing port"),
        ("tcp://host:65536", "out of range"),
        ("tcp://host:99999", "out of range"),
        ("tcp://host:123456", "invalid port"),
        ("tcp://host:-1", "invalid port"),
        ("tcp://host:+1", "invalid port"),
        ("tcp://host:1.5", "invalid port"),
        ("tcp://host:http", "invalid port"),
        ("tcp://host:0x10", "invalid port"),
        ("tcp://host:²", "invalid port"),
        ("tcp://host:٣", "invalid port"),
        ("tcp://host:0", "can only be bound"),
        ("tcp://host:*", "can only be bound"),
        ("tcp://*:5555", "cannot connect to '\\*'"),
        ("tcp://host :5555", "white space"),
        (" tcp://host:5555", "white space"),
        ("tcp://host:5555\n", "white space"),
        ("tcp://host:\t5555", "white space"),
        ("ipc:///tmp/my socket", "white space"),
        ("", "empty"),
        ("host:5555", "expected scheme://address"),
        ("tcp:/host:5555", "expected scheme://address"),
        ("udp://host:5555", "unsupported scheme 'udp'"),
        ("TCP://host:5555", "unsupported scheme 'TCP'"),
        ("epgm://eth0;239.192.1.1:5555", "unsupported scheme"),
        ("http://host:5555", "unsupported scheme"),
        ("ipc://", "empty ipc path"),
        ("inproc://", "empty inproc path"),
    ],
)
def test_rejects(url: str, words: str) -> None:
    with pytest.raises(EndpointError, match=words):
        parse_endpoint(url)


@pytest.mark.parametrize("url", ["tcp://host:5555:5556", "tcp://:0", "tcp://host:65536", "ftp://x"])
def test_rejects_for_bind_too(url: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(url, for_bind=True)


@pytest.mark.parametrize("url", [None, 5555, b"tcp://host:5555"])
def test_rejects_non_strings(url: object) -> None:
    with pytest.raises(EndpointError, match="must be a string"):
        parse_endpoint(url)  # type: ignore[arg-type]


def test_endpoint_error_is_a_configuration_and_value_error() -> None:
    with pytest.raises(ConfigurationError):
        parse_endpoint("tcp://host:5555:5556")
    with pytest.raises(ValueError):
        parse_endpoint("tcp://host:5555:5556")


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("tcp://rpi-camera-2:5000", "tcp://rpi-camera-2:5000"),
        ("tcp://[::1]:5000", "tcp://[::1]:5000"),
        ("tcp://*:0", "tcp://*:*"),
        ("tcp://127.0.0.1", "tcp://127.0.0.1:*"),
        ("ipc:///tmp/a.sock", "ipc:///tmp/a.sock"),
        ("inproc://x", "inproc://x"),
    ],
)
def test_str_gives_a_zmq_address(url: str, text: str) -> None:
    assert str(parse_endpoint(url, for_bind=True)) == text


def test_properties_and_copies() -> None:
    endpoint = parse_endpoint("tcp://[::1]:0", for_bind=True)
    assert endpoint.is_tcp
    assert endpoint.is_ipv6
    assert not endpoint.is_wildcard
    assert endpoint.with_port(6000) == Endpoint("tcp", "::1", 6000)
    assert endpoint.with_host("127.0.0.1").is_ipv6 is False
    assert parse_endpoint("tcp://*", for_bind=True).is_wildcard
    assert parse_endpoint("tcp://0.0.0.0:1").is_wildcard
    assert not parse_endpoint("ipc:///tmp/x").is_tcp


@given(st.text(max_size=40))
def test_property_any_text_parses_or_endpoint_error(url: str) -> None:
    for for_bind in (False, True):
        try:
            endpoint = parse_endpoint(url, for_bind=for_bind)
        except EndpointError as exc:
            assert str(exc)
        else:
            assert parse_endpoint(str(endpoint), for_bind=True) == endpoint


_hosts = st.sampled_from(["localhost", "rpi-cam-2", "10.1.2.3", "[::1]", "[fe80::2]", "h.lab"])


@given(_hosts, st.integers(1, 65535))
def test_property_valid_tcp_round_trips(host: str, port: int) -> None:
    endpoint = parse_endpoint(f"tcp://{host}:{port}")
    assert endpoint.port == port
    assert str(endpoint) == f"tcp://{host}:{port}"
    assert parse_endpoint(str(endpoint)) == endpoint


@given(st.from_regex(r"tcp://[a-z0-9.:\[\]*-]{0,20}", fullmatch=True))
def test_property_tcp_like_text_parses_or_endpoint_error(url: str) -> None:
    try:
        parse_endpoint(url, for_bind=True)
    except EndpointError as exc:
        assert str(exc)
