"""Scan planning: what a scan does (:class:`ScanConfig`), its stops, and the checks on both.

A scan stops at ``positions`` points evenly spaced on a circle around the plant, at one
height; :meth:`ScanConfig.stops` lists them and ``_check_within_limits`` holds them to the
stage's travel limits before the stage moves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["ScanAborted", "ScanConfig"]


class ScanAborted(RuntimeError):
    """The scan was stopped by :meth:`ControllerInterface.abort`."""


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """What :meth:`ControllerInterface.run_scan` does; every field has a default.

    Attributes:
        positions: Number of stops on the circle (images taken).
        center: ``[x, y]`` of the circle's centre (where the plant is), in mm.
        radius: Circle radius in mm.
        z: Height of the stage during the scan, in mm.
        output: Folder for the images and ``metadata.json`` (relative to the controller's
            working directory; created when missing).
        lores: Grab half-resolution images.
        encoding: Set the camera's encoding first (``"png"``, ``"jpeg"``, ``"raw"``); None
            keeps the camera's.
        speed: Set the stage speed (mm/s) first; None keeps the stage's.
        home: Home the stage before the scan.
        camera: The camera's registry name or URL (None: the controller's ``camera``).
        stage: The stage's registry name or URL (None: the controller's ``stage``).
    """

    positions: int = 36
    center: tuple[float, float] = (400.0, 400.0)
    radius: float = 300.0
    z: float = 100.0
    output: str = "scan-output"
    lores: bool = False
    encoding: str | None = None
    speed: float | None = None
    home: bool = False
    camera: str | None = None
    stage: str | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any] | None) -> ScanConfig:
        """Build and check a configuration from a JSON-like dict.

        Raises:
            ValueError: An unknown key or a value of the wrong kind or range.
        """
        config = dict(config or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown scan config key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        if "positions" in config:
            values["positions"] = _number(config, "positions", int, 1, 100_000)
        if "center" in config:
            try:
                cx, cy = (float(v) for v in config["center"])
            except (TypeError, ValueError):
                raise ValueError(f"center must be [x, y] in mm, got {config['center']!r}") from None
            values["center"] = (cx, cy)
        for key in ("radius", "z"):
            if key in config:
                values[key] = _number(config, key, float, 0.0, 1e6)
        if config.get("speed") is not None:
            values["speed"] = _number(config, "speed", float, 1e-3, 1e6)
        for key in ("lores", "home"):
            if key in config:
                if not isinstance(config[key], bool):
                    raise ValueError(f"{key} must be true or false, got {config[key]!r}")
                values[key] = config[key]
        for key in ("output", "encoding", "camera", "stage"):
            if config.get(key) is not None:
                if not isinstance(config[key], str) or not config[key]:
                    raise ValueError(f"{key} must be a non-empty string, got {config[key]!r}")
                values[key] = config[key]
        return cls(**values)

    def stops(self) -> list[tuple[float, float, float, float]]:
        """The scan's stops as ``(angle_degrees, x, y, z)``, counter-clockwise from +x."""
        cx, cy = self.center
        result = []
        for index in range(self.positions):
            angle = 2 * math.pi * index / self.positions
            x = round(cx + self.radius * math.cos(angle), 6)
            y = round(cy + self.radius * math.sin(angle), 6)
            result.append((math.degrees(angle), x, y, self.z))
        return result

    def to_json(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        data = asdict(self)
        data["center"] = list(self.center)
        return data


def _number(config: dict[str, Any], key: str, kind: type, low: float, high: float) -> Any:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{key}={value!r} is outside {low:g}..{high:g}")
    return kind(value)


def _check_within_limits(
    stops: list[tuple[float, float, float, float]], limits: dict[str, list[float]]
) -> None:
    for axis, position in (("x", 1), ("y", 2), ("z", 3)):
        low, high = limits[axis]
        values = [stop[position] for stop in stops]
        if min(values) < low or max(values) > high:
            raise ValueError(
                f"the scan circle needs {axis} from {min(values):g} to {max(values):g} mm, "
                f"but the stage's travel limits are {low:g}..{high:g} mm; "
                "change center, radius or z"
            )
