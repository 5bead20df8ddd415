"""A sample device used by the RPC tests, in-process or as a subprocess.

Run ``python -m tests.rpc.devices URL [--serialize] [--limit NAME=VALUE]...`` to serve it from a
separate process; the first line printed is the real bound endpoint.
"""

from __future__ import annotations

import abc
import argparse
import signal
import threading
import time
from typing import Any

import numpy as np

from labwire.config import default_settings
from labwire.rpc import RPCClient, RPCProperty, RPCServer, RPCSignal
from labwire.wire.limits import Limits


class BaseInterface(abc.ABC):
    """Two-level interface hierarchy: methods declared here and in the subclass."""

    @abc.abstractmethod
    def add(self, a: int, b: int = 1) -> int: ...

    @abc.abstractmethod
    def echo(self, value: Any) -> Any: ...


class CameraInterface(BaseInterface):
    modeChanged = RPCSignal(str)
    counterChanged = RPCSignal(int)
    pointsChanged = RPCSignal(list[int])
    blobReady = RPCSignal(str)

    def get_image(self, lores: bool = False) -> Any: ...

    def sum_buffer(self, data: Any) -> Any: ...

    def make_array(self, rows: int, cols: int) -> Any: ...

    def sleep(self, seconds: float) -> float: ...

    def fail(self, message: str) -> None: ...

    def executed(self) -> int: ...

    def emit_many(self, count: int) -> int: ...

    def emit_blobs(self, count: int, size: int) -> int: ...

    def unserialisable(self) -> Any: ...

    @property
    def mode(self) -> str: ...

    @property
    def counter(self) -> int: ...


class Camera(CameraInterface, RPCServer):
    """The server side of :class:`CameraInterface`."""

    secret = "not reachable"

    def __init__(self, context: Any, url: str, **options: Any) -> None:
        self._mode = "STILL"
        self._counter = 0
        self._executed = 0
        self._executed_lock = threading.Lock()
        super().__init__(context, url, **options)

    def _count(self) -> None:
        with self._executed_lock:
            self._executed += 1

    @RPCServer.register_method_json(timeout=2000)
    def add(self, a: int, b: int = 1) -> int:
        self._count()
        return a + b

    @RPCServer.register_method_json()
    def echo(self, value: Any) -> Any:
        self._count()
        return value

    @RPCServer.register_method_buffer(timeout=5000)
    def get_image(self, lores: bool = False) -> Any:
        self._count()
        size = 16 if lores else 64
        data = bytes(range(256)) * size
        return data, {"format": "raw", "size": len(data), "lores": lores}

    @RPCServer.register_method_json()
    def sum_buffer(self, data: Any) -> Any:
        self._count()
        return int(np.frombuffer(memoryview(data), dtype=np.uint8).sum())

    @RPCServer.register_method_json()
    def make_array(self, rows: int, cols: int) -> Any:
        self._count()
        return np.arange(rows * cols, dtype=np.float32).reshape(rows, cols)

    @RPCServer.register_method_json(timeout=500)
    def sleep(self, seconds: float) -> float:
        self._count()
        time.sleep(seconds)
        return seconds

    @RPCServer.register_method_json()
    def fail(self, message: str) -> None:
        self._count()
        raise ValueError(message)

    @RPCServer.register_method_json()
    def executed(self) -> int:
        return self._executed

    @RPCServer.register_method_json()
    def emit_many(self, count: int) -> int:
        for _ in range(count):
            self._counter += 1
            self.counterChanged.emit(self._counter)
        return self._counter

    @RPCServer.register_method_json()
    def emit_blobs(self, count: int, size: int) -> int:
        blob = "x" * size
        for _ in range(count):
            self.blobReady.emit(blob)
        return count

    @RPCServer.register_method_json()
    def unserialisable(self) -> Any:
        return object()

    def _mode_get(self) -> str:
        return self._mode

    def _mode_set(self, value: str) -> None:
        if value not in ("STILL", "VIDEO"):
            raise ValueError(f"unknown mode {value!r}")
        self._mode = value

    mode = RPCProperty(_mode_get, _mode_set, notify=CameraInterface.modeChanged, auto_notify=True)

    @RPCProperty
    def counter(self) -> int:
        return self._counter


@RPCClient.register_interface(CameraInterface)
class CameraClient(CameraInterface, RPCClient):
    """The client side of :class:`CameraInterface`."""


def main() -> None:
    """Serve a Camera on URL until STOP_SERVER or SIGTERM.

    Options: ``--serialize`` (one call at a time) and ``--limit NAME=VALUE`` (repeatable) to
    change a field of :class:`~labwire.wire.limits.Limits`, e.g. ``--limit max_frames=16``.
    """
    parser = argparse.ArgumentParser(description="Serve the sample Camera device.")
    parser.add_argument("url")
    parser.add_argument("--serialize", action="store_true")
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE")
    arguments = parser.parse_args()
    options: dict[str, Any] = {"serialize_calls": True} if arguments.serialize else {}
    if arguments.limit:
        limits = {name: int(value) for name, value in (a.split("=", 1) for a in arguments.limit)}
        options["settings"] = default_settings().replace(limits=Limits(**limits))
    server = Camera(None, arguments.url, **options)
    signal.signal(signal.SIGTERM, lambda *_: server.stop_server())
    server.start()
    print(server.endpoint, flush=True)
    # Python runs signal handlers in the main thread only, between bytecodes, and the kernel
    # may hand SIGTERM to one of the server's threads: wake up often enough to run it.
    while not server.wait_stopped(0.1):
        pass
    server.close()


if __name__ == "__main__":
    main()
