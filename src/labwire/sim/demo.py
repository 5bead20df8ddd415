"""The whole ``labwire demo``: a simulated plant-imaging scan over real processes and sockets.

:class:`Demo` starts a :class:`~labwire.sim.lab.SimLab` (a registry, a camera and a stage,
each in its own process, registered by name), serves a
:class:`~labwire.sim.SimController` in this process and registers it too, then connects to the
controller *by name* and asks it for a scan: the controller finds the camera and the stage by
name, moves the stage through N positions on a circle, grabs an image at each through the
camera's buffer method and writes the images and ``metadata.json``. The command line draws the
progress bar and the summary; this module only runs things and reports.

Example::

    from labwire.sim.demo import Demo

    with Demo(positions=8, output="demo-output") as demo:
        report = demo.run(on_progress=lambda done, total: print(done, "/", total))
    print(report.summary["images_per_second"])
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from labwire.config import Settings, default_settings
from labwire.errors import LabwireError
from labwire.registry import DeviceInfo, RegistryClient, connect
from labwire.rpc import OperationHandle
from labwire.sim.controller import ControllerClient, SimController, read_metadata
from labwire.sim.lab import SimLab
from labwire.wire.operations import Update

__all__ = ["Demo", "DemoReport"]

_log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], object]


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What a demo scan did.

    Attributes:
        registry_url: The registry the devices registered with.
        devices: The devices the registry listed before the scan (found by name).
        summary: The controller's scan summary (see ``ControllerInterface.run_scan``).
        output: The output folder.
        metadata: The ``metadata.json`` the scan wrote.
    """

    registry_url: str
    devices: tuple[DeviceInfo, ...]
    summary: dict[str, Any]
    output: Path
    metadata: dict[str, Any]


class Demo:
    """Runs the demo scan; use it as a context manager (everything stops on exit).

    Args:
        positions: Number of images (stops on the circle).
        output: Output folder for the images and ``metadata.json``.
        secure: A key folder: run everything with CurveZMQ security (keys made on first use).
        encoding: Camera encoding for the scan (``"png"``, ``"jpeg"`` or ``"raw"``).
        lores: Grab half-resolution images.
        stage_speed: Stage speed in mm/s.
        python: Interpreter for the device processes.
        startup_timeout: Seconds each device process may take to start.

    Attributes:
        lab: The device processes (after :meth:`start`).
        controller: The controller served by this process (after :meth:`start`).
        devices: What the registry listed after start-up.
        scanning: Whether :meth:`run` is waiting for a scan (one interrupted leaves it True).
    """

    def __init__(
        self,
        *,
        positions: int = 36,
        output: str | os.PathLike[str] = "demo-output",
        secure: str | os.PathLike[str] | None = None,
        encoding: str = "png",
        lores: bool = False,
        stage_speed: float = 1000.0,
        python: str = sys.executable,
        startup_timeout: float = 30.0,
    ) -> None:
        if positions < 1:
            raise ValueError(f"positions must be at least 1, got {positions}")
        self.positions = positions
        self.output = Path(output).expanduser().resolve()
        self.encoding = encoding
        self.lores = lores
        self.settings = _settings(secure)
        self.lab = SimLab(
            secure=secure,
            stage_speed=stage_speed,
            python=python,
            startup_timeout=startup_timeout,
        )
        self.controller: SimController | None = None
        self.devices: tuple[DeviceInfo, ...] = ()
        self.scanning = False
        self._client: ControllerClient | None = None

    def start(self) -> Self:
        """Start the device processes and the controller; find them in the registry.

        Raises:
            SimProcessError: A device process failed to start.
            LabwireError: The controller could not register or be reached.
        """
        try:
            self.lab.start()
            controller = SimController(
                None,
                "tcp://127.0.0.1:0",
                camera=self.lab.camera_name,
                stage=self.lab.stage_name,
                registry_url=self.lab.registry_url,
                settings=self.settings,
            )
            self.controller = controller
            controller.start()
            controller.register_to_registry("controller", "controller", self.lab.registry_url)
            with RegistryClient(self.lab.registry_url, settings=self.settings) as registry:
                self.devices = tuple(registry.list_devices())
            self._client = connect(
                ControllerClient,
                controller.name,
                self.lab.registry_url,
                settings=self.settings,
                timeout=5000,
            )
        except BaseException:
            self.close()
            raise
        return self

    def run(self, on_progress: ProgressCallback | None = None) -> DemoReport:
        """Run the scan; ``on_progress(done, total)`` is called as images are saved.

        The scan runs as an operation on the controller, and its own progress updates feed
        ``on_progress``. Interrupted (Ctrl-C), the scan is cancelled on the controller, the
        stage stops where it is, and the KeyboardInterrupt goes on.

        Raises:
            RemoteError: The scan failed (the message says why).
            OperationCancelled: The scan was cancelled (from another client).
        """
        client = self._client
        if client is None:
            raise RuntimeError("call start() first")
        total = self.positions
        callback = on_progress

        def on_update(update: Update) -> None:
            if callback is not None and update.fraction is not None:
                callback(round(update.fraction * total), total)

        if callback is not None:
            callback(0, total)
        config = {
            "positions": self.positions,
            "output": str(self.output),
            "encoding": self.encoding,
            "lores": self.lores,
        }
        scan = client.start_operation("run_scan", config, deadline=None, on_progress=on_update)
        self.scanning = True
        try:
            summary = scan.result()
        except KeyboardInterrupt:
            self.cancel_scan(scan)
            raise
        finally:
            scan.close()
        self.scanning = False
        if callback is not None:
            callback(summary["images"], total)
        return DemoReport(
            registry_url=self.lab.registry_url,
            devices=self.devices,
            summary=summary,
            output=self.output,
            metadata=read_metadata(self.output),
        )

    def cancel_scan(self, scan: OperationHandle, timeout: float = 10.0) -> None:
        """Cancel a running scan on the controller and wait (up to ``timeout`` s) for its end."""
        with contextlib.suppress(LabwireError):
            scan.cancel("interrupted (Ctrl-C)")
        with contextlib.suppress(LabwireError):
            scan.result(timeout)

    def close(self) -> None:
        """Stop the scan if one runs, the controller, then the device processes."""
        controller, self.controller = self.controller, None
        client, self._client = self._client, None
        if controller is not None and controller.abort():
            controller.wait_idle(10.0)
        if client is not None:
            client.close()
        if controller is not None:
            controller.close()
        self.lab.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _settings(secure: str | os.PathLike[str] | None) -> Settings:
    settings = default_settings()
    if secure is None:
        return settings
    from labwire.transport.security import Security

    return settings.replace(security=Security.from_folder(secure))
