"""The asyncio client against a real server: same interface, awaitable proxies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from labwire.errors import CallTimeout, ClosedError, RemoteError, Unavailable
from labwire.rpc import AsyncRPCClient, NoResult, RPCClient
from tests.rpc.conftest import DeviceProcess
from tests.rpc.devices import Camera, CameraInterface

pytestmark = pytest.mark.timeout(30)


@RPCClient.register_interface(CameraInterface)
class AsyncCameraClient(CameraInterface, AsyncRPCClient):
    pass


def test_awaitable_proxies_buffers_and_properties(camera: Camera) -> None:
    async def main() -> None:
        async with AsyncCameraClient(None, camera.endpoint) as client:
            assert await client.add(2, b=3) == 5
            assert await client.sum_buffer(b"\x01\x02\x03") == 6  # a buffer argument
            buffer, info = await client.get_image(lores=True)
            assert bytes(buffer) == bytes(range(256)) * 16 and info["lores"] is True
            array = await client.make_array(2, 2)
            assert isinstance(array, np.ndarray) and array.shape == (2, 2)
            assert await client.mode == "STILL"
            await client.set_property("mode", "VIDEO")
            assert await client.get_property("mode") == "VIDEO"
            assert await client.get_properties() == {"mode": "VIDEO", "counter": 0}
            failure = await client.fail("async failure")
            assert isinstance(failure, NoResult) and "async failure" in failure.error
            with pytest.raises(TypeError, match="set_property"):
                client.mode = "STILL"
            with pytest.raises(RemoteError):
                await client.set_property("counter", 3)

    asyncio.run(main())


def test_concurrent_calls_get_their_own_replies(camera: Camera) -> None:
    async def main() -> None:
        async with AsyncCameraClient(None, camera.endpoint) as client:
            results = await asyncio.gather(*(client.add(i, i) for i in range(200)))
            assert results == [2 * i for i in range(200)]

    asyncio.run(main())


def test_timeout_then_usable_and_late_reply_dropped(camera: Camera) -> None:
    async def main() -> None:
        async with AsyncCameraClient(None, camera.endpoint) as client:
            start = time.monotonic()
            with pytest.raises(CallTimeout):
                await client.sleep(1.0)
            assert time.monotonic() - start < 0.5 + 0.25
            assert await client.add(1) == 2
            deadline = time.monotonic() + 3
            while client.late_replies == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert client.late_replies == 1

    asyncio.run(main())


def test_signals_are_delivered_in_the_event_loop(camera: Camera) -> None:
    async def main() -> None:
        async with AsyncCameraClient(None, camera.endpoint) as client:
            loop = asyncio.get_running_loop()
            got: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()

            def slot(mode: str) -> None:
                got.put_nowait((mode, asyncio.get_running_loop() is loop))

            client.modeChanged.connect(slot)
            while got.empty():
                camera.modeChanged.emit("probe")
                await asyncio.sleep(0.02)
            while not got.empty():
                got.get_nowait()
            await client.set_property("mode", "VIDEO")
            assert await asyncio.wait_for(got.get(), 3) == ("VIDEO", True)

    asyncio.run(main())


async def _received(client: AsyncCameraClient, got: asyncio.Queue[int]) -> int:
    """Emit ``counterChanged`` from the server until an emission reaches ``got``; return it."""
    for _ in range(50):
        await client.emit_many(1)
        try:
            return await asyncio.wait_for(got.get(), 0.1)
        except TimeoutError:
            continue
    raise AssertionError("no signal reached the client")


def test_signals_follow_a_restarted_server(device_process: Callable[..., DeviceProcess]) -> None:
    first = device_process()

    async def main() -> None:
        async with AsyncCameraClient(None, first.endpoint) as client:
            got: asyncio.Queue[int] = asyncio.Queue()
            client.counterChanged.connect(got.put_nowait)
            await _received(client, got)
            old_server = client.server_id

            first.kill()
            crashed = time.monotonic()
            for _ in range(2):  # the first may go out before the client sees the crash
                with pytest.raises(Unavailable):
                    await client.echo("down")  # declared timeout: 10 s
            assert time.monotonic() - crashed < 2.0
            second = device_process(first.endpoint)
            assert await client.add(1, 2) == 3  # notices the restart and follows it
            assert client.server_id != old_server
            while not got.empty():
                got.get_nowait()
            assert await _received(client, got) == await client.counter  # the new server's
            assert (await client.signal_stats())["restarts"] == 1
            second.kill()

    asyncio.run(main())


def test_a_crash_mid_call_ends_the_pending_calls_at_once_and_the_next_call_works(
    device_process: Callable[..., DeviceProcess],
) -> None:
    first = device_process()

    async def main() -> None:
        async with AsyncCameraClient(None, first.endpoint) as client:
            with RPCClient(None, first.endpoint) as observer:
                entered = observer.call("executed")
                calls = [
                    asyncio.ensure_future(client.execute("sleep", {"args": [30]}, timeout=5000))
                    for _ in range(4)  # fewer than the server's runners: the observer is served
                ]
                while observer.call("executed") == entered:
                    await asyncio.sleep(0.01)
            first.kill()
            crashed = time.monotonic()
            # The connection that carried the requests is gone: no need to wait 5 s.
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes
            assert time.monotonic() - crashed < 1.0
            second = device_process(first.endpoint)
            assert await client.add(2, 3) == 5
            second.kill()

    asyncio.run(main())


def test_unreachable_server() -> None:
    async def main() -> None:
        with pytest.raises(Unavailable):
            await AsyncRPCClient.open(None, "tcp://127.0.0.1:1", timeout=3000)

    asyncio.run(main())


def test_many_concurrent_request_loops_on_one_client_never_stall(camera: Camera) -> None:
    async def loop(client: AsyncRPCClient, first: int) -> list[int]:
        return [await client.call("echo", first + i) for i in range(150)]

    async def main() -> list[list[int]]:
        async with AsyncRPCClient(None, camera.endpoint, timeout=2000) as client:
            return await asyncio.gather(*(loop(client, 1000 * k) for k in range(4)))

    results = asyncio.run(main())  # a missed wake-up shows as CallTimeout here
    assert results == [[1000 * k + i for i in range(150)] for k in range(4)]


def test_replies_are_received_by_the_loop_itself_with_no_task_in_between(camera: Camera) -> None:
    async def main() -> None:
        async with AsyncRPCClient(None, camera.endpoint) as client:
            assert await client.call("echo", {"a": [1, 2.5, "x"]}) == {"a": [1, 2.5, "x"]}
            assert await client.get_property("mode") == "STILL"
            assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())


class _ProactorLikeLoop(asyncio.SelectorEventLoop):
    """Refuses the first reader it is asked to watch, as a proactor loop refuses them all.

    pyzmq's own asyncio poll, which the client falls back on, then watches the descriptor (on
    Windows pyzmq brings a selector thread for that).
    """

    refused = 0

    def add_reader(self, fd: Any, callback: Any, *args: Any) -> None:
        if not self.refused:
            self.refused += 1
            raise NotImplementedError
        super().add_reader(fd, callback, *args)


def test_a_loop_that_cannot_watch_descriptors_gets_its_replies_all_the_same(
    camera: Camera,
) -> None:
    async def main() -> list[int]:
        async with AsyncRPCClient(None, camera.endpoint) as client:
            return list(await asyncio.gather(*(client.call("add", i, i) for i in range(50))))

    loop = _ProactorLikeLoop()
    try:
        assert loop.run_until_complete(main()) == [2 * i for i in range(50)]
        assert loop.refused == 1
    finally:
        loop.close()


def test_one_client_serves_one_event_loop_after_another(camera: Camera) -> None:
    client = AsyncRPCClient(None, camera.endpoint)

    async def call(value: int) -> Any:
        return await client.call("echo", value)

    try:
        asyncio.run(client.refresh_inventory())
        assert asyncio.run(call(1)) == 1
        assert asyncio.run(call(2)) == 2
    finally:
        asyncio.run(client.aclose())


def test_closing_the_client_ends_a_pending_call_with_closed_error(camera: Camera) -> None:
    async def main() -> None:
        async with AsyncCameraClient(None, camera.endpoint) as client:
            pending = asyncio.ensure_future(client.call("sleep", 0.3))
            while not client._pending:
                await asyncio.sleep(0.001)
            await client.aclose()
            with pytest.raises(ClosedError):
                await pending

    asyncio.run(main())
