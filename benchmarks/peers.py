"""Benchmark processes, run as subprocesses: ``python -m benchmarks.peers ROLE [ARGS]``.

Servers (``labwire``, ``raw``, ``by-hand``, ``pyro5``, ``rpyc``, ``zerorpc``, ``registry``)
print their endpoint(s) on the first line, then serve until they receive SIGTERM. Subscribers
(``sub-labwire``, ``sub-raw``) and callers (``worker-labwire``, ``worker-raw``) print
``ready``, then one JSON line per burst or per command read from stdin. Idle clients
(``idle-labwire``, ``idle-raw``) make one call, print ``ready`` and wait.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import zmq

from labwire.config import Settings
from labwire.rpc import RPCClient, RPCProperty, RPCServer, RPCSignal


def raw_request(method: str, args: list[Any], kwargs: dict[str, Any]) -> bytes:
    """The JSON request a deployed client sends for ``method(*args, **kwargs)``."""
    request = {"event": "METHOD_CALL", "method": method, "params": {"args": args, "kwargs": kwargs}}
    return json.dumps(request, separators=(",", ":")).encode()


#: The representative mix of small calls: row label -> (method, args, kwargs).
MIX: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    "scalar add(1)": ("add", (1,), {}),
    "small dict echo": ("echo", ({"a": 1, "b": "text"},), {}),
    "100 floats echo": ("echo", ([i * 0.25 for i in range(100)],), {}),
    "1 kB string echo": ("echo", ("x" * 1024,), {}),
    "kwargs move(x=, y=, speed=)": ("move", (), {"x": 1.0, "y": 2.0, "speed": 0.5}),
}
#: The raw REQ/REP counterpart of each row of :data:`MIX`, echoed by the raw server.
RAW_MIX = {label: raw_request(m, list(a), k) for label, (m, a, k) in MIX.items()}
PROPERTY_READ = "property read"
RAW_PROPERTY_GET = b'{"event":"PROPERTY_GET","property":"position"}'
SMALL_CALL = RAW_MIX["scalar add(1)"]
BLOBS = {size: memoryview(bytearray(size)) for size in (1 << 20, 64 << 20)}
#: Signal values: -1 is a readiness probe, LATENCY_BASE + k the k-th latency probe.
PROBE_VALUE = -1
LATENCY_BASE = 1_000_000
QUIET_SECONDS = 1.0


@contextmanager
def peer(kind: str, *args: str) -> Iterator[tuple[str, int]]:
    """Run ``python -m benchmarks.peers KIND``; yields its first line and its process id."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.peers", kind, *args], stdout=subprocess.PIPE, text=True
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
        if process.stdout is not None:
            process.stdout.close()


class BenchDevice(RPCServer):
    tick = RPCSignal(int)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._position = [0.0, 0.0]

    @RPCServer.register_method_json()
    def add(self, a: int, b: int = 1) -> int:
        return a + b

    @RPCServer.register_method_json()
    def echo(self, value: Any) -> Any:
        return value

    @RPCServer.register_method_json()
    def move(self, x: float, y: float, speed: float = 1.0) -> list[float]:
        self._position = [x, y]
        return self._position

    @RPCProperty
    def position(self) -> list[float]:
        return self._position

    @RPCServer.register_method_json(timeout=30000)
    def take(self, data: Any) -> int:
        return len(data)

    @RPCServer.register_method_buffer(timeout=30000)
    def blob(self, size: int) -> tuple[memoryview, dict[str, Any]]:
        return BLOBS[size], {"size": size}

    @RPCServer.register_method_json(timeout=60000)
    def emit(self, count: int, start: int = 0) -> int:
        for i in range(start, start + count):
            self.tick.emit(i)
        return count

    @RPCServer.register_method_json()
    def probe(self) -> None:
        self.tick.emit(PROBE_VALUE)


