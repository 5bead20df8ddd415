"""What a scan leaves in its output folder: the images, ``metadata.json`` and the summary.

``metadata.json`` is written atomically (a temporary file, then a rename) at the end of every
scan, and a new scan in the same folder first removes the files the previous one listed, so
the metadata always describes exactly the images present.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["METADATA_FILE", "read_metadata"]

#: Name of the metadata file a scan writes in its output folder.
METADATA_FILE = "metadata.json"
_GENERATOR = "labwire.sim.SimController"


def read_metadata(output: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``metadata.json`` a scan wrote in ``output``.

    Raises:
        FileNotFoundError: There is no metadata file.
        ValueError: The file is not valid JSON.
    """
    with open(Path(output) / METADATA_FILE, encoding="utf-8") as stream:
        data: dict[str, Any] = json.load(stream)
    return data


def _write_image(path: Path, buffer: Any) -> int:
    if isinstance(buffer, np.ndarray):
        np.save(path, buffer, allow_pickle=False)
        return int(buffer.nbytes)
    view = memoryview(buffer)
    path.write_bytes(view)
    return view.nbytes


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{memoryview(value).nbytes} bytes>"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _remove_previous_scan(output: Path) -> None:
    """Delete the files a previous scan listed in this folder, so metadata stays complete."""
    try:
        previous = read_metadata(output)
    except (OSError, ValueError):
        return
    if not isinstance(previous, dict) or previous.get("generator") != _GENERATOR:
        return
    for entry in previous.get("images") or []:
        name = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(name, str) and name == Path(name).name and name.startswith("image_"):
            with contextlib.suppress(FileNotFoundError):
                (output / name).unlink()
    with contextlib.suppress(FileNotFoundError):
        (output / METADATA_FILE).unlink()


def _summary(
    status: str,
    images: list[dict[str, Any]],
    latencies: list[float],
    elapsed: float,
    output: Path,
    devices: dict[str, Any],
) -> dict[str, Any]:
    total = sum(int(image["bytes"]) for image in images)
    ordered = sorted(latencies)
    latency = {
        "median": round(statistics.median(ordered) * 1000, 3) if ordered else None,
        "p99": round(ordered[max(math.ceil(0.99 * len(ordered)) - 1, 0)] * 1000, 3)
        if ordered
        else None,
        "max": round(ordered[-1] * 1000, 3) if ordered else None,
    }
    return {
        "status": status,
        "images": len(images),
        "bytes": total,
        "elapsed_s": round(elapsed, 3),
        "images_per_second": round(len(images) / elapsed, 2) if elapsed > 0 else 0.0,
        "latency_ms": latency,
        "output": str(output),
        "metadata": str(output / METADATA_FILE),
        "camera": devices.get("camera", {}).get("address", ""),
        "stage": devices.get("stage", {}).get("address", ""),
    }


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
