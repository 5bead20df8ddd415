"""Calls, buffers, properties and interfaces between a real server and client on loopback."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

from labwire.config import Settings
from labwire.errors import CallTimeout, EndpointError, NotFound, RemoteError, Unavailable
from labwire.rpc import NoResult, RPCClient, RPCServer
from tests.rpc.conftest import wait_for
from tests.rpc.devices import Camera, CameraClient, CameraInterface

pytestmark = pytest.mark.timeout(30)


def test_json_call_with_args_and_kwargs(client: CameraClient) -> None:
    assert client.add(2, b=5) == 7
    assert client.add(2) == 3
    assert client.echo({"nested": [1, 2.5, "x", None, True]}) == {
        "nested": [1, 2.5, "x", None, True]
    }


def test_interface_signature_is_kept(client: CameraClient) -> None:
    import inspect

    assert list(inspect.signature(CameraClient.add).parameters) == ["self", "a", "b"]
    with pytest.raises(TypeError, match="add"):
        client.add(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        client.add(c=1)  # type: ignore[call-arg]


def test_execute_returns_documented_two_tuple(client: CameraClient) -> None:
    assert client.execute("add", {"args": [1, 2]}) == (3, None)
    buffer, info = client.execute("get_image", {"kwargs": {"lores": True}})
    assert isinstance(buffer, memoryview)
    assert info == {"format": "raw", "size": 4096, "lores": True}
    failure, info = client.execute("fail", {"args": ["bad"]})
    assert isinstance(failure, NoResult) and info is None


def test_buffer_method_returns_zero_copy_buffer_and_info(client: CameraClient) -> None:
    buffer, info = client.get_image()
    assert isinstance(buffer, memoryview)
    assert bytes(buffer) == bytes(range(256)) * 64
    assert info["size"] == 256 * 64


def test_buffers_travel_as_arguments_and_numpy_arrays_keep_dtype_and_shape(
    client: CameraClient,
) -> None:
    payload = np.arange(1000, dtype=np.uint8)
    assert client.sum_buffer(payload) == int(payload.sum())
    assert client.sum_buffer(b"\x01\x02\x03") == 6
    assert client.sum_buffer(memoryview(b"\x05" * 10)) == 50
    array = client.make_array(3, 4)
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.float32 and array.shape == (3, 4)
    assert array[2, 3] == 11.0
    echoed = client.echo(np.eye(2, dtype=np.int16))
    assert echoed.dtype == np.int16 and echoed.tolist() == [[1, 0], [0, 1]]
    assert client.echo(b"raw bytes") == b"raw bytes"


def test_empty_buffers_are_not_taken_for_an_envelope_delimiter(client: CameraClient) -> None:
    """No delimiter frame is sent, unless a buffer's empty frame would look like one."""
    assert client.sum_buffer(b"") == 0
    assert client.sum_buffer(np.zeros(0, dtype=np.uint8)) == 0
    assert client.echo([b"", 1]) == [b"", 1]  # inside a list: the general layout
    assert client.echo([b"a", b"", b"c"]) == [b"a", b"", b"c"]
    assert client.call("echo", value=b"") == b""


def test_remote_failure_is_falsy_noresult_with_type_and_traceback(client: CameraClient) -> None:
    result = client.fail("broken lens")
    assert isinstance(result, NoResult)
    assert not result
    assert result.error_type == "ValueError"
    assert "broken lens" in result.error
    assert "raise ValueError(message)" in result.traceback
    with pytest.raises(RemoteError, match="broken lens"):
        result.raise_error()


def test_raise_errors_option(camera: Camera) -> None:
    with CameraClient(None, camera.endpoint, raise_errors=True) as strict:
        with pytest.raises(RemoteError) as info:
            strict.fail("nope")
        assert info.value.remote_type == "ValueError"
        assert strict.add(1) == 2


def test_unserialisable_result_is_an_error_and_server_keeps_serving(client: CameraClient) -> None:
    result = client.unserialisable()
    assert isinstance(result, NoResult)
    assert "serialisable" in result.error
    assert client.add(1) == 2


