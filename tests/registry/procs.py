"""Real processes for the registry tests: a registry, devices and a client, killed by PID.

Run as ``python -m tests.registry.procs ROLE ...``; every process reports on stdout, one line
per fact (``READY ...``, ``REGISTERED ...``, ``EVENT ...``, ``RESULT ...``), and reads commands
from stdin. Tests drive them through :class:`Proc`.

Roles:
  registry  --addr A --port P [--heartbeat S]             serve a DeviceRegistry until SIGTERM
  device    --registry URL --name N [--type T] [--alive-timeout S] [--overwrite] [--rpc]
            [--bind URL]                                   register and stay registered
            stdin: "hang" blocks the device loop until "release"; "quit" exits
  client    --registry URL --name N                        connect by name, watch the registry
            stdin: "call" calls whoami() on the device; "quit" exits
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from tests.commands import LineProcess

# --------------------------------------------------------------------------- test side


class Proc(LineProcess):
    """A ``tests.registry.procs`` role in a process of its own."""

    def __init__(self, argv: Sequence[str], prefix: Sequence[str] = ()) -> None:
        super().__init__("tests.registry.procs", argv, prefix)

    def expect(self, word: str, timeout: float = 5.0) -> list[str]:
        """Wait for the next unread line starting with ``word``; return its other fields.

        Lines starting with other words stay available to later calls.
        """
        return self.expect_any((word,), timeout)[1:]

    def expect_any(self, words: Sequence[str], timeout: float = 5.0) -> list[str]:
        """Like :meth:`expect` for the first line starting with any of ``words`` (all fields)."""
        return self.next_line(words, timeout).split()


class ProcessPool:
    """Starts processes and makes sure every one of them is gone at teardown."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, *argv: str, prefix: Sequence[str] = ()) -> Proc:
        proc = Proc(argv, prefix)
        self.started.append(proc)
        return proc

    def registry(self, port: int = 0, addr: str = "127.0.0.1", prefix: Sequence[str] = ()) -> Proc:
        return self.start(
            "registry", "--addr", addr, "--port", str(port), "--heartbeat", "0.2", prefix=prefix
        )

    def device(self, registry_url: str, name: str, *extra: str, prefix: Sequence[str] = ()) -> Proc:
        return self.start(
            "device", "--registry", registry_url, "--name", name, *extra, prefix=prefix
        )

    def close(self) -> None:
        for proc in self.started:
            proc.close()
        self.started.clear()


# --------------------------------------------------------------------------- process side


def _say(*fields: object) -> None:
    print(*fields, flush=True)


def _stop_on_sigterm() -> threading.Event:
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    return stopping


def run_registry(args: argparse.Namespace) -> None:
    from labwire.registry import DeviceRegistry

    stopping = _stop_on_sigterm()
    registry = DeviceRegistry(None, args.addr, str(args.port), heartbeat_interval=args.heartbeat)
    registry.add_new_device_callback(lambda name, kind, addr: _say("ADDED", name, addr))
    registry.add_device_removed_callback(lambda name, kind, addr: _say("REMOVED", name, addr))
    registry.start()
    _say("READY", registry.url, registry.port, registry.event_endpoint)
    stopping.wait()
    registry.stop()


def _probe_classes() -> tuple[type[Any], type[Any]]:
    from labwire.rpc import RPCClient, RPCServer

    class ProbeInterface:
        def whoami(self) -> dict[str, Any]: ...

    class ProbeDevice(ProbeInterface, RPCServer):
        @RPCServer.register_method_json(timeout=1000)
        def whoami(self) -> dict[str, Any]:
            return {"name": self.name, "pid": os.getpid()}

    @RPCClient.register_interface(ProbeInterface)
    class ProbeClient(ProbeInterface, RPCClient):
        pass

    return ProbeDevice, ProbeClient


