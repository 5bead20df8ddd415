"""Stage moves, homing and the scan as operations: progress, cancel, and a stage that stops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labwire.registry import DeviceRegistry
from labwire.rpc import OperationCancelled
from labwire.sim import ControllerClient, SimCamera, SimController, SimStage, StageClient
from labwire.wire.operations import OperationState, Update

from .conftest import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def slow_stage() -> Iterator[SimStage]:
    server = SimStage(None, "tcp://127.0.0.1:0", speed=50.0).start()
    yield server
    server.close()


def test_a_move_reports_its_progress_and_arrives(slow_stage: SimStage) -> None:
    seen: list[Update] = []
    with StageClient(None, slow_stage.endpoint) as client:
        client.speed = 2000.0
        handle = client.start_operation("move_to", 100, 100, 10, on_progress=seen.append)
        assert handle.result(10) == [100.0, 100.0, 10.0]
        assert seen, "no progress reported"
        fractions = [u.fraction for u in seen]
        assert fractions == sorted(fractions)
        assert all(f is not None and 0.0 <= f <= 1.0 for f in fractions)
        handle.close()
        home = client.start_operation("home")
        assert home.result(10) == [0.0, 0.0, 0.0]
        home.close()
        assert client.move_to(1, 2, 3) == [1.0, 2.0, 3.0]  # the plain call of the seed API


def test_cancelling_a_move_halts_the_stage_where_it_is(slow_stage: SimStage) -> None:
    with StageClient(None, slow_stage.endpoint) as client:
        handle = client.start_operation("move_to", 700, 700, 300)
        wait_for(lambda: handle.progress is not None, what="a progress update")
        handle.cancel()
        with pytest.raises(OperationCancelled, match="cancelled by the caller"):
            handle.result(10)
        handle.close()
        assert not client.is_moving
        stopped = client.position
        assert stopped != [700.0, 700.0, 300.0]
        assert client.position == stopped


def test_cancelling_the_scan_halts_the_stage(
    registry: DeviceRegistry, camera: SimCamera, slow_stage: SimStage, tmp_path: Path
) -> None:
    slow_stage.register_to_registry("stage", "stage", registry.url)
    camera.register_to_registry("camera", "camera", registry.url)
    controller = SimController(None, "tcp://127.0.0.1:0", registry_url=registry.url).start()
    try:
        with ControllerClient(None, controller.endpoint) as client:
            config = {"positions": 50, "output": str(tmp_path), "home": False}
            scan = client.start_operation("run_scan", config)
            wait_for(lambda: slow_stage.is_moving, what="the first move")
            info = client.cancel_operation(scan.id, "stop now")
            assert info.state in (OperationState.CANCELLING, OperationState.CANCELLED)
            with pytest.raises(OperationCancelled, match="stop now"):
                scan.result(10)
            scan.close()
            wait_for(lambda: not slow_stage.is_moving, what="the stage to halt")
            assert client.state == "cancelled"
        with StageClient(None, slow_stage.endpoint) as stage:
            assert stage.operations()[-1].state == OperationState.CANCELLED
    finally:
        controller.close()
