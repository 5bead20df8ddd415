"""RPC figures against raw pyzmq on the calls device code makes.

Servers run in subprocesses (labwire's and raw pyzmq's, side by side); clients run here, or in
processes of their own where a row says so. Each row alternates labwire and raw pyzmq in short
rounds, so both see the same machine load, and reports medians:

* the small-call mix (:data:`benchmarks.peers.MIX` and a property read) through
  ``RPCClient`` against a raw REQ/REP round trip of the same JSON request, then through
  ``AsyncRPCClient`` against a raw ``zmq.asyncio`` REQ;
* what watching for the reply before sleeping (``Settings.reply_spin_us``, on by default)
  gives and costs: the scalar call's latency and the client's CPU time per call, with it on
  and off;
* 1 MiB and 64 MiB buffers received (a buffer method against a raw zero-copy REP) and sent
  as an argument (a memoryview argument against a raw multipart send, the faster of copying
  and zero-copy);
* 8 caller processes (each its own ``RPCClient``, a DEALER) against 8 raw DEALERs on a ROUTER;
* signals emitted inside a method handler to 1 and 4 subscriber processes against raw
  PUB/SUB; every subscriber reports what it lost (labwire from its sequence numbers, raw from
  the payload index);
* the CPU and wake-ups of an idle server with one idle client connected, and of that client,
  against an idle raw REP server and REQ client.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import zmq
import zmq.asyncio

from benchmarks import row
from benchmarks.fleet import Fleet
from benchmarks.peers import MIX, PROPERTY_READ, RAW_MIX, RAW_PROPERTY_GET, peer
from labwire.config import default_settings
from labwire.rpc import AsyncRPCClient, RPCClient

#: Rounds of each comparison, alternating labwire and raw pyzmq.
_ROUNDS = 20
_SCALAR = next(iter(MIX))


def _latencies(call: Callable[[], Any], count: int) -> list[float]:
    for _ in range(count // 10):
        call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


async def _async_latencies(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    for _ in range(count // 10):
        await call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


def _p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


def _small_target(label: str, asyncio_rows: bool) -> str:
    if asyncio_rows:
        return "<= 1.5x"
    return "<= 1.2x" if label.startswith("scalar") else "<= 1.3x"


def _latency_rows(
    samples: dict[str, tuple[list[float], list[float]]], suffix: str, asyncio_rows: bool
) -> list[dict[str, Any]]:
    rows = []
    for label, (lw, raw) in samples.items():
        lw_med, raw_med = statistics.median(lw), statistics.median(raw)
        target = _small_target(label, asyncio_rows)
        rows.append(
            row(
                f"{label}{suffix} median",
                lw_med * 1e6,
                raw_med * 1e6,
                "us",
                lw_med / raw_med,
                target,
            )
        )
    lw, raw = samples[_SCALAR]
    rows.append(
        row(
            f"scalar add(1){suffix} p99",
            _p99(lw) * 1e6,
            _p99(raw) * 1e6,
            "us",
            _p99(lw) / _p99(raw),
            "-",
        )
    )
    return rows


def _small_calls(
    client: RPCClient, context: zmq.Context[Any], rep_port: str, per_row: int
) -> list[dict[str, Any]]:
    req = context.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{rep_port}")

    def raw_call(request: bytes) -> Callable[[], Any]:
        def call() -> None:
            req.send(request)
            req.recv()

        return call

    def lw_call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[], Any]:
        return lambda: client.call(method, *args, **kwargs)

    pairs = {label: (lw_call(*MIX[label]), raw_call(RAW_MIX[label])) for label in MIX} | {
        PROPERTY_READ: (lambda: client.get_property("position"), raw_call(RAW_PROPERTY_GET))
    }
    samples: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in pairs}
    for _ in range(_ROUNDS):
        for label, (lw, raw) in pairs.items():
            samples[label][1].extend(_latencies(raw, per_row // _ROUNDS))
            samples[label][0].extend(_latencies(lw, per_row // _ROUNDS))
    req.close(0)
    return _latency_rows(samples, "", asyncio_rows=False)


def _watching(
    url: str, context: zmq.Context[Any], rep_port: str, per_row: int
) -> list[dict[str, Any]]:
    """What watching for replies (``Settings.reply_spin_us``) gives and costs a scalar call.

    The latency, and the client process's CPU time per call (its I/O thread's included), with
    watching on and off, each against a raw REQ client in the same rounds.
    """
    req = context.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{rep_port}")
    method, args, _ = MIX[_SCALAR]

    def raw_call() -> None:
        req.send(RAW_MIX[_SCALAR])
        req.recv()

    on = RPCClient(None, url)
    off = RPCClient(None, url, settings=default_settings().replace(reply_spin_us=0))
    calls = {"on": partial(on.call, method, *args), "off": partial(off.call, method, *args)}
    calls["raw"] = raw_call
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu = dict.fromkeys(calls, 0.0)
    for _ in range(_ROUNDS):
        for name, call in calls.items():
            start = time.process_time()
            samples[name] += _latencies(call, per_row // _ROUNDS)
            cpu[name] += time.process_time() - start
    on.close()
    off.close()
    req.close(0)
    median = {name: statistics.median(values) for name, values in samples.items()}
    # _latencies makes a tenth more calls to warm up: all of them used CPU.
    per_call = {name: spent / (per_row * 1.1) * 1e6 for name, spent in cpu.items()}
    return [
        *(
            row(
                f"{_SCALAR}, reply watching {name}, median",
                median[name] * 1e6,
                median["raw"] * 1e6,
                "us",
                median[name] / median["raw"],
                "-",
            )
            for name in ("on", "off")
        ),
        *(
            row(
                f"client CPU per {_SCALAR} call, reply watching {name}",
                per_call[name],
                per_call["raw"],
                "us",
                per_call[name] / per_call["raw"],
                "-",
            )
            for name in ("on", "off")
        ),
    ]


async def _async_calls(url: str, rep_port: str, per_row: int) -> list[dict[str, Any]]:
    context = zmq.asyncio.Context()
    req = context.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{rep_port}")
    client = await AsyncRPCClient.open(None, url)

    def raw_call(request: bytes) -> Callable[[], Awaitable[Any]]:
        async def call() -> None:
            await req.send(request)
            await req.recv()

        return call

    def lw_call(
        method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[], Awaitable[Any]]:
        return lambda: client.call(method, *args, **kwargs)  # type: ignore[no-any-return]

    pairs = {label: (lw_call(*MIX[label]), raw_call(RAW_MIX[label])) for label in MIX} | {
        PROPERTY_READ: (lambda: client.get_property("position"), raw_call(RAW_PROPERTY_GET))
    }
    samples: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in pairs}
    try:
        for _ in range(_ROUNDS):
            for label, (lw, raw) in pairs.items():
                samples[label][1].extend(await _async_latencies(raw, per_row // _ROUNDS))
                samples[label][0].extend(await _async_latencies(lw, per_row // _ROUNDS))
    finally:
        await client.aclose()
        req.close(0)
        context.term()
    return _latency_rows(samples, ", asyncio", asyncio_rows=True)


def _buffers(
    client: RPCClient, context: zmq.Context[Any], blob_port: str, sink_port: str, quick: bool
) -> list[dict[str, Any]]:
    """1 MiB and 64 MiB, received from a buffer method and sent as an argument."""
    blob = context.socket(zmq.REQ)
    blob.connect(f"tcp://127.0.0.1:{blob_port}")
    sink = context.socket(zmq.REQ)
    sink.connect(f"tcp://127.0.0.1:{sink_port}")
    rows = []
    for size, label, repeat in ((1 << 20, "1 MiB", 200), (64 << 20, "64 MiB", 20)):
        rounds = max(1, repeat // (10 if quick else 1))
        payload = memoryview(bytearray(size))

        def raw_receive(size: int = size) -> None:
            blob.send(str(size).encode())
            frame = blob.recv(copy=False)
            assert len(frame) == size

        def lw_receive(size: int = size) -> None:
            buffer, _ = client.call("blob", size)
            assert len(buffer) == size

        def raw_send(payload: memoryview = payload, copy: bool = False) -> None:
            sink.send_multipart([b'{"event":"take"}', payload], copy=copy)
            assert int(sink.recv()) == len(payload)

        def lw_send(payload: memoryview = payload) -> None:
            assert client.call("take", payload) == len(payload)

        # Raw pyzmq sends a buffer at its best of copying and zero-copy (which wins depends
        # on the size: zero-copy pays for telling Python when libzmq is done with the memory).
        for direction, lw, raws in (
            ("received (buffer method)", lw_receive, [raw_receive]),
            ("sent as an argument", lw_send, [raw_send, partial(raw_send, copy=True)]),
        ):
            raw_samples: list[list[float]] = [[] for _ in raws]
            lw_samples: list[float] = []
            for _ in range(rounds):
                for samples, raw in zip(raw_samples, raws, strict=True):
                    samples += _latencies(raw, 1)
                lw_samples += _latencies(lw, 1)
            raw_t = min(statistics.median(samples) for samples in raw_samples)
            lw_t = statistics.median(lw_samples)
            mib = size / (1 << 20)
            rows.append(
                row(
                    f"{label} {direction}",
                    mib / lw_t,
                    mib / raw_t,
                    "MiB/s",
                    raw_t / lw_t,
                    ">= 0.9x",
                )
            )
    blob.close(0)
    sink.close(0)
    return rows


def _processes(url: str, router_port: str, quick: bool) -> dict[str, Any]:
    """Throughput of 8 caller processes, labwire RPCClients against raw DEALERs."""
    rounds, calls = (2, 500) if quick else (5, 3000)

    def throughput(fleet: Fleet) -> float:
        fleet.command(str(calls), 8)
        reports = fleet.reports(8)
        span = max(r["end"] for r in reports) - min(r["start"] for r in reports)
        return 8 * calls / span

    with Fleet("worker-labwire", url) as labwire, Fleet("worker-raw", router_port) as raw:
        labwire.grow(8)
        raw.grow(8)
        lw_rates, raw_rates = [], []
        for _ in range(rounds):
            raw_rates.append(throughput(raw))
            lw_rates.append(throughput(labwire))
    lw_rate, raw_rate = statistics.median(lw_rates), statistics.median(raw_rates)
    return row("8 client processes", lw_rate, raw_rate, "calls/s", lw_rate / raw_rate, ">= 0.7x")


def _signals(
    client: RPCClient, context: zmq.Context[Any], url: str, ports: dict[str, str], quick: bool
) -> list[dict[str, Any]]:
    """Ticks emitted inside a method handler to N subscriber processes, against raw PUB/SUB."""
    count = 20000 if quick else 100000
    bursts = 1 if quick else 3
    control = context.socket(zmq.REQ)
    control.connect(f"tcp://127.0.0.1:{ports['control']}")

    def raw_command(command: bytes) -> None:
        control.send(command)
        control.recv()

    rows = []
    with Fleet("sub-labwire", url) as labwire, Fleet("sub-raw", ports["pub"]) as raw:
        for subscribers in (1, 4):
            labwire.grow(subscribers, lambda: client.call("probe"))
            raw.grow(subscribers, lambda: raw_command(b"PROBE"))
            results: dict[str, list[dict[str, Any]]] = {"labwire": [], "raw": []}
            for _ in range(bursts):
                raw_command(b"PUB %d 0" % count)
                results["raw"] += raw.reports(subscribers)
                client.call("emit", count)
                results["labwire"] += labwire.reports(subscribers)
            rate = {
                kind: statistics.median(r["received"] / max(r["seconds"], 1e-9) for r in reports)
                for kind, reports in results.items()
            }
            lost = {
                kind: sum(count - r["received"] for r in reports) / len(reports)
                for kind, reports in results.items()
            }
            reported = sum(r["gaps"] for r in results["labwire"]) / len(results["labwire"])
            name = (
                f"signals to {subscribers} sub: labwire {lost['labwire']:.0f}/{count} lost "
                f"({reported:.0f} reported as gaps), raw {lost['raw']:.0f} lost"
            )
            rows.append(
                row(
                    name,
                    rate["labwire"],
                    rate["raw"],
                    "msg/s",
                    rate["labwire"] / rate["raw"],
                    ">= 0.7x",
                )
            )
    control.close(0)
    return rows


def _cpu_and_wakeups(pid: int) -> tuple[float, int]:
    """CPU seconds and context switches so far, summed over every thread of ``pid``."""
    cpu, switches = 0.0, 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                cpu += int(schedstat.read().split()[0]) / 1e9
            with open(f"/proc/{pid}/task/{task}/status") as status:
                for line in status:
                    if "ctxt_switches" in line:
                        switches += int(line.split()[1])
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return cpu, switches


def idle(quick: bool) -> list[dict[str, Any]]:
    """CPU share and wake-ups of an idle server (one idle client connected) and that client."""
    window = 2.0 if quick else 5.0
    with (
        peer("labwire") as (url, lw_server),
        peer("raw") as (ports, raw_server),
        Fleet("idle-labwire", url) as lw_clients,
        Fleet("idle-raw", ports.split()[0]) as raw_clients,
    ):
        lw_clients.grow(1)
        raw_clients.grow(1)
        pids = [lw_server, raw_server, lw_clients.members[0].popen.pid]
        pids.append(raw_clients.members[0].popen.pid)
        time.sleep(2.0)  # start-up work (inventory, subscription) settles first
        before = [_cpu_and_wakeups(pid) for pid in pids]
        start = time.monotonic()
        time.sleep(window)  # the measurement window
        after = [_cpu_and_wakeups(pid) for pid in pids]
        elapsed = time.monotonic() - start
    share = [100 * (a[0] - b[0]) / elapsed for a, b in zip(after, before, strict=True)]
    wakeups = [(a[1] - b[1]) / elapsed for a, b in zip(after, before, strict=True)]
    return [
        row(
            f"idle RPCServer, 1 idle client ({wakeups[0]:.0f} vs raw REP "
            f"{wakeups[1]:.0f} wakeups/s)",
            share[0],
            share[1],
            "% of a core",
            None,
            "< 0.2%",
        ),
        row(
            f"idle RPCClient with a signal slot ({wakeups[2]:.0f} vs raw REQ "
            f"{wakeups[3]:.0f} wakeups/s)",
            share[2],
            share[3],
            "% of a core",
            None,
            "-",
        ),
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure everything; ``quick`` uses fewer iterations (for a smoke run)."""
    rows: list[dict[str, Any]] = []
    context = zmq.Context()
    with peer("labwire") as (url, _), peer("raw") as (raw_ports, _):
        names = ("rep", "router", "blob", "pub", "control", "sink")
        ports = dict(zip(names, raw_ports.split(), strict=True))
        with RPCClient(None, url) as client:
            rows += _small_calls(client, context, ports["rep"], 2000 if quick else 20000)
            rows += _watching(url, context, ports["rep"], 2000 if quick else 10000)
            rows += asyncio.run(_async_calls(url, ports["rep"], 1000 if quick else 10000))
            rows += _buffers(client, context, ports["blob"], ports["sink"], quick)
            rows.append(_processes(url, ports["router"], quick))
            rows += _signals(client, context, url, ports, quick)
    context.term()
    rows += idle(quick)
    return rows
