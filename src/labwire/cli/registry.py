"""The registry commands: ``labwire registry``, ``labwire ls`` and ``labwire watch --registry``.

Run a registry, list its devices, follow its changes.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from rich import box
from rich.table import Table

from labwire.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    CommandFactory,
    _add_common,
    _age,
    _clock,
    _Context,
    _LinePrinter,
    _print_json,
    _registry_unreachable,
    _shown,
    _stop_on_eof,
)
from labwire.errors import (
    EndpointError,
    Unavailable,
)


def cmd_registry(args: argparse.Namespace, ctx: _Context) -> int:
    """Run a device registry until Ctrl-C."""
    from labwire.registry import DeviceRegistry
    from labwire.transport import parse_endpoint

    bind = args.bind or ctx.registry_url
    endpoint = parse_endpoint(bind, for_bind=True)
    if not endpoint.is_tcp:
        raise CommandError(f"the registry listens on TCP; got {bind}", EXIT_USAGE)
    try:
        registry = DeviceRegistry(
            None,
            endpoint.host,
            str(endpoint.port or 0),
            settings=ctx.settings,
            heartbeat_interval=args.heartbeat,
        )
    except EndpointError as exc:
        raise CommandError(
            f"cannot listen on {bind}: {exc}",
            EXIT_ERROR,
            "is another registry running there? choose another port with --bind",
        ) from None
    printer = _LinePrinter(ctx, args.json, None)

    def announce(kind: str) -> Callable[[str, str, str], None]:
        def callback(name: str, device_type: str, address: str) -> None:
            record = {"event": kind, "name": name, "type": device_type, "address": address}
            printer.emit(
                record, f"{_clock(time.time())}  {kind:<7} {name} ({device_type}) {address}"
            )

        return callback

    registry.add_new_device_callback(announce("added"))
    registry.add_device_removed_callback(announce("removed"))
    try:
        registry.start()
        if args.stop_on_eof:
            _stop_on_eof(registry.stop)
        ready = {
            "event": "ready",
            "role": "registry",
            "url": registry.url,
            "endpoint": registry.endpoint,
            "event_endpoint": registry.event_endpoint,
            "secure": ctx.settings.security is not None,
            "pid": os.getpid(),
        }
        printer.emit(
            ready,
            f"registry listening on {registry.endpoint} (clients here use {registry.url}), "
            f"{ctx.security_banner}; Ctrl-C to stop",
        )
        registry.join()
    except KeyboardInterrupt:
        pass
    finally:
        registry.stop()
    return EXIT_OK


def cmd_ls(args: argparse.Namespace, ctx: _Context) -> int:
    """List the registered devices."""
    from labwire.registry import RegistryClient

    try:
        with RegistryClient(
            ctx.registry_url, settings=ctx.settings, timeout=ctx.query_timeout
        ) as registry:
            devices = registry.list_devices(args.type)
    except Unavailable as exc:
        raise _registry_unreachable(ctx, exc) from None
    if args.json:
        _print_json([device.to_json() for device in devices])
        return EXIT_OK
    if not devices:
        what = f"devices of type {args.type!r}" if args.type else "devices"
        ctx.err.print(_shown(f"no {what} registered at {ctx.registry_url}"))
        return EXIT_OK
    table = Table(box=box.SIMPLE_HEAD, title=f"devices at {ctx.registry_url}")
    for column in ("name", "type", "address", "registered", "last seen"):
        table.add_column(column, no_wrap=column != "address")
    for device in devices:
        table.add_row(
            _shown(device.name),
            _shown(device.device_type),
            _shown(device.address),
            _age(device.registered_since) + " ago",
            _age(device.last_seen) + " ago",
        )
    ctx.out.print(table)
    return EXIT_OK


def watch_registry(args: argparse.Namespace, ctx: _Context) -> int:
    """Print the registry's changes as they come (``labwire watch --registry``)."""
    from labwire.registry import RegistryClient, WatchEventKind

    printer = _LinePrinter(ctx, args.json, args.count)
    try:
        with RegistryClient(
            ctx.registry_url, settings=ctx.settings, timeout=ctx.query_timeout
        ) as registry:
            watch = registry.watch()
    except Unavailable as exc:
        raise _registry_unreachable(ctx, exc) from None
    ctx.err.print(_shown(f"watching the registry at {ctx.registry_url}; Ctrl-C to stop"))
    try:
        while not printer.done.is_set():
            event = watch.next_event()
            if event is None:
                continue
            now = time.time()
            record: dict[str, Any] = {"time": now, "event": str(event.kind), "seq": event.seq}
            if event.kind == WatchEventKind.SNAPSHOT:
                record["devices"] = [device.to_json() for device in event.devices]
                names = ", ".join(device.name for device in event.devices) or "none"
                text = f"{_clock(now)}  snapshot {len(event.devices)} devices: {names}"
            elif event.device is not None:
                device = event.device
                record.update(
                    name=device.name,
                    type=device.device_type,
                    address=device.address,
                    reason=event.reason,
                )
                reason = f" ({event.reason})" if event.reason else ""
                text = (
                    f"{_clock(now)}  {event.kind!s:<8} {device.name} ({device.device_type}) "
                    f"{device.address}{reason}"
                )
            else:
                text = f"{_clock(now)}  {event.kind!s} (the registry stopped answering)"
            printer.emit(record, text)
    except KeyboardInterrupt:
        pass
    finally:
        watch.close()
    return EXIT_OK


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "registry",
        "run a device registry until Ctrl-C",
        "labwire registry --bind tcp://*:5555",
    )
    sub.add_argument("--bind", metavar="URL", help="where to listen (default: the --registry URL)")
    sub.add_argument(
        "--heartbeat", type=float, default=1.0, metavar="S", help="event heartbeat interval"
    )
    sub.add_argument("--json", action="store_true", help="print JSON lines")
    sub.add_argument("--stop-on-eof", action="store_true", help="stop when stdin closes")
    _add_common(sub)
    sub.set_defaults(handler=cmd_registry)

    sub = command("ls", "list the registered devices", "labwire ls --registry tcp://10.0.0.2:5555")
    sub.add_argument("--type", metavar="TYPE", help="only devices of this type")
    sub.add_argument("--json", action="store_true", help="print JSON")
    _add_common(sub)
    sub.set_defaults(handler=cmd_ls)