def serve_labwire() -> None:
    server = BenchDevice(None, "tcp://127.0.0.1:0", settings=Settings(signal_hwm=100_000))
    signal.signal(signal.SIGTERM, lambda *_: server.stop_server())
    print(server.endpoint, flush=True)
    server.serve_forever()


def _tick(value: int) -> bytes:
    return b'{"signal":"tick","args":[%d]}' % value


def serve_raw() -> None:
    """Raw pyzmq peers, each in the tightest loop raw pyzmq allows, on a thread of its own.

    A REP echo, a ROUTER echo, a blob REP (N zero bytes for the request "N", zero-copy), a sink
    REP that answers a multipart request with the size of its last frame, and a REP that fires
    the PUB socket on command.
    No poller: a thread blocks in ``recv`` exactly as a single-socket raw server does (the idle
    threads hold no GIL), so each comparison is with raw pyzmq at its fastest. SIGTERM ends
    the process. The first line lists the ports: rep router blob pub control sink.
    """
    context = zmq.Context()

    def bound(kind: int) -> tuple[zmq.Socket[bytes], int]:
        sock = context.socket(kind)
        sock.sndhwm = 100_000  # before binding: a listener copies the options it has then
        return sock, sock.bind_to_random_port("tcp://127.0.0.1")

    (rep, rep_port), (router, router_port) = bound(zmq.REP), bound(zmq.ROUTER)
    (blob, blob_port), (control, control_port) = bound(zmq.REP), bound(zmq.REP)
    (sink, sink_port), (pub, pub_port) = bound(zmq.REP), bound(zmq.PUB)

    def echo() -> None:
        while True:
            rep.send(rep.recv())

    def route() -> None:
        while True:
            router.send_multipart(router.recv_multipart())  # copying is faster for small frames

    def blobs() -> None:
        while True:
            size = int(blob.recv())
            if size not in BLOBS:
                BLOBS[size] = memoryview(bytearray(size))
            blob.send(BLOBS[size], copy=False)

    def sinks() -> None:
        while True:
            frames = sink.recv_multipart(copy=False)
            sink.send(b"%d" % len(frames[-1].buffer))

    def publish() -> None:
        while True:
            command = control.recv().split()
            control.send(b"ok")
            if command[0] == b"PROBE":
                pub.send(_tick(PROBE_VALUE))
            else:  # b"PUB count start"
                start = int(command[2])
                for i in range(start, start + int(command[1])):
                    pub.send(_tick(i))

    for loop in (echo, route, blobs, sinks, publish):
        threading.Thread(target=loop, daemon=True).start()
    print(f"{rep_port} {router_port} {blob_port} {pub_port} {control_port} {sink_port}", flush=True)
    while True:
        signal.pause()  # SIGTERM's default action ends the process


class PlainDevice:
    """The benchmark device as a plain class: Pyro5 and zerorpc serve it as it is."""

    def __init__(self) -> None:
        self._position = [0.0, 0.0]

    def add(self, a: int, b: int = 1) -> int:
        return a + b

    def echo(self, value: Any) -> Any:
        return value

    def move(self, x: float, y: float, speed: float = 1.0) -> list[float]:
        self._position = [x, y]
        return self._position

    def get_position(self) -> list[float]:
        return self._position

    def take(self, data: Any) -> int:
        return len(data)


