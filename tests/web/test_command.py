"""``labwire dashboard`` as a user runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request

from tests.commands import environment


def test_labwire_dashboard_prints_its_address_and_serves_until_stopped() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "labwire", "dashboard", "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment("tcp://127.0.0.1:1"),
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        assert address.startswith("http://127.0.0.1:") and "token" not in address
        with urllib.request.urlopen(address, timeout=10) as response:
            assert b"labwire dashboard" in response.read()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Ctrl-C to stop" in err


def test_a_bad_bind_address_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labwire", "dashboard", "--bind", "nowhere"],
        capture_output=True,
        text=True,
        timeout=20,
        env=environment(None),
    )
    assert done.returncode == 2
    assert "--bind" in done.stderr and "HOST:PORT" in done.stderr
