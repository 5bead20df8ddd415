"""Benchmark servers, run as subprocesses: ``python -m benchmarks.peers KIND``.

Each prints its endpoint(s) on the first line, then serves until it receives SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import zmq

from labwire.config import Settings
from labwire.rpc import RPCClient, RPCServer, RPCSignal

#: The raw REQ/REP small call: the request a deployed client sends for ``add(1)``.
SMALL_CALL = b'{"event":"METHOD_CALL","method":"add","params":{"args":[1],"kwargs":{}}}'
BLOBS = {size: memoryview(bytearray(size)) for size in (1 << 20, 64 << 20)}
PROBE = b'{"signal":"tick","args":[-1]}'
QUIET_SECONDS = 1.0


@contextmanager
def peer(kind: str) -> Iterator[tuple[str, int]]:
    """Run ``python -m benchmarks.peers KIND``; yields its first line and its process id."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.peers", kind], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip(), process.pid
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class BenchDevice(RPCServer):
    tick = RPCSignal(int)

    @RPCServer.register_method_json()
    def add(self, a: int, b: int = 1) -> int:
        return a + b

    @RPCServer.register_method_buffer(timeout=30000)
    def blob(self, size: int) -> tuple[memoryview, dict[str, Any]]:
        return BLOBS[size], {"size": size}

    @RPCServer.register_method_json(timeout=60000)
    def emit(self, count: int) -> int:
        for i in range(count):
            self.tick.emit(i)
        return count

    @RPCServer.register_method_json()
    def probe(self) -> None:
        self.tick.emit(-1)


def serve_labwire() -> None:
    server = BenchDevice(None, "tcp://127.0.0.1:0", settings=Settings(signal_hwm=100_000))
    signal.signal(signal.SIGTERM, lambda *_: server.stop_server())
    print(server.endpoint, flush=True)
    server.serve_forever()


def serve_raw() -> None:
    """Raw pyzmq peers, each in the tightest loop raw pyzmq allows, on a thread of its own.

    A REP echo, a ROUTER echo, a blob REP (zero-copy) and a REP that fires the PUB socket on
    command. No poller: a thread blocks in ``recv`` exactly as a single-socket raw server does
    (the idle threads hold no GIL), so each comparison is with raw pyzmq at its fastest.
    SIGTERM ends the process.
    """
    context = zmq.Context()

    def bound(kind: int) -> tuple[zmq.Socket[bytes], int]:
        sock = context.socket(kind)
        return sock, sock.bind_to_random_port("tcp://127.0.0.1")

    (rep, rep_port), (router, router_port) = bound(zmq.REP), bound(zmq.ROUTER)
    (blob, blob_port), (control, control_port) = bound(zmq.REP), bound(zmq.REP)
    pub, pub_port = bound(zmq.PUB)
    pub.sndhwm = 100_000

    def echo() -> None:
        while True:
            rep.send(rep.recv())

    def route() -> None:
        while True:
            router.send_multipart(router.recv_multipart(copy=False), copy=False)

    def blobs() -> None:
        while True:
            blob.send(BLOBS[int(blob.recv())], copy=False)

    def publish() -> None:
        while True:
            command = control.recv()
            control.send(b"ok")
            if command == b"PROBE":
                pub.send(PROBE)
            else:  # b"PUB count"
                for i in range(int(command.split()[1])):
                    pub.send(b'{"signal":"tick","args":[%d]}' % i)

    for loop in (echo, route, blobs, publish):
        threading.Thread(target=loop, daemon=True).start()
    print(f"{rep_port} {router_port} {blob_port} {pub_port} {control_port}", flush=True)
    while True:
        signal.pause()  # SIGTERM's default action ends the process


def serve_pyro5() -> None:
    """Pyro5 at its fastest settings: the multiplexing server and the marshal serializer."""
    import Pyro5.api
    from Pyro5 import config

    config.SERVERTYPE = "multiplex"
    config.SERIALIZER = "marshal"

    @Pyro5.api.expose
    class Device:
        def add(self, a: int, b: int = 1) -> int:
            return a + b

    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    print(daemon.register(Device(), "device"), flush=True)
    daemon.requestLoop()


def serve_rpyc() -> None:
    """An RPyC service on its threaded server, with its default settings."""
    import rpyc
    from rpyc.utils.server import ThreadedServer

    class Device(rpyc.Service):  # type: ignore[misc]
        def exposed_add(self, a: int, b: int = 1) -> int:
            return a + b

    server = ThreadedServer(Device, hostname="127.0.0.1", port=0)
    print(server.port, flush=True)
    server.start()


def serve_zerorpc() -> None:
    """A zerorpc server (msgpack over ZeroMQ, on gevent)."""
    import zerorpc

    class Device:
        def add(self, a: int, b: int = 1) -> int:
            return a + b

    with socket.socket() as probe:  # a free port; zerorpc reports no bound endpoint
        probe.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    server = zerorpc.Server(Device())
    server.bind(endpoint)
    print(endpoint, flush=True)
    server.run()


class _Counter:
    """Counts a burst of ticks; a probe (-1) only announces that the subscriber is ready."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.received = 0
        self.first = 0.0
        self.last = 0.0

    def on_tick(self, value: int) -> None:
        if value < 0:
            if not self.ready.is_set():
                self.ready.set()
                print("ready", flush=True)
            return
        now = time.perf_counter()
        if not self.received:
            self.first = now
        self.received += 1
        self.last = now

    def report_when_quiet(self, gaps: Callable[[], int]) -> None:
        self.ready.wait()
        while not self.received or time.perf_counter() - self.last < QUIET_SECONDS:
            time.sleep(0.05)
        print(f"{self.received} {self.last - self.first} {gaps()}", flush=True)


def subscribe_labwire(url: str) -> None:
    """A labwire client whose slot counts ticks; prints "received seconds gaps" when quiet."""
    counter = _Counter()

    class Client(RPCClient):
        tick = RPCSignal(int)

    with Client(None, url, settings=Settings(signal_hwm=100_000)) as client:
        client.tick.connect(counter.on_tick)
        counter.report_when_quiet(lambda: client.signal_stats()["gaps"])


def subscribe_raw(port: str) -> None:
    """A raw SUB socket that counts messages; prints "received seconds 0" when quiet."""
    counter = _Counter()
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.rcvhwm = 100_000
    sub.connect(f"tcp://127.0.0.1:{port}")
    sub.subscribe(b'{"signal":"tick",')
    done = threading.Event()

    def consume() -> None:
        while not done.is_set():
            if sub.poll(50):
                counter.on_tick(-1 if sub.recv() == PROBE else 0)

    thread = threading.Thread(target=consume)
    thread.start()
    counter.report_when_quiet(lambda: 0)
    done.set()
    thread.join()
    context.destroy(linger=0)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    {
        "labwire": serve_labwire,
        "raw": serve_raw,
        "pyro5": serve_pyro5,
        "rpyc": serve_rpyc,
        "zerorpc": serve_zerorpc,
        "sub-labwire": subscribe_labwire,
        "sub-raw": subscribe_raw,
    }[role](*args)
