"""Real simulated devices for the command-line tests, and helpers to run ``python -m labwire``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from labwire.registry import DeviceRegistry
from labwire.sim import SimCamera, SimController, SimStage, StagePosition
from tests.commands import Running, environment, labwire

__all__ = ["Lab", "Running", "environment", "labwire"]


@dataclass
class Lab:
    registry: DeviceRegistry
    camera: SimCamera
    stage: SimStage
    controller: SimController

    @property
    def url(self) -> str:
        return self.registry.url


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A registry with a camera, a stage and a controller registered, served in this process."""
    registry = DeviceRegistry(None, "127.0.0.1", "0", heartbeat_interval=0.2)
    registry.start()
    stage = SimStage(None, "tcp://127.0.0.1:0", speed=50_000.0).start()
    pose = StagePosition(stage.endpoint)
    camera = SimCamera(None, "tcp://127.0.0.1:0", pose=pose).start()
    controller = SimController(None, "tcp://127.0.0.1:0", registry_url=registry.url).start()
    try:
        stage.register_to_registry("stage", "stage", registry.url)
        camera.register_to_registry("camera", "camera", registry.url)
        controller.register_to_registry("controller", "controller", registry.url)
        yield Lab(registry, camera, stage, controller)
    finally:
        for server in (controller, camera, stage):
            server.close()
        pose.close()
        registry.stop()
