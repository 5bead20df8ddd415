"""A simulated camera: the interface a plant-imaging camera exposes, served without hardware.

:class:`CameraInterface` is the contract (what clients see), :class:`SimCamera` serves it and
:class:`CameraClient` calls it. The camera's buffer method :meth:`~CameraInterface.get_image`
returns an encoded image (PNG by default, JPEG, or a raw numpy frame) and a dict describing it.
Images are rendered by :func:`labwire.sim.render.render_plant` from where the camera is: give
:class:`SimCamera` a ``pose`` callable (e.g. a :class:`~labwire.sim.stage.StagePosition` that
reads a stage's position) and the images of a scan around the plant all differ.

Example::

    from labwire.sim import CameraClient, SimCamera

    with SimCamera(None, "tcp://127.0.0.1:0") as camera:
        with CameraClient(None, camera.endpoint) as client:
            client.encoding = "jpeg"
            data, info = client.get_image()  # JPEG bytes (a memoryview), and a dict
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np

from labwire.rpc import RPCClient, RPCProperty, RPCServer, RPCSignal
from labwire.sim.render import Frame, View, render_plant

__all__ = [
    "DEFAULT_CAMERA_CONFIG",
    "CameraClient",
    "CameraInterface",
    "CameraMode",
    "Encoding",
    "SimCamera",
    "decode_image",
]

_log = logging.getLogger(__name__)

PoseSource = Callable[[], Sequence[float] | None]


class CameraMode(StrEnum):
    """Capture modes. STILL captures take the configured ``capture_ms``; VIDEO frames do not."""

    STILL = "STILL"
    VIDEO = "VIDEO"


class Encoding(StrEnum):
    """How :meth:`CameraInterface.get_image` returns the image."""

    PNG = "png"
    JPEG = "jpeg"
    RAW = "raw"


#: The camera's settings (the ``config`` property) and their defaults.
DEFAULT_CAMERA_CONFIG: Mapping[str, Any] = {
    "jpeg_quality": 90,  # 1..100
    "png_compress_level": 1,  # 0..9 (zlib level; 1 is fast and still small for this scene)
    "exposure": 1.0,  # brightness factor
    "noise": 0.0,  # sensor noise, grey levels (standard deviation)
    "capture_ms": 0,  # simulated exposure time of a STILL capture
    "plant_xy": [400.0, 400.0],  # where the plant stands, in stage coordinates (mm)
    "plant_seed": 7,  # which plant
}

_FILE_EXTENSIONS = {Encoding.PNG: "png", Encoding.JPEG: "jpg", Encoding.RAW: "npy"}


class CameraInterface:
    """What a plant-imaging camera exposes over the network.

    Every property has a change signal, emitted with the new value whenever it changes.
    """

    modeChanged = RPCSignal(str)
    resolutionChanged = RPCSignal(list)
    rotationChanged = RPCSignal(int)
    encodingChanged = RPCSignal(str)
    configChanged = RPCSignal(dict)

    def get_image(self, lores: bool = False) -> tuple[Any, dict[str, Any]]:
        """Capture one image; returns ``(buffer, info)``.

        The buffer holds the image encoded as the ``encoding`` property says: PNG or JPEG
        bytes, or for ``"raw"`` a ``(height, width, 3)`` uint8 numpy array (raw bytes for
        clients without numpy). ``info`` describes it: ``format`` (``"png"``, ``"jpeg"`` or
        ``"raw"``), ``size`` ``[width, height]`` after rotation, ``rotation``, ``channels``,
        ``mode``, ``lores``, ``frame`` (a counter), ``pose`` (the ``[x, y, z]`` the image
        was taken from, or None), ``bytes`` and, for raw frames, ``dtype`` and ``shape``.

        Args:
            lores: Capture at half the resolution in each dimension (a preview).
        """
        raise NotImplementedError

    @property
    def mode(self) -> str:
        """Capture mode, ``"STILL"`` or ``"VIDEO"``."""
        raise NotImplementedError

    @mode.setter
    def mode(self, value: str) -> None:
        raise NotImplementedError

    @property
    def resolution(self) -> list[int]:
        """Full resolution as ``[width, height]`` (also settable as ``"640x480"``)."""
        raise NotImplementedError

    @resolution.setter
    def resolution(self, value: list[int]) -> None:
        raise NotImplementedError

    @property
    def rotation(self) -> int:
        """Clockwise rotation applied to images: 0, 90, 180 or 270 degrees."""
        raise NotImplementedError

    @rotation.setter
    def rotation(self, value: int) -> None:
        raise NotImplementedError

    @property
    def encoding(self) -> str:
        """Image encoding of :meth:`get_image`: ``"png"``, ``"jpeg"`` or ``"raw"``."""
        raise NotImplementedError

    @encoding.setter
    def encoding(self, value: str) -> None:
        raise NotImplementedError

    @property
    def config(self) -> dict[str, Any]:
        """Camera settings (see ``DEFAULT_CAMERA_CONFIG``); setting a dict updates those keys."""
        raise NotImplementedError

    @config.setter
    def config(self, value: dict[str, Any]) -> None:
        raise NotImplementedError


class SimCamera(CameraInterface, RPCServer):
    """A simulated camera served over RPC (see :class:`CameraInterface`).

    Args:
        context: ZeroMQ context, or None for the process-wide one.
        url: Where to listen, e.g. ``"tcp://127.0.0.1:0"`` (any free port).
        alive_timeout: Seconds a registry keeps the camera listed without renewal.
        pose: Returns the camera's current ``(x, y, z)`` in stage coordinates (mm), or None
            when unknown; called at every capture. Without it the camera sees the plant from
            the side.
        resolution: Initial ``(width, height)``.
        **options: Passed to :class:`~labwire.rpc.RPCServer` (``settings``, ``workers``...).

    Attributes:
        frames: Number of images captured so far.
    """

    def __init__(
        self,
        context: Any = None,
        url: str = "tcp://127.0.0.1:0",
        alive_timeout: int = 60,
        *,
        pose: PoseSource | None = None,
        resolution: Sequence[int] = (640, 480),
        **options: Any,
    ) -> None:
        # Double underscores: this state can never clash with RPCServer's own private names.
        self.__state_lock = threading.Lock()
        self.__mode = CameraMode.STILL.value
        self.__resolution = _parse_resolution(resolution)
        self.__rotation = 0
        self.__encoding = Encoding.PNG.value
        self.__config: dict[str, Any] = {k: _copy(v) for k, v in DEFAULT_CAMERA_CONFIG.items()}
        self.__pose = pose
        self.frames = 0
        super().__init__(context, url, alive_timeout, **options)

    @RPCServer.register_method_buffer(timeout=10000)
    def get_image(self, lores: bool = False) -> tuple[Any, dict[str, Any]]:
        """Capture one image and return ``(buffer, info)`` (see CameraInterface.get_image)."""
        with self.__state_lock:
            self.frames += 1
            frame_number = self.frames
            mode, rotation, encoding = self.__mode, self.__rotation, self.__encoding
            width, height = self.__resolution
            config = dict(self.__config)
        pose = self.__read_pose()
        if mode == CameraMode.STILL and config["capture_ms"] > 0:
            time.sleep(config["capture_ms"] / 1000.0)
        if lores:
            width, height = max(width // 2, 1), max(height // 2, 1)
        view = View()
        if pose is not None:
            plant_x, plant_y = config["plant_xy"]
            view = View.from_position(pose[0], pose[1], pose[2], plant_x, plant_y)
        frame = render_plant(
            width,
            height,
            view,
            seed=config["plant_seed"],
            exposure=config["exposure"],
            noise=config["noise"],
        )
        if rotation:
            frame = np.ascontiguousarray(np.rot90(frame, k=-(rotation // 90)))
        info: dict[str, Any] = {
            "format": encoding,
            "size": [int(frame.shape[1]), int(frame.shape[0])],
            "rotation": rotation,
            "channels": int(frame.shape[2]),
            "mode": mode,
            "lores": bool(lores),
            "frame": frame_number,
            "pose": None if pose is None else [float(p) for p in pose[:3]],
        }
        if encoding == Encoding.RAW:
            info.update(bytes=int(frame.nbytes), dtype=str(frame.dtype), shape=list(frame.shape))
            return frame, info
        data = encode_frame(frame, Encoding(encoding), config)
        info["bytes"] = len(data)
        return data, info

    def __read_pose(self) -> Sequence[float] | None:
        if self.__pose is None:
            return None
        try:
            pose = self.__pose()
        except Exception as exc:  # a broken pose source must not break captures
            _log.warning("camera pose source failed: %s", exc)
            return None
        if pose is None or len(pose) < 3:
            return None
        return pose

    # ------------------------------------------------------------------ properties

    def __get_mode(self) -> str:
        return self.__mode

    def __set_mode(self, value: str) -> None:
        try:
            mode = CameraMode(str(value).upper())
        except ValueError:
            raise ValueError(f"unknown camera mode {value!r}: use STILL or VIDEO") from None
        with self.__state_lock:
            self.__mode = mode.value

    def __get_resolution(self) -> list[int]:
        return list(self.__resolution)

    def __set_resolution(self, value: list[int]) -> None:
        resolution = _parse_resolution(value)
        with self.__state_lock:
            self.__resolution = resolution

    def __get_rotation(self) -> int:
        return self.__rotation

    def __set_rotation(self, value: int) -> None:
        if isinstance(value, bool) or value not in (0, 90, 180, 270):
            raise ValueError(f"rotation must be 0, 90, 180 or 270, got {value!r}")
        with self.__state_lock:
            self.__rotation = int(value)

    def __get_encoding(self) -> str:
        return self.__encoding

    def __set_encoding(self, value: str) -> None:
        text = str(value).lower()
        text = "jpeg" if text == "jpg" else text
        try:
            encoding = Encoding(text)
        except ValueError:
            raise ValueError(f"unknown encoding {value!r}: use png, jpeg or raw") from None
        with self.__state_lock:
            self.__encoding = encoding.value

    def __get_config(self) -> dict[str, Any]:
        with self.__state_lock:
            return {k: _copy(v) for k, v in self.__config.items()}

    def __set_config(self, value: dict[str, Any]) -> None:
        if not isinstance(value, Mapping):
            raise TypeError(f"config must be a dict, got {type(value).__name__}")
        checked = {key: _check_config(key, item) for key, item in value.items()}
        with self.__state_lock:
            self.__config.update(checked)

    mode = RPCProperty(
        __get_mode, __set_mode, doc=CameraInterface.mode.__doc__,
        notify=CameraInterface.modeChanged, auto_notify=True,
    )  # fmt: skip
    resolution = RPCProperty(
        __get_resolution, __set_resolution, doc=CameraInterface.resolution.__doc__,
        notify=CameraInterface.resolutionChanged, auto_notify=True,
    )  # fmt: skip
    rotation = RPCProperty(
        __get_rotation, __set_rotation, doc=CameraInterface.rotation.__doc__,
        notify=CameraInterface.rotationChanged, auto_notify=True,
    )  # fmt: skip
    encoding = RPCProperty(
        __get_encoding, __set_encoding, doc=CameraInterface.encoding.__doc__,
        notify=CameraInterface.encodingChanged, auto_notify=True,
    )  # fmt: skip
    config = RPCProperty(
        __get_config, __set_config, doc=CameraInterface.config.__doc__,
        notify=CameraInterface.configChanged, auto_notify=True,
    )  # fmt: skip


@RPCClient.register_interface(CameraInterface)
class CameraClient(CameraInterface, RPCClient):
    """Client of a camera (simulated or real) that serves :class:`CameraInterface`.

    Construct it with ``CameraClient(context, url)`` or find the camera by its registry name
    with ``labwire.registry.connect(CameraClient, "camera")``.
    """


# ---------------------------------------------------------------------- encoding helpers


def encode_frame(frame: Frame, encoding: Encoding, config: Mapping[str, Any]) -> bytes:
    """Encode an RGB frame as PNG or JPEG with Pillow.

    Args:
        frame: ``(height, width, 3)`` uint8 array.
        encoding: PNG or JPEG.
        config: Camera settings (``jpeg_quality``, ``png_compress_level``).
    """
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(frame)  # (h, w, 3) uint8: RGB
    if encoding == Encoding.JPEG:
        image.save(buffer, format="JPEG", quality=int(config.get("jpeg_quality", 90)))
    else:
        image.save(buffer, format="PNG", compress_level=int(config.get("png_compress_level", 1)))
    return buffer.getvalue()


def decode_image(buffer: Any, info: Mapping[str, Any]) -> Frame:
    """Turn what :meth:`CameraInterface.get_image` returned into an RGB numpy array.

    Args:
        buffer: The image buffer (bytes, memoryview or numpy array).
        info: The info dict that came with it.

    Raises:
        ValueError: The buffer cannot be decoded.
    """
    if info.get("format") == Encoding.RAW:
        if isinstance(buffer, np.ndarray):
            array: Frame = buffer.astype(np.uint8, copy=False)
            return array
        shape = tuple(int(n) for n in info["shape"])
        return np.frombuffer(memoryview(buffer), dtype=np.uint8).reshape(shape)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(bytes(memoryview(buffer)))) as image:
            decoded: Frame = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot decode {info.get('format')} image: {exc}") from exc
    return decoded


def file_extension(info: Mapping[str, Any]) -> str:
    """The usual file extension for an image described by ``info`` (``png``, ``jpg``, ``npy``)."""
    try:
        return _FILE_EXTENSIONS[Encoding(str(info.get("format", "")))]
    except ValueError:
        return "bin"


# ---------------------------------------------------------------------- validation


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _parse_resolution(value: Any) -> list[int]:
    if isinstance(value, str):
        parts: Sequence[Any] = value.lower().replace(" ", "").split("x")
    else:
        parts = value
    try:
        width, height = (int(part) for part in parts)
    except (TypeError, ValueError):
        raise ValueError(
            f"resolution must be [width, height] or 'WIDTHxHEIGHT', got {value!r}"
        ) from None
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise ValueError(f"resolution {width}x{height} is outside 16x16 .. 8192x8192")
    return [width, height]


_CONFIG_RANGES: dict[str, tuple[type, float, float]] = {
    "jpeg_quality": (int, 1, 100),
    "png_compress_level": (int, 0, 9),
    "exposure": (float, 0.05, 20.0),
    "noise": (float, 0.0, 50.0),
    "capture_ms": (int, 0, 10_000),
    "plant_seed": (int, 0, 2**31 - 1),
}


def _check_config(key: str, value: Any) -> Any:
    if key == "plant_xy":
        try:
            x, y = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"config plant_xy must be [x, y] in mm, got {value!r}") from None
        return [x, y]
    if key not in _CONFIG_RANGES:
        known = ", ".join(sorted(DEFAULT_CAMERA_CONFIG))
        raise ValueError(f"unknown camera config key {key!r}; known keys: {known}")
    kind, low, high = _CONFIG_RANGES[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"config {key} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise ValueError(f"config {key} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"config {key}={value!r} is outside {low:g}..{high:g}")
    return kind(value)
