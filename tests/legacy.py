"""A minimal stand-in for the deployed plant-imaging peers, written from WIRE-COMPAT.md only.

It uses plain pyzmq and the stdlib ``json`` module and never imports labwire, so compatibility
tests check labwire against the documented protocol rather than against itself.

* :class:`LegacyRPCServer`: a lock-step REP server serving a small camera, with a PUB socket
  for its signals. One request at a time; a slow method blocks everything, as deployed.
* :class:`LegacyRPCClient`: a REQ client. After a timeout its socket is stuck in the
  "waiting for a reply" state, like the deployed client: do not reuse it then.
* :class:`LegacySignalSubscriber`: subscribes to everything, reads one JSON frame per message.
* :class:`LegacyRegistry`: a REP registry; :func:`legacy_register`,
  :func:`legacy_check_alive` and :func:`legacy_unregister` are the device-side helpers.

Run as a process::

    python tests/legacy.py server URL [--name NAME]
    python tests/legacy.py registry URL [--alive-timeout SECONDS]

The first line on stdout is the bound endpoint; the process serves until STOP_SERVER (server)
or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

import zmq

__all__ = [
    "ALIVE_TIMEOUT",
    "LegacyRPCClient",
    "LegacyRPCServer",
    "LegacyRegistry",
    "LegacyRemoteError",
    "LegacySignalSubscriber",
    "legacy_check_alive",
    "legacy_register",
    "legacy_unregister",
]

#: Seconds a registration lives without a CHECK_ALIVE.
ALIVE_TIMEOUT = 20.0

_POLL_MS = 50

#: The camera's modes; setting anything else fails.
MODES = ("idle", "preview", "capture")


def _dumps(message: Any) -> bytes:
    return json.dumps(message).encode("utf-8")


def _last_endpoint(sock: zmq.Socket[Any]) -> str:
    return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))


def _port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _host_of(endpoint: str) -> str:
    return endpoint.split("://", 1)[1].rsplit(":", 1)[0]


class _Stoppable:
    """A REP service loop shared by the server and the registry."""

    def __init__(self, url: str, context: zmq.Context[Any] | None) -> None:
        self.context = context if context is not None else zmq.Context.instance()
        self._rep = self.context.socket(zmq.REP)
        self._rep.linger = 1000  # lets the reply to STOP_SERVER leave before the socket closes
        self._rep.bind(url)
        self.endpoint = _last_endpoint(self._rep)
        self.port = _port_of(self.endpoint) if self.endpoint.startswith("tcp://") else 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _handle(self, frames: list[bytes]) -> list[bytes]:
        raise NotImplementedError

    def _close_sockets(self) -> None:
        self._rep.close()

    def serve_forever(self) -> None:
        """Answer requests until :meth:`stop` is called or a STOP_SERVER request arrives."""
        try:
            while not self._stop.is_set():
                if not self._rep.poll(_POLL_MS):
                    continue
                frames = self._rep.recv_multipart()
                self._rep.send_multipart(self._handle(frames))
        finally:
            self._close_sockets()

    def start(self) -> None:
        """Run :meth:`serve_forever` in a background thread owned by this object."""
        self._thread = threading.Thread(target=self.serve_forever, name=type(self).__name__)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, join the background thread (if any) and close the sockets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        else:
            self._close_sockets()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- RPC server


class LegacyRPCServer(_Stoppable):
    """A deployed-style lock-step RPC server for a small camera.

    JSON methods: ``add(a, b)``, ``echo(x)``, ``sleep(seconds)`` (blocks the server),
    ``fail()`` (raises RuntimeError). Buffer method: ``get_image(lores=False)`` returning
    ``[json(buffer_info), raw bytes]`` and emitting ``frameReady``. Properties: ``mode`` (one of
    ``MODES``; setting it emits ``modeChanged``) and ``exposure_ms``.

    Args:
        url: Where the REP socket binds, e.g. ``"tcp://127.0.0.1:0"``.
        name: The registry name reported by GET_INVENTORY.
        context: ZeroMQ context (the process-wide one by default).

    Attributes:
        endpoint: The bound RPC endpoint (port 0 resolved).
        port: The bound RPC port.
        signal_port: The port of the PUB socket that publishes signals.
        executed: Names of the methods run so far, in order.
        requests: Every decoded request received so far, in order.
    """

    JSON_METHODS: ClassVar[Mapping[str, int | None]] = {
        "add": None,
        "echo": None,
        "sleep": 60000,
        "fail": None,
    }
    BUFFER_METHODS: ClassVar[Mapping[str, int | None]] = {"get_image": 5000}
    SIGNALS = ("modeChanged", "frameReady")
    PROPERTIES = ("mode", "exposure_ms")

    def __init__(
        self,
        url: str = "tcp://127.0.0.1:0",
        name: str = "",
        context: zmq.Context[Any] | None = None,
    ) -> None:
        super().__init__(url, context)
        self.name = name
        self._pub = self.context.socket(zmq.PUB)
        self._pub.linger = 0
        host = _host_of(self.endpoint) if self.endpoint.startswith("tcp://") else "127.0.0.1"
        self._pub.bind(f"tcp://{host}:0")
        self.signal_port = _port_of(_last_endpoint(self._pub))
        self.mode = "idle"
        self.exposure_ms = 10.0
        self.frames_taken = 0
        self.executed: list[str] = []
        self.requests: list[Any] = []

    def _close_sockets(self) -> None:
        super()._close_sockets()
        self._pub.close(linger=0)

    # -- the device

    def add(self, a: Any, b: Any) -> Any:
        """Return ``a + b``."""
        return a + b

    def echo(self, x: Any) -> Any:
        """Return ``x`` unchanged."""
        return x

    def sleep(self, seconds: float) -> float:
        """Block the whole server for ``seconds`` (less if it is stopped), then return them."""
        self._stop.wait(seconds)
        return seconds

    def fail(self) -> None:
        """Raise RuntimeError("legacy failure")."""
        raise RuntimeError("legacy failure")

    def get_image(self, lores: bool = False) -> tuple[dict[str, Any], bytes]:
        """Take a deterministic 8-bit image (48x64, or 12x16 with ``lores``).

        Returns:
            The buffer info (``dtype``, ``shape``, ``lores``) and the pixels.
        """
        shape = [12, 16] if lores else [48, 64]
        data = bytes(i % 251 for i in range(shape[0] * shape[1]))
        self.frames_taken += 1
        self.emit("frameReady", self.frames_taken)
        return {"dtype": "uint8", "shape": shape, "lores": lores}, data

    def set_property(self, name: str, value: Any) -> None:
        """Set a declared property; setting ``mode`` emits ``modeChanged``."""
        if name == "mode":
            if value not in MODES:
                raise ValueError(f"mode must be one of {MODES}, got {value!r}")
            self.mode = value
            self.emit("modeChanged", value)
        elif name == "exposure_ms":
            self.exposure_ms = float(value)
        else:
            raise AttributeError(f"no property {name!r}")

    def get_property(self, name: str) -> Any:
        """Read a declared property."""
        if name not in self.PROPERTIES:
            raise AttributeError(f"no property {name!r}")
        return getattr(self, name)

    def emit(self, signal_name: str, *args: Any) -> None:
        """Publish one signal emission in the deployed single-frame format."""
        message = {
            "event": "EMIT_SIGNAL",
            "signal": signal_name,
            "args": list(args),
            "blocking": False,
        }
        self._pub.send(_dumps(message))

    # -- the protocol

    def _handle(self, frames: list[bytes]) -> list[bytes]:
        try:
            if len(frames) != 1:
                raise ValueError(f"expected one frame, got {len(frames)}")
            request = json.loads(frames[0])
            self.requests.append(request)
            return self._dispatch(request)
        except Exception as exc:
            reply = {"success": False, "error": str(exc), "traceback": traceback.format_exc()}
            return [_dumps(reply)]

    def _dispatch(self, request: dict[str, Any]) -> list[bytes]:
        event = request["event"]
        if event == "GET_INVENTORY":
            inventory = {
                "json_methods": self.JSON_METHODS,
                "buffer_methods": self.BUFFER_METHODS,
                "signals": list(self.SIGNALS),
                "properties": list(self.PROPERTIES),
                "name": self.name,
            }
            return [_dumps(inventory)]
        if event == "INIT_SIGNALS_HANDLING":
            return [_dumps({"success": True, "signal_port": self.signal_port})]
        if event == "PROPERTY_GET":
            value = self.get_property(request["property"])
            return [_dumps({"success": True, "value": value})]
        if event == "PROPERTY_SET":
            self.set_property(request["property"], request["value"])
            return [_dumps({"success": True})]
        if event == "STOP_SERVER":
            self._stop.set()
            return [_dumps({"success": True})]
        if event == "METHOD_CALL":
            method = request["method"]
            params = request.get("params") or {}
            args, kwargs = params.get("args") or [], params.get("kwargs") or {}
            if method in self.JSON_METHODS:
                self.executed.append(method)
                result = getattr(self, method)(*args, **kwargs)
                return [_dumps({"success": True, "result": result})]
            if method in self.BUFFER_METHODS:
                self.executed.append(method)
                buffer_info, data = getattr(self, method)(*args, **kwargs)
                return [_dumps(buffer_info), data]
            raise AttributeError(f"no method {method!r}")
        raise ValueError(f"unsupported event {event!r}")


# --------------------------------------------------------------------------- RPC client


class LegacyRemoteError(Exception):
    """The server answered ``success: false``.

    Attributes:
        error: The error message sent by the server.
        traceback: The remote traceback text.
    """

    def __init__(self, error: str, traceback_text: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.traceback = traceback_text


class LegacyRPCClient:
    """A deployed-style REQ client: one request, then wait for its reply.

    Args:
        url: The server's endpoint.
        timeout: Seconds to wait for each reply.
        context: ZeroMQ context (the process-wide one by default).
    """

    def __init__(
        self, url: str, timeout: float = 5.0, context: zmq.Context[Any] | None = None
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.context = context if context is not None else zmq.Context.instance()
        self._req = self.context.socket(zmq.REQ)
        self._req.linger = 0
        self._req.connect(url)

    def request(self, message: dict[str, Any]) -> list[bytes]:
        """Send one request object and return the raw reply frames.

        Raises:
            TimeoutError: No reply within ``timeout``; the client is stuck from now on.
        """
        self._req.send(_dumps(message))
        if not self._req.poll(int(self.timeout * 1000)):
            raise TimeoutError(f"no reply from {self.url} within {self.timeout} s")
        frames: list[bytes] = self._req.recv_multipart()
        return frames

    def _exchange(self, message: dict[str, Any]) -> Any:
        frames = self.request(message)
        reply = json.loads(frames[0])
        if len(frames) == 2 and isinstance(reply, dict) and "error" not in reply:
            return reply, frames[1]
        if isinstance(reply, dict) and reply.get("success") is False:
            raise LegacyRemoteError(str(reply.get("error")), str(reply.get("traceback", "")))
        return reply

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a method.

        Returns:
            The result of a JSON method, or ``(buffer_info, raw_bytes)`` for a buffer method.

        Raises:
            LegacyRemoteError: The method failed remotely.
            TimeoutError: No reply in time.
        """
        reply = self._exchange(
            {"event": "METHOD_CALL", "method": method, "params": {"args": args, "kwargs": kwargs}}
        )
        return reply if isinstance(reply, tuple) else reply["result"]

    def get_property(self, name: str) -> Any:
        """Read a property."""
        return self._exchange({"event": "PROPERTY_GET", "property": name})["value"]

    def set_property(self, name: str, value: Any) -> None:
        """Write a property."""
        self._exchange({"event": "PROPERTY_SET", "property": name, "value": value})

    def inventory(self) -> dict[str, Any]:
        """Return the server's GET_INVENTORY reply."""
        reply: dict[str, Any] = self._exchange({"event": "GET_INVENTORY"})
        return reply

    def init_signals(self) -> int:
        """Ask for the server's signal port (INIT_SIGNALS_HANDLING)."""
        return int(self._exchange({"event": "INIT_SIGNALS_HANDLING"})["signal_port"])

    def stop_server(self) -> None:
        """Ask the server to stop (STOP_SERVER)."""
        self._exchange({"event": "STOP_SERVER"})

    def close(self) -> None:
        """Close the socket at once, dropping anything pending."""
        self._req.close(linger=0)

    def __enter__(self) -> LegacyRPCClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LegacySignalSubscriber:
    """A deployed-style signal subscriber: everything, one JSON frame per message.

    Args:
        url: The publisher's endpoint, ``tcp://host:signal_port``.
        context: ZeroMQ context (the process-wide one by default).
    """

    def __init__(self, url: str, context: zmq.Context[Any] | None = None) -> None:
        self.context = context if context is not None else zmq.Context.instance()
        self._sub = self.context.socket(zmq.SUB)
        self._sub.linger = 0
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(url)

    def recv(self, timeout: float) -> Any:
        """Return the next decoded frame, or None if none arrives within ``timeout`` seconds."""
        if not self._sub.poll(int(timeout * 1000)):
            return None
        return json.loads(self._sub.recv())

    def close(self) -> None:
        """Close the socket."""
        self._sub.close(linger=0)

    def __enter__(self) -> LegacySignalSubscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- registry


