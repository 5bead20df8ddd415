"""Bad input (rows B1-B9): raw sockets that bypass our client send malformed requests.

One Camera server runs in a subprocess with small limits. Each bad message is sent from a fresh
raw pyzmq DEALER (or REQ, or a plain TCP socket). A routable message must get an error reply
that names the problem; in every case the handler is never entered (the device's ``executed()``
counter does not move) and the server stays healthy: a good client's call succeeds within 1 s,
the process is alive, and its fd and thread counts are back at their baseline (± 2).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from labwire.rpc import AsyncRPCClient, NoResult
from tests.rpc.conftest import DeviceProcess, process_fds, process_threads, wait_for
from tests.rpc.devices import CameraClient

pytestmark = pytest.mark.timeout(60)

MAX_FRAME_BYTES = 64 * 1024
MAX_TOTAL_BYTES = 128 * 1024
MAX_STRING_CHARS = 1000
LIMITS = {
    "max_frame_bytes": MAX_FRAME_BYTES,
    "max_total_bytes": MAX_TOTAL_BYTES,
    "max_string_chars": MAX_STRING_CHARS,
}
#: The request id every labwire-style bad request claims; error replies must echo it.
RID = 7


@dataclass
class Server:
    device: DeviceProcess
    good: CameraClient
    fds: int
    threads: int

    @property
    def endpoint(self) -> str:
        return self.device.endpoint

    def at_baseline(self) -> bool:
        pid = self.device.pid
        return (
            abs(process_fds(pid) - self.fds) <= 2 and abs(process_threads(pid) - self.threads) <= 2
        )


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """The device under test, in a process of its own."""
    options = [f"--limit={name}={value}" for name, value in LIMITS.items()]
    device = DeviceProcess("tcp://127.0.0.1:0", *options)
    try:
        with CameraClient(None, device.endpoint) as good:
            good.sleep(0.05)  # warm up: a slow call makes the server start its second runner
            yield Server(device, good, process_fds(device.pid), process_threads(device.pid))
    finally:
        device.close()


def assert_healthy(server: Server, entered: int) -> None:
    """The handler was not entered, and the server is healthy (see the module docstring)."""
    start = time.monotonic()
    with server.good.override_timeout(1000):
        assert server.good.executed() == entered
    assert time.monotonic() - start < 1.0
    assert server.device.process.poll() is None
    wait_for(server.at_baseline)


@pytest.fixture
def raw_dealer(server: Server) -> Iterator[zmq.Socket[Any]]:
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(server.endpoint)
    yield sock
    sock.close()


def recv_reply(sock: zmq.Socket[Any], timeout_ms: int = 2000) -> list[bytes]:
    assert sock.poll(timeout_ms), "no reply from the server"
    frames: list[bytes] = sock.recv_multipart()
    return frames


# --------------------------------------------------------------------------- messages


def lw(**fields: Any) -> dict[str, Any]:
    """A labwire request extension, with overrides."""
    return {"v": 1, "cid": "raw-socket", "rid": RID, **fields}


def call(method: str = "echo", *args: Any, **fields: Any) -> dict[str, Any]:
    return {"event": "METHOD_CALL", "method": method, "params": {"args": list(args)}, **fields}


def encode(message: Any) -> bytes:
    return json.dumps(message).encode()


def raw_call(args_json: bytes) -> bytes:
    """A METHOD_CALL of ``echo`` whose argument list is given as raw JSON text."""
    return b'{"event":"METHOD_CALL","method":"echo","params":{"args":' + args_json + b"}}"


def fast(
    args_json: bytes = b"[1]",
    kwargs_json: bytes = b"{}",
    method: bytes = b"echo",
    rid: bytes = b"%d" % RID,
) -> bytes:
    """A one-frame request in the compact layout labwire clients write (the server's fast path)."""
    return (
        b'["METHOD_CALL","'
        + method
        + b'",'
        + args_json
        + b","
        + kwargs_json
        + b',"raw-socket",'
        + rid
        + b',1000,null,""]'
    )


def placeholder(index: Any, kind: str = "bytes", **extra: Any) -> dict[str, Any]:
    return {"$lwbuf": index, "kind": kind, **extra}


@dataclass(frozen=True)
class Bad:
    """A routable bad message and the text its error reply must contain."""

    id: str
    body: list[bytes]
    error: str
    delimited: bool = True  # sent after an empty delimiter frame, as a REQ socket does
    code: str | None = None  # the labwire error code, for requests that carry "lw"


#: A compact call's arguments: one buffer, the frame after the call.
ONE_BUFFER = b'[{"$lwbuf":0,"kind":"buffer"}]'


def fast_bad(id: str, body: bytes, error: str, code: str | None = None) -> Bad:
    """A bad one-frame request sent the way labwire clients send theirs: no delimiter."""
    return Bad(id, [body], error, delimited=False, code=code)


#: The fast path's layout, one frame and no delimiter, with what the general path refuses: the
#: fast path must send each of these on to the general path, which names the problem.
FAST_LAYOUT_BAD = [
    fast_bad("fast_duplicate_kwarg", fast(kwargs_json=b'{"a":1,"a":2}'), "duplicate key 'a'"),
    fast_bad(
        "fast_duplicate_key_in_an_argument",
        fast(b'[{"a":1,"a":2}]'),
        "duplicate key 'a' in JSON object",
    ),
    fast_bad(
        "fast_too_short",
        b'["METHOD_CALL","echo",[1],{}]',
        'a compact request is ["METHOD_CALL", method, args, kwargs, cid, rid, ttl, exp, sid]',
    ),
    fast_bad("fast_args_not_a_list", fast(b'"1"'), "'params.args' must be a list", "bad_request"),
    fast_bad("fast_request_id_text", fast(rid=b'"7"'), "'lw.rid' must be an integer"),
    fast_bad(
        "fast_property_set",
        b'["PROPERTY_SET","mode",1,"raw-socket",7,1000,null,""]',
        "a compact request is",
    ),
    fast_bad("fast_integer_25_digits", fast(b"[" + b"9" * 25 + b"]"), "more than 20 digits"),
    fast_bad("fast_request_id_25_digits", fast(rid=b"9" * 25), "more than 20 digits"),
    fast_bad("fast_nested_65_levels", fast(b"[" * 65 + b"]" * 65), "nesting deeper than 64"),
    fast_bad("fast_lone_surrogate", fast(b'["\\ud800"]'), "lone surrogate"),
    fast_bad(
        "fast_long_string",
        fast(b'["' + b"x" * (MAX_STRING_CHARS + 1) + b'"]'),
        f"JSON string longer than {MAX_STRING_CHARS} characters",
    ),
    fast_bad(
        "fast_placeholder_without_its_frame",
        fast(b'[{"$lwbuf":0,"kind":"bytes"}]'),
        "buffer placeholder refers to missing frame 0",
        code="bad_request",
    ),
    fast_bad(
        "fast_private_method",
        fast(method=b"_count"),
        "'_count' is private and cannot be reached",
        code="not_found",
    ),
    fast_bad(
        "fast_unknown_method", fast(method=b"nope"), "no method named 'nope'", code="not_found"
    ),
]
BAD = [
    *FAST_LAYOUT_BAD,
    # Frame counts and sizes (B1).
    Bad("no_body_frame", [], "empty request: no frame after the envelope"),
    Bad("empty_body_frame", [b""], "malformed JSON"),
    Bad("one_frame_without_delimiter", [b"hello"], "malformed JSON", delimited=False),
    Bad(
        "thousands_of_frames",
        [encode(call("echo", 1)), *[b"x"] * 5000],
        "message has 5001 frames; the limit is 1024",
    ),
    Bad("thousands_of_empty_frames", [b""] * 5000, "message has 5000 frames; the limit is 1024"),
    Bad(
        "multi_frame_over_total_size",
        [encode(call("echo", lw=lw(nbuf=3))), *[b"x" * 60_000] * 3],
        f"message of {len(encode(call('echo', lw=lw(nbuf=3)))) + 180_000} bytes exceeds "
        f"{MAX_TOTAL_BYTES}",
    ),
    Bad(
        "plain_request_with_extra_frame",
        [encode({"event": "GET_INVENTORY"}), b"x"],
        "request has 2 frames; a plain request has one",
    ),
    # Malformed JSON and encodings (B2).
    Bad("malformed_json", [b'{"event": "METHOD_CALL", "method": "echo"'], "malformed JSON"),
    Bad("not_an_object", [b'"METHOD_CALL"'], "frame 0 must be a JSON object, got str"),
    Bad("short_array", [b'["METHOD_CALL", "echo"]'], "a compact request is"),
    Bad(
        "compact_with_a_frame_it_does_not_name",
        [fast(b'[{"$lwbuf":1,"kind":"buffer"}]'), b"x"],
        "buffer placeholder refers to missing frame 1",
        code="bad_request",
        delimited=False,
    ),
    Bad(
        "compact_with_an_unknown_buffer_kind",
        [fast(b'[{"$lwbuf":0,"kind":"tape"}]'), b"x"],
        "unknown buffer kind 'tape'",
        code="bad_request",
        delimited=False,
    ),
    Bad(
        "compact_with_buffers_over_total_size",
        [fast(ONE_BUFFER), *[b"x" * 60_000] * 3],
        f"message of {len(fast(ONE_BUFFER)) + 180_000} bytes exceeds {MAX_TOTAL_BYTES}",
        delimited=False,
    ),
    Bad("invalid_utf8", [b'{"event":"METHOD_CALL","method":"ech\xff"}'], "not valid UTF-8"),
    Bad("utf8_encoded_surrogate", [raw_call(b'["\xed\xa0\x80"]')], "not valid UTF-8"),
    Bad("lone_surrogate_escape", [raw_call(b'["\\ud800"]')], "lone surrogate"),
    Bad("lone_surrogate_in_key", [b'{"event":"GET_INVENTORY","\\udfff":1}'], "lone surrogate"),
    # NaN/Infinity, depth, huge integers, long strings, duplicate keys (B3).
    Bad("nan", [raw_call(b"[NaN]")], "JSON constant NaN is not allowed"),
    Bad("infinity", [raw_call(b"[Infinity]")], "JSON constant Infinity is not allowed"),
    Bad("minus_infinity", [raw_call(b"[-Infinity]")], "JSON constant -Infinity is not allowed"),
    Bad("float_overflow", [raw_call(b"[1e999]")], "JSON number 1e999 overflows to Infinity"),
    Bad("nested_65_levels", [raw_call(b"[" * 65 + b"]" * 65)], "nesting deeper than 64 levels"),
    Bad(
        "nested_30000_levels",
        [raw_call(b"[" * 30_000 + b"]" * 30_000)],
        "nesting deeper than 64 levels",
    ),
    Bad("integer_25_digits", [raw_call(b"[" + b"9" * 25 + b"]")], "more than 20 digits"),
    Bad("integer_5000_digits", [raw_call(b"[-" + b"9" * 5000 + b"]")], "more than 20 digits"),
    Bad(
        "long_string",
        [encode(call("echo", "x" * (MAX_STRING_CHARS + 1)))],
        f"JSON string longer than {MAX_STRING_CHARS} characters",
    ),
    Bad(
        "duplicate_keys",
        [b'{"event":"METHOD_CALL","method":"echo","method":"_count"}'],
        "duplicate key 'method' in JSON object",
    ),
    # Wrong field types (B4).
    Bad("missing_event", [b"{}"], "a request needs a 'event' field"),
    Bad("event_not_a_string", [encode({"event": 5})], "field 'event' of a request has the wrong"),
    Bad("method_missing", [encode({"event": "METHOD_CALL"})], "METHOD_CALL needs a 'method'"),
    Bad(
        "method_not_a_string",
        [encode({"event": "METHOD_CALL", "method": ["echo"]})],
        "field 'method' of METHOD_CALL has the wrong type (list)",
    ),
    Bad(
        "params_not_an_object",
        [encode({"event": "METHOD_CALL", "method": "echo", "params": "1"})],
        "field 'params' must be an object",
    ),
    Bad(
        "args_not_a_list",
        [encode({"event": "METHOD_CALL", "method": "echo", "params": {"args": {"0": 1}}})],
        "field 'params.args' must be a list",
    ),
    Bad(
        "kwargs_not_an_object",
        [encode({"event": "METHOD_CALL", "method": "echo", "params": {"kwargs": [1]}})],
        "field 'params.kwargs' must be an object",
    ),
    Bad(
        "arguments_not_matching_the_method",
        [encode({"event": "METHOD_CALL", "method": "echo", "params": {"kwargs": {"bogus": 1}}})],
        "unexpected keyword argument 'bogus'",
    ),
    Bad(
        "property_not_a_string",
        [encode({"event": "PROPERTY_GET", "property": 5})],
        "field 'property' of PROPERTY_GET has the wrong type (int)",
    ),
    Bad(
        "property_set_without_value",
        [encode({"event": "PROPERTY_SET", "property": "mode"})],
        "PROPERTY_SET needs a 'value' field",
    ),
    Bad("lw_not_an_object", [encode(call(lw=[1]))], "field 'lw' must be an object"),
    Bad("lw_version_bool", [encode(call(lw=lw(v=True)))], "'lw.v' must be a positive integer"),
    Bad("lw_version_zero", [encode(call(lw=lw(v=0)))], "'lw.v' must be a positive integer"),
    Bad("lw_rid_string", [encode(call(lw=lw(rid="7")))], "field 'lw.rid' must be an integer"),
    Bad(
        "lw_cid_too_long",
        [encode(call(lw=lw(cid="c" * 65)))],
        "field 'lw.cid' must be a string of at most 64 characters",
        code="bad_request",
    ),
    Bad(
        "lw_ttl_string",
        [encode(call(lw=lw(ttl="soon")))],
        "field 'lw.ttl' must be a number or null",
        code="bad_request",
    ),
    Bad(
        "lw_expiry_list",
        [encode(call(lw=lw(exp=[1])))],
        "field 'lw.exp' must be a number or null",
        code="bad_request",
    ),
    Bad(
        "lw_sid_number",
        [encode(call(lw=lw(sid=5)))],
        "field 'lw.sid' must be a string",
        code="bad_request",
    ),
    # Unknown events and methods, names starting with "_" (B5, B6).
    Bad("unknown_event", [encode({"event": "EXPLODE"})], "unknown event 'EXPLODE'"),
    Bad(
        "emit_signal_sent_to_the_server",
        [encode({"event": "EMIT_SIGNAL", "signal": "modeChanged", "args": []})],
        "EMIT_SIGNAL is published by servers",
    ),
    Bad(
        "unknown_method",
        [encode(call("nope", lw=lw()))],
        "no method named 'nope'",
        code="not_found",
    ),
    Bad("undeclared_public_method", [encode(call("serve_forever"))], "no method named"),
    Bad(
        "private_method",
        [encode(call("_count", lw=lw()))],
        "'_count' is private and cannot be reached",
        code="not_found",
    ),
    Bad("dunder_method", [encode(call("__init__", None, "tcp://127.0.0.1:1"))], "is private"),
    Bad(
        "unknown_property",
        [encode({"event": "PROPERTY_GET", "property": "nope"})],
        "no RPC property named 'nope'",
    ),
    Bad(
        "private_property_get",
        [encode({"event": "PROPERTY_GET", "property": "_mode"})],
        "'_mode' is private and cannot be reached",
    ),
    Bad(
        "private_property_set",
        [encode({"event": "PROPERTY_SET", "property": "_executed", "value": 0})],
        "'_executed' is private and cannot be reached",
    ),
    Bad(
        "read_only_property_set",
        [encode({"event": "PROPERTY_SET", "property": "counter", "value": 5})],
        "property 'counter' is read-only",
    ),
    # Buffer placeholders and frame counts that do not match (B7).
    Bad(
        "placeholder_without_buffer_frames",
        [encode(call("echo", placeholder(0), lw=lw()))],
        "buffer placeholder refers to missing frame 0",
        code="bad_request",
    ),
    Bad(
        "placeholder_in_a_plain_request",
        [encode(call("echo", {"nested": [placeholder(0)]}))],
        "buffer placeholder refers to missing frame 0",
    ),
    Bad(
        "placeholder_in_a_property_value",
        [
            encode(
                {"event": "PROPERTY_SET", "property": "mode", "value": placeholder(1), "lw": lw()}
            )
        ],
        "buffer placeholder refers to missing frame 1",
        code="bad_request",
    ),
    Bad(
        "placeholder_out_of_range",
        [encode(call("echo", placeholder(5), lw=lw(nbuf=1))), b"abc"],
        "buffer placeholder refers to missing frame 5",
        code="bad_request",
    ),
    Bad(
        "placeholder_index_not_an_integer",
        [encode(call("echo", placeholder("0"), lw=lw(nbuf=1))), b"abc"],
        "buffer placeholder refers to missing frame '0'",
        code="bad_request",
    ),
    Bad(
        "placeholder_of_unknown_kind",
        [encode(call("echo", placeholder(0, "pickle"), lw=lw(nbuf=1))), b"\x80\x04N."],
        "unknown buffer kind 'pickle'",
        code="bad_request",
    ),
    Bad(
        "ndarray_shape_not_matching_its_frame",
        [
            encode(
                call("echo", placeholder(0, "ndarray", dtype="<f8", shape=[100]), lw=lw(nbuf=1))
            ),
            b"abc",
        ],
        "ndarray placeholder does not match its frame",
        code="bad_request",
    ),
    Bad(
        "ndarray_of_python_objects",
        [
            encode(call("echo", placeholder(0, "ndarray", dtype="|O", shape=[1]), lw=lw(nbuf=1))),
            b"\0" * 8,
        ],
        "ndarray placeholder does not match its frame",
        code="bad_request",
    ),
    Bad(
        "nbuf_more_than_frames",
        [encode(call("echo", placeholder(0), lw=lw(nbuf=2))), b"abc"],
        "'lw.nbuf' says 2 buffers but 1 followed",
        code="bad_request",
    ),
    Bad(
        "nbuf_fewer_than_frames",
        [encode(call("echo", 1, lw=lw(nbuf=0))), b"abc"],
        "'lw.nbuf' says 0 buffers but 1 followed",
        code="bad_request",
    ),
    Bad(
        "nbuf_not_an_integer",
        [encode(call("echo", placeholder(0), lw=lw(nbuf="1"))), b"abc"],
        "'lw.nbuf' says '1' buffers but 1 followed",
        code="bad_request",
    ),
]


@pytest.mark.parametrize("bad", BAD, ids=[bad.id for bad in BAD])
def test_bad_message_gets_an_error_reply_naming_the_problem(
    server: Server, raw_dealer: zmq.Socket[Any], bad: Bad
) -> None:
    entered = server.good.executed()
    raw_dealer.send_multipart([b"", *bad.body] if bad.delimited else bad.body)
    reply = recv_reply(raw_dealer)
    if bad.delimited:
        assert reply[0] == b"" and len(reply) == 2, reply[:3]
    else:
        assert len(reply) == 1, reply[:3]
    header = json.loads(reply[-1])
    assert header["success"] is False
    assert bad.error in header["error"], header["error"]
    assert isinstance(header["traceback"], str)
    if bad.code is not None:
        assert header["lw"]["code"] == bad.code
        assert header["lw"]["rid"] == RID
    assert_healthy(server, entered)


def test_deployed_style_req_socket_gets_errors_and_stays_usable(server: Server) -> None:
    entered = server.good.executed()
    req: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.REQ)
    req.linger = 0
    try:
        req.connect(server.endpoint)
        for bad in (b"not json", b'{"event":"METHOD_CALL","method":"_count"}', b"[]"):
            req.send(bad)
            reply = recv_reply(req)
            assert len(reply) == 1 and json.loads(reply[0])["success"] is False
        assert_healthy(server, entered)
        req.send(encode(call("add", 1, 2)))
        assert json.loads(recv_reply(req)[0]) == {"success": True, "result": 3}
    finally:
        req.close()
    assert server.good.executed() == entered + 1


