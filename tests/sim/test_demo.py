"""The demo, run as users run it: ``python -m labwire demo`` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labwire.sim import read_metadata

pytestmark = pytest.mark.timeout(60)


def _run_demo(*args: str, timeout: float = 45) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labwire", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
    )


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LABWIRE_")}


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry))
    return children


def _is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _check_output_folder(folder: Path, count: int, suffix: str = ".png") -> None:
    metadata = read_metadata(folder)
    assert metadata["status"] == "done"
    listed = [entry["file"] for entry in metadata["images"]]
    assert len(listed) == count
    on_disk = sorted(p.name for p in folder.glob("image_*"))
    assert on_disk == sorted(listed)
    frames = []
    for name in listed:
        assert name.endswith(suffix)
        with Image.open(folder / name) as image:
            image.load()
            assert image.size == (640, 480)
            frames.append(np.asarray(image))
    assert not np.array_equal(frames[0], frames[1]), "a scan's images should differ"


def test_demo_scans_and_saves_every_image(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    result = _run_demo("--positions", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    _check_output_folder(out, 5)
    for row in ("devices found", "images saved", "bytes moved", "images per second"):
        assert row in result.stdout
    assert "latency median" in result.stdout and "p99" in result.stdout
    assert "3 (camera, controller, stage)" in result.stdout
    assert "not secured" in result.stdout


def test_demo_runs_encrypted_with_secure(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    out = tmp_path / "out"
    result = _run_demo("--positions", "3", "--out", str(out), "--secure", str(keys), "--json")
    assert result.returncode == 0, result.stderr
    _check_output_folder(out, 3)
    summary = json.loads(result.stdout)  # --json: the summary as one JSON document
    assert summary["secure"] is True and summary["images"] == 3
    assert sorted(device["name"] for device in summary["devices"]) == [
        "camera",
        "controller",
        "stage",
    ]
    assert (keys / "labwire.key").exists()
    assert (keys / "labwire.key_secret").stat().st_mode & 0o077 == 0


def test_ctrl_c_stops_the_demo_and_its_processes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    demo = subprocess.Popen(
        [sys.executable, "-m", "labwire", "demo", "--positions", "500", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while not (out / "image_001.png").exists():  # the scan is under way
            assert demo.poll() is None, demo.communicate()
            assert time.monotonic() < deadline, "the scan did not start"
            time.sleep(0.02)
        children = _children_of(demo.pid)
        assert len(children) == 3
        demo.send_signal(signal.SIGINT)
        _, stderr = demo.communicate(timeout=20)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 130, stderr
    assert "interrupted" in stderr
    deadline = time.monotonic() + 5
    while any(_is_running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [pid for pid in children if _is_running(pid)]
    metadata = read_metadata(out)
    assert metadata["status"] == "cancelled"
    assert len(metadata["images"]) == len(list(out.glob("image_*")))


def test_demo_refuses_zero_positions(tmp_path: Path) -> None:
    result = _run_demo("--positions", "0", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--positions must be at least 1" in result.stderr
