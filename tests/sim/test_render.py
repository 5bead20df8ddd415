from __future__ import annotations

import math

import numpy as np
import pytest

from labwire.sim import View, render_plant

pytestmark = pytest.mark.timeout(10)


def test_render_is_an_rgb_frame_of_the_requested_size() -> None:
    frame = render_plant(320, 200)
    assert frame.shape == (200, 320, 3)
    assert frame.dtype == np.uint8


def test_render_is_deterministic_without_noise() -> None:
    view = View(angle=1.0, distance=250.0, height=120.0)
    assert np.array_equal(render_plant(160, 120, view), render_plant(160, 120, view))


def test_the_view_angle_changes_the_image() -> None:
    front = render_plant(160, 120, View(angle=0.0))
    side = render_plant(160, 120, View(angle=math.pi / 2))
    assert np.count_nonzero(np.any(front != side, axis=2)) > 200


def test_view_from_a_stage_position_points_at_the_plant() -> None:
    view = View.from_position(400.0, 700.0, 50.0, 400.0, 400.0)
    assert view.angle == pytest.approx(math.pi / 2)
    assert view.distance == pytest.approx(300.0)
    assert view.height == 50.0


def test_render_rejects_an_empty_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        render_plant(0, 10)
