"""The benchmark runner, run as a user runs it, in its quick mode; the scaling plot's drawing."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from benchmarks.peers import MIX, PROPERTY_READ

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_run_prints_every_row_with_a_ratio() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr
    header, _rule, *lines = result.stdout.splitlines()
    assert [cell.strip() for cell in header.split(" | ")][:3] == [
        "benchmark",
        "measured",
        "raw pyzmq",
    ]
    rows = {
        line.split(" | ")[0].strip(): [cell.strip() for cell in line.split(" | ")] for line in lines
    }
    mix = [*MIX, PROPERTY_READ]
    for name in (
        *(f"{label} median" for label in mix),
        *(f"{label}, asyncio median" for label in mix),
        "scalar add(1) p99",
        "1 MiB received (buffer method)",
        "1 MiB sent as an argument",
        "64 MiB received (buffer method)",
        "64 MiB sent as an argument",
        "8 client processes",
        "push to 8 rigs, labwire transport, median",
        "push to 8 rigs, deployed UDP, median",
        "cluster request round trip median",
        "broker: 64 B messages through a thread STREAMER",
    ):
        assert rows[name][4].endswith("x"), rows[name]
    published = [name for name in rows if name.startswith("cluster publish to")]
    assert len(published) == 2 and all(rows[name][4].endswith("x") for name in published)
    assert rows["cluster discovery of 20 devices"][3] == "s"
    # Each subscriber reports its losses, on labwire and on raw PUB/SUB.
    signals = [name for name in rows if name.startswith("signals to")]
    assert len(signals) == 2 and all(" lost (" in name and "raw " in name for name in signals)
    # labwire's own work per call of the mix, each call in the client and in the server.
    for label in mix:
        (own,) = (cells for name, cells in rows.items() if name.startswith(f"{label}: labwire's"))
        assert float(own[1]) > 0 and "client " in own[0] and "server " in own[0], own
    idle = [cells for name, cells in rows.items() if name.startswith("idle RPC")]
    assert len(idle) == 2 and all(float(cells[1]) >= 0 for cells in idle), idle
    # Each alternative library runs the whole mix when installed, and is said to be missing
    # otherwise.
    for label in (*mix, "1 MiB bytes argument"):
        for library in ("labwire", "Pyro5", "rpyc", "zerorpc", "RPC by hand on pyzmq"):
            (row,) = (
                cells for name, cells in rows.items() if name.startswith(f"{label}, {library}")
            )
            assert row[4].endswith("x") or row[1] == "not installed", row


def test_scaling_plot_draws_every_sweep(tmp_path: pathlib.Path) -> None:
    from benchmarks.scaling import plot

    def sweep(points: list[int], *metrics: str) -> dict[str, object]:
        return {
            "n": points,
            "labwire": {metric: [float(n + 1) for n in points] for metric in metrics},
            "raw": {metric: [float(n) for n in points] for metric in metrics},
        }

    output = tmp_path / "scaling.png"
    plot(
        {
            "clients": sweep([1, 2], "latency_us", "throughput"),
            "subscribers": sweep([1, 2], "latency_us", "throughput", "lost"),
            "devices": sweep([10, 100], "register_rate", "lookup_us", "listing_us"),
        },
        output,
    )
    assert output.read_bytes().startswith(b"\x89PNG")
