"""transport.waiting (used by the cluster's data links): wake on readiness, drain per burst."""

from __future__ import annotations

import asyncio

import pytest

from labwire.errors import ClosedError
from labwire.transport import SocketType, Transport
from labwire.transport.waiting import POLLIN, POLLOUT, Waker, recv_waiting


def test_waker_wakes_readers_and_writers_and_times_out() -> None:
    async def main() -> None:
        transport = Transport()
        router = transport.bind(SocketType.ROUTER, "tcp://127.0.0.1:0")
        dealer = transport.connect(SocketType.DEALER, router.endpoint, immediate=1)
        readable, writable = Waker(router), Waker(dealer)
        try:
            assert await readable.wait(POLLIN, timeout=0.05) is False
            assert await writable.wait(POLLOUT, timeout=5)  # connected
            waiting = asyncio.ensure_future(readable.wait(POLLIN))
            await asyncio.sleep(0.01)
            for index in range(5):
                dealer.send((b"%d" % index,))
            assert await asyncio.wait_for(waiting, 5)
            got: list[bytes] = []
            while len(got) < 5:
                batch = recv_waiting(router, 3)
                assert len(batch) <= 3
                got += [bytes(frames[1]) for frames in batch]
                if len(got) < 5:
                    await readable.wait(POLLIN, timeout=5)
            assert got == [b"0", b"1", b"2", b"3", b"4"]
            assert recv_waiting(router, 10) == []
        finally:
            readable.close()
            writable.close()
            dealer.close(0)
            router.close(0)
        with pytest.raises(ClosedError):
            recv_waiting(router, 1)

    asyncio.run(main())
