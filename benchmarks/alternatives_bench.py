"""The small call on the libraries labwire is an alternative to, each against raw pyzmq.

Pyro5 (its multiplexing server and marshal serializer, its fastest settings), RPyC and zerorpc
serve the same ``add`` method from subprocesses; their clients run here. Every round measures
raw REQ/REP first, then labwire, then each library, so all see the same machine load; each
ratio is to raw REQ/REP over the same rounds. A library that is not installed gets a row that
says so (``pip install -e '.[bench]'`` installs them all).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import statistics
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import zmq

from benchmarks import row
from benchmarks.peers import SMALL_CALL, peer
from benchmarks.rpc_bench import _latencies
from labwire.rpc import RPCClient

_ROUNDS = 20


@contextmanager
def _pyro5(address: str) -> Iterator[Callable[[], Any]]:
    import Pyro5.api
    from Pyro5 import config

    config.SERIALIZER = "marshal"
    with Pyro5.api.Proxy(address) as proxy:
        yield lambda: proxy.add(1)


@contextmanager
def _rpyc(address: str) -> Iterator[Callable[[], Any]]:
    import rpyc

    connection = rpyc.connect("127.0.0.1", int(address))
    try:
        yield lambda: connection.root.add(1)
    finally:
        connection.close()


@contextmanager
def _zerorpc(address: str) -> Iterator[Callable[[], Any]]:
    import zerorpc

    client = zerorpc.Client(address)
    try:
        yield lambda: client.add(1)
    finally:
        client.close()


#: Library name (as installed) -> (module, peers.py server kind, client).
_LIBRARIES: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "Pyro5": ("Pyro5", "pyro5", _pyro5),
    "rpyc": ("rpyc", "rpyc", _rpyc),
    "zerorpc": ("zerorpc", "zerorpc", _zerorpc),
}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Small-call medians of labwire and each installed library, as ratios to raw REQ/REP."""
    per_round = 100 if quick else 500
    installed = {
        name: spec
        for name, spec in _LIBRARIES.items()
        if importlib.util.find_spec(spec[0]) is not None
    }
    context = zmq.Context()
    with ExitStack() as stack:
        url, _ = stack.enter_context(peer("labwire"))
        raw_ports, _ = stack.enter_context(peer("raw"))
        client = stack.enter_context(RPCClient(None, url))
        req = context.socket(zmq.REQ)
        req.connect(f"tcp://127.0.0.1:{raw_ports.split()[0]}")
        stack.callback(req.close, 0)

        def raw_call() -> None:
            req.send(SMALL_CALL)
            req.recv()

        calls: dict[str, Callable[[], Any]] = {
            "raw": raw_call,
            "labwire": lambda: client.call("add", 1),
        }
        for name, (_, kind, connect) in installed.items():
            address, _ = stack.enter_context(peer(kind))
            calls[name] = stack.enter_context(connect(address))
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(_ROUNDS):
            for name, call in calls.items():
                samples[name] += _latencies(call, per_round)
    context.term()
    raw = statistics.median(samples.pop("raw"))
    rows = []
    for name in ["labwire", *_LIBRARIES]:
        if name not in samples:
            rows.append(row(f"small call median, {name}", "not installed", "-", "us", None, "-"))
            continue
        median = statistics.median(samples[name])
        version = "" if name == "labwire" else " " + importlib.metadata.version(name)
        target = "<= 1.3x" if name == "labwire" else "-"
        rows.append(
            row(
                f"small call median, {name}{version}",
                median * 1e6,
                raw * 1e6,
                "us",
                median / raw,
                target,
            )
        )
    return rows
