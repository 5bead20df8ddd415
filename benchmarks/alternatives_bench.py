"""The call mix on the libraries labwire is an alternative to, each against raw pyzmq.

labwire, Pyro5 (its multiplexing server and marshal serializer, its fastest settings), RPyC
(threaded server, default settings) and zerorpc serve the same device from subprocesses; their
clients run here, one after the other in every round, with raw REQ/REP first, so all see the
same machine load; each ratio is to raw REQ/REP over the same rounds. The rows: the small-call
mix of :mod:`benchmarks.rpc_bench`, a property read and a 1 MiB bytes argument. zerorpc has no
properties, and Pyro5's marshal serializer fails on a remote property read (Pyro5 5.15 sends
its keyword arguments as None), so on those two the property read is a ``get_position()``
call. zerorpc takes no keyword arguments, so
its kwargs row passes the same values by position. RPyC passes dicts and lists by reference
(its default), so its echo sends back a reference rather than the value. A library that is
not installed gets a row that says so (``pip install -e '.[bench]'`` installs them all).

Beside them, informative, not a target: RPC written by hand on pyzmq with no more than a call
needs (``send_json``/``recv_json`` on REQ/REP, dispatch by name; see
:func:`benchmarks.peers.serve_by_hand`), which is what a lab writes without a library.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import zmq

from benchmarks import row
from benchmarks.peers import MIX, PROPERTY_READ, RAW_MIX, RAW_PROPERTY_GET, peer
from labwire.rpc import RPCClient

_ROUNDS = 10
#: Seconds one library may spend on one row in one round (RPyC's kwargs take ~40 ms a call).
_BUDGET = 0.25
BYTES_ROW = "1 MiB bytes argument"
_BY_HAND = "RPC by hand on pyzmq"
_PAYLOAD = bytes(1 << 20)

#: One call per row: row label -> call.
Calls = dict[str, Callable[[], Any]]


def _mix(invoke: Callable[..., Any], read_property: Callable[[], Any]) -> Calls:
    """The rows for a library whose calls look like ``invoke(method, *args, **kwargs)``."""
    calls: Calls = {
        label: (lambda m=method, a=args, k=kwargs: invoke(m, *a, **k))
        for label, (method, args, kwargs) in MIX.items()
    }
    calls[PROPERTY_READ] = read_property
    calls[BYTES_ROW] = lambda: invoke("take", _PAYLOAD)
    return calls


def _latencies(call: Callable[[], Any], count: int) -> list[float]:
    """Up to ``count`` timed calls after a warm-up, stopping early once over :data:`_BUDGET`."""
    call()
    samples: list[float] = []
    end = time.perf_counter() + _BUDGET
    while len(samples) < count and (len(samples) < 3 or time.perf_counter() < end):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


@contextmanager
def _labwire(url: str) -> Iterator[Calls]:
    with RPCClient(None, url) as client:
        yield _mix(client.call, lambda: client.get_property("position"))


@contextmanager
def _pyro5(address: str) -> Iterator[Calls]:
    import Pyro5.api
    from Pyro5 import config

    config.SERIALIZER = "marshal"
    with Pyro5.api.Proxy(address) as proxy:
        yield _mix(
            lambda method, *args, **kwargs: getattr(proxy, method)(*args, **kwargs),
            proxy.get_position,
        )


@contextmanager
def _rpyc(address: str) -> Iterator[Calls]:
    import rpyc

    connection = rpyc.connect("127.0.0.1", int(address))
    try:
        root = connection.root
        yield _mix(
            lambda method, *args, **kwargs: getattr(root, method)(*args, **kwargs),
            lambda: root.position,
        )
    finally:
        connection.close()


@contextmanager
def _zerorpc(address: str) -> Iterator[Calls]:
    import zerorpc

    client = zerorpc.Client(address)
    try:
        # zerorpc has no keyword arguments: they go by position, in the signature's order.
        yield _mix(
            lambda method, *args, **kwargs: getattr(client, method)(*args, *kwargs.values()),
            client.get_position,
        )
    finally:
        client.close()


@contextmanager
def _by_hand(port: str, context: zmq.Context[Any]) -> Iterator[Calls]:
    req = context.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{port}")

    def invoke(method: str, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], bytes):  # a buffer travels as a frame of its own
            call = {"method": method, "args": list(args[1:]), "kwargs": kwargs}
            req.send_multipart([json.dumps(call).encode(), args[0]])
        else:
            req.send_json({"method": method, "args": args, "kwargs": kwargs})
        return req.recv_json()["result"]  # type: ignore[index]

    try:
        yield _mix(invoke, lambda: invoke("get_position"))
    finally:
        req.close(0)


#: Library name (as installed) -> (module, peers.py server kind, client).
_LIBRARIES: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "Pyro5": ("Pyro5", "pyro5", _pyro5),
    "rpyc": ("rpyc", "rpyc", _rpyc),
    "zerorpc": ("zerorpc", "zerorpc", _zerorpc),
}


@contextmanager
def _raw(ports: str, context: zmq.Context[Any]) -> Iterator[Calls]:
    rep_port, *_, sink_port = ports.split()
    req = context.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{rep_port}")
    sink = context.socket(zmq.REQ)
    sink.connect(f"tcp://127.0.0.1:{sink_port}")

    def echo(request: bytes) -> Callable[[], Any]:
        def call() -> None:
            req.send(request)
            req.recv()

        return call

    def send_bytes() -> None:
        sink.send_multipart([b'{"event":"take"}', _PAYLOAD])  # at 1 MiB copying beats zero-copy
        sink.recv()

    try:
        calls = {label: echo(request) for label, request in RAW_MIX.items()}
        calls[PROPERTY_READ] = echo(RAW_PROPERTY_GET)
        calls[BYTES_ROW] = send_bytes
        yield calls
    finally:
        req.close(0)
        sink.close(0)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Medians of every row on labwire and each installed library, as ratios to raw REQ/REP."""
    per_round = 30 if quick else 200
    installed = {
        name: spec
        for name, spec in _LIBRARIES.items()
        if importlib.util.find_spec(spec[0]) is not None
    }
    context = zmq.Context()
    with ExitStack() as stack:
        url, _ = stack.enter_context(peer("labwire"))
        raw_ports, _ = stack.enter_context(peer("raw"))
        by_hand_port, _ = stack.enter_context(peer("by-hand"))
        libraries: dict[str, Calls] = {
            "raw": stack.enter_context(_raw(raw_ports, context)),
            "labwire": stack.enter_context(_labwire(url)),
            _BY_HAND: stack.enter_context(_by_hand(by_hand_port, context)),
        }
        for name, (_, kind, connect) in installed.items():
            address, _ = stack.enter_context(peer(kind))
            libraries[name] = stack.enter_context(connect(address))
        labels = list(libraries["raw"])
        samples: dict[tuple[str, str], list[float]] = {
            (name, label): [] for name in libraries for label in labels
        }
        for _ in range(_ROUNDS):
            for label in labels:
                count = max(3, per_round // 10) if label == BYTES_ROW else per_round
                for name, calls in libraries.items():
                    samples[name, label] += _latencies(calls[label], count)
    context.term()
    rows = []
    for label in labels:
        raw = statistics.median(samples["raw", label])
        medians = {name: statistics.median(samples[name, label]) for name in libraries}
        ahead = [name for name in installed if medians[name] < medians["labwire"]]
        verdict = f"behind {', '.join(ahead)}" if ahead else "ahead of all"
        for name in ["labwire", *_LIBRARIES, _BY_HAND]:
            if name not in libraries:
                rows.append(row(f"{label}, {name}", "not installed", "-", "us", None, "-"))
                continue
            if name == "labwire":
                title, target = f"{label}, labwire ({verdict})", "ahead of all"
            elif name == _BY_HAND:
                title, target = f"{label}, {name}", "-"
            else:
                title, target = f"{label}, {name} {importlib.metadata.version(name)}", "-"
            median = medians[name]
            rows.append(row(title, median * 1e6, raw * 1e6, "us", median / raw, target))
    return rows
