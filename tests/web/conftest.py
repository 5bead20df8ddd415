"""A registry with simulated devices, a dashboard over it, and a headless chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from labwire.registry import DeviceRegistry, RegistryClient
from labwire.sim import SimCamera, SimStage
from labwire.web import DashboardThread

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: A device name a careless page would turn into markup (the registry refuses spaces and '/').
HOSTILE_NAME = "<img_src=x_onerror=alert(1)>"


def wait_for(
    check: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    shown: Callable[[], str] | None = None,
) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds.

    ``shown`` describes what was seen instead, for the failure message.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the page is still being drawn
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)
    seen = f"; {shown()}" if shown is not None else ""
    raise AssertionError(f"{what}: not seen within {timeout} s (last: {last!r}{seen})")


@dataclass
class Lab:
    registry: DeviceRegistry
    stage: SimStage
    camera: SimCamera
    hostile: SimStage
    slow: SimStage
    victim: subprocess.Popen[bytes]
    dashboard: DashboardThread


def _browser_missing() -> str:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install 'labwire[test]')"
    return ""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module."""
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A registry, stages (fast, slow, hostile-named, one in its own process), a camera."""
    registry = DeviceRegistry(None, "127.0.0.1", "0", heartbeat_interval=0.2)
    registry.start()
    stage = SimStage(None, "tcp://127.0.0.1:0", speed=50_000.0).start()
    camera = SimCamera(None, "tcp://127.0.0.1:0").start()
    hostile = SimStage(None, "tcp://127.0.0.1:0").start()
    slow = SimStage(None, "tcp://127.0.0.1:0", speed=5.0).start()
    victim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labwire",
            "sim",
            "stage",
            "--name",
            "victim",
            "--json",
            "--stop-on-eof",
            "--registry",
            registry.url,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    dashboard = None
    try:
        stage.register_to_registry("stage", "stage", registry.url)
        camera.register_to_registry("camera", "camera", registry.url)
        hostile.register_to_registry("stage", HOSTILE_NAME, registry.url)
        slow.register_to_registry("stage", "slow", registry.url)
        with RegistryClient(registry.url) as client:
            wait_for(lambda: "victim" in client.get_devices(), what="the victim registered")
        dashboard = DashboardThread(registry.url, port=0)
        yield Lab(registry, stage, camera, hostile, slow, victim, dashboard)
    finally:
        if dashboard is not None:
            dashboard.close()
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
        victim.wait()
        for stream in (victim.stdin, victim.stdout):
            if stream is not None:
                stream.close()
        for server in (slow, hostile, camera, stage):
            server.close()
        registry.stop()