def test_only_declared_methods_and_properties_are_reachable(
    camera: Camera, client: CameraClient
) -> None:
    for name in ("_count", "secret", "register_to_registry", "serve_forever", "__init__"):
        result = client.call(name)
        assert isinstance(result, NoResult) and result.code == "not_found", name
    for name in ("secret", "_mode", "endpoint", "port", "_socket"):
        with pytest.raises(NotFound):
            client.get_property(name)
        with pytest.raises(NotFound):
            client.set_property(name, "x")
    assert camera.secret == "not reachable"
    assert client.add(1) == 2


def test_properties_get_set_and_read_only(client: CameraClient) -> None:
    assert client.mode == "STILL"
    client.mode = "VIDEO"
    assert client.mode == "VIDEO"
    with pytest.raises(RemoteError, match="unknown mode"):
        client.mode = "INFRARED"
    with pytest.raises(RemoteError, match="read-only"):
        client.counter = 5
    assert client.get_properties() == {"mode": "VIDEO", "counter": 0}


def test_register_interface_requires_both_bases() -> None:
    with pytest.raises(RuntimeError, match="inherit from both"):

        @RPCClient.register_interface(CameraInterface)
        class NotAClient(CameraInterface):
            pass

    with pytest.raises(RuntimeError, match="inherit from both"):

        @RPCClient.register_interface(CameraInterface)
        class NoInterface(RPCClient):
            pass


def test_inventory_reports_timeouts_and_details(client: CameraClient) -> None:
    inventory = client.inventory()
    assert inventory["json_methods"]["add"] == 2000
    assert inventory["json_methods"]["sleep"] == 500
    assert inventory["buffer_methods"] == {"get_image": 5000}
    assert set(inventory["properties"]) == {"mode", "counter"}
    assert "modeChanged" in inventory["signals"]
    assert inventory["details"]["methods"]["add"]["signature"] == "(a: int, b: int = 1) -> int"
    assert client.is_labwire_server
    assert client.own_address == "127.0.0.1"
    assert client.peer_address == "127.0.0.1"


def test_timeout_ends_on_time_and_client_stays_usable(camera: Camera) -> None:
    with CameraClient(None, camera.endpoint) as proxy:
        start = time.monotonic()
        with pytest.raises(CallTimeout) as info:
            proxy.sleep(1.0)
        elapsed = time.monotonic() - start
        assert isinstance(info.value, TimeoutError)
        assert 0.5 <= elapsed < 0.5 + 0.25
        assert proxy.add(40, 2) == 42  # the late reply of sleep() is not returned here
        wait_for(lambda: proxy.add(0) == 1 and proxy.late_replies == 1, timeout=3)


def test_per_call_timeout_override(client: CameraClient) -> None:
    with client.override_timeout(2000):
        assert client.sleep(0.7) == 0.7
    with pytest.raises(CallTimeout):
        client.execute("add", {"args": [1]}, timeout=0)
    assert client.execute("sleep", {"args": [0.6]}, timeout=1500) == (0.6, None)


def test_slow_method_does_not_block_property_reads_or_other_clients(camera: Camera) -> None:
    with CameraClient(None, camera.endpoint) as slow, CameraClient(None, camera.endpoint) as fast:
        done = threading.Event()

        def run_slow() -> None:
            with slow.override_timeout(5000):
                slow.sleep(1.5)
            done.set()

        worker = threading.Thread(target=run_slow)
        worker.start()
        wait_for(lambda: any(started is not None for started in camera._pool.jobs.values()))
        start = time.monotonic()
        for _ in range(20):
            assert fast.mode == "STILL"
            assert fast.add(1) == 2
        assert time.monotonic() - start < 0.5
        assert not done.is_set()
        worker.join(5)
        assert done.is_set()


