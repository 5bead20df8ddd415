"""RPC figures against raw pyzmq: small calls, big buffers, signals, many threads.

Servers run in subprocesses (labwire's and raw pyzmq's, side by side); clients run here.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from benchmarks import row
from benchmarks.peers import SMALL_CALL, peer
from labwire.rpc import RPCClient, RPCSignal

#: Rounds of the small-call comparison, alternating labwire and raw pyzmq.
_ROUNDS = 40
#: Rounds of each buffer comparison, alternating the same way.
_BUFFER_ROUNDS = 10


def _latencies(call: Callable[[], Any], count: int) -> list[float]:
    for _ in range(count // 10):
        call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def _p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


class _BenchClient(RPCClient):
    tick = RPCSignal(int)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure everything; ``quick`` uses fewer iterations (for a smoke run)."""
    calls = 2000 if quick else 20000
    rows: list[dict[str, Any]] = []
    context = zmq.Context()
    with peer("labwire") as (url, _), peer("raw") as (raw_ports, _):
        rep_port, router_port, blob_port, pub_port, control_port = raw_ports.split()
        client = _BenchClient(None, url)
        req = context.socket(zmq.REQ)
        req.connect(f"tcp://127.0.0.1:{rep_port}")

        def raw_call() -> None:
            req.send(SMALL_CALL)
            req.recv()

        # Interleave many short rounds so both see the same machine load (on a shared or
        # virtual machine the speed of the CPU drifts over seconds).
        lw_samples: list[float] = []
        raw_samples: list[float] = []
        for _ in range(_ROUNDS):
            raw_samples += _latencies(raw_call, calls // _ROUNDS)
            lw_samples += _latencies(lambda: client.call("add", 1), calls // _ROUNDS)
        lw_med, raw_med = statistics.median(lw_samples), statistics.median(raw_samples)
        rows.append(
            row("small call median", lw_med * 1e6, raw_med * 1e6, "us", lw_med / raw_med, "<= 1.3x")
        )
        lw_p99, raw_p99 = _p99(lw_samples), _p99(raw_samples)
        rows.append(row("small call p99", lw_p99 * 1e6, raw_p99 * 1e6, "us", lw_p99 / raw_p99, "-"))

        blob = context.socket(zmq.REQ)
        blob.connect(f"tcp://127.0.0.1:{blob_port}")
        # Targets as set for labwire: 64 MiB at 0.8x of raw or better; 1 MiB is measured.
        for size, label, repeat, target in (
            (1 << 20, "1 MiB", 200, "-"),
            (64 << 20, "64 MiB", 10, ">= 0.8x"),
        ):
            repeat = max(3, repeat // (5 if quick else 1))

            def raw_blob(size: int = size) -> None:
                blob.send(str(size).encode())
                frame = blob.recv(copy=False)
                assert len(frame) == size

            def lw_blob(size: int = size) -> None:
                buffer, _ = client.call("blob", size)
                assert len(buffer) == size

            # Interleaved rounds, as for small calls: both see the same machine load.
            raw_samples, lw_samples = [], []
            for _ in range(_BUFFER_ROUNDS):
                raw_samples += _latencies(raw_blob, max(1, repeat // _BUFFER_ROUNDS))
                lw_samples += _latencies(lw_blob, max(1, repeat // _BUFFER_ROUNDS))
            raw_t, lw_t = statistics.median(raw_samples), statistics.median(lw_samples)
            mib = size / (1 << 20)
            rows.append(
                row(f"{label} buffer", mib / lw_t, mib / raw_t, "MiB/s", raw_t / lw_t, target)
            )

        control = context.socket(zmq.REQ)
        control.connect(f"tcp://127.0.0.1:{control_port}")
        for subscribers in (1, 4):
            count = 20000 if quick else 100000
            rows.append(_signals(client, url, control, pub_port, subscribers, count))

        rows.append(_threads(context, client, router_port, 2000 if quick else 10000))
        client.close()
        for sock in (req, blob, control):
            sock.close(0)
    context.term()
    return rows


def _signals(
    client: _BenchClient,
    url: str,
    control: zmq.Socket[Any],
    pub_port: str,
    subscribers: int,
    count: int,
) -> dict[str, Any]:
    """Ticks to N subscriber processes: labwire clients vs raw SUB sockets."""

    def burst(role: str, target: str, probe: Callable[[], Any], fire: Callable[[], Any]) -> Any:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.peers", role, target],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(subscribers)
        ]
        try:
            for process in processes:
                assert process.stdout is not None
                os.set_blocking(process.stdout.fileno(), False)
            ready = [False] * subscribers
            deadline = time.monotonic() + 20
            while not all(ready):
                if time.monotonic() > deadline:
                    raise RuntimeError("subscribers never became ready")
                probe()
                time.sleep(0.05)
                for index, process in enumerate(processes):
                    assert process.stdout is not None
                    if not ready[index] and process.stdout.readline().strip() == "ready":
                        ready[index] = True
            fire()
            results = []
            for process in processes:
                assert process.stdout is not None
                os.set_blocking(process.stdout.fileno(), True)
                received, seconds, gaps = process.stdout.readline().split()
                results.append((int(received), float(seconds), int(gaps)))
                process.wait(10)
            return results
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                if process.stdout is not None:
                    process.stdout.close()

    def raw_command(command: bytes) -> None:
        control.send(command)
        control.recv()

    labwire = burst(
        "sub-labwire", url, lambda: client.call("probe"), lambda: client.call("emit", count)
    )
    raw = burst(
        "sub-raw",
        pub_port,
        lambda: raw_command(b"PROBE"),
        lambda: raw_command(b"PUB %d" % count),
    )
    lw_rate = statistics.median(r / max(t, 1e-9) for r, t, _ in labwire)
    raw_rate = statistics.median(r / max(t, 1e-9) for r, t, _ in raw)
    received = sum(r for r, _, _ in labwire) / subscribers
    gaps = sum(g for _, _, g in labwire) / subscribers
    lost = count - received
    return row(
        f"signals to {subscribers} sub ({received:.0f}/{count} recv, "
        f"{lost:.0f} lost, {gaps:.0f} reported as gaps)",
        lw_rate,
        raw_rate,
        "msg/s",
        lw_rate / raw_rate,
        ">= 0.5x",
    )


def _threads(
    context: zmq.Context[Any], client: _BenchClient, router_port: str, per_thread: int
) -> dict[str, Any]:
    def measure(work: Callable[[int], None]) -> float:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return 8 * per_thread / (time.perf_counter() - start)

    def lw_work(index: int) -> None:
        for i in range(per_thread):
            client.call("add", i)

    def raw_work(index: int) -> None:
        dealer = context.socket(zmq.DEALER)
        dealer.connect(f"tcp://127.0.0.1:{router_port}")
        for i in range(per_thread):
            dealer.send_multipart([b"", b"%d" % i])
            dealer.recv_multipart()
        dealer.close(0)

    raw_rate = measure(raw_work)
    lw_rate = measure(lw_work)
    return row("8 client threads", lw_rate, raw_rate, "calls/s", lw_rate / raw_rate, ">= 0.5x")
