"""How cost grows with the work: ``python -m benchmarks.scaling [--quick] [--output PNG]``.

Measures, labwire and raw pyzmq side by side (raw dashed on the same axes), and plots into
``benchmarks/scaling.png``:

* clients: 1 to 64 caller processes, each its own ``RPCClient`` making ``add(i)`` calls (raw:
  DEALERs on a ROUTER echo); the median call latency and the total throughput;
* subscribers: 1 to 64 subscriber processes of a signal emitted inside a method handler (raw:
  SUB sockets on a PUB); the median latency of one signal, from the emitting call to the slot,
  and the median throughput each subscriber sees during a burst (losses are printed);
* devices: 10 to 10,000 devices in one registry; the rate of ``register_device`` calls, and
  the median latency of ``RegistryClient.lookup`` and ``RegistryClient.list_devices`` (raw: a
  REQ/REP round trip carrying the same bytes).

For each point labwire and raw pyzmq are measured one after the other, so both see the same
machine load. The figures are also printed as a table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from benchmarks.fleet import Fleet
from benchmarks.peers import LATENCY_BASE, peer
from labwire.registry import RegistryClient, register_device
from labwire.rpc import RPCClient

OUTPUT = pathlib.Path(__file__).resolve().parent / "scaling.png"

#: Series of one kind (labwire or raw): metric name -> one value per point.
Series = dict[str, list[float]]
#: One sweep: "n" -> the points; "labwire" and "raw" -> their series.
Sweep = dict[str, Any]


def _sweep(points: list[int]) -> Sweep:
    return {"n": points, "labwire": {}, "raw": {}}


def _add(sweep: Sweep, kind: str, **values: float) -> None:
    for metric, value in values.items():
        sweep[kind].setdefault(metric, []).append(value)


def measure_clients(
    url: str, router_port: str, points: list[int], total: int, rounds: int
) -> Sweep:
    """Latency and throughput of N caller processes (medians of ``rounds`` alternated runs)."""
    sweep = _sweep(points)
    with Fleet("worker-labwire", url) as labwire, Fleet("worker-raw", router_port) as raw:
        for n in points:
            calls = max(100, total // n)
            runs: dict[str, list[tuple[float, float]]] = {"raw": [], "labwire": []}
            raw.grow(n)
            labwire.grow(n)
            for _ in range(rounds):
                for kind, fleet in (("raw", raw), ("labwire", labwire)):
                    fleet.command(str(calls), n)
                    reports = fleet.reports(n)
                    span = max(r["end"] for r in reports) - min(r["start"] for r in reports)
                    latency = statistics.median(r["median"] for r in reports)
                    runs[kind].append((latency, n * calls / span))
            for kind, results in runs.items():
                _add(
                    sweep,
                    kind,
                    latency_us=statistics.median(r[0] for r in results) * 1e6,
                    throughput=statistics.median(r[1] for r in results),
                )
    return sweep


def measure_subscribers(
    client: RPCClient, url: str, ports: dict[str, str], points: list[int], count: int, probes: int
) -> Sweep:
    """Latency of one signal and burst throughput at N subscriber processes."""
    sweep = _sweep(points)
    context = zmq.Context()
    control = context.socket(zmq.REQ)
    control.connect(f"tcp://127.0.0.1:{ports['control']}")

    def raw_command(command: bytes) -> None:
        control.send(command)
        control.recv()

    emitters: dict[str, Callable[[int, int], Any]] = {
        "raw": lambda n, start: raw_command(b"PUB %d %d" % (n, start)),
        "labwire": lambda n, start: client.call("emit", n, start),
    }
    probe = {"raw": lambda: raw_command(b"PROBE"), "labwire": lambda: client.call("probe")}
    try:
        with Fleet("sub-labwire", url) as labwire, Fleet("sub-raw", ports["pub"]) as raw:
            for n in points:
                for kind, fleet in (("raw", raw), ("labwire", labwire)):
                    fleet.grow(n, probe[kind])
                    emit = emitters[kind]
                    sent = []
                    for k in range(probes):
                        sent.append(time.perf_counter())
                        emit(1, LATENCY_BASE + k)
                        time.sleep(0.005)  # one signal at a time: latency, not queueing
                    emit(count, 0)
                    reports = fleet.reports(n)
                    latencies = [
                        arrival - sent[int(k)]
                        for r in reports
                        for k, arrival in r["arrivals"].items()
                    ]
                    rates = [r["received"] / max(r["seconds"], 1e-9) for r in reports]
                    lost = sum(count - r["received"] for r in reports) / n
                    _add(
                        sweep,
                        kind,
                        latency_us=statistics.median(latencies) * 1e6
                        if latencies
                        else float("nan"),
                        throughput=statistics.median(rates),
                        lost=lost,
                    )
    finally:
        control.close(0)
        context.term()
    return sweep


def measure_devices(blob_port: str, rep_port: str, points: list[int], samples: int) -> Sweep:
    """Registration rate, lookup and listing latency as one registry fills up."""
    sweep = _sweep(points)
    context = zmq.Context()
    blob = context.socket(zmq.REQ)
    blob.connect(f"tcp://127.0.0.1:{blob_port}")
    echo = context.socket(zmq.REQ)
    echo.connect(f"tcp://127.0.0.1:{rep_port}")

    def round_trip(sock: zmq.Socket[Any], message: bytes) -> float:
        start = time.perf_counter()
        sock.send(message)
        sock.recv(copy=False)
        return time.perf_counter() - start

    def timed(call: Callable[[], Any]) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    try:
        with peer("registry") as (url, _), RegistryClient(url) as registry:
            registered = 0
            for n in points:
                names = [f"bench-{i}" for i in range(registered, n)]
                start = time.perf_counter()
                for i, name in enumerate(names):
                    register_device(None, "bench", f"tcp://127.0.0.1:{10000 + i}", name, url)
                register_rate = len(names) / (time.perf_counter() - start)
                registered = n
                request = json.dumps(
                    {
                        "event": "REGISTER",
                        "payload": {
                            "device_type": "bench",
                            "addr": "tcp://127.0.0.1:10000",
                            "name": names[-1],
                            "overwrite": False,
                        },
                    }
                ).encode()
                raw_rate = 1 / statistics.median(
                    round_trip(echo, request) for _ in range(min(len(names), 1000))
                )
                lookups = [f"bench-{random.randrange(n)}" for _ in range(samples)]
                listing_bytes = b"%d" % len(msgspec.json.encode(registry.list_devices()))
                listings = max(3, samples // (1 + n // 100))
                _add(
                    sweep,
                    "labwire",
                    register_rate=register_rate,
                    lookup_us=statistics.median(
                        timed(lambda m=m: registry.lookup(m)) for m in lookups
                    )
                    * 1e6,
                    listing_us=statistics.median(
                        timed(registry.list_devices) for _ in range(listings)
                    )
                    * 1e6,
                )
                lookup_request = json.dumps({"event": "LOOKUP", "name": lookups[0]}).encode()
                _add(
                    sweep,
                    "raw",
                    register_rate=raw_rate,
                    lookup_us=statistics.median(round_trip(echo, lookup_request) for _ in lookups)
                    * 1e6,
                    listing_us=statistics.median(
                        round_trip(blob, listing_bytes) for _ in range(listings)
                    )
                    * 1e6,
                )
    finally:
        blob.close(0)
        echo.close(0)
        context.term()
    return sweep


def measure(quick: bool) -> dict[str, Sweep]:
    """Every sweep; ``quick`` stops at 8 clients and subscribers and 1,000 devices."""
    sizes = [1, 2, 4, 8] if quick else [1, 2, 4, 8, 16, 32, 64]
    devices = [10, 100, 1000] if quick else [10, 100, 1000, 10000]
    with peer("labwire") as (url, _), peer("raw") as (raw_ports, _):
        names = ("rep", "router", "blob", "pub", "control", "sink")
        ports = dict(zip(names, raw_ports.split(), strict=True))
        with RPCClient(None, url) as client:
            return {
                "clients": measure_clients(
                    url, ports["router"], sizes, 1000 if quick else 6000, 1 if quick else 3
                ),
                "subscribers": measure_subscribers(
                    client, url, ports, sizes, 2000 if quick else 20000, 5 if quick else 20
                ),
                "devices": measure_devices(
                    ports["blob"], ports["rep"], devices, 50 if quick else 300
                ),
            }


#: Panels: (sweep, metric, title, y label, log y).
_PANELS = (
    ("clients", "latency_us", "call latency (median)", "us", False),
    ("clients", "throughput", "throughput (all clients)", "calls/s", False),
    ("subscribers", "latency_us", "latency of one signal (median)", "us", True),
    ("subscribers", "throughput", "burst throughput per subscriber (median)", "signals/s", True),
    ("devices", "register_rate", "register_device rate", "registrations/s", True),
    ("devices", "lookup_us", "lookup (median)", "us", True),
    ("devices", "listing_us", "list_devices (median)", "us", True),
)
_X_LABELS = {
    "clients": "client processes",
    "subscribers": "subscriber processes",
    "devices": "registered devices",
}


def plot(results: dict[str, Sweep], output: pathlib.Path) -> None:
    """Draw every sweep of ``results`` (as :func:`measure` returns them) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(4, 2, figsize=(12, 16))
    for (sweep_name, metric, title, unit, log_y), ax in zip(_PANELS, axes.flat, strict=False):
        sweep = results[sweep_name]
        for kind, style in (("labwire", "o-"), ("raw", "s--")):
            label = "labwire" if kind == "labwire" else "raw pyzmq"
            ax.plot(sweep["n"], sweep[kind][metric], style, label=label)
        ax.set_xscale("log", base=2 if sweep_name != "devices" else 10)
        if log_y:
            ax.set_yscale("log")
        ax.set_title(f"{sweep_name}: {title}")
        ax.set_xlabel(_X_LABELS[sweep_name])
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    notes = axes.flat[-1]
    notes.axis("off")
    lost = results["subscribers"]
    lines = ["signals lost per subscriber (of each burst):"]
    for n, lw, raw in zip(lost["n"], lost["labwire"]["lost"], lost["raw"]["lost"], strict=True):
        lines.append(f"  {n:>3} subscribers: labwire {lw:.0f}, raw {raw:.0f}")
    notes.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace")
    figure.suptitle("labwire against raw pyzmq as the work grows")
    figure.tight_layout()
    figure.savefig(output, dpi=80)
    plt.close(figure)


def _print(results: dict[str, Sweep]) -> None:
    for name, sweep in results.items():
        metrics = list(sweep["labwire"])
        print(f"\n{name}: " + ", ".join(f"{m} (labwire / raw)" for m in metrics))
        for index, n in enumerate(sweep["n"]):
            cells = [
                f"{sweep['labwire'][m][index]:,.1f} / {sweep['raw'][m][index]:,.1f}"
                for m in metrics
            ]
            print(f"  {n:>6}: " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points (smoke run)")
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT, help="PNG to write")
    options = parser.parse_args()
    start = time.monotonic()
    results = measure(options.quick)
    _print(results)
    plot(results, options.output)
    print(f"\nwrote {options.output} in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
