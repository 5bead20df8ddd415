"""Proxies copy traffic to a monitor socket; monitored queues tag the copies, ROUTER to ROUTER."""

from __future__ import annotations

import pytest
import zmq

from labwire.brokers import (
    ProcessMonitoredQueue,
    ProcessProxy,
    SideCounts,
    Statistics,
    ThreadMonitoredQueue,
    ThreadProxy,
)
from tests.brokers.conftest import Peers, wait_for


def subscribed(peers: Peers, url: str) -> zmq.Socket:  # type: ignore[type-arg]
    return peers.connect(zmq.SUB, url, subscribe=b"")


@pytest.mark.parametrize("cls", [ThreadProxy, ProcessProxy])
def test_proxy_copies_every_message_to_the_monitor(cls: type[ThreadProxy], peers: Peers) -> None:
    proxy = cls(zmq.PULL, zmq.PUSH, zmq.PUSH)
    proxy.bind_in("tcp://127.0.0.1:0")
    proxy.bind_out("tcp://127.0.0.1:0")
    monitor, url = peers.bind(zmq.PULL)
    proxy.connect_mon(url)
    with proxy:
        producer = peers.connect(zmq.PUSH, proxy.in_endpoints[0])
        consumer = peers.connect(zmq.PULL, proxy.out_endpoints[0])
        for number in range(20):
            producer.send_multipart([b"m", bytes([number])])
        assert [consumer.recv_multipart() for _ in range(20)] == [
            [b"m", bytes([n])] for n in range(20)
        ]
        assert [monitor.recv_multipart() for _ in range(20)] == [
            [b"m", bytes([n])] for n in range(20)
        ]


@pytest.mark.parametrize("cls", [ThreadMonitoredQueue, ProcessMonitoredQueue])
def test_router_to_router_queue_tags_copies_and_counts_exactly(
    cls: type[ThreadMonitoredQueue], peers: Peers
) -> None:
    queue = cls(zmq.ROUTER, zmq.ROUTER, zmq.PUB, b"to-worker", b"to-client")
    queue.bind_in("tcp://127.0.0.1:0")
    queue.bind_out("tcp://127.0.0.1:0")
    queue.bind_mon("tcp://127.0.0.1:0")
    with queue:
        monitor = subscribed(peers, queue.mon_endpoints[0])
        client = peers.connect(zmq.DEALER, queue.in_endpoints[0], routing_id=b"client")
        worker = peers.connect(zmq.DEALER, queue.out_endpoints[0], routing_id=b"worker")
        # The ROUTERs learn the peers' ids once they are connected, and the monitor's
        # subscription takes a moment too: say hello until a copy shows.
        hellos = [0]

        def hello() -> bool:
            worker.send_multipart([b"client", b"hello"])
            hellos[0] += 1
            return monitor.poll(20) != 0

        client.send_multipart([b"nobody", b"unroutable: dropped by the out ROUTER"])
        wait_for(lambda: queue.statistics().in_side.frames_received == 3)  # client known
        wait_for(hello)
        for _ in range(hellos[0]):
            assert client.recv_multipart() == [b"worker", b"hello"]
        wait_for(lambda: queue.statistics().in_side.frames_sent == 3 * hellos[0])
        while monitor.poll(100):
            monitor.recv_multipart()
        before = queue.statistics()

        client.send_multipart([b"worker", b"request"])
        assert worker.recv_multipart() == [b"client", b"request"]
        worker.send_multipart([b"client", b"reply"])
        assert client.recv_multipart() == [b"worker", b"reply"]
        assert monitor.recv_multipart() == [b"to-worker", b"worker", b"client", b"request"]
        assert monitor.recv_multipart() == [b"to-client", b"client", b"worker", b"reply"]

        after = queue.statistics()
        request, reply = 6 + 6 + 7, 6 + 6 + 5
        assert after.in_side.frames_received - before.in_side.frames_received == 3
        assert after.in_side.bytes_received - before.in_side.bytes_received == request
        assert after.out_side.bytes_sent - before.out_side.bytes_sent == request
        assert after.out_side.bytes_received - before.out_side.bytes_received == reply
        assert after.in_side.bytes_sent - before.in_side.bytes_sent == reply
    final = queue.statistics()
    assert final == after


def test_monitored_queue_never_waits_for_its_monitor(peers: Peers) -> None:
    queue = ThreadMonitoredQueue(zmq.PULL, zmq.PUSH, zmq.PUSH)
    queue.bind_in("tcp://127.0.0.1:0")
    queue.bind_out("tcp://127.0.0.1:0")
    queue.bind_mon("tcp://127.0.0.1:0")  # nobody reads the copies
    queue.setsockopt_mon(zmq.SNDHWM, 5)
    with queue:
        producer = peers.connect(zmq.PUSH, queue.in_endpoints[0])
        consumer = peers.connect(zmq.PULL, queue.out_endpoints[0])
        for number in range(500):
            producer.send(number.to_bytes(2, "big"))
        assert [consumer.recv() for _ in range(500)] == [n.to_bytes(2, "big") for n in range(500)]
        assert queue.statistics() == Statistics(
            SideCounts(500, 1000, 0, 0), SideCounts(0, 0, 500, 1000)
        )
