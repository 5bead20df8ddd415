"""Simulated devices: a camera, a CNC stage and a scan controller, for demos and tests.

They are real RPC servers (real sockets, real threads) that need no hardware, so they stand in
for the devices of a plant-imaging rig in a demo or in your own tests:

* :class:`SimCamera` / :class:`CameraClient` (:class:`CameraInterface`): ``get_image()``
  returns a PNG, JPEG or raw numpy image of a rendered plant, seen from where the camera is;
* :class:`SimStage` / :class:`StageClient` (:class:`StageInterface`): ``home()``,
  ``move_to(x, y, z)`` taking ``distance / speed`` seconds, travel limits;
* :class:`SimController` / :class:`ControllerClient` (:class:`ControllerInterface`):
  ``run_scan(config)`` moves the stage around a circle and saves an image at each stop;
* :class:`SimRig`: an auxiliary rig answering experiment messages like a camera PC (over
  the deployed UDP protocol and labwire's transport);
* :class:`SimLab` runs a registry, a camera and a stage in separate processes, and
  :class:`Demo` runs the whole ``labwire demo`` scan on top of it.

Rendering uses numpy and encoding uses Pillow: install ``labwire[sim]``.
"""

from labwire.sim.camera import (
    DEFAULT_CAMERA_CONFIG,
    CameraClient,
    CameraInterface,
    CameraMode,
    Encoding,
    SimCamera,
    decode_image,
)
from labwire.sim.connect import open_device
from labwire.sim.controller import (
    METADATA_FILE,
    ControllerClient,
    ControllerInterface,
    ScanAborted,
    ScanConfig,
    SimController,
    read_metadata,
)
from labwire.sim.demo import Demo, DemoReport
from labwire.sim.lab import SimLab, SimProcessError
from labwire.sim.render import View, render_plant
from labwire.sim.rig import SimRig
from labwire.sim.stage import DEFAULT_LIMITS, SimStage, StageClient, StageInterface, StagePosition

__all__ = [
    "DEFAULT_CAMERA_CONFIG",
    "DEFAULT_LIMITS",
    "METADATA_FILE",
    "CameraClient",
    "CameraInterface",
    "CameraMode",
    "ControllerClient",
    "ControllerInterface",
    "Demo",
    "DemoReport",
    "Encoding",
    "ScanAborted",
    "ScanConfig",
    "SimCamera",
    "SimController",
    "SimLab",
    "SimProcessError",
    "SimRig",
    "SimStage",
    "StageClient",
    "StageInterface",
    "StagePosition",
    "View",
    "decode_image",
    "open_device",
    "read_metadata",
    "render_plant",
]
