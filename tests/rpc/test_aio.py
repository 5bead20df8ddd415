"""The asyncio client against a real server: same interface, awaitable proxies."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from labwire.errors import CallTimeout, RemoteError, Unavailable
from labwire.rpc import AsyncRPCClient, NoResult, RPCClient
from tests.rpc.devices import Camera, CameraInterface

pytestmark = pytest.mark.timeout(30)


@RPCClient.register_interface(CameraInterface)
class AsyncCameraClient(CameraInterface, AsyncRPCClient):
    pass


def test_awaitable_proxies_buffers_and_properties(camera: Camera) -> None:
    async def main() -> None:
        async with AsyncCameraClient(None, camera.endpoint) as client:
            assert await client.add(2, b=3) == 5
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
