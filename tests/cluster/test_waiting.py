"""transport.waiting (used by the cluster's data links): wake on readiness, drain per burst."""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import zmq

from labwire.errors import ClosedError
from labwire.transport import Socket, SocketType, Transport
from labwire.transport.waiting import POLLIN, POLLOUT, Waker, recv_waiting


@contextmanager
def _linked() -> Iterator[tuple[Socket, Socket, Waker, Waker]]:
    """A ROUTER, a DEALER connected to it, and a Waker on each (closed on the way out)."""
    transport = Transport()
    router = transport.bind(SocketType.ROUTER, "tcp://127.0.0.1:0")
    dealer = transport.connect(SocketType.DEALER, router.endpoint, immediate=1)
    router_waker, dealer_waker = Waker(router), Waker(dealer)
    try:
        yield router, dealer, router_waker, dealer_waker
    finally:
        router_waker.close()
        dealer_waker.close()
        dealer.close(0)
        router.close(0)


def test_waker_wakes_readers_and_writers_and_times_out() -> None:
    async def main() -> None:
        with _linked() as (router, dealer, readable, writable):
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
        with pytest.raises(ClosedError):
            recv_waiting(router, 1)

    asyncio.run(main())


def test_a_send_while_a_reader_waits_does_not_swallow_its_wake() -> None:
    # A send processes the socket's pending commands, among them "a message arrived": the
    # descriptor's one signal is then consumed, and the reader must be woken by the sender.
    async def main() -> None:
        with _linked() as (router, dealer, router_waker, waker):
            assert await waker.wait(POLLOUT, timeout=5)
            dealer.send((b"hello",))
            assert await router_waker.wait(POLLIN, timeout=5)
            identity = bytes(recv_waiting(router, 1)[0][0])
            reading = asyncio.ensure_future(waker.wait(POLLIN))
            await asyncio.sleep(0)  # the reader now waits on the descriptor
            router.send((identity, b"answer"))
            # Without the loop looking: the descriptor signals once the answer has arrived.
            descriptor = dealer.fileno().getsockopt(zmq.FD)
            assert select.select([descriptor], [], [], 5)[0]
            time.sleep(0.01)  # a send processes commands only if ~1 ms passed since it last did
            dealer.send((b"more",))  # on the loop's thread, before the loop looks again
            waker.kick()  # what every send on a watched socket does
            assert await asyncio.wait_for(reading, 2)
            assert [bytes(frames[0]) for frames in recv_waiting(dealer, 5)] == [b"answer"]

    asyncio.run(main())
