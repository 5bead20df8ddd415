"""A scan controller: moves a stage around a plant and grabs an image at every stop.

:class:`SimController` serves :class:`ControllerInterface`. Its :meth:`~SimController.run_scan`
finds the camera and the stage (by registry name or URL), moves the stage through N positions
on a circle around the plant, grabs an image at each through the camera's buffer method, and
writes the images plus a ``metadata.json`` to an output folder. It announces its progress with
``progressChanged`` / ``maxProgressChanged``; since the RPC server hands a slow handler off to
another thread, property reads (``progress``, ``state``...) and other clients keep being
served during the scan. ``metadata.json`` is written at the end of every scan, including a
failed or aborted one (``"status"`` says which), and lists every image written.

Example (devices given by URL here; registry names work the same with ``registry_url``)::

    from labwire.sim import ControllerClient, SimCamera, SimController, SimStage

    with SimStage() as stage, SimCamera() as camera:
        devices = {"camera": camera.endpoint, "stage": stage.endpoint}
        with SimController(**devices) as server, ControllerClient(None, server.endpoint) as scan:
            summary = scan.run_scan({"positions": 8, "output": "scan-output"})
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from labwire.config import Settings
from labwire.rpc import (
    Operation,
    OperationCancelled,
    OperationHandle,
    RPCClient,
    RPCProperty,
    RPCServer,
    RPCSignal,
)
from labwire.sim.camera import CameraClient, file_extension
from labwire.sim.connect import open_device
from labwire.sim.stage import StageClient

__all__ = [
    "METADATA_FILE",
    "ControllerClient",
    "ControllerInterface",
    "ScanAborted",
    "ScanConfig",
    "SimController",
    "read_metadata",
]

_log = logging.getLogger(__name__)

#: Name of the metadata file a scan writes in its output folder.
METADATA_FILE = "metadata.json"
_GENERATOR = "labwire.sim.SimController"


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


class ControllerInterface:
    """What a scan controller exposes over the network."""

    progressChanged = RPCSignal(int)
    maxProgressChanged = RPCSignal(int)
    stateChanged = RPCSignal(str)
    scanFinished = RPCSignal(dict)

    def run_scan(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a scan (see :class:`ScanConfig` for ``config``) and return its summary.

        The summary holds ``status``, ``images``, ``bytes``, ``elapsed_s``,
        ``images_per_second``, ``latency_ms`` (``median``, ``p99``, ``max`` of the image
        calls), ``output`` and ``metadata`` (absolute paths), ``camera`` and ``stage``
        (addresses). Only one scan runs at a time.

        Raises:
            ValueError: Bad configuration, or circle outside the stage's travel limits.
            RuntimeError: A scan is already running.
            ScanAborted: :meth:`abort` was called (metadata lists the images taken).
        """
        raise NotImplementedError

    def abort(self) -> bool:
        """Stop the running scan after the current image; returns whether one was running."""
        raise NotImplementedError

    @property
    def progress(self) -> int:
        """Images taken in the current (or last) scan."""
        raise NotImplementedError

    @property
    def max_progress(self) -> int:
        """Images the current (or last) scan takes in all."""
        raise NotImplementedError

    @property
    def state(self) -> str:
        """``"idle"``, ``"scanning"``, ``"done"``, ``"failed"``, ``"aborted"``, ``"cancelled"``."""
        raise NotImplementedError

    @property
    def camera(self) -> str:
        """Registry name or URL of the camera scans use by default."""
        raise NotImplementedError

    @camera.setter
    def camera(self, value: str) -> None:
        raise NotImplementedError

    @property
    def stage(self) -> str:
        """Registry name or URL of the stage scans use by default."""
        raise NotImplementedError

    @stage.setter
    def stage(self, value: str) -> None:
        raise NotImplementedError

    @property
    def last_scan(self) -> dict[str, Any]:
        """Summary of the last finished scan ({} before the first)."""
        raise NotImplementedError


