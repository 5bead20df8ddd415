"""The ``labwire watch`` command: a device's signals, or the registry's changes, one per line."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from labwire.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    CommandFactory,
    _add_common,
    _check_name,
    _clock,
    _Context,
    _device_label,
    _jsonable,
    _LinePrinter,
    _open_client,
    _shown,
)
from labwire.cli.registry import watch_registry


def cmd_watch(args: argparse.Namespace, ctx: _Context) -> int:
    """Print signals or registry events as they come."""
    if args.device is None:
        if args.registry is None:
            raise CommandError(
                "give a DEVICE to watch its signals, or --registry to watch the registry",
                EXIT_USAGE,
            )
        return watch_registry(args, ctx)
    return _watch_device(args, ctx)


_CLIENT_ATTRIBUTES = {"context", "url", "timeout", "name", "own_address", "peer_address"}


def _watch_device(args: argparse.Namespace, ctx: _Context) -> int:
    from labwire.rpc import RPCClient, RPCSignal

    probe = _open_client(ctx, args.device)
    try:
        label = _device_label(probe, args.device)
        available = probe.inventory()["signals"]
    finally:
        probe.close()
    names = list(args.signals) or list(available)
    for name in names:
        _check_name("signal", name, available, label)
    usable = [
        n
        for n in names
        if n.isidentifier() and not hasattr(RPCClient, n) and n not in _CLIENT_ATTRIBUTES
    ]
    for name in sorted(set(names) - set(usable)):
        ctx.err.print(_shown(f"cannot watch signal {name!r}: its name clashes with the client"))
    if not usable:
        raise CommandError(f"{label} has no signals to watch", EXIT_NOT_FOUND)
    watcher_class = type("SignalWatcher", (RPCClient,), {n: RPCSignal() for n in usable})
    printer = _LinePrinter(ctx, args.json, args.count)
    client = _open_client(ctx, args.device, watcher_class)
    try:
        for name in usable:
            signal_object: RPCSignal = getattr(client, name)
            signal_object.connect(_signal_slot(printer, label, name))
        ctx.err.print(
            _shown(f"watching {', '.join(usable)} of {label} ({client.url}); Ctrl-C to stop")
        )
        printer.done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return EXIT_OK


def _signal_slot(printer: _LinePrinter, label: str, name: str) -> Callable[..., None]:
    def slot(*values: Any) -> None:
        now = time.time()
        record = {"time": now, "device": label, "signal": name, "args": list(values)}
        shown = ", ".join(json.dumps(v, default=_jsonable) for v in values)
        printer.emit(record, f"{_clock(now)}  {label}  {name}  {shown}")

    return slot


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "watch",
        "print a device's signals, or the registry's changes, one per line",
        "labwire watch stage positionChanged motionDone",
        "labwire watch --registry --json",
    )
    sub.add_argument("device", metavar="DEVICE", nargs="?", help="registry name or URL")
    sub.add_argument("signals", metavar="SIGNAL", nargs="*", help="signals (default: all)")
    sub.add_argument(
        "--registry",
        metavar="URL",
        nargs="?",
        const="",
        help="without DEVICE: watch this registry (default URL: $LABWIRE_REGISTRY); "
        "with DEVICE: the registry to look it up in",
    )
    sub.add_argument("--json", action="store_true", help="print JSON lines")
    sub.add_argument("--count", type=int, metavar="N", help="stop after N events")
    _add_common(sub, registry=False)
    sub.set_defaults(handler=cmd_watch)
