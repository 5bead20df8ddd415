from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from labwire.registry import DeviceRegistry
from labwire.rpc import NoResult
from labwire.sim import (
    ControllerClient,
    ScanConfig,
    SimCamera,
    SimController,
    SimStage,
    read_metadata,
)

from .conftest import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def controller(
    registry: DeviceRegistry, camera: SimCamera, stage: SimStage
) -> Iterator[SimController]:
    stage.register_to_registry("stage", "stage", registry.url)
    camera.register_to_registry("camera", "camera", registry.url)
    server = SimController(None, "tcp://127.0.0.1:0", registry_url=registry.url)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def client(controller: SimController) -> Iterator[ControllerClient]:
    with ControllerClient(None, controller.endpoint) as proxy:
        yield proxy


def test_scan_finds_devices_by_name_and_saves_every_image(
    client: ControllerClient, tmp_path: Path
) -> None:
    summary = client.run_scan({"positions": 6, "output": str(tmp_path), "encoding": "jpeg"})
    assert summary["status"] == "done"
    assert summary["images"] == 6
    metadata = read_metadata(tmp_path)
    assert metadata["status"] == "done"
    files = [entry["file"] for entry in metadata["images"]]
    assert files == [f"image_{i:03d}.jpg" for i in range(6)]
    assert sorted(p.name for p in tmp_path.glob("image_*")) == files
    sizes = set()
    for entry in metadata["images"]:
        data = (tmp_path / entry["file"]).read_bytes()
        assert len(data) == entry["bytes"]
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.format == "JPEG"
        sizes.add(len(data))
    assert len(sizes) > 1, "images taken from different positions should differ"
    assert [entry["angle_deg"] for entry in metadata["images"]] == [0, 60, 120, 180, 240, 300]
    assert metadata["devices"]["camera"]["device"] == "camera"
    assert summary["latency_ms"]["median"] > 0
    assert client.state == "done"
    assert client.progress == client.max_progress == 6


def test_properties_are_served_during_a_scan(
    client: ControllerClient, controller: SimController, tmp_path: Path
) -> None:
    results: list[object] = []
    # About 2 s of scanning: a server that served reads only between scans would stall them.
    config = {"positions": 30, "output": str(tmp_path), "speed": 1000.0}
    scan = threading.Thread(target=lambda: results.append(client.run_scan(config)))
    scan.start()
    try:
        with ControllerClient(None, controller.endpoint) as other:
            wait_for(lambda: other.state == "scanning", what="scan started")
            worst = 0.0
            while other.state == "scanning":
                start = time.monotonic()
                progress = other.progress
                worst = max(worst, time.monotonic() - start)
                assert 0 <= progress <= 30
            assert worst < 1.0, f"a property read took {worst:.3f} s during the scan"
    finally:
        scan.join(20)
    assert isinstance(results[0], dict) and results[0]["images"] == 30


def test_progress_signals(client: ControllerClient, tmp_path: Path) -> None:
    progress: list[int] = []
    maxima: list[int] = []
    client.progressChanged.connect(progress.append)
    client.maxProgressChanged.connect(maxima.append)
    runs = 0

    def scan_until_signalled() -> bool:
        nonlocal runs
        runs += 1
        client.run_scan({"positions": 3 + runs % 2, "output": str(tmp_path)})
        return bool(progress and maxima)

    wait_for(scan_until_signalled, timeout=15, what="progress signals")
    # Signals travel apart from the reply, so the scan's last one may land just after it.
    wait_for(lambda: progress[-1] == maxima[-1], timeout=5, what="the last progress signal")


def test_a_second_scan_is_refused_while_one_runs(
    client: ControllerClient, controller: SimController, tmp_path: Path
) -> None:
    results: list[object] = []
    config = {"positions": 40, "output": str(tmp_path / "first")}
    scan = threading.Thread(target=lambda: results.append(client.run_scan(config)))
    scan.start()
    try:
        with ControllerClient(None, controller.endpoint) as other:
            wait_for(lambda: other.state == "scanning", what="scan started")
            refused = other.run_scan({"positions": 1, "output": str(tmp_path / "second")})
            assert isinstance(refused, NoResult)
            assert "already running" in refused.error
            assert other.abort() is True
    finally:
        scan.join(20)
    aborted = results[0]
    assert isinstance(aborted, NoResult) and aborted.error_type == "ScanAborted"
    metadata = read_metadata(tmp_path / "first")
    assert metadata["status"] == "aborted"
    assert len(metadata["images"]) == len(list((tmp_path / "first").glob("image_*")))


def test_a_circle_outside_the_travel_limits_is_refused_before_moving(
    client: ControllerClient, stage: SimStage, tmp_path: Path
) -> None:
    result = client.run_scan({"positions": 4, "radius": 500, "output": str(tmp_path)})
    assert isinstance(result, NoResult)
    assert "travel limits" in result.error
    assert stage.position == [0.0, 0.0, 0.0]
    assert read_metadata(tmp_path)["status"] == "failed"


def test_a_missing_device_is_reported(client: ControllerClient, tmp_path: Path) -> None:
    result = client.run_scan({"positions": 1, "camera": "nope", "output": str(tmp_path)})
    assert isinstance(result, NoResult)
    assert "nope" in result.error


def test_rerunning_into_the_same_folder_leaves_only_the_new_images(
    client: ControllerClient, tmp_path: Path
) -> None:
    client.run_scan({"positions": 5, "output": str(tmp_path)})
    client.run_scan({"positions": 2, "output": str(tmp_path)})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "image_000.png",
        "image_001.png",
        "metadata.json",
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"positions": 0}, "positions"),
        ({"positionz": 3}, "unknown scan config key"),
        ({"center": "middle"}, "center"),
        ({"lores": "yes"}, "lores"),
    ],
)
def test_bad_scan_configs_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScanConfig.from_dict(config)
