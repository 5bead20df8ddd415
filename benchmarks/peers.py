"""Benchmark servers, run as subprocesses: ``python -m benchmarks.peers KIND``.

Each prints its endpoint(s) on the first line, then serves until it receives SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

import zmq

from labwire.config import Settings
from labwire.rpc import RPCServer, RPCSignal

BLOBS = {size: memoryview(bytearray(size)) for size in (1 << 20, 64 << 20)}


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


def serve_labwire() -> None:
    server = BenchDevice(None, "tcp://127.0.0.1:0", settings=Settings(signal_hwm=100_000))
    signal.signal(signal.SIGTERM, lambda *_: server.stop_server())
    print(server.endpoint, flush=True)
    server.serve_forever()


def serve_raw() -> None:
    """Raw pyzmq peers: REP echo, ROUTER echo, blob REP (zero-copy), PUB on command."""
    context = zmq.Context()
    rep = context.socket(zmq.REP)
    rep_port = rep.bind_to_random_port("tcp://127.0.0.1")
    router = context.socket(zmq.ROUTER)
    router_port = router.bind_to_random_port("tcp://127.0.0.1")
    blob = context.socket(zmq.REP)
    blob_port = blob.bind_to_random_port("tcp://127.0.0.1")
    pub = context.socket(zmq.PUB)
    pub.sndhwm = 100_000
    pub_port = pub.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"{rep_port} {router_port} {blob_port} {pub_port}", flush=True)
    poller = zmq.Poller()
    for sock in (rep, router, blob):
        poller.register(sock, zmq.POLLIN)
    while not stop.is_set():
        for sock, _ in poller.poll(100):
            if sock is rep:
                message = rep.recv()
                if message.startswith(b"PUB"):
                    count = int(message.split()[1])
                    rep.send(b"ok")
                    for i in range(count):
                        pub.send(b'{"signal":"tick","args":[%d]}' % i)
                else:
                    rep.send(message)
            elif sock is router:
                router.send_multipart(router.recv_multipart(copy=False), copy=False)
            else:
                size = int(blob.recv())
                blob.send(BLOBS[size], copy=False)
    time.sleep(0.1)
    context.destroy(linger=0)


if __name__ == "__main__":
    {"labwire": serve_labwire, "raw": serve_raw}[sys.argv[1]]()
