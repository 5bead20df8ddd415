"""The ``labwire broker`` command: run a signal broker, a work queue or a streamer.

::

    labwire broker signals  --in URL --out URL [--register NAME]   XSUB -> XPUB
    labwire broker queue    --in URL --out URL [--register NAME]   ROUTER <-> DEALER
    labwire broker streamer --in URL --out URL [--register NAME]   PULL -> PUSH

The broker listens on both addresses (port 0: any free port; the ready line says which) and
runs until Ctrl-C, SIGTERM, or (with ``--stop-on-eof``) the end of standard input. With
``--register NAME`` it registers ``NAME.in`` and ``NAME.out`` (types ``signals-broker``,
``queue-broker``, ``streamer-broker``) in the registry and keeps them registered until it
stops. On the way out it prints what it relayed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import threading
from typing import Any

from labwire.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    CommandError,
    CommandFactory,
    _add_common,
    _Context,
    _LinePrinter,
    _registry_unreachable,
    _stop_on_eof,
)
from labwire.errors import CallTimeout, EndpointError, RegistryError, Unavailable
from labwire.transport import SocketType

#: Device type, in socket, out socket, and what connects to each side.
_KINDS = {
    "signals": ("FORWARDER", SocketType.XSUB, SocketType.XPUB, "publishers", "subscribers"),
    "queue": ("QUEUE", SocketType.ROUTER, SocketType.DEALER, "clients", "workers"),
    "streamer": ("STREAMER", SocketType.PULL, SocketType.PUSH, "producers", "consumers"),
}


def cmd_broker(args: argparse.Namespace, ctx: _Context) -> int:
    """Run a broker until Ctrl-C (or the end of standard input with ``--stop-on-eof``)."""
    from labwire.brokers import DeviceType, Statistics, ThreadDevice
    from labwire.registry import RegistrationKeeper

    device_type, in_kind, out_kind, producers, consumers = _KINDS[args.kind]
    device = ThreadDevice(DeviceType[device_type], in_kind, out_kind, settings=ctx.settings)
    device.bind_in(args.in_url)
    device.bind_out(args.out_url)
    try:
        device.start()
    except EndpointError as exc:
        raise CommandError(
            f"cannot listen: {exc}", EXIT_ERROR, "is another broker running there? pick other ports"
        ) from None
    printer = _LinePrinter(ctx, args.json, None)
    keepers: list[Any] = []
    stopped = threading.Event()
    final = Statistics()
    try:
        registered: dict[str, str] = {}
        if args.register:
            for side, endpoints in (("in", device.in_endpoints), ("out", device.out_endpoints)):
                keeper = RegistrationKeeper(
                    None,
                    f"{args.kind}-broker",
                    f"{args.register}.{side}",
                    endpoints[0],
                    ctx.registry_url,
                    alive_timeout=args.alive_timeout,
                    settings=ctx.settings,
                    register_timeout=ctx.query_timeout,
                )
                keepers.append(keeper)
                try:
                    registered[side] = keeper.start()
                except (Unavailable, CallTimeout) as exc:
                    raise _registry_unreachable(ctx, exc) from None
                except RegistryError as exc:
                    raise CommandError(f"registration refused: {exc}", EXIT_ERROR) from None
        if args.stop_on_eof:
            _stop_on_eof(stopped.set)
        ready = {
            "event": "ready",
            "role": f"{args.kind}-broker",
            "in": device.in_endpoints,
            "out": device.out_endpoints,
            "registered": registered or None,
            "registry": ctx.registry_url if registered else None,
            "pid": os.getpid(),
        }
        where = (
            f"; registered as {registered['in']!r} and {registered['out']!r}" if registered else ""
        )
        printer.emit(
            ready,
            f"{args.kind} broker: {producers} connect to {' '.join(device.in_endpoints)}, "
            f"{consumers} to {' '.join(device.out_endpoints)}{where}; Ctrl-C to stop",
        )
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for keeper in keepers:
            keeper.stop()
        device.stop()
        final = device.statistics()
    relayed = final.in_side.frames_received
    back = final.out_side.frames_received
    printer.emit(
        {"event": "stopped", "statistics": dataclasses.asdict(final)},
        f"{args.kind} broker stopped: {relayed} frames ({final.in_side.bytes_received} bytes) "
        f"from {producers}, {back} frames ({final.out_side.bytes_received} bytes) back",
    )
    return EXIT_OK


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "broker",
        "run a signal broker (XSUB/XPUB), a work queue (ROUTER/DEALER) or a streamer "
        "(PULL/PUSH) until Ctrl-C",
        "labwire broker signals --in tcp://*:5570 --out tcp://*:5571 --register lab-signals",
        "labwire broker queue --in tcp://*:5580 --out tcp://*:5581",
    )
    sub.add_argument("kind", choices=tuple(_KINDS), help="which broker")
    sub.add_argument(
        "--in",
        dest="in_url",
        required=True,
        metavar="URL",
        help="where publishers, clients or producers connect (port 0: any free port)",
    )
    sub.add_argument(
        "--out",
        dest="out_url",
        required=True,
        metavar="URL",
        help="where subscribers, workers or consumers connect (port 0: any free port)",
    )
    sub.add_argument(
        "--register", metavar="NAME", help="register NAME.in and NAME.out in the registry"
    )
    sub.add_argument(
        "--alive-timeout", type=int, default=10, metavar="S", help="registry lease (default 10 s)"
    )
    sub.add_argument("--json", action="store_true", help="print JSON lines")
    sub.add_argument("--stop-on-eof", action="store_true", help="stop when stdin closes")
    _add_common(sub)
    sub.set_defaults(handler=cmd_broker)