def test_burst_of_bad_messages_then_a_good_one_on_the_same_connection(
    server: Server, raw_dealer: zmq.Socket[Any]
) -> None:
    entered = server.good.executed()
    bodies = [bad.body for bad in BAD if bad.delimited and len(bad.body) < 10]
    for body in bodies:
        raw_dealer.send_multipart([b"", *body])
    raw_dealer.send_multipart([b"", encode(call("echo", "good", lw=lw(rid=RID + 1)))])
    replies = [json.loads(recv_reply(raw_dealer)[-1]) for _ in range(len(bodies) + 1)]
    assert all(reply["success"] is False for reply in replies[:-1])
    assert replies[-1] == [RID + 1, server.good.server_id, "good"]  # a compact success
    assert_healthy(server, entered + 1)


def _oversized_single_frame() -> list[bytes]:
    return [b"", b"x" * (MAX_FRAME_BYTES + 1)]


def _oversized_buffer_frame() -> list[bytes]:
    header = encode(call("echo", placeholder(0), lw=lw(nbuf=1)))
    return [b"", header, b"\0" * (MAX_FRAME_BYTES + 1)]


@pytest.mark.parametrize("frames", [_oversized_single_frame, _oversized_buffer_frame])
def test_oversized_frame_drops_the_connection_and_nothing_else(server: Server, frames: Any) -> None:
    """Frames over ``max_frame_bytes`` hit ZeroMQ's MAXMSGSIZE: the peer is disconnected."""
    entered = server.good.executed()
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    try:
        sock.connect(server.endpoint)
        assert monitor.poll(2000)
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_CONNECTED
        sock.send_multipart(frames())
        assert monitor.poll(2000), "the server kept the connection"
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
        assert not sock.poll(0)  # and no reply came back
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()
    assert_healthy(server, entered)


