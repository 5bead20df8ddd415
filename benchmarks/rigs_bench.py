"""Rig coordination against raw pyzmq: one push to 8 rigs, replies collated.

Each of 8 peer subprocesses (one per rig, as each rig is its own PC) serves a labwire rig
service (on labwire's transport and on the deployed UDP protocol) and a raw pyzmq REP socket.
Here, alternating in short rounds so both see the same machine load:
``Auxiliaries.push(..., wait=True)`` to the 8 rigs, and the raw baseline: one REQ round trip
per rig, the 8 requests sent before the 8 replies are read.

    python -m benchmarks.rigs_bench [--quick]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from benchmarks import row
from labwire.rigs import Auxiliaries

RIGS = 8
_ROUNDS = 20


def _serve_peer() -> None:
    """A peer process: one rig service and one raw REP socket, until stdin closes."""
    from labwire.rigs import RigService

    rig = RigService("rig", udp="udp://127.0.0.1:0", url="tcp://127.0.0.1:0").start()
    context = zmq.Context()
    rep = context.socket(zmq.REP)
    rep.bind("tcp://127.0.0.1:*")
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            if rep.poll(100):
                rep.send(rep.recv())
        rep.close(linger=0)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    ready = {
        "tcp": [rig.endpoint],
        "udp": [rig.udp_endpoint],
        "raw": [rep.getsockopt(zmq.LAST_ENDPOINT).decode()],
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    stop.set()
    thread.join(2)
    rig.close()
    context.term()


def _samples(call: Callable[[], Any], count: int) -> list[float]:
    call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure a push to 8 rigs over each link against raw round trips."""
    pushes = 100 if quick else 1000
    peers = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.rigs_bench", "--peer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(RIGS)
    ]
    context = zmq.Context()
    try:
        endpoints: dict[str, list[str]] = {"tcp": [], "udp": [], "raw": []}
        for peer in peers:
            assert peer.stdout is not None
            for key, values in json.loads(peer.stdout.readline()).items():
                endpoints[key] += values
        reqs = []
        for url in endpoints["raw"]:
            req = context.socket(zmq.REQ)
            req.connect(url)
            reqs.append(req)
        message = b"[32,0]"

        def raw_round() -> None:
            for req in reqs:
                req.send(message)
            for req in reqs:
                req.recv()

        rows = []
        for link in ("tcp", "udp"):
            clients = {f"rig{i}": url for i, url in enumerate(endpoints[link])}
            with Auxiliaries(clients) as rigs:

                def push(rigs: Auxiliaries = rigs) -> None:
                    replies = rigs.push("EXPSTATUS", 0, wait=True)
                    assert isinstance(replies, dict) and len(replies) == RIGS, replies

                lw: list[float] = []
                raw: list[float] = []
                for _ in range(_ROUNDS):
                    raw += _samples(raw_round, pushes // _ROUNDS)
                    lw += _samples(push, pushes // _ROUNDS)
            lw_med, raw_med = statistics.median(lw), statistics.median(raw)
            label = "labwire transport" if link == "tcp" else "deployed UDP"
            rows.append(
                row(
                    f"push to {RIGS} rigs, {label}, median",
                    lw_med * 1e6,
                    raw_med * 1e6,
                    "us",
                    lw_med / raw_med,
                    "-",
                )
            )
        return rows
    finally:
        context.destroy(linger=0)
        for peer in peers:
            if peer.stdin is not None:
                peer.stdin.close()
        for peer in peers:
            try:
                peer.wait(5)
            except subprocess.TimeoutExpired:
                peer.kill()
                peer.wait(5)
            if peer.stdout is not None:
                peer.stdout.close()


if __name__ == "__main__":
    if "--peer" in sys.argv:
        _serve_peer()
    else:
        for row in run(quick="--quick" in sys.argv):
            print(row)
