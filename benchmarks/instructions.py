"""Instructions per small call, labwire against raw pyzmq: ``python -m benchmarks.instructions``.

Latency on a shared or virtual machine drifts with the speed of the CPU; instruction counts do
not. This counts, with ``perf stat``, the user-space instructions that the client's and the
server's serving threads execute per call (the small call of the latency benchmark), for labwire
and for raw REQ/REP bytes. Needs Linux ``perf`` with access to the counters (root, or
``kernel.perf_event_paranoid`` at most 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import zmq

from benchmarks.peers import SMALL_CALL, peer
from labwire.rpc import RPCClient


def _busiest_thread_instructions(pid: int, run: Callable[[], None]) -> int:
    """User-space instructions of process ``pid``'s busiest Python thread during ``run()``.

    That is the thread that serves the calls (the raw peers serve each socket on a thread of
    its own); ZeroMQ's own threads are left out.
    """
    perf = subprocess.Popen(
        ["perf", "stat", "-x,", "--per-thread", "-e", "instructions:u", "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)  # let perf attach before the calls start
    run()
    perf.send_signal(signal.SIGINT)
    _, report = perf.communicate()
    counts = [
        int(fields[1])
        for fields in (line.split(",") for line in report.splitlines())
        if len(fields) > 2 and not fields[0].startswith("ZMQbg") and fields[1].isdigit()
    ]
    if counts:
        return max(counts)
    raise RuntimeError(f"perf stat gave no count for thread {pid}:\n{report}")


def _per_call(server_pid: int, call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Instructions per call of the client's main thread and the server's serving thread."""

    def run() -> None:
        for _ in range(calls):
            call()

    run()  # warm up
    client = _busiest_thread_instructions(os.getpid(), run)
    server = _busiest_thread_instructions(server_pid, run)
    return client / calls, server / calls


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000, help="calls per count")
    calls = parser.parse_args().calls
    if shutil.which("perf") is None:
        sys.exit("perf is not installed (Debian: apt install linux-perf)")
    context = zmq.Context()
    with peer("labwire") as (url, labwire_pid), peer("raw") as (raw_ports, raw_pid):
        client = RPCClient(None, url)
        req = context.socket(zmq.REQ)
        req.connect(f"tcp://127.0.0.1:{raw_ports.split()[0]}")

        def raw_call() -> None:
            req.send(SMALL_CALL)
            req.recv()

        labwire = _per_call(labwire_pid, lambda: client.call("add", 1), calls)
        raw = _per_call(raw_pid, raw_call, calls)
        client.close()
    context.destroy(linger=0)
    print("instructions per call | labwire | raw pyzmq | ratio")
    for side, ours, theirs in zip(("client", "server"), labwire, raw, strict=True):
        print(f"{side:21} | {ours:7,.0f} | {theirs:9,.0f} | {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