class LegacyRegistry(_Stoppable):
    """A deployed-style device registry on a REP socket.

    Args:
        url: Where to bind (the deployed default is ``tcp://*:5555``).
        alive_timeout: Seconds a registration lives without a CHECK_ALIVE, unless the
            CHECK_ALIVE names its own.
        context: ZeroMQ context (the process-wide one by default).
        clock: The clock for expiries.

    Attributes:
        endpoint: The bound endpoint.
        port: The bound port.
        requests: Every decoded request received so far, in order.
    """

    def __init__(
        self,
        url: str = "tcp://127.0.0.1:0",
        alive_timeout: float = ALIVE_TIMEOUT,
        context: zmq.Context[Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(url, context)
        self.alive_timeout = alive_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._devices: dict[str, dict[str, Any]] = {}
        self.requests: list[Any] = []

    @property
    def devices(self) -> dict[str, dict[str, Any]]:
        """A copy of the live registrations: ``{name: {uuid, device_type, addr, expiry}}``."""
        with self._lock:
            self._expire()
            return {name: dict(entry) for name, entry in self._devices.items()}

    def _expire(self) -> None:
        now = self._clock()
        for name in [n for n, entry in self._devices.items() if entry["expiry"] <= now]:
            del self._devices[name]

    def _name_of(self, device_uuid: Any) -> str | None:
        for name, entry in self._devices.items():
            if entry["uuid"] == device_uuid:
                return name
        return None

    def _handle(self, frames: list[bytes]) -> list[bytes]:
        try:
            message = json.loads(frames[0])
            event, payload = message.get("event"), message.get("payload") or {}
            if not isinstance(payload, dict):
                raise TypeError("payload must be an object")
        except (ValueError, AttributeError, TypeError):
            message, event, payload = None, None, {}
        self.requests.append(message)
        with self._lock:
            self._expire()
            if event == "REGISTER":
                reply = self._register(payload)
            elif event == "UNREGISTER":
                name = self._name_of(payload.get("uuid"))
                if name is not None:
                    del self._devices[name]
                reply = _ack("UNREGISTER", name is not None)
            elif event == "CHECK_ALIVE":
                name = self._name_of(payload.get("uuid"))
                if name is not None:
                    timeout = float(payload.get("alive_timeout") or self.alive_timeout)
                    self._devices[name]["expiry"] = self._clock() + timeout
                reply = _ack("CHECK_ALIVE", name is not None)
            else:
                reply = {"event": "UNSUPPORTED", "payload": {"req_event": event}}
        return [_dumps(reply)]

    def _register(self, payload: dict[str, Any]) -> dict[str, Any]:
        name = str(payload.get("name", ""))
        if name in self._devices and not payload.get("overwrite", False):
            suffix = 1
            while f"{name}-{suffix}" in self._devices:
                suffix += 1
            name = f"{name}-{suffix}"
        device_uuid = uuid.uuid4().hex
        self._devices[name] = {
            "uuid": device_uuid,
            "device_type": payload.get("device_type"),
            "addr": payload.get("addr"),
            "expiry": self._clock() + self.alive_timeout,
        }
        return {"event": "REGISTER_ACK", "payload": {"name": name, "uuid": device_uuid}}


def _ack(req_event: str, success: bool) -> dict[str, Any]:
    return {"event": "ACK", "payload": {"req_event": req_event, "success": success}}


def _registry_exchange(
    registry_url: str, message: dict[str, Any], timeout: float, context: zmq.Context[Any] | None
) -> dict[str, Any] | None:
    """One request on a fresh REQ socket; None when no reply arrives in time."""
    context = context if context is not None else zmq.Context.instance()
    sock = context.socket(zmq.REQ)
    sock.linger = 0
    try:
        sock.connect(registry_url)
        sock.send(_dumps(message))
        if not sock.poll(int(timeout * 1000)):
            return None
        reply: dict[str, Any] = json.loads(sock.recv())
        return reply
    finally:
        sock.close(linger=0)


def legacy_register(
    registry_url: str,
    device_type: str,
    addr: str,
    name: str,
    overwrite: bool = False,
    timeout: float = 5.0,
    context: zmq.Context[Any] | None = None,
) -> tuple[str, str]:
    """Register a device as a deployed device does.

    Args:
        registry_url: The registry's endpoint.
        device_type: The device's type, e.g. ``"camera"``.
        addr: The device's full RPC address, ``tcp://ip:port``.
        name: The proposed name.
        overwrite: Take the name over if it is in use.
        timeout: Seconds to wait for the reply.
        context: ZeroMQ context (the process-wide one by default).

    Returns:
        The accepted name and the uuid.

    Raises:
        TimeoutError: The registry did not answer in time.
        RuntimeError: The reply was not a REGISTER_ACK.
    """
    payload = {"device_type": device_type, "addr": addr, "name": name, "overwrite": overwrite}
    reply = _registry_exchange(
        registry_url, {"event": "REGISTER", "payload": payload}, timeout, context
    )
    if reply is None:
        raise TimeoutError(f"registry {registry_url} did not answer within {timeout} s")
    if reply.get("event") != "REGISTER_ACK":
        raise RuntimeError(f"registration refused: {reply!r}")
    return reply["payload"]["name"], reply["payload"]["uuid"]


def legacy_check_alive(
    registry_url: str,
    device_uuid: str,
    alive_timeout: float | None = None,
    timeout: float = 5.0,
    context: zmq.Context[Any] | None = None,
) -> str:
    """Renew a registration with CHECK_ALIVE.

    Args:
        registry_url: The registry's endpoint.
        device_uuid: The uuid from :func:`legacy_register`.
        alive_timeout: Seconds until the registration expires, or None to leave it out.
        timeout: Seconds to wait for the reply.
        context: ZeroMQ context (the process-wide one by default).

    Returns:
        ``"ok"`` (ACK with success), ``"unknown"`` (any other reply) or ``"unreachable"``
        (no reply in time).
    """
    payload: dict[str, Any] = {"uuid": device_uuid}
    if alive_timeout is not None:
        payload["alive_timeout"] = alive_timeout
    reply = _registry_exchange(
        registry_url, {"event": "CHECK_ALIVE", "payload": payload}, timeout, context
    )
    if reply is None:
        return "unreachable"
    if reply.get("event") == "ACK" and reply.get("payload", {}).get("success"):
        return "ok"
    return "unknown"


def legacy_unregister(
    registry_url: str,
    device_uuid: str,
    timeout: float = 5.0,
    context: zmq.Context[Any] | None = None,
) -> bool:
    """Remove a registration.

    Args:
        registry_url: The registry's endpoint.
        device_uuid: The uuid from :func:`legacy_register`.
        timeout: Seconds to wait for the reply.
        context: ZeroMQ context (the process-wide one by default).

    Returns:
        Whether the registry knew the uuid and removed it.

    Raises:
        TimeoutError: The registry did not answer in time.
    """
    reply = _registry_exchange(
        registry_url, {"event": "UNREGISTER", "payload": {"uuid": device_uuid}}, timeout, context
    )
    if reply is None:
        raise TimeoutError(f"registry {registry_url} did not answer within {timeout} s")
    return bool(reply.get("event") == "ACK" and reply.get("payload", {}).get("success"))


# --------------------------------------------------------------------------- as a process


def main(argv: list[str] | None = None) -> int:
    """Run a legacy server or registry until STOP_SERVER or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    server_args = sub.add_parser("server")
    server_args.add_argument("url")
    server_args.add_argument("--name", default="")
    registry_args = sub.add_parser("registry")
    registry_args.add_argument("url")
    registry_args.add_argument("--alive-timeout", type=float, default=ALIVE_TIMEOUT)
    options = parser.parse_args(argv)

    service: _Stoppable
    if options.role == "server":
        service = LegacyRPCServer(options.url, name=options.name)
    else:
        service = LegacyRegistry(options.url, alive_timeout=options.alive_timeout)
    signal.signal(signal.SIGTERM, lambda *_: service._stop.set())
    print(service.endpoint, flush=True)
    service.serve_forever()
    zmq.Context.instance().term()  # flush the last reply (e.g. to STOP_SERVER) before exiting
    return 0


if __name__ == "__main__":
    sys.exit(main())