def serve_by_hand() -> None:
    """RPC written by hand on pyzmq, as a lab writes it without a library: no more than it needs.

    A REP socket takes ``{"method", "args", "kwargs"}`` as JSON (``recv_json``'s encoding:
    the standard library's), calls that method of a :class:`PlainDevice` and answers
    ``{"result": ...}``; a frame after the request is the first argument (the bytes row).
    No errors, timeouts, limits, request ids or properties (the property read is a call of
    ``get_position``). SIGTERM ends the process.
    """
    context = zmq.Context()
    rep = context.socket(zmq.REP)
    print(rep.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    device = PlainDevice()
    while True:
        request, *buffers = rep.recv_multipart()
        call = json.loads(request)
        result = getattr(device, call["method"])(*buffers, *call["args"], **call["kwargs"])
        rep.send_json({"result": result})


def serve_pyro5() -> None:
    """Pyro5 at its fastest settings: the multiplexing server and the marshal serializer."""
    import Pyro5.api
    from Pyro5 import config

    config.SERVERTYPE = "multiplex"
    config.SERIALIZER = "marshal"

    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    print(daemon.register(Pyro5.api.expose(PlainDevice)(), "device"), flush=True)
    daemon.requestLoop()


def serve_rpyc() -> None:
    """An RPyC service on its threaded server, with its default settings."""
    import rpyc
    from rpyc.utils.server import ThreadedServer

    class Device(rpyc.Service):  # type: ignore[misc]
        def __init__(self) -> None:
            self._position = [0.0, 0.0]

        def exposed_add(self, a: int, b: int = 1) -> int:
            return a + b

        def exposed_echo(self, value: Any) -> Any:
            return value

        def exposed_move(self, x: float, y: float, speed: float = 1.0) -> list[float]:
            self._position = [x, y]
            return self._position

        @property
        def exposed_position(self) -> list[float]:
            return self._position

        def exposed_take(self, data: Any) -> int:
            return len(data)

    server = ThreadedServer(Device(), hostname="127.0.0.1", port=0)
    print(server.port, flush=True)
    server.start()


def serve_zerorpc() -> None:
    """A zerorpc server (msgpack over ZeroMQ, on gevent); it has no properties or kwargs."""
    import zerorpc

    with socket.socket() as probe:  # a free port; zerorpc reports no bound endpoint
        probe.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    server = zerorpc.Server(PlainDevice())
    server.bind(endpoint)
    print(endpoint, flush=True)
    server.run()


def serve_registry() -> None:
    """A labwire DeviceRegistry whose leases outlast the run (no renewals needed)."""
    from labwire.registry import DeviceRegistry

    registry = DeviceRegistry(None, "127.0.0.1", "0", default_alive_timeout=3600.0)
    registry.start()
    print(registry.url, flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not stopping.is_set():
        signal.pause()
    registry.stop()


# --------------------------------------------------------------------------- subscribers


class _Counter:
    """Counts bursts of ticks; prints one JSON report per burst once the ticks stop.

    Report fields: ``received`` (burst ticks), ``seconds`` (first to last burst tick),
    ``index_gaps`` (ticks missing from the run of payload indices), ``gaps`` (what the
    protocol reported: labwire's sequence-number gaps, else ``index_gaps``), ``arrivals``
    (latency probe number -> arrival time on the system-wide monotonic clock).
    """

    def __init__(self, gaps: Callable[[], int] | None) -> None:
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.gaps = gaps
        self._reset()

    def _reset(self) -> None:
        self.received = 0
        self.first = self.last = 0.0
        self.expected = -1
        self.index_gaps = 0
        self.arrivals: dict[int, float] = {}

    def on_tick(self, value: int) -> None:
        now = time.perf_counter()
        if value == PROBE_VALUE:
            if not self.ready.is_set():
                self.ready.set()
                print("ready", flush=True)
            return
        with self.lock:
            self.last = now
            if value >= LATENCY_BASE:
                self.arrivals[value - LATENCY_BASE] = now
                return
            if not self.received:
                self.first = now
            elif value > self.expected:
                self.index_gaps += value - self.expected
            self.expected = value + 1
            self.received += 1

    def report_bursts(self, alive: Callable[[], bool]) -> None:
        self.ready.wait()
        reported = self.gaps() if self.gaps else 0
        while alive():
            time.sleep(0.05)
            with self.lock:
                if not self.received or time.perf_counter() - self.last < QUIET_SECONDS:
                    continue
                total = self.gaps() if self.gaps else 0
                report = {
                    "received": self.received,
                    "seconds": self.last - self.first,
                    "index_gaps": self.index_gaps,
                    "gaps": total - reported if self.gaps else self.index_gaps,
                    "arrivals": self.arrivals,
                }
                reported = total
                self._reset()
            print(json.dumps(report), flush=True)


def _stdin_open() -> Callable[[], bool]:
    """A flag that turns False once stdin closes (the parent ends a subscriber that way)."""
    open_ = threading.Event()
    open_.set()

    def watch() -> None:
        sys.stdin.read()
        open_.clear()

    threading.Thread(target=watch, daemon=True).start()
    return open_.is_set


def subscribe_labwire(url: str) -> None:
    """A labwire client whose slot counts ticks, reporting each burst."""

    class Client(RPCClient):
        tick = RPCSignal(int)

    with Client(None, url, settings=Settings(signal_hwm=100_000)) as client:
        counter = _Counter(lambda: client.signal_stats()["gaps"])
        client.tick.connect(counter.on_tick)
        counter.report_bursts(_stdin_open())


def subscribe_raw(port: str) -> None:
    """A raw SUB socket that counts ticks by their payload index, reporting each burst."""
    counter = _Counter(None)
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.rcvhwm = 100_000
    sub.connect(f"tcp://127.0.0.1:{port}")
    sub.subscribe(b'{"signal":"tick",')
    done = threading.Event()
    start = len(b'{"signal":"tick","args":[')

    def consume() -> None:
        while not done.is_set():
            if sub.poll(50):
                counter.on_tick(int(sub.recv()[start:-2]))

    thread = threading.Thread(target=consume)
    thread.start()
    counter.report_bursts(_stdin_open())
    done.set()
    thread.join()
    context.destroy(linger=0)


# --------------------------------------------------------------------------- callers


def _serve_commands(call: Callable[[int], Any]) -> None:
    """Warm up, print ``ready``; for each stdin line N make N calls and report them."""
    for i in range(50):
        call(i)
    print("ready", flush=True)
    for line in sys.stdin:
        count = int(line)
        latencies = []
        start = time.perf_counter()
        for i in range(count):
            before = time.perf_counter()
            call(i)
            latencies.append(time.perf_counter() - before)
        end = time.perf_counter()
        report = {"start": start, "end": end, "median": statistics.median(latencies)}
        print(json.dumps(report), flush=True)


def work_labwire(url: str) -> None:
    """A caller process making ``add(i)`` calls through its own RPCClient (a DEALER)."""
    with RPCClient(None, url) as client:
        _serve_commands(lambda i: client.call("add", i))


def work_raw(port: str) -> None:
    """A caller process making the same request on a raw DEALER to the ROUTER echo."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")

    def call(_: int) -> None:
        dealer.send_multipart([b"", SMALL_CALL])
        dealer.recv_multipart()

    _serve_commands(call)
    dealer.close(0)
    context.term()


def idle_labwire(url: str) -> None:
    """An idle labwire client: one call, a slot on the tick signal, then nothing."""

    class Client(RPCClient):
        tick = RPCSignal(int)

    with Client(None, url) as client:
        client.call("add", 1)
        client.tick.connect(lambda value: None)
        print("ready", flush=True)
        sys.stdin.read()


def idle_raw(port: str) -> None:
    """An idle raw REQ client: one round trip to the REP echo, then nothing."""
    context = zmq.Context()
    req = context.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{port}")
    req.send(SMALL_CALL)
    req.recv()
    print("ready", flush=True)
    sys.stdin.read()
    req.close(0)
    context.term()


if __name__ == "__main__":
    role, *arguments = sys.argv[1:]
    {
        "labwire": serve_labwire,
        "raw": serve_raw,
        "by-hand": serve_by_hand,
        "pyro5": serve_pyro5,
        "rpyc": serve_rpyc,
        "zerorpc": serve_zerorpc,
        "registry": serve_registry,
        "sub-labwire": subscribe_labwire,
        "sub-raw": subscribe_raw,
        "worker-labwire": work_labwire,
        "worker-raw": work_raw,
        "idle-labwire": idle_labwire,
        "idle-raw": idle_raw,
    }[role](*arguments)