def _bogus_greeting() -> bytes:
    """A ZMTP 3.0 greeting that names a security mechanism the server does not run."""
    return b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"BOGUS".ljust(20, b"\0") + b"\0" * 32


@pytest.mark.parametrize(
    ("data", "server_hangs_up"),
    [
        pytest.param(b"", False, id="connect_and_close"),
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", False, id="http_request"),
        pytest.param(b"\xff" * 64, False, id="binary_noise"),
        pytest.param(_bogus_greeting(), True, id="unknown_security_mechanism"),
    ],
)
def test_raw_tcp_garbage_leaves_the_server_healthy(
    server: Server, data: bytes, server_hangs_up: bool
) -> None:
    entered = server.good.executed()
    port = int(server.endpoint.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
        raw.sendall(data)
        if server_hangs_up:
            while raw.recv(4096):  # its greeting, perhaps; then end of stream (or a timeout)
                pass
        assert_healthy(server, entered)  # also while this connection is open
    assert_healthy(server, entered)


# --------------------------------------------------------- refusals from labwire's own clients


@pytest.mark.parametrize(
    "value",
    [pytest.param("x" * 5000, id="string"), pytest.param({"k": "x" * 5000}, id="in-a-dict")],
)
def test_a_call_over_a_limit_gets_the_error_at_once_not_a_timeout(
    server: Server, value: Any
) -> None:
    with server.good.override_timeout(30_000):  # a refusal that cannot be routed waits all this
        result = server.good.echo(value)
    assert isinstance(result, NoResult)
    assert result.error_type == "LimitExceeded"
    assert f"longer than {MAX_STRING_CHARS} characters" in result.error
    assert_healthy(server, entered=server.good.executed())


def test_the_asyncio_client_gets_the_same_refusal(server: Server) -> None:
    async def main() -> Any:
        async with AsyncRPCClient(None, server.endpoint, timeout=30_000) as client:
            return await client.call("echo", {"k": "x" * 5000})

    result = asyncio.run(main())
    assert isinstance(result, NoResult)
    assert f"longer than {MAX_STRING_CHARS} characters" in result.error


def process_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def test_a_refused_large_message_is_not_kept_in_memory() -> None:
    device = DeviceProcess("tcp://127.0.0.1:0")
    try:
        with CameraClient(None, device.endpoint) as client:
            for _ in range(100):
                client.add(1)
            baseline = process_rss_bytes(device.pid)
            refused = client.echo("x" * 200_000_000)  # over the 16 MiB JSON frame limit
            assert isinstance(refused, NoResult) and "exceeds" in refused.error
            for _ in range(100):  # quick calls only: nothing rebinds the refused message
                assert client.add(1) == 2
            wait_for(lambda: process_rss_bytes(device.pid) < baseline + 50_000_000)
    finally:
        device.close()
