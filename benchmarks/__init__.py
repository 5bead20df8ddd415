"""labwire benchmarks: every figure is a ratio against raw pyzmq measured in the same run."""

from __future__ import annotations

from typing import Any


def row(
    name: str, measured: float | str, raw: float | str, unit: str, ratio: float | None, target: str
) -> dict[str, Any]:
    """One row of the runner's table (``python -m benchmarks``)."""
    return {
        "name": name,
        "measured": measured,
        "raw": raw,
        "unit": unit,
        "ratio": ratio,
        "target": target,
    }
