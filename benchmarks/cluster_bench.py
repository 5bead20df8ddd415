"""Peer cluster figures against raw pyzmq: publish rate, request round trip, discovery time.

Publishers and clients run here; subscribers and servers run in subprocesses (this module is
also their entry point: ``python -m benchmarks.cluster_bench ROLE ...``; without a role, or
with ``--quick``, it runs the benchmark and prints its rows). Everything stays on
loopback (``127.0.0.0/8``). The raw pyzmq side encodes the same JSON per message, so both
sides pay for their encoding:

* publish: labwire devices subscribed with a glob pattern vs raw SUB sockets on an XPUB,
  both with 10 000-message queues; the publisher sends as fast as it can, so both drop when a
  subscriber falls behind (labwire counts its drops). Each subscriber reports what it received
  and over how long (first to last message); the figure is the median delivered rate;
* request: one device asking another, in sequence, vs a DEALER asking a ROUTER that echoes;
  short rounds of each alternate, so both see the same machine load;
* discovery: 20 devices started together in one process, until each knows the 19 others and
  their catalogs (beacon interval 0.5 s, the default); no raw counterpart.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import zmq

from benchmarks import row
from labwire.cluster import Device

NETWORK = "127.0.0.0/8"
#: Rounds of the request comparison, alternating labwire and raw pyzmq.
_ROUNDS = 20
#: A subscriber stops after this long without a message (once it got one).
_IDLE = 1.0


def _spawn(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.cluster_bench", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"benchmark peer {process.args} exited early")
    return line.strip()


def _close(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.01)


def _rates(processes: list[subprocess.Popen[str]]) -> tuple[float, float]:
    """Median rate over the subscribers, and the mean count they received."""
    results = []
    for process in processes:
        received, seconds = _line(process).split()
        results.append((int(received), float(seconds)))
    rate = statistics.median(count / max(seconds, 1e-9) for count, seconds in results)
    return rate, sum(count for count, _ in results) / len(results)


async def _publish_cluster(subscribers: int, count: int) -> tuple[float, float, int]:
    group = f"bench-{secrets.token_hex(4)}"
    processes = [_spawn("sub-cluster", group) for _ in range(subscribers)]
    try:
        publisher = Device("pub", group, NETWORK, beacon_interval=0.1)
        async with publisher:

            def ready() -> bool:
                peers = publisher.peers()
                return len(peers) == subscribers and all(p.has_catalog for p in peers)

            await _until(ready, 20, "subscriber discovery")
            for index in range(count):
                await publisher.publish("sample", {"seq": index, "value": 1.5})
                if index % 1000 == 999:
                    await asyncio.sleep(0)  # let the loop breathe, as a real program would
            rate, received = _rates(processes)
            dropped = publisher.stats.get("dropped_events", 0)
    finally:
        _close(processes)
    return rate, received, dropped


def _publish_raw(subscribers: int, count: int) -> tuple[float, float]:
    context = zmq.Context()
    xpub = context.socket(zmq.XPUB)
    xpub.setsockopt(zmq.SNDHWM, 10_000)
    xpub.setsockopt(zmq.XPUB_VERBOSE, 1)  # one subscription message per subscriber
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    processes = [_spawn("sub-raw", str(port)) for _ in range(subscribers)]
    try:
        for _ in range(subscribers):  # one subscription message per subscriber
            if not xpub.poll(20_000):
                raise RuntimeError("raw subscribers never subscribed")
            xpub.recv()
        for index in range(count):
            xpub.send(json.dumps({"seq": index, "value": 1.5}).encode())
        rate, received = _rates(processes)
    finally:
        _close(processes)
        xpub.close(0)
        context.term()
    return rate, received


async def _request_rounds(calls: int) -> tuple[list[float], list[float]]:
    group = f"bench-{secrets.token_hex(4)}"
    server = _spawn("echo-cluster", group)
    raw_server = _spawn("echo-raw")
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    try:
        _line(server)
        dealer.connect(f"tcp://127.0.0.1:{_line(raw_server)}")
        client = Device("client", group, NETWORK, beacon_interval=0.1)
        async with client:
            await _until(lambda: bool(client.peers()), 20, "echo server discovery")
            assert await client.request("echo", "echo", 0) == 0

            def raw_call(value: int) -> None:
                dealer.send(json.dumps({"id": value, "args": [value]}).encode())
                json.loads(dealer.recv())

            raw_call(0)
            labwire_samples: list[float] = []
            raw_samples: list[float] = []
            per_round = max(1, calls // _ROUNDS)
            for _ in range(_ROUNDS):
                for index in range(per_round):
                    start = time.perf_counter()
                    raw_call(index)
                    raw_samples.append(time.perf_counter() - start)
                for index in range(per_round):
                    start = time.perf_counter()
                    await client.request("echo", "echo", index)
                    labwire_samples.append(time.perf_counter() - start)
    finally:
        dealer.close(0)
        context.term()
        _close([server, raw_server])
    return labwire_samples, raw_samples


async def _discovery(devices: int) -> float:
    group = f"bench-{secrets.token_hex(4)}"
    members = [Device(f"dev{index}", group, NETWORK) for index in range(devices)]
    for member in members:
        member.on("*/tick", lambda event, data: None)
    started = time.perf_counter()
    for member in members:
        member.start()
    try:

        def everyone() -> bool:
            return all(
                len(peers) == devices - 1 and all(peer.has_catalog for peer in peers)
                for peers in (member.peers() for member in members)
            )

        await _until(everyone, 30, "discovery")
        return time.perf_counter() - started
    finally:
        for member in members:
            member.stop()


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure everything; ``quick`` uses fewer messages and calls (for a smoke run)."""
    count = 20_000 if quick else 100_000
    calls = 1_000 if quick else 5_000
    rows: list[dict[str, Any]] = []
    for subscribers in (1, 4):
        rate, received, dropped = asyncio.run(_publish_cluster(subscribers, count))
        raw_rate, raw_received = _publish_raw(subscribers, count)
        rows.append(
            row(
                f"cluster publish to {subscribers} sub (of {count}: {received:.0f} recv, "
                f"{dropped} dropped by the publisher; raw {raw_received:.0f} recv)",
                rate,
                raw_rate,
                "msg/s",
                rate / raw_rate,
                "-",
            )
        )
    labwire_samples, raw_samples = asyncio.run(_request_rounds(calls))
    labwire_median = statistics.median(labwire_samples)
    raw_median = statistics.median(raw_samples)
    rows.append(
        row(
            "cluster request round trip median",
            labwire_median * 1e6,
            raw_median * 1e6,
            "us",
            labwire_median / raw_median,
            "-",
        )
    )
    rows.append(
        row("cluster discovery of 20 devices", asyncio.run(_discovery(20)), "-", "s", None, "-")
    )
    return rows


