"""Broker figures against raw pyzmq: messages per second through a thread broker, and signals.

Each figure alternates rounds of labwire and of the raw alternative in the same run:

* throughput: a PUSH sends small messages to a PULL, either directly (raw pyzmq) or through a
  labwire ``ThreadDevice`` STREAMER in this process; both ends are raw pyzmq sockets on a
  context of their own (as in the programs that use a broker), so the ratio is the broker's
  cost alone;
* signal path: an RPC server emits a signal that a subscriber receives through a signal
  broker (XSUB/XPUB ``ThreadDevice``), against the same subscriber connected to the device
  itself; one emission at a time, so the figure is latency.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import zmq

from benchmarks import row
from labwire.brokers import FORWARDER, STREAMER, ThreadDevice
from labwire.rpc import RPCServer, RPCSignal, RPCSignalReceiver

_PAYLOAD = b"x" * 64


def _rate(context: zmq.Context[Any], count: int, urls: tuple[str, str] | None = None) -> float:
    """Messages per second from a PUSH to a PULL.

    Args:
        context: The context of both sockets.
        count: Messages to send.
        urls: Where the PUSH and the PULL connect (a broker's in and out); None: the PULL
            binds and the PUSH connects straight to it (the raw figure).
    """
    sender = context.socket(zmq.PUSH)
    receiver = context.socket(zmq.PULL)
    try:
        for sock in (sender, receiver):
            sock.linger = 0
            sock.sndhwm = sock.rcvhwm = 100_000
        if urls is None:
            receiver.bind("tcp://127.0.0.1:0")
            sender.connect(receiver.last_endpoint.decode())
        else:
            receiver.connect(urls[1])
            sender.connect(urls[0])
        sender.send(b"warm-up")
        receiver.recv()

        def send() -> None:
            for _ in range(count):
                sender.send(_PAYLOAD)

        thread = threading.Thread(target=send)
        start = time.perf_counter()
        thread.start()
        for _ in range(count):
            receiver.recv()
        elapsed = time.perf_counter() - start
        thread.join()
    finally:
        sender.close()
        receiver.close()
    return count / elapsed


def _throughput(quick: bool) -> dict[str, Any]:
    count = 20_000 if quick else 100_000
    rounds = 2 if quick else 12
    # The peers have a context of their own, as programs other than the broker's do.
    context: zmq.Context[Any] = zmq.Context()
    broker = ThreadDevice(STREAMER, zmq.PULL, zmq.PUSH)
    broker.bind_in("tcp://127.0.0.1:0")
    broker.bind_out("tcp://127.0.0.1:0")
    broker.setsockopt_in(zmq.RCVHWM, 100_000)
    broker.setsockopt_out(zmq.SNDHWM, 100_000)
    broker.start()
    labwire_rates, raw_rates = [], []
    try:
        for _ in range(rounds):
            urls = (broker.in_endpoints[0], broker.out_endpoints[0])
            labwire_rates.append(_rate(context, count, urls))
            raw_rates.append(_rate(context, count))
    finally:
        broker.stop()
        context.term()
    measured, raw = statistics.median(labwire_rates), statistics.median(raw_rates)
    # Each labwire round is compared with the raw round right after it, under the same load
    # from the rest of the machine; the ratio is the median of those pairs.
    ratio = statistics.median(lw / r for lw, r in zip(labwire_rates, raw_rates, strict=True))
    return row(
        "broker: 64 B messages through a thread STREAMER",
        measured,
        raw,
        "msg/s",
        ratio,
        ">= 0.8x",
    )


class _Thermometer(RPCServer):
    temperatureChanged = RPCSignal(float)


def _signal_latency(device: _Thermometer, url: str, count: int) -> float:
    """Median seconds from ``emit`` on the device to the slot of a subscriber at ``url``."""
    arrived = threading.Event()
    local = {"temperatureChanged": RPCSignal(float)}
    local["temperatureChanged"].connect(lambda value: arrived.set())
    receiver = RPCSignalReceiver(None, url, local)
    receiver.start()
    try:
        deadline = time.monotonic() + 10
        while not arrived.is_set():  # the subscription travels up first
            if time.monotonic() > deadline:
                raise RuntimeError(f"no signal arrived through {url}")
            device.temperatureChanged.emit(0.0)
            arrived.wait(0.01)
        time.sleep(0.05)
        samples = []
        for index in range(count):
            arrived.clear()
            start = time.perf_counter()
            device.temperatureChanged.emit(float(index))
            if not arrived.wait(2.0):
                raise RuntimeError("a signal was lost")
            samples.append(time.perf_counter() - start)
    finally:
        receiver.close()
    return statistics.median(samples)


def _signal_path(quick: bool) -> dict[str, Any]:
    count = 200 if quick else 2000
    broker = ThreadDevice(FORWARDER, zmq.XSUB, zmq.XPUB)
    broker.bind_in("tcp://127.0.0.1:0")
    broker.bind_out("tcp://127.0.0.1:0")
    broker.start()
    device = _Thermometer(None, "tcp://127.0.0.1:0", signal_broker=broker.in_endpoints[0])
    device.start()
    through, direct = [], []
    try:
        for _ in range(2 if quick else 3):
            through.append(_signal_latency(device, broker.out_endpoints[0], count))
            direct.append(_signal_latency(device, device.signal_endpoint, count))
    finally:
        device.close()
        broker.stop()
    measured, raw = statistics.median(through), statistics.median(direct)
    return row(
        "signal latency device -> broker -> subscriber (raw: subscriber on the device)",
        measured * 1e6,
        raw * 1e6,
        "us",
        measured / raw,
        "-",
    )


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure everything; ``quick`` uses fewer iterations (for a smoke run)."""
    return [_throughput(quick), _signal_path(quick)]


if __name__ == "__main__":
    for row in run():
        print(row)
