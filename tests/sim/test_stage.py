from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from labwire.errors import RemoteError
from labwire.rpc import NoResult
from labwire.sim import SimStage, StageClient

from .conftest import wait_for

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def slow_stage() -> Iterator[SimStage]:
    server = SimStage(None, "tcp://127.0.0.1:0", speed=1000.0, tick=0.01)
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_move_takes_distance_over_speed_and_returns_the_position(slow_stage: SimStage) -> None:
    with StageClient(None, slow_stage.endpoint) as stage:
        start = time.monotonic()
        assert stage.move_to(300, 400, 0) == [300.0, 400.0, 0.0]  # 500 mm at 1000 mm/s
        assert time.monotonic() - start >= 0.5
        assert stage.position == [300.0, 400.0, 0.0]
        assert stage.home() == [0.0, 0.0, 0.0]


def test_position_is_readable_during_a_move(slow_stage: SimStage) -> None:
    with StageClient(None, slow_stage.endpoint) as stage:
        mover = threading.Thread(target=lambda: stage.move_to(600, 0, 0))
        mover.start()
        try:
            wait_for(lambda: stage.is_moving, what="move started")
            positions = []
            while stage.is_moving:
                positions.append(stage.position[0])
            assert any(0 < x < 600 for x in positions), positions
        finally:
            mover.join(5)
        assert stage.position == [600.0, 0.0, 0.0]


def test_moves_outside_the_limits_are_refused_with_the_limit(slow_stage: SimStage) -> None:
    with StageClient(None, slow_stage.endpoint) as stage:
        result = stage.move_to(100, 900, 0)
        assert isinstance(result, NoResult)
        assert result.error_type == "ValueError"
        assert "y=900" in result.error
        assert "0..800 mm" in result.error
        assert stage.position == [0.0, 0.0, 0.0]
    with (
        StageClient(None, slow_stage.endpoint, raise_errors=True) as stage,
        pytest.raises(RemoteError, match="travel limits of axis z"),
    ):
        stage.move_to(0, 0, -1)


def test_halt_stops_a_move(slow_stage: SimStage) -> None:
    results: list[object] = []
    with StageClient(None, slow_stage.endpoint) as stage:
        mover = threading.Thread(target=lambda: results.append(stage.move_to(800, 800, 0)))
        mover.start()
        try:
            wait_for(lambda: stage.is_moving, what="move started")
            assert stage.halt() is True
        finally:
            mover.join(5)
        assert isinstance(results[0], NoResult)
        assert "halted" in results[0].error
        assert stage.position[0] < 800
        assert stage.halt() is False


def test_motion_signals(slow_stage: SimStage) -> None:
    done: list[list[float]] = []
    positions: list[list[float]] = []
    with StageClient(None, slow_stage.endpoint) as stage:
        stage.motionDone.connect(done.append)
        stage.positionChanged.connect(positions.append)
        targets = iter([(10.0 * i, 0.0, 0.0) for i in range(1, 100)])
        wait_for(lambda: stage.move_to(*next(targets)) and done, what="motionDone")
    assert done[-1][1:] == [0.0, 0.0]
    assert positions


def test_speed_is_checked_and_announced(slow_stage: SimStage) -> None:
    with StageClient(None, slow_stage.endpoint, raise_errors=True) as stage:
        stage.speed = 250
        assert stage.speed == 250.0
        with pytest.raises(RemoteError, match="speed must be"):
            stage.speed = 0
        assert stage.limits == {"x": [0.0, 800.0], "y": [0.0, 800.0], "z": [0.0, 400.0]}


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="axis 'z'"):
        SimStage(None, "tcp://127.0.0.1:0", limits={"x": (0, 1), "y": (0, 1)})
