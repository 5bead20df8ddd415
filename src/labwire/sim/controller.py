"""A scan controller: moves a stage around a plant and grabs an image at every stop.

:class:`SimController` serves :class:`ControllerInterface`. Its :meth:`~SimController.run_scan`
finds the camera and the stage (by registry name or URL), moves the stage through N positions
on a circle around the plant, grabs an image at each through the camera's buffer method, and
writes the images plus a ``metadata.json`` to an output folder. It announces its progress with
``progressChanged`` / ``maxProgressChanged``; since the RPC server hands a slow handler off to
another thread, property reads (``progress``, ``state``...) and other clients keep being
served during the scan. ``metadata.json`` is written at the end of every scan, including a
failed or aborted one (``"status"`` says which), and lists every image written.

A scan's plan (:class:`~labwire.sim.scan.ScanConfig`, its stops and their checks) is in
:mod:`labwire.sim.scan`; what it writes in its output folder (the images, ``metadata.json``,
the summary) is in :mod:`labwire.sim.output`. The controller runs the one with the devices and
records it with the other; the public names of both are re-exported here.

Example (devices given by URL here; registry names work the same with ``registry_url``)::

    from labwire.sim import ControllerClient, SimCamera, SimController, SimStage

    with SimStage() as stage, SimCamera() as camera:
        devices = {"camera": camera.endpoint, "stage": stage.endpoint}
        with SimController(**devices) as server, ControllerClient(None, server.endpoint) as scan:
            summary = scan.run_scan({"positions": 8, "output": "scan-output"})
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

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
from labwire.sim.output import (
    _GENERATOR,
    METADATA_FILE,
    _iso,
    _remove_previous_scan,
    _summary,
    _write_image,
    _write_json,
    read_metadata,
)
from labwire.sim.scan import ScanAborted, ScanConfig, _check_within_limits
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


def _device_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a registry name or URL, got {value!r}")
    return value
