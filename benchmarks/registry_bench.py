"""Registry benchmark: 2,000 devices renewing every second; lookups; watch latency.

Set-up, all in separate processes:

* a labwire DeviceRegistry holding 2,000 leases (alive_timeout 5 s);
* a plain pyzmq ROUTER echo server (the raw counterpart);
* a few load processes (not 2,000). Each registers its share of the devices, then every
  second renews each of them once with CHECK_ALIVE, spread evenly over the second, AND sends
  the same number of equal-sized requests to the raw server. Both servers therefore carry the
  same load at the same time.

Measured:

* CPU share of each server process over a window (user + system time, all its threads);
* lookup latency: ``RegistryClient.lookup(name)`` against one plain pyzmq REQ round trip to
  the raw server, alternated one by one so both see the same machine;
* time for a watcher (``RegistryClient.watch()``) to see a removal, from the moment the
  UNREGISTER is sent, next to the same raw round trip;
* renewals that went unanswered or were refused (must be 0).

Run alone: ``python benchmarks/registry_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import zmq

DEVICES = 2000
LOAD_PROCESSES = 4
ALIVE_TIMEOUT = 5.0
TICKS_PER_SECOND = 50
CPU_TARGET = 25.0  # % of one core
LOOKUP_TARGET = 2.0  # x raw round trip

_SCRIPT = str(Path(__file__).resolve())


# --------------------------------------------------------------------------- child roles


def _on_sigterm() -> list[bool]:
    stopping = [False]

    def stop(*_: object) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop)
    return stopping


def _serve_raw() -> None:
    """A plain ROUTER that answers every request with a fixed small ACK, in a tight loop.

    It blocks in ``recv`` (no poller), as a single-socket raw server does; SIGTERM's default
    action ends the process.
    """
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(f"READY tcp://127.0.0.1:{port}", flush=True)
    reply = json.dumps(
        {"event": "ACK", "payload": {"req_event": "CHECK_ALIVE", "success": True}}
    ).encode()
    while True:
        frames = router.recv_multipart()
        router.send_multipart([*frames[:-1], reply])


def _serve_registry() -> None:
    import logging

    from labwire.registry import DeviceRegistry

    logging.basicConfig(level=logging.WARNING)
    registry = DeviceRegistry(None, "127.0.0.1", "0", heartbeat_interval=1.0)
    registry.start()
    print(f"READY {registry.url}", flush=True)
    stopping = _on_sigterm()
    while not stopping[0]:
        signal.pause()
    registry.stop()


def _generate_load(registry_url: str, raw_url: str, count: int, offset: int) -> None:
    """Register ``count`` devices, then renew each every second; mirror the load to raw."""
    context = zmq.Context.instance()
    sockets = []
    for url in (registry_url, raw_url):
        dealer = context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.sndhwm = dealer.rcvhwm = 100_000
        dealer.connect(url)
        sockets.append(dealer)
    registry, raw = sockets
    for index in range(count):
        payload = {
            "device_type": "bench",
            "addr": f"tcp://127.0.0.1:{10000 + offset + index}",
            "name": f"bench-{offset + index}",
            "overwrite": True,
            "alive_timeout": ALIVE_TIMEOUT,
        }
        registry.send_multipart(
            [b"", json.dumps({"event": "REGISTER", "payload": payload}).encode()]
        )
    uuids: list[str] = []
    while len(uuids) < count:
        if not registry.poll(10_000):
            raise SystemExit("the registry did not acknowledge the registrations")
        uuids.append(json.loads(registry.recv_multipart()[-1])["payload"]["uuid"])
    requests = [
        json.dumps(
            {"event": "CHECK_ALIVE", "payload": {"uuid": u, "alive_timeout": ALIVE_TIMEOUT}}
        ).encode()
        for u in uuids
    ]
    print("LOADING", flush=True)
    stopping = _on_sigterm()
    poller = zmq.Poller()
    for dealer in sockets:
        poller.register(dealer, zmq.POLLIN)
    per_tick = max(1, count // TICKS_PER_SECOND)
    tick = 1.0 / TICKS_PER_SECOND
    sent = answered = refused = 0
    cursor = 0
    next_tick = time.monotonic()
    while not stopping[0]:
        for _ in range(per_tick):
            registry.send_multipart([b"", requests[cursor]], flags=zmq.NOBLOCK)
            raw.send_multipart([b"", requests[cursor]], flags=zmq.NOBLOCK)
            cursor = (cursor + 1) % count
            sent += 1
        next_tick += tick
        while (timeout := next_tick - time.monotonic()) > 0:
            for dealer, _ in poller.poll(int(timeout * 1000) + 1):
                while True:
                    try:
                        frames = dealer.recv_multipart(flags=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if dealer is registry:
                        answered += 1
                        refused += b'"success":true' not in frames[-1]
    # replies still in flight when we stop are collected for a moment
    deadline = time.monotonic() + 1.0
    while answered < sent and registry.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        frames = registry.recv_multipart()
        answered += 1
        refused += b'"success":true' not in frames[-1]
    print(f"DONE {sent} {answered} {refused}", flush=True)


# --------------------------------------------------------------------------- orchestration


class _Child:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, _SCRIPT, *args], stdout=subprocess.PIPE, text=True
        )

    def expect(self, word: str) -> list[str]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            fields = line.split()
            if fields and fields[0] == word:
                return fields[1:]
        raise RuntimeError(f"child {self.process.args} exited before {word}")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> list[str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output.split()


@contextmanager
def _loaded() -> Iterator[tuple[_Child, str, _Child, str, list[_Child]]]:
    registry, raw = _Child("registry"), _Child("raw")
    loads: list[_Child] = []
    try:
        registry_url, raw_url = registry.expect("READY")[0], raw.expect("READY")[0]
        share = DEVICES // LOAD_PROCESSES
        loads = [
            _Child("load", registry_url, raw_url, str(share), str(index * share))
            for index in range(LOAD_PROCESSES)
        ]
        for load in loads:
            load.expect("LOADING")
        yield registry, registry_url, raw, raw_url, loads
    finally:
        for child in (*loads, registry, raw):
            child.stop()


def _cpu_shares(children: Sequence[_Child], seconds: float) -> list[float]:
    start = time.monotonic()
    before = [child.cpu_seconds() for child in children]
    time.sleep(seconds)  # the measurement window (not a settle delay)
    elapsed = time.monotonic() - start
    return [100.0 * (c.cpu_seconds() - b) / elapsed for c, b in zip(children, before, strict=True)]


def _raw_round_trip(req: zmq.Socket[Any], message: bytes) -> float:
    start = time.perf_counter()
    req.send(message)
    req.recv()
    return time.perf_counter() - start


def _interleaved_lookups(
    registry_url: str, raw_url: str, count: int
) -> tuple[list[float], list[float]]:
    """Alternate one raw REQ round trip and one lookup, so both see the same machine."""
    from labwire.registry import RegistryClient

    req = zmq.Context.instance().socket(zmq.REQ)
    req.linger = 0
    req.connect(raw_url)
    message = json.dumps({"event": "LIST_DEVICES", "payload": {"name": "bench-1234"}}).encode()
    names = [f"bench-{random.randrange(DEVICES)}" for _ in range(count + 50)]
    raw: list[float] = []
    lookups: list[float] = []
    try:
        with RegistryClient(registry_url) as client:
            for name in names:
                raw.append(_raw_round_trip(req, message))
                start = time.perf_counter()
                client.lookup(name)
                lookups.append(time.perf_counter() - start)
    finally:
        req.close()
    return raw[50:], lookups[50:]


def _removal_latencies(
    registry_url: str, raw_url: str, count: int
) -> tuple[list[float], list[float]]:
    from labwire.registry import (
        RegistryClient,
        WatchEventKind,
        register_device,
        unregister_device,
    )

    req = zmq.Context.instance().socket(zmq.REQ)
    req.linger = 0
    req.connect(raw_url)
    message = json.dumps({"event": "UNREGISTER", "payload": {"uuid": "x" * 36}}).encode()
    raw: list[float] = []
    removals: list[float] = []
    try:
        with RegistryClient(registry_url) as client, client.watch() as watch:
            watch.next_event(5)
            for index in range(count):
                name = f"victim-{index}"
                granted = register_device(None, "victim", "tcp://127.0.0.1:9", name, registry_url)
                assert isinstance(granted, tuple)
                while (event := watch.next_event(5)) is not None:
                    if event.kind == WatchEventKind.ADDED:
                        break
                raw.append(_raw_round_trip(req, message))
                start = time.perf_counter()
                unregister_device(None, granted[1], registry_url)
                while (event := watch.next_event(5)) is not None:
                    if event.kind == WatchEventKind.REMOVED and event.device is not None:
                        removals.append(time.perf_counter() - start)
                        break
    finally:
        req.close()
    return raw, removals


def _p(values: Sequence[float], quantile: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * quantile))]


def _row(
    name: str, labwire: float, raw: float, unit: str, target: str, scale: float = 1e6
) -> dict[str, Any]:
    return {
        "name": name,
        "measured": round(labwire * scale, 1),
        "raw": round(raw * scale, 1),
        "unit": unit,
        "ratio": round(labwire / raw, 2) if raw else float("inf"),
        "target": target,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the benchmark.

    Args:
        quick: Shorter measurement window and fewer samples.

    Returns:
        One row per figure with keys name, measured (labwire's figure), raw, unit, ratio,
        target.
    """
    window = 3.0 if quick else 10.0
    samples = 500 if quick else 3000
    removals = 20 if quick else 100
    with _loaded() as (registry, registry_url, raw, raw_url, loads):
        registry_cpu, raw_cpu = _cpu_shares([registry, raw], window)
        raw_rtt, lookups = _interleaved_lookups(registry_url, raw_url, samples)
        removal_raw, removal = _removal_latencies(registry_url, raw_url, removals)
        stats = [load.stop() for load in loads]
    lost = sum(int(s[1]) - int(s[2]) + int(s[3]) for s in stats if s and s[0] == "DONE")
    return [
        _row(
            f"registry CPU, {DEVICES} devices renewing every 1 s (raw: same load on a ROUTER echo)",
            registry_cpu,
            raw_cpu,
            "% of one core",
            f"< {CPU_TARGET:g}% of one core",
            scale=1.0,
        ),
        _row(
            "lookup by name p50 (raw: REQ/REP round trip, same load)",
            _p(lookups, 0.5),
            _p(raw_rtt, 0.5),
            "us",
            f"<= {LOOKUP_TARGET:g}x raw",
        ),
        _row(
            "lookup by name p99 (raw: REQ/REP round trip, same load)",
            _p(lookups, 0.99),
            _p(raw_rtt, 0.99),
            "us",
            "informational",
        ),
        _row(
            "watcher sees a removal p50, from UNREGISTER sent (raw: one round trip)",
            _p(removal, 0.5),
            _p(removal_raw, 0.5),
            "us",
            "informational",
        ),
        {
            "name": "renewals unanswered or refused during the run",
            "measured": float(lost),
            "raw": 0.0,
            "unit": "requests",
            "ratio": float(lost),
            "target": "0",
        },
    ]


def _main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "raw":
        _serve_raw()
    elif args and args[0] == "registry":
        _serve_registry()
    elif args and args[0] == "load":
        _generate_load(args[1], args[2], int(args[3]), int(args[4]))
    else:
        parser = argparse.ArgumentParser(description="registry benchmark")
        parser.add_argument("--quick", action="store_true")
        options = parser.parse_args(args)
        for row in run(options.quick):
            print(json.dumps(row))


if __name__ == "__main__":
    _main()
