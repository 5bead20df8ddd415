from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from labwire.errors import RemoteError
from labwire.sim import CameraClient, SimCamera, SimStage, StageClient, decode_image

from .conftest import wait_for

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def client(camera: SimCamera) -> Iterator[CameraClient]:
    with CameraClient(None, camera.endpoint, raise_errors=True) as proxy:
        yield proxy


def test_get_image_returns_a_png_with_its_info(client: CameraClient) -> None:
    buffer, info = client.get_image()
    with Image.open(io.BytesIO(bytes(buffer))) as image:
        assert image.format == "PNG"
        assert image.size == (640, 480)
    assert info["format"] == "png"
    assert info["size"] == [640, 480]
    assert info["channels"] == 3
    assert info["rotation"] == 0
    assert info["bytes"] == len(buffer)
    assert info["pose"] == [0.0, 0.0, 0.0]


def test_jpeg_encoding_and_lores(client: CameraClient) -> None:
    client.encoding = "jpg"
    assert client.encoding == "jpeg"
    buffer, info = client.get_image(lores=True)
    with Image.open(io.BytesIO(bytes(buffer))) as image:
        assert image.format == "JPEG"
        assert image.size == (320, 240)
    assert info["lores"] is True
    assert decode_image(buffer, info).shape == (240, 320, 3)


def test_raw_encoding_returns_a_numpy_frame(client: CameraClient) -> None:
    client.encoding = "raw"
    frame, info = client.get_image()
    assert isinstance(frame, np.ndarray)
    assert frame.shape == (480, 640, 3)
    assert frame.dtype == np.uint8
    assert info["shape"] == [480, 640, 3]
    assert decode_image(frame, info) is not None


def test_rotation_turns_the_image(client: CameraClient) -> None:
    client.rotation = 90
    client.encoding = "raw"
    frame, info = client.get_image()
    assert frame.shape == (640, 480, 3)
    assert info["size"] == [480, 640]
    assert info["rotation"] == 90


def test_images_depend_on_the_stage_position(client: CameraClient, stage: SimStage) -> None:
    client.encoding = "raw"
    with StageClient(None, stage.endpoint, raise_errors=True) as mover:
        mover.move_to(700, 400, 100)
        first, first_info = client.get_image()
        mover.move_to(400, 700, 100)
        second, second_info = client.get_image()
    assert first_info["pose"] == [700.0, 400.0, 100.0]
    assert second_info["pose"] == [400.0, 700.0, 100.0]
    assert not np.array_equal(first, second)


def test_property_changes_emit_signals(client: CameraClient) -> None:
    seen: list[tuple[str, object]] = []
    lock = threading.Lock()

    def record(name: str):  # type: ignore[no-untyped-def]
        def slot(value: object) -> None:
            with lock:
                seen.append((name, value))

        return slot

    client.modeChanged.connect(record("mode"))
    client.resolutionChanged.connect(record("resolution"))
    client.configChanged.connect(record("config"))
    # The subscription reaches the publisher asynchronously: toggle until one arrives.
    modes = itertools.cycle(["VIDEO", "STILL"])
    wait_for(lambda: client.__setattr__("mode", next(modes)) or seen, what="modeChanged")
    client.resolution = "320x200"
    client.config = {"jpeg_quality": 50}
    wait_for(lambda: any(name == "config" for name, _ in seen), what="configChanged")
    assert ("resolution", [320, 200]) in seen
    config = next(value for name, value in seen if name == "config")
    assert isinstance(config, dict) and config["jpeg_quality"] == 50
    assert client.resolution == [320, 200]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("mode", "SLOW", "STILL or VIDEO"),
        ("rotation", 45, "0, 90, 180 or 270"),
        ("encoding", "gif", "png, jpeg or raw"),
        ("resolution", [1, 1], "outside"),
        ("config", {"shutter": 1}, "unknown camera config key"),
        ("config", {"jpeg_quality": 500}, "outside"),
    ],
)
def test_bad_property_values_are_refused(
    client: CameraClient, name: str, value: object, message: str
) -> None:
    with pytest.raises(RemoteError, match=message):
        setattr(client, name, value)


def test_a_camera_without_pose_source_sees_the_plant_from_the_side() -> None:
    with (
        SimCamera(None, "tcp://127.0.0.1:0") as camera,
        CameraClient(None, camera.endpoint) as client,
    ):
        buffer, info = client.get_image(True)
    assert info["pose"] is None
    assert decode_image(buffer, info).shape == (240, 320, 3)
