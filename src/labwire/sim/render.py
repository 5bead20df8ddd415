"""Synthetic but real images: a potted plant seen from a camera moving around it.

The scene is a pot, a stem and leaves arranged like a real rosette (each leaf turned by the
golden angle from the previous one). What the camera sees depends on where it is: the view
angle around the plant turns the leaves (those pointing at the camera look short, those side
on look long, the far ones are darker and hidden behind the near ones), the distance scales the
plant, and the camera height moves it up or down the frame. So the images of a scan around the
plant differ from one another, as they would with real hardware, and compress like photographs
of a simple scene rather than like noise.

Everything here is plain numpy; encoding to PNG/JPEG is the camera's business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Frame", "View", "render_plant"]

Frame = npt.NDArray[np.uint8]
"""An image as an ``(height, width, 3)`` array of RGB bytes."""

_GOLDEN_ANGLE = math.radians(137.508)
_REFERENCE_DISTANCE = 300.0  # mm: the plant fills the frame's height at this distance


@dataclass(frozen=True, slots=True)
class View:
    """Where the camera is, relative to the plant.

    Attributes:
        angle: Azimuth of the camera around the plant, in radians.
        distance: Horizontal distance from the plant, in mm.
        height: Camera height above the pot, in mm (0: level with the pot rim).
    """

    angle: float = 0.0
    distance: float = _REFERENCE_DISTANCE
    height: float = 100.0

    @classmethod
    def from_position(cls, x: float, y: float, z: float, plant_x: float, plant_y: float) -> View:
        """The view from stage position ``(x, y, z)`` of a plant at ``(plant_x, plant_y)``."""
        dx, dy = x - plant_x, y - plant_y
        return cls(math.atan2(dy, dx), max(math.hypot(dx, dy), 20.0), z)


def render_plant(
    width: int,
    height: int,
    view: View | None = None,
    *,
    seed: int = 7,
    leaves: int = 11,
    exposure: float = 1.0,
    noise: float = 0.0,
) -> Frame:
    """Render the plant as seen from ``view``.

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        view: Camera position relative to the plant (default: a side view at 300 mm).
        seed: Which plant: leaf lengths and tilts vary with it.
        leaves: Number of leaves.
        exposure: Brightness factor (1.0: nominal).
        noise: Standard deviation of simulated sensor noise, in grey levels (0: none).

    Returns:
        An ``(height, width, 3)`` uint8 RGB array.

    Raises:
        ValueError: A size is not positive.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    view = view or View()
    rng = np.random.default_rng(seed)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]

    image = np.empty((height, width, 3), dtype=np.float32)
    # Backdrop: a soft vertical gradient, then a darker bench under the pot.
    gradient = ys / max(height - 1, 1)
    image[..., 0] = 200 - 40 * gradient
    image[..., 1] = 210 - 35 * gradient
    image[..., 2] = 225 - 20 * gradient
    scale = height / 480.0 * _REFERENCE_DISTANCE / view.distance
    centre_x = width / 2.0
    rim_y = height * 0.72 + (view.height - 100.0) * 0.6 * height / 480.0
    bench_y = rim_y + 70 * scale
    image[np.broadcast_to(ys > bench_y, (height, width))] = (120, 105, 90)

    # Pot: a trapezoid, with a marker that shows which way the pot faces.
    pot_top, pot_bottom = 46 * scale, 34 * scale
    in_pot = (ys >= rim_y) & (ys <= bench_y)
    fraction = np.clip((ys - rim_y) / max(bench_y - rim_y, 1.0), 0.0, 1.0)
    half = pot_top + (pot_bottom - pot_top) * fraction
    pot = in_pot & (np.abs(xs - centre_x) <= half)
    image[pot] = (170, 85, 50)
    marker_x = centre_x + pot_top * 0.8 * math.sin(-view.angle)
    if math.cos(view.angle) > 0:
        marker = (xs - marker_x) ** 2 + (ys - (rim_y + 20 * scale)) ** 2 <= (6 * scale) ** 2
        image[marker] = (230, 220, 60)

    # Stem.
    stem_height = 290 * scale
    stem = (
        (np.abs(xs - centre_x) <= max(2.5 * scale, 1.0))
        & (ys <= rim_y)
        & (ys >= rim_y - stem_height)
    )
    image[stem] = (60, 120, 45)

    # Leaves, drawn from the farthest to the nearest.
    specs = []
    for index in range(leaves):
        level = (index + 1) / (leaves + 1)
        azimuth = index * _GOLDEN_ANGLE + rng.uniform(-0.15, 0.15)
        length = (150 - 80 * level) * rng.uniform(0.85, 1.15) * scale
        breadth = length * rng.uniform(0.28, 0.36)
        tilt = rng.uniform(0.25, 0.6)  # radians above horizontal
        relative = azimuth - view.angle
        depth = math.cos(relative)  # 1: pointing at the camera, -1: away from it
        specs.append((depth, level, relative, length, breadth, tilt))
    specs.sort(key=lambda spec: spec[0])
    for depth, level, relative, length, breadth, tilt in specs:
        side = math.sin(relative)
        reach = length * max(abs(side), 0.12)
        base_x = centre_x
        base_y = rim_y - stem_height * level
        direction = 1.0 if side >= 0 else -1.0
        angle = tilt * direction
        cx = base_x + direction * reach / 2 * math.cos(tilt)
        cy = base_y - reach / 2 * math.sin(tilt)
        semi_major = max(reach / 2, 2.0)
        semi_minor = max(breadth / 2 * (0.55 + 0.45 * abs(depth)), 1.5)
        box = semi_major + semi_minor
        top, bottom = int(max(cy - box, 0)), int(min(cy + box + 1, height))
        left, right = int(max(cx - box, 0)), int(min(cx + box + 1, width))
        if top >= bottom or left >= right:
            continue
        u = xs[:, left:right] - cx
        v = ys[top:bottom, :] - cy
        along = u * math.cos(angle) - v * math.sin(angle)
        across = u * math.sin(angle) + v * math.cos(angle)
        inside = (along / semi_major) ** 2 + (across / semi_minor) ** 2 <= 1.0
        shade = 0.6 + 0.4 * (depth + 1) / 2
        vein = np.abs(across) <= max(semi_minor * 0.08, 0.6)
        region = image[top:bottom, left:right]
        region[inside] = (40 * shade, 150 * shade, 50 * shade)
        region[inside & vein] = (90 * shade, 185 * shade, 80 * shade)

    if exposure != 1.0:
        image *= exposure
    if noise > 0:
        image += np.random.default_rng().normal(0.0, noise, size=image.shape).astype(np.float32)
    result: Frame = np.clip(image, 0, 255).astype(np.uint8)
    return result