class SimController(ControllerInterface, RPCServer):
    """A scan controller served over RPC (see :class:`ControllerInterface`).

    Args:
        context: ZeroMQ context, or None for the process-wide one.
        url: Where to listen, e.g. ``"tcp://127.0.0.1:0"``.
        alive_timeout: Seconds a registry keeps the controller listed without renewal.
        camera: The camera's registry name or URL.
        stage: The stage's registry name or URL.
        registry_url: The registry to look names up in (None: ``settings.registry_url``).
        **options: Passed to :class:`~labwire.rpc.RPCServer` (``settings``, ``workers``...);
            ``settings`` is also used for the connections to the camera and the stage.
    """

    def __init__(
        self,
        context: Any = None,
        url: str = "tcp://127.0.0.1:0",
        alive_timeout: int = 60,
        *,
        camera: str = "camera",
        stage: str = "stage",
        registry_url: str | None = None,
        **options: Any,
    ) -> None:
        # Double underscores: this state can never clash with RPCServer's own private names.
        self.__camera = camera
        self.__stage = stage
        self.registry_url = registry_url
        self.__device_settings: Settings | None = options.get("settings")
        self.__progress = 0
        self.__max_progress = 0
        self.__state = "idle"
        self.__last_scan: dict[str, Any] = {}
        self.__scan_lock = threading.Lock()
        self.__abort = threading.Event()
        super().__init__(context, url, alive_timeout, **options)

    # ------------------------------------------------------------------ methods

    @RPCServer.register_operation(timeout=None)
    def run_scan(
        self, operation: Operation, config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Move the stage around a circle, grab and save an image at each stop.

        An operation: it reports a progress update per image saved (the image's record as
        the intermediate result); cancelling it halts the stage where it is.
        """
        scan = ScanConfig.from_dict(config)
        if not self.__scan_lock.acquire(blocking=False):
            raise RuntimeError("a scan is already running; wait for it or abort() it")
        try:
            self.__abort.clear()
            return self.__run(scan, operation)
        finally:
            self.__scan_lock.release()

    @RPCServer.register_method_json(timeout=2000)
    def abort(self) -> bool:
        """Stop the running scan after the current image; returns whether one was running."""
        if not self.__scan_lock.locked():
            return False
        self.__abort.set()
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no scan is running (e.g. after :meth:`abort`); False on timeout.

        A local helper for the process that serves the controller; not exported over RPC.
        """
        if not self.__scan_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self.__scan_lock.release()
        return True

    def __run(self, scan: ScanConfig, operation: Operation) -> dict[str, Any]:
        output = Path(scan.output).expanduser().resolve()
        output.mkdir(parents=True, exist_ok=True)
        _remove_previous_scan(output)
        stops = scan.stops()
        self.__set_progress(0, len(stops))
        self.__set_state("scanning")
        started_wall, started = time.time(), time.perf_counter()
        images: list[dict[str, Any]] = []
        latencies: list[float] = []
        devices: dict[str, Any] = {}
        status, error = "failed", ""
        camera_name = scan.camera or self.__camera
        stage_name = scan.stage or self.__stage
        camera: CameraClient | None = None
        stage: StageClient | None = None
        try:
            camera = open_device(
                CameraClient, camera_name, self.registry_url,
                settings=self.__device_settings, timeout=5000, raise_errors=True,
            )  # fmt: skip
            stage = open_device(
                StageClient, stage_name, self.registry_url,
                settings=self.__device_settings, timeout=5000, raise_errors=True,
            )  # fmt: skip
            if scan.encoding is not None:
                camera.encoding = scan.encoding
            if scan.speed is not None:
                stage.speed = scan.speed
            _check_within_limits(stops, stage.limits)
            devices = {
                "camera": {"device": camera_name, "address": camera.url},
                "stage": {"device": stage_name, "address": stage.url},
            }
            devices["camera"]["properties"] = camera.get_properties()
            devices["stage"]["properties"] = stage.get_properties()
            moves = _Moves(stage, operation)
            if scan.home:
                moves.run("home")
            for index, (angle, x, y, z) in enumerate(stops):
                if self.__abort.is_set():
                    raise ScanAborted(f"scan aborted after {index} of {len(stops)} images")
                operation.check()
                reached = moves.run("move_to", x, y, z)
                begin = time.perf_counter()
                buffer, info = camera.get_image(scan.lores)
                latency = time.perf_counter() - begin
                name = f"image_{index:03d}.{file_extension(info)}"
                size = _write_image(output / name, buffer)
                latencies.append(latency)
                images.append(
                    {
                        "index": index,
                        "file": name,
                        "angle_deg": round(angle, 6),
                        "target": [x, y, z],
                        "position": reached,
                        "format": info.get("format"),
                        "size": info.get("size"),
                        "rotation": info.get("rotation"),
                        "frame": info.get("frame"),
                        "bytes": size,
                        "latency_ms": round(latency * 1000, 3),
                    }
                )
                self.__set_progress(index + 1, len(stops))
                with contextlib.suppress(OperationCancelled):  # seen at the next stop
                    operation.report(
                        (index + 1) / len(stops),
                        f"image {index + 1} of {len(stops)} saved",
                        images[-1],
                    )
            status = "done"
        except ScanAborted as exc:
            status, error = "aborted", str(exc)
            raise
        except OperationCancelled as exc:
            status, error = "cancelled", str(exc)
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            for client in (camera, stage):
                if client is not None:
                    client.close()
            elapsed = time.perf_counter() - started
            summary = _summary(status, images, latencies, elapsed, output, devices)
            metadata = {
                "generator": _GENERATOR,
                "status": status,
                "error": error,
                "started": _iso(started_wall),
                "finished": _iso(time.time()),
                "config": scan.to_json(),
                "devices": devices,
                "images": images,
                "summary": summary,
            }
            _write_json(output / METADATA_FILE, metadata)
            self.__last_scan = summary
            self.__set_state(status)
            self.scanFinished.emit(summary)
            _log.info("scan %s: %d images in %s", status, len(images), output)
        return summary

    def __set_progress(self, progress: int, maximum: int) -> None:
        if maximum != self.__max_progress:
            self.__max_progress = maximum
            self.maxProgressChanged.emit(maximum)
        self.__progress = progress
        self.progressChanged.emit(progress)

    def __set_state(self, state: str) -> None:
        if state != self.__state:
            self.__state = state
            self.stateChanged.emit(state)

    # ------------------------------------------------------------------ properties

    def __get_progress(self) -> int:
        return self.__progress

    def __get_max_progress(self) -> int:
        return self.__max_progress

    def __get_state(self) -> str:
        return self.__state

    def __get_camera(self) -> str:
        return self.__camera

    def __set_camera(self, value: str) -> None:
        self.__camera = _device_name(value, "camera")

    def __get_stage(self) -> str:
        return self.__stage

    def __set_stage(self, value: str) -> None:
        self.__stage = _device_name(value, "stage")

    def __get_last_scan(self) -> dict[str, Any]:
        return dict(self.__last_scan)

    progress = RPCProperty(
        __get_progress, doc=ControllerInterface.progress.__doc__,
        notify=ControllerInterface.progressChanged,
    )  # fmt: skip
    max_progress = RPCProperty(
        __get_max_progress, doc=ControllerInterface.max_progress.__doc__,
        notify=ControllerInterface.maxProgressChanged,
    )  # fmt: skip
    state = RPCProperty(
        __get_state, doc=ControllerInterface.state.__doc__, notify=ControllerInterface.stateChanged
    )
    camera = RPCProperty(__get_camera, __set_camera, doc=ControllerInterface.camera.__doc__)
    stage = RPCProperty(__get_stage, __set_stage, doc=ControllerInterface.stage.__doc__)
    last_scan = RPCProperty(__get_last_scan, doc=ControllerInterface.last_scan.__doc__)


@RPCClient.register_interface(ControllerInterface)
class ControllerClient(ControllerInterface, RPCClient):
    """Client of a scan controller that serves :class:`ControllerInterface`.

    ``run_scan`` has no deadline (the server declares none): the client waits as long as the
    scan runs, and notices a dead controller through its keep-alive pings.
    """


class _Moves:
    """Runs the stage's moves as operations, each cancelled when the scan is."""

    def __init__(self, stage: StageClient, scan: Operation) -> None:
        self._stage = stage
        self._scan = scan
        self._current: OperationHandle | None = None
        self._lock = threading.Lock()
        scan.on_cancel(self._cancel)

    def run(self, method: str, *args: float) -> Any:
        """Run one move to its end and return where the stage is.

        Raises:
            OperationCancelled: The scan was cancelled: the stage stopped where it was.
        """
        handle = self._stage.start_operation(method, *args)
        with self._lock:
            self._current = handle
        try:
            if self._scan.cancelled:  # cancelled before the move was known: stop it now
                handle.cancel("the scan was cancelled")
            return handle.result()
        finally:
            with self._lock:
                self._current = None
            handle.close()

    def _cancel(self) -> None:
        with self._lock:
            handle = self._current
        if handle is not None:
            handle.cancel("the scan was cancelled")


def read_metadata(output: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``metadata.json`` a scan wrote in ``output``.

    Raises:
        FileNotFoundError: There is no metadata file.
        ValueError: The file is not valid JSON.
    """
    with open(Path(output) / METADATA_FILE, encoding="utf-8") as stream:
        data: dict[str, Any] = json.load(stream)
    return data


# ---------------------------------------------------------------------- helpers


def _number(config: dict[str, Any], key: str, kind: type, low: float, high: float) -> Any:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{key}={value!r} is outside {low:g}..{high:g}")
    return kind(value)


def _device_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a registry name or URL, got {value!r}")
    return value


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
