"""A simulated CNC stage: three axes, travel limits, a speed, and moves that take time.

:class:`StageInterface` is the contract, :class:`SimStage` serves it and :class:`StageClient`
calls it. A move runs in the server's worker thread for ``distance / speed`` seconds while the
position (read live, interpolated) can be read from other clients and is announced by
``positionChanged`` about every ``tick`` seconds; ``motionDone`` follows when the stage
arrives. Moves outside the travel limits are refused before anything moves. Moves and homing
are operations (see :meth:`~labwire.rpc.RPCServer.register_operation`): they report their
progress, and cancelling one (or its deadline passing, or its watching client vanishing) halts
the stage where it is.

:class:`StagePosition` reads a stage's position over RPC: give it to
:class:`~labwire.sim.SimCamera` as its ``pose`` and the camera sees what a camera mounted on
the stage would.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from labwire.config import Settings
from labwire.errors import LabwireError
from labwire.rpc import (
    Operation,
    OperationCancelled,
    RPCClient,
    RPCProperty,
    RPCServer,
    RPCSignal,
)
from labwire.sim.connect import open_device

__all__ = ["DEFAULT_LIMITS", "SimStage", "StageClient", "StageInterface", "StagePosition"]

_log = logging.getLogger(__name__)

AXES = ("x", "y", "z")

#: Travel limits of :class:`SimStage` by default, in mm.
DEFAULT_LIMITS: Mapping[str, tuple[float, float]] = {
    "x": (0.0, 800.0),
    "y": (0.0, 800.0),
    "z": (0.0, 400.0),
}

_MAX_SPEED = 100_000.0


class StageInterface:
    """What a motorised XYZ stage exposes over the network."""

    positionChanged = RPCSignal(list)
    motionDone = RPCSignal(list)
    speedChanged = RPCSignal(float)

    def home(self) -> list[float]:
        """Move to the origin ``[0, 0, 0]``; returns the position reached."""
        raise NotImplementedError

    def move_to(self, x: float, y: float, z: float) -> list[float]:
        """Move in a straight line to ``(x, y, z)`` (mm); returns the position reached.

        Takes ``distance / speed`` seconds; one move at a time (a second move waits).

        Raises:
            ValueError: A coordinate is outside the travel limits (nothing moves).
            RuntimeError: The move was interrupted by :meth:`halt`.
        """
        raise NotImplementedError

    def halt(self) -> bool:
        """Stop the current move where the stage is; returns whether a move was stopped."""
        raise NotImplementedError

    @property
    def position(self) -> list[float]:
        """Current position ``[x, y, z]`` in mm (live, also during a move)."""
        raise NotImplementedError

    @property
    def speed(self) -> float:
        """Travel speed in mm/s."""
        raise NotImplementedError

    @speed.setter
    def speed(self, value: float) -> None:
        raise NotImplementedError

    @property
    def limits(self) -> dict[str, list[float]]:
        """Travel limits per axis, ``{"x": [low, high], ...}`` in mm."""
        raise NotImplementedError

    @property
    def is_moving(self) -> bool:
        """Whether a move is in progress."""
        raise NotImplementedError


class SimStage(StageInterface, RPCServer):
    """A simulated XYZ stage served over RPC (see :class:`StageInterface`).

    Args:
        context: ZeroMQ context, or None for the process-wide one.
        url: Where to listen, e.g. ``"tcp://127.0.0.1:0"``.
        alive_timeout: Seconds a registry keeps the stage listed without renewal.
        limits: Travel limits per axis, ``{"x": (low, high), "y": ..., "z": ...}`` in mm.
        speed: Initial travel speed in mm/s.
        tick: Seconds between ``positionChanged`` emissions during a move.
        **options: Passed to :class:`~labwire.rpc.RPCServer`.

    Raises:
        ValueError: Bad limits, speed or tick.
    """

    def __init__(
        self,
        context: Any = None,
        url: str = "tcp://127.0.0.1:0",
        alive_timeout: int = 60,
        *,
        limits: Mapping[str, Sequence[float]] = DEFAULT_LIMITS,
        speed: float = 1000.0,
        tick: float = 0.02,
        **options: Any,
    ) -> None:
        # Double underscores: this state can never clash with RPCServer's own private names.
        self.__limits = _check_limits(limits)
        if not tick > 0:
            raise ValueError(f"tick must be positive, got {tick!r}")
        self.__tick = float(tick)
        self.__speed = _check_speed(speed)
        self.__motion_lock = threading.Lock()  # one move at a time
        self.__state = threading.Condition(threading.Lock())
        self.__start: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.__target: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.__started_at = 0.0
        self.__duration = 0.0
        self.__moving = False
        self.__halt_requested = False
        self.__closing = False
        super().__init__(context, url, alive_timeout, **options)

    # ------------------------------------------------------------------ methods

    @RPCServer.register_operation(timeout=60000, on_disconnect="cancel")
    def home(self, operation: Operation) -> list[float]:
        """Move to the origin [0, 0, 0]; returns the position reached."""
        return self.__travel((0.0, 0.0, 0.0), operation)

    @RPCServer.register_operation(timeout=60000, on_disconnect="cancel")
    def move_to(self, operation: Operation, x: float, y: float, z: float) -> list[float]:
        """Move in a straight line to (x, y, z) in mm; refuses targets outside the limits."""
        target = (x, y, z)
        for axis, value in zip(AXES, target, strict=True):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"move_to: {axis} must be a number of mm, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"move_to: {axis}={value!r} is not a finite number")
        for axis, value in zip(AXES, target, strict=True):
            low, high = self.__limits[axis]
            if not low <= value <= high:
                raise ValueError(
                    f"move_to({x:g}, {y:g}, {z:g}) refused: {axis}={value:g} is outside the "
                    f"travel limits of axis {axis} ({low:g}..{high:g} mm)"
                )
        return self.__travel((float(x), float(y), float(z)), operation)

    @RPCServer.register_method_json(timeout=2000)
    def halt(self) -> bool:
        """Stop the current move where the stage is; returns whether a move was stopped."""
        with self.__state:
            if not self.__moving:
                return False
            self.__halt_requested = True
            self.__state.notify_all()
        return True

    def stop_server(self) -> None:
        """Stop serving; a move in progress is halted so its worker ends promptly."""
        with self.__state:
            self.__closing = True
            self.__state.notify_all()
        super().stop_server()

    def __travel(self, target: tuple[float, float, float], operation: Operation) -> list[float]:
        with self.__motion_lock:
            operation.check()  # cancelled while an earlier move held the stage
            operation.on_cancel(self.halt)  # the move running now is this one
            with self.__state:
                if self.__closing:
                    raise RuntimeError("the stage is shutting down")
                start = self.__live_position(time.monotonic())
                distance = math.dist(start, target)
                self.__start, self.__target = start, target
                self.__started_at = time.monotonic()
                self.__duration = distance / self.__speed
                self.__moving = True
                self.__halt_requested = False
            interrupted = False
            try:
                while True:
                    now = time.monotonic()
                    position = self.__live_position(now)
                    self.positionChanged.emit(_rounded(position))
                    remaining = self.__started_at + self.__duration - now
                    if remaining <= 0:
                        break
                    if not operation.cancelled:
                        fraction = 1.0 - remaining / self.__duration
                        with contextlib.suppress(OperationCancelled):  # halt() is on its way
                            operation.report(fraction, f"at {_format(position)}")
                    with self.__state:
                        self.__state.wait(min(self.__tick, remaining))
                        if self.__halt_requested or self.__closing or operation.cancelled:
                            interrupted = True
                            position = self.__live_position(time.monotonic())
                            self.__start = self.__target = position
                            self.__duration = 0.0
                            break
            finally:
                with self.__state:
                    self.__moving = False
            self.motionDone.emit(_rounded(position))
            if interrupted:
                raise RuntimeError(f"move halted at {_format(position)} before reaching target")
            return _rounded(position)

    def __live_position(self, now: float) -> tuple[float, float, float]:
        if self.__duration <= 0:
            return self.__target
        fraction = min(1.0, max(0.0, (now - self.__started_at) / self.__duration))
        x, y, z = (a + (b - a) * fraction for a, b in zip(self.__start, self.__target, strict=True))
        return (x, y, z)

    # ------------------------------------------------------------------ properties

    def __get_position(self) -> list[float]:
        with self.__state:
            return _rounded(self.__live_position(time.monotonic()))

    def __get_speed(self) -> float:
        return self.__speed

    def __set_speed(self, value: float) -> None:
        self.__speed = _check_speed(value)

    def __get_limits(self) -> dict[str, list[float]]:
        return {axis: list(bounds) for axis, bounds in self.__limits.items()}

    def __get_is_moving(self) -> bool:
        return self.__moving

    position = RPCProperty(__get_position, doc=StageInterface.position.__doc__)
    speed = RPCProperty(
        __get_speed, __set_speed, doc=StageInterface.speed.__doc__,
        notify=StageInterface.speedChanged, auto_notify=True,
    )  # fmt: skip
    limits = RPCProperty(__get_limits, doc=StageInterface.limits.__doc__)
    is_moving = RPCProperty(__get_is_moving, doc=StageInterface.is_moving.__doc__)


@RPCClient.register_interface(StageInterface)
class StageClient(StageInterface, RPCClient):
    """Client of a stage (simulated or real) that serves :class:`StageInterface`.

    Moves can take long: the client waits for ``move_to`` as long as the server declares
    (60 s); use ``override_timeout`` for longer ones.
    """


class StagePosition:
    """Reads a stage's position over RPC; a ``pose`` source for :class:`~labwire.sim.SimCamera`.

    The stage is found lazily (it may start after the camera), and after a failure the
    lookup is retried at most every ``retry_interval`` seconds, so a missing stage slows no
    capture down; meanwhile the last known position (or None) is returned.

    Args:
        stage: The stage's registry name or URL.
        registry_url: The registry to look the name up in (None: ``settings.registry_url``).
        settings: Transport settings.
        retry_interval: Seconds between attempts to reach a missing stage.
    """

    def __init__(
        self,
        stage: str,
        registry_url: str | None = None,
        *,
        settings: Settings | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self.stage = stage
        self.registry_url = registry_url
        self.settings = settings
        self.retry_interval = retry_interval
        self._client: StageClient | None = None
        self._lock = threading.Lock()
        self._next_attempt = 0.0
        self._last: list[float] | None = None
        self._closed = False

    def __call__(self) -> list[float] | None:
        """The stage's current ``[x, y, z]``, or the last known one (None if never known)."""
        client = self._connected()
        if client is None:
            return self._last
        try:
            position = client.position
        except LabwireError as exc:
            _log.warning("cannot read the position of stage %s: %s", self.stage, exc)
            return self._last
        if isinstance(position, list) and len(position) == 3:
            self._last = [float(value) for value in position]
        return self._last

    def _connected(self) -> StageClient | None:
        with self._lock:
            if self._client is not None or self._closed:
                return self._client
            now = time.monotonic()
            if now < self._next_attempt:
                return None
            try:
                self._client = open_device(
                    StageClient, self.stage, self.registry_url, settings=self.settings
                )
            except LabwireError as exc:
                self._next_attempt = now + self.retry_interval
                _log.info("stage %s not reachable yet: %s", self.stage, exc)
                return None
            return self._client

    def close(self) -> None:
        """Close the connection to the stage (idempotent)."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _check_limits(limits: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    checked: dict[str, tuple[float, float]] = {}
    for axis in AXES:
        if axis not in limits:
            raise ValueError(f"limits must give axis {axis!r} as (low, high)")
        low, high = (float(value) for value in limits[axis])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"limits of axis {axis} must be finite with low < high")
        if not low <= 0.0 <= high:
            raise ValueError(f"limits of axis {axis} must include the home position 0")
        checked[axis] = (low, high)
    return checked


def _check_speed(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"speed must be a number of mm/s, got {value!r}")
    if not 0 < value <= _MAX_SPEED:
        raise ValueError(f"speed must be in (0, {_MAX_SPEED:g}] mm/s, got {value!r}")
    return float(value)


def _rounded(position: Sequence[float]) -> list[float]:
    """A position for the wire: micrometre resolution is plenty."""
    return [round(value, 3) for value in position]


def _format(position: Sequence[float]) -> str:
    return "[" + ", ".join(f"{value:.1f}" for value in position) + "]"
