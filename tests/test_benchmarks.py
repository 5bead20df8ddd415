"""The benchmark runner, run as a user runs it, in its quick mode."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_quick_run_prints_every_row_with_a_ratio() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
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
    for name in (
        "small call median",
        "small call p99",
        "1 MiB buffer",
        "64 MiB buffer",
        "8 client threads",
        "small call median, labwire",
        "push to 8 rigs, labwire transport, median",
        "push to 8 rigs, deployed UDP, median",
        "cluster request round trip median",
        "broker: 64 B messages through a thread STREAMER",
    ):
        assert rows[name][4].endswith("x"), rows[name]
    published = [name for name in rows if name.startswith("cluster publish to")]
    assert len(published) == 2 and all(rows[name][4].endswith("x") for name in published)
    assert rows["cluster discovery of 20 devices"][3] == "s"
    signals = [name for name in rows if name.startswith("signals to")]
    assert len(signals) == 2 and all(" 0 lost" in name for name in signals), signals
    # Each alternative library is measured when installed, and said to be missing otherwise.
    for library in ("Pyro5", "rpyc", "zerorpc"):
        (row,) = (
            cells
            for name, cells in rows.items()
            if name.startswith(f"small call median, {library}")
        )
        assert row[4].endswith("x") or row[1] == "not installed", row