def run_device(args: argparse.Namespace) -> None:
    from labwire.registry import RegistrationKeeper

    stopping = _stop_on_sigterm()
    last_tick = time.monotonic()
    server = None
    if args.rpc:
        device_class, _ = _probe_classes()
        server = device_class(None, args.bind, alive_timeout=args.alive_timeout).start()
        name = server.register_to_registry(args.type, args.name, args.registry, args.overwrite)
        _say("REGISTERED", name, server.advertised_endpoint())
        keeper = None
    else:
        fake_port = 20000 + os.getpid() % 40000  # a keeper-only device has no real socket
        address = args.bind if not args.bind.endswith(":0") else f"tcp://127.0.0.1:{fake_port}"
        keeper = RegistrationKeeper(
            None,
            args.type,
            args.name,
            address,
            args.registry,
            args.overwrite,
            args.alive_timeout,
            health_check=lambda: time.monotonic() - last_tick < args.alive_timeout / 2,
            on_name_change=lambda new: _say("RENAMED", new),
        )
        _say("REGISTERED", keeper.start(), keeper.address)
    try:
        while not stopping.is_set():
            readable, _, _ = select.select([sys.stdin], [], [], 0.05)
            last_tick = time.monotonic()
            if not readable:
                continue
            command = sys.stdin.readline().strip()
            if command == "hang":  # the device's loop blocks in a handler until released
                _say("HUNG")
                while sys.stdin.readline().strip() != "release":
                    pass
                last_tick = time.monotonic()
                _say("RELEASED")
            elif command in ("quit", ""):
                break
    finally:
        if keeper is not None:
            keeper.stop()
        if server is not None:
            server.close()


def run_client(args: argparse.Namespace) -> None:
    from labwire.errors import LabwireError
    from labwire.registry import RegistryClient, WatchEventKind, connect

    stopping = _stop_on_sigterm()
    _, client_class = _probe_classes()
    registry = RegistryClient(args.registry, timeout=2.0)
    watch = registry.watch()
    device = connect(client_class, args.name, args.registry, timeout=1000)
    _say("READY", device.url)
    try:
        while not stopping.is_set():
            event = watch.next_event(0.02)
            if event is not None:
                if event.kind == WatchEventKind.SNAPSHOT:
                    _say("EVENT", "snapshot", ",".join(sorted(d.name for d in event.devices)))
                elif event.device is not None:
                    _say("EVENT", event.kind.value, event.device.name, event.reason or "-")
                else:
                    _say("EVENT", event.kind.value)
            readable, _, _ = select.select([sys.stdin], [], [], 0)
            if not readable:
                continue
            command = sys.stdin.readline().strip()
            if command == "call":
                try:
                    result = device.whoami()
                    _say("RESULT", result["name"], result["pid"], device.url)
                except LabwireError as exc:
                    _say("ERROR", type(exc).__name__, str(exc).replace("\n", " "))
            elif command in ("quit", ""):
                break
    finally:
        device.close()
        watch.close()
        registry.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    roles = parser.add_subparsers(dest="role", required=True)
    registry = roles.add_parser("registry")
    registry.add_argument("--addr", default="127.0.0.1")
    registry.add_argument("--port", type=int, default=0)
    registry.add_argument("--heartbeat", type=float, default=0.2)
    device = roles.add_parser("device")
    device.add_argument("--registry", required=True)
    device.add_argument("--name", default="")
    device.add_argument("--type", default="camera")
    device.add_argument("--alive-timeout", type=float, default=1.0)
    device.add_argument("--overwrite", action="store_true")
    device.add_argument("--rpc", action="store_true")
    device.add_argument("--bind", default="tcp://127.0.0.1:0")
    client = roles.add_parser("client")
    client.add_argument("--registry", required=True)
    client.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(relativeCreated)7.0f {args.role}[{os.getpid()}] %(name)s: %(message)s",
    )
    {"registry": run_registry, "device": run_device, "client": run_client}[args.role](args)


if __name__ == "__main__":
    main()