def test_serialize_calls_runs_methods_one_at_a_time() -> None:
    server = Camera(None, "tcp://127.0.0.1:0", serialize_calls=True).start()
    try:
        with CameraClient(None, server.endpoint) as a, CameraClient(None, server.endpoint) as b:
            results: list[float] = []

            def call(client: CameraClient) -> None:
                start = time.monotonic()
                with client.override_timeout(3000):
                    client.sleep(0.3)
                results.append(time.monotonic() - start)

            threads = [threading.Thread(target=call, args=(c,)) for c in (a, b)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(5)
            assert max(results) >= 0.55  # the second waited for the first
            assert a.mode == "STILL"  # reads are not serialised
    finally:
        server.close()


def test_eight_threads_share_one_client(client: CameraClient) -> None:
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(100):
                assert client.add(k * 1000, i) == k * 1000 + i
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors


def test_ipc_endpoint(tmp_path: Any) -> None:
    server = Camera(None, f"ipc://{tmp_path}/camera.sock").start()
    try:
        with CameraClient(None, server.endpoint) as proxy:
            assert proxy.add(1, 1) == 2
            received: list[str] = []
            proxy.modeChanged.connect(received.append)
            wait_for(lambda: _subscribed(server, proxy))
            received.clear()
            proxy.mode = "VIDEO"
            wait_for(lambda: received == ["VIDEO"])
    finally:
        server.close()


def _subscribed(server: Camera, proxy: CameraClient) -> bool:
    """Emit a probe and see whether the client receives it (subscriptions are asynchronous)."""
    before = proxy.signal_stats()["received"]
    server.modeChanged.emit(server.mode)
    time.sleep(0.02)
    return proxy.signal_stats()["received"] > before


def test_unreachable_server_raises_unavailable_by_the_deadline() -> None:
    start = time.monotonic()
    with pytest.raises(Unavailable):
        RPCClient(None, "tcp://127.0.0.1:1", timeout=5000)
    assert time.monotonic() - start < 6


def test_bad_urls_are_refused_clearly() -> None:
    for url in ("tcp://127.0.0.1:5555:5555", "tcp://:5555", "http://x:1", "tcp://host"):
        with pytest.raises(EndpointError):
            RPCClient(None, url)
    with pytest.raises(EndpointError):
        RPCServer(None, "tcp://127.0.0.1:99999")


def test_hostname_with_hyphen_and_ipv6_loopback() -> None:
    server = Camera(None, "tcp://[::1]:0").start()
    try:
        with CameraClient(None, server.endpoint) as proxy:
            assert proxy.add(2) == 3
    finally:
        server.close()
    server = Camera(None, "tcp://127.0.0.1:0").start()
    try:
        url = server.endpoint.replace("127.0.0.1", "localhost")
        with CameraClient(None, url) as proxy:
            assert proxy.add(2) == 3
    finally:
        server.close()


def test_remote_stop_server(camera: Camera) -> None:
    with CameraClient(None, camera.endpoint) as proxy:
        assert proxy.stop_server()
    assert camera.wait_stopped(2)


class _StopsItself(RPCServer):
    @RPCServer.register_method_json(timeout=5000)
    def stop_then_work(self, seconds: float) -> str:
        self.stop_server()
        time.sleep(seconds)  # longer than the takeover time: the socket changes hands
        return "done"


def test_a_stop_asked_while_a_slow_handler_runs_still_shuts_the_server_down() -> None:
    server = _StopsItself(None, "tcp://127.0.0.1:0").start()
    try:
        # Stopped before it could reply: the caller learns that the server went away.
        with RPCClient(None, server.endpoint) as proxy, pytest.raises((Unavailable, CallTimeout)):
            proxy.call("stop_then_work", 0.2)
        assert server.wait_stopped(3)
    finally:
        server.close()


def test_close_is_prompt_with_call_pending_to_dead_server() -> None:
    server = Camera(None, "tcp://127.0.0.1:0").start()
    proxy = CameraClient(None, server.endpoint)
    server.close()
    with pytest.raises((Unavailable, CallTimeout)):
        proxy.add(1)
    start = time.monotonic()
    proxy.close()
    assert time.monotonic() - start < 1.0


class _KeepsFrames(RPCServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[Any] = []

    @RPCServer.register_method_json()
    def take(self, data: memoryview) -> int:
        self.frames.append(data.obj)  # the received frame the argument is a view of
        return len(data)


def test_the_server_lets_go_of_a_request_once_it_is_answered() -> None:
    # A large request must not stay alive while the server waits for the next one (before, it
    # did until the next request or the idle wake-up: a heartbeat interval, 30 s here).
    settings = Settings(heartbeat_ivl_ms=30_000, heartbeat_timeout_ms=90_000)
    server = _KeepsFrames(None, "tcp://127.0.0.1:0", settings=settings).start()
    try:
        with RPCClient(None, server.endpoint) as proxy:
            assert proxy.call("take", memoryview(bytearray(1 << 20))) == 1 << 20
            frame = server.frames.pop()
            # Held only here (getrefcount counts its own argument too).
            wait_for(lambda: sys.getrefcount(frame) == 2, timeout=10.0)
    finally:
        server.close()
