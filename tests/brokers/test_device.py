"""Each device type with real traffic, in a thread and in a process (fork and spawn)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
import zmq

from labwire.brokers import (
    FORWARDER,
    QUEUE,
    STREAMER,
    Device,
    ProcessDevice,
    SideCounts,
    Statistics,
    ThreadDevice,
    ThreadMonitoredQueue,
)
from labwire.errors import ClosedError, TransportError
from tests.brokers.conftest import Peers, wait_for

LAUNCHERS = ["thread", "fork", "spawn"]


def make(launcher: str, device_type: int, in_type: int, out_type: int) -> ThreadDevice:
    if launcher == "thread":
        return ThreadDevice(device_type, in_type, out_type)
    if launcher == "monitored":  # the Python relay loop, with a capture nobody reads
        queue = ThreadMonitoredQueue(in_type, out_type, zmq.PUB)
        queue.bind_mon("tcp://127.0.0.1:0")
        return queue
    device = ProcessDevice(device_type, in_type, out_type)
    device.start_method = launcher
    return device


def started(device: Device) -> Device:
    device.bind_in("tcp://127.0.0.1:0")
    device.bind_out("tcp://127.0.0.1:0")
    device.start()
    return device


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_streamer_relays_and_counts_exactly(launcher: str, peers: Peers) -> None:
    device = started(make(launcher, STREAMER, zmq.PULL, zmq.PUSH))
    try:
        assert device.in_endpoints[0].startswith("tcp://127.0.0.1:")
        assert not device.in_endpoints[0].endswith(":0")
        producer = peers.connect(zmq.PUSH, device.in_endpoints[0])
        consumer = peers.connect(zmq.PULL, device.out_endpoints[0])
        for number in range(50):
            producer.send_multipart([b"part", str(number).encode()])
        got = [consumer.recv_multipart() for _ in range(50)]
        assert got == [[b"part", str(n).encode()] for n in range(50)]
        size = sum(4 + len(str(n)) for n in range(50))
        expected = Statistics(SideCounts(100, size, 0, 0), SideCounts(0, 0, 100, size))
        assert device.statistics() == expected
    finally:
        device.stop()
    assert device.done
    assert not device.launcher.is_alive()
    assert device.statistics() == expected


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_queue_between_clients_and_workers(launcher: str, peers: Peers) -> None:
    device = started(make(launcher, QUEUE, zmq.ROUTER, zmq.DEALER))
    try:
        worker = peers.connect(zmq.REP, device.out_endpoints[0])
        clients = [peers.connect(zmq.REQ, device.in_endpoints[0]) for _ in range(3)]

        def serve() -> None:
            for _ in range(6):
                worker.send(b"done:" + worker.recv())

        server = threading.Thread(target=serve)
        server.start()
        for round_ in range(2):
            for index, client in enumerate(clients):
                client.send(f"job{round_}{index}".encode())
            for index, client in enumerate(clients):
                assert client.recv() == f"done:job{round_}{index}".encode()
        server.join(5)
        stats = device.statistics()
        assert stats.in_side.frames_received == stats.out_side.frames_sent
        assert stats.out_side.frames_received == stats.in_side.frames_sent
        assert stats.in_side.frames_received == 6 * 3  # routing id, empty delimiter, body
    finally:
        device.stop()


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_forwarder_carries_subscriptions_and_messages(launcher: str, peers: Peers) -> None:
    device = started(make(launcher, FORWARDER, zmq.XSUB, zmq.XPUB))
    try:
        publisher = peers.connect(zmq.PUB, device.in_endpoints[0])
        subscriber = peers.connect(zmq.SUB, device.out_endpoints[0], subscribe=b"temp")
        got: list[bytes] = []

        def arrived() -> bool:
            publisher.send(b"noise")
            publisher.send(b"temp 21")
            if subscriber.poll(20):
                got.append(subscriber.recv())
            return bool(got)

        wait_for(arrived)
        assert got == [b"temp 21"]  # the subscription travelled up: no noise came down
        assert device.statistics().out_side.frames_received >= 1  # the subscription itself
    finally:
        device.stop()


def test_foreground_device_runs_in_the_caller_until_stopped(peers: Peers) -> None:
    device = Device(STREAMER, zmq.PULL, zmq.PUSH)
    device.bind_in("tcp://127.0.0.1:0")
    device.bind_out("tcp://127.0.0.1:0")
    runner = threading.Thread(target=device.start)
    runner.start()
    wait_for(lambda: device.in_endpoints)
    producer = peers.connect(zmq.PUSH, device.in_endpoints[0])
    consumer = peers.connect(zmq.PULL, device.out_endpoints[0])
    producer.send(b"x")
    assert consumer.recv() == b"x"
    device.stop()
    runner.join(5)
    assert not runner.is_alive()
    assert device.done


def test_single_socket_device_echoes(peers: Peers) -> None:
    device = ThreadDevice(QUEUE, zmq.REP, -1)
    device.bind_in("tcp://127.0.0.1:0")
    with device:
        assert device.out_endpoints == device.in_endpoints
        client = peers.connect(zmq.REQ, device.in_endpoints[0])
        client.send(b"ping")
        assert client.recv() == b"ping"
    assert device.done


@pytest.mark.parametrize("launcher", ["thread", "fork"])
def test_context_manager_starts_and_stops(launcher: str, peers: Peers) -> None:
    device = make(launcher, STREAMER, zmq.PULL, zmq.PUSH)
    device.bind_in("tcp://127.0.0.1:0")
    device.connect_out(peers.bind(zmq.PULL)[1])
    with device:
        assert device.launcher.is_alive()
    assert device.done
    assert not device.launcher.is_alive()


@pytest.mark.parametrize("launcher", ["thread", "fork", "monitored"])
def test_stop_under_load_is_prompt_and_leaves_other_sockets_alone(
    launcher: str, peers: Peers
) -> None:
    device = started(make(launcher, STREAMER, zmq.PULL, zmq.PUSH))
    neighbour, url = peers.bind(zmq.PAIR, "inproc://neighbour")
    other = peers.connect(zmq.PAIR, url)
    producer = peers.connect(zmq.PUSH, device.in_endpoints[0], sndhwm=100)
    slow = peers.connect(zmq.PULL, device.out_endpoints[0], rcvhwm=10)
    running = threading.Event()
    done = threading.Event()

    def flood() -> None:
        payload = b"y" * 512
        while not done.is_set():
            try:
                producer.send(payload, zmq.NOBLOCK)
                running.set()
            except zmq.Again:
                time.sleep(0.001)

    sender = threading.Thread(target=flood)
    sender.start()
    try:
        running.wait(5)
        slow.recv()  # traffic flows, then backs up behind the slow consumer
        wait_for(lambda: device.statistics().in_side.frames_received > 10)
        device.stop()
        assert not device.launcher.is_alive()
    finally:
        done.set()
        sender.join(5)
    other.send(b"still here")  # the shared context was not terminated
    assert neighbour.recv() == b"still here"


def test_stop_while_both_ends_are_busy(peers: Peers) -> None:
    device = started(make("thread", STREAMER, zmq.PULL, zmq.PUSH))
    producer = peers.connect(zmq.PUSH, device.in_endpoints[0])
    consumer = peers.connect(zmq.PULL, device.out_endpoints[0])
    done = threading.Event()
    received = [0]

    def consume() -> None:
        while not done.is_set():
            if consumer.poll(10):
                consumer.recv()
                received[0] += 1

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        for _ in range(2000):
            producer.send(b"z" * 64)
        wait_for(lambda: received[0] > 100)
        device.stop()
        assert not device.launcher.is_alive()
        assert device.statistics().in_side.frames_received >= received[0]
    finally:
        done.set()
        reader.join(5)


def test_started_once_and_configured_before_start(peers: Peers) -> None:
    device = started(make("thread", STREAMER, zmq.PULL, zmq.PUSH))
    try:
        with pytest.raises(ClosedError, match="only once"):
            device.start()
        with pytest.raises(ClosedError, match="before start"):
            device.bind_in("tcp://127.0.0.1:0")
    finally:
        device.stop()
        device.stop()  # idempotent
    with pytest.raises(ClosedError):
        device.start()


def test_stop_before_start_and_statistics_before_start() -> None:
    device: Any = ThreadDevice(STREAMER, zmq.PULL, zmq.PUSH)
    assert device.statistics() == Statistics()
    assert device.in_endpoints == []
    device.stop()
    device.bind_in("tcp://127.0.0.1:0")  # harmless, but it will never start
    with pytest.raises(ClosedError, match="stopped"):
        device.start()


def test_a_killed_broker_process_is_seen_and_stop_still_returns(peers: Peers) -> None:
    device = started(make("fork", STREAMER, zmq.PULL, zmq.PUSH))
    os.kill(device.launcher.pid, signal.SIGKILL)
    wait_for(lambda: device.done)
    with pytest.raises(TransportError, match="did not report"):
        device.statistics()
    device.stop()
    assert device.statistics() == Statistics()


def test_router_to_router_queue_swaps_routing_ids(peers: Peers) -> None:
    device = started(make("thread", QUEUE, zmq.ROUTER, zmq.ROUTER))
    try:
        client = peers.connect(zmq.DEALER, device.in_endpoints[0], routing_id=b"c1")
        worker = peers.connect(zmq.DEALER, device.out_endpoints[0], routing_id=b"w1")
        client.send_multipart([b"nobody", b"makes the in ROUTER learn the client"])
        wait_for(lambda: device.statistics().in_side.frames_received == 3)

        def greeted() -> bool:
            worker.send_multipart([b"c1", b"ready"])
            return client.poll(20) != 0

        wait_for(greeted)
        while client.poll(50):
            assert client.recv_multipart() == [b"w1", b"ready"]
        client.send_multipart([b"w1", b"job"])
        assert worker.recv_multipart() == [b"c1", b"job"]
    finally:
        device.stop()


def test_a_frozen_broker_process_is_killed_by_stop(peers: Peers) -> None:
    device = started(make("fork", STREAMER, zmq.PULL, zmq.PUSH))
    os.kill(device.launcher.pid, signal.SIGSTOP)
    device.stop()
    assert not device.launcher.is_alive()
    assert device.done


@pytest.mark.parametrize(("launcher", "cycles"), [("thread", 500), ("fork", 50)])
def test_start_stop_churn_leaves_no_descriptors_or_threads(launcher: str, cycles: int) -> None:
    def cycle() -> None:
        device = started(make(launcher, STREAMER, zmq.PULL, zmq.PUSH))
        device.stop()

    cycle()  # the first one makes the process-wide context and its threads
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for _ in range(cycles):
        cycle()
    wait_for(lambda: len(os.listdir("/proc/self/fd")) <= fds + 2)
    assert threading.active_count() <= threads + 2