# --------------------------------------------------------------------- subprocess roles


def _report(received: int, first: float, last: float) -> None:
    sys.stdout.write(f"{received} {max(last - first, 0.0)}\n")
    sys.stdout.flush()


async def _sub_cluster(group: str) -> None:
    device = Device(f"sub-{os.getpid()}", group, NETWORK, beacon_interval=0.1)
    times: list[float] = []

    def on_sample(event: str, data: Any) -> None:
        times.append(time.perf_counter())

    device.on("pub/*", on_sample)
    async with device:
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
            if times and time.perf_counter() - times[-1] > _IDLE:
                break
    _report(len(times), times[0] if times else 0.0, times[-1] if times else 0.0)


def _sub_raw(port: str) -> None:
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 10_000)
    sub.connect(f"tcp://127.0.0.1:{port}")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    received, first, last = 0, 0.0, 0.0
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        if not sub.poll(int(_IDLE * 1000)):
            if received:
                break
            continue
        json.loads(sub.recv())
        last = time.perf_counter()
        if not received:
            first = last
        received += 1
    sub.close(0)
    context.term()
    _report(received, first, last)


async def _echo_cluster(group: str) -> None:
    device = Device("echo", group, NETWORK, beacon_interval=0.1)
    device.on_request("echo", lambda value: value)
    async with device:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def _echo_raw() -> None:
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    while True:
        identity, frame = router.recv_multipart()
        request = json.loads(frame)
        router.send_multipart([identity, json.dumps({"id": request["id"], "value": 1}).encode()])


def main() -> None:
    role, *args = sys.argv[1:] or ["all"]
    if role in ("all", "--quick"):
        for row in run(quick=role == "--quick"):
            print(row)
    elif role == "sub-cluster":
        asyncio.run(_sub_cluster(args[0]))
    elif role == "sub-raw":
        _sub_raw(args[0])
    elif role == "echo-cluster":
        asyncio.run(_echo_cluster(args[0]))
    elif role == "echo-raw":
        _echo_raw()
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
