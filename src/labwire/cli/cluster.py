"""The ``labwire cluster`` command group: look at a peer group from the command line.

::

    labwire cluster ls GROUP                          the live devices, their subscriptions
                                                      and endpoints
    labwire cluster echo GROUP PATTERN                print the events matching PATTERN
    labwire cluster request GROUP DEST ENDPOINT [ARG...]
                                                      call DEST's request endpoint

Each command joins GROUP for the time it runs, as a device named ``labwire-cli-<id>`` (so
the group's devices see it come and go), within ``--network`` (default every local network;
``127.0.0.0/8`` for this machine only), with the group key from ``--key-file`` when the
group has one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from labwire.cli.common import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CommandError,
    CommandFactory,
    _add_common,
    _Context,
    _jsonable,
    _parse_call_arguments,
    _print_json,
    _shown,
)
from labwire.errors import CallTimeout, NotFound, RemoteError, Unavailable


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "cluster",
        "look at a peer group: its devices, their events, their request endpoints",
        "labwire cluster ls rover --network 192.168.1.0/24",
        "labwire cluster echo rover '*/GPSPosition'",
        "labwire cluster request rover nav route 10 20",
    )
    actions = sub.add_subparsers(dest="cluster_command", metavar="ACTION")
    actions.required = True

    ls = actions.add_parser(
        "ls",
        help="list the live devices of GROUP, their subscriptions and endpoints",
        description="List the live devices of GROUP, their subscriptions and endpoints.",
    )
    ls.add_argument("group", metavar="GROUP")
    ls.add_argument(
        "--wait", type=float, default=1.5, metavar="S", help="seconds to listen (default 1.5)"
    )
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=cmd_cluster_ls)

    echo = actions.add_parser(
        "echo",
        help="print the events of GROUP matching PATTERN, one per line",
        description="Print the events of GROUP matching PATTERN ('sender/topic' globs; a "
        "pattern without '/' means that topic from any sender), one per line.",
    )
    echo.add_argument("group", metavar="GROUP")
    echo.add_argument("pattern", metavar="PATTERN")
    echo.add_argument("--count", type=int, metavar="N", help="stop after N events")
    echo.add_argument("--json", action="store_true", help="print JSON lines")
    echo.set_defaults(handler=cmd_cluster_echo)

    request = actions.add_parser(
        "request",
        help="call DEST's request ENDPOINT (JSON arguments, name=JSON for keywords)",
        description="Call a request endpoint of the device DEST in GROUP and print the "
        "result as JSON.",
    )
    request.add_argument("group", metavar="GROUP")
    request.add_argument("dest", metavar="DEST", help="the device name")
    request.add_argument("endpoint", metavar="ENDPOINT")
    request.add_argument("args", metavar="ARG", nargs="*", help="JSON value, or name=JSON")
    request.add_argument(
        "--wait",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds to wait for DEST to appear (default 3)",
    )
    request.set_defaults(handler=cmd_cluster_request)

    for action in (ls, echo, request):
        action.add_argument(
            "--network",
            default="0.0.0.0/0",
            metavar="NET",
            help="IPv4 network to find the group in (default %(default)s; 127.0.0.0/8 for "
            "this machine only)",
        )
        action.add_argument("--key-file", metavar="PATH", help="file holding the group key")
        _add_common(action, registry=False)


def _device(args: argparse.Namespace, ctx: _Context) -> Any:
    from labwire.cluster import Device

    key: bytes | None = None
    if args.key_file:
        try:
            key = Path(args.key_file).expanduser().read_bytes().strip()
        except OSError as exc:
            raise CommandError(
                f"cannot read the group key file {args.key_file}: {exc.strerror}", EXIT_USAGE
            ) from None
        if not key:
            raise CommandError(f"the group key file {args.key_file} is empty", EXIT_USAGE)
    try:
        return Device(
            f"labwire-cli-{secrets.token_hex(3)}",
            args.group,
            args.network,
            key=key,
            timeout=ctx.query_timeout,
            settings=ctx.settings,
        )
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def _positive(value: float, option: str) -> float:
    if not value > 0:
        raise CommandError(f"{option} must be a positive number of seconds", EXIT_USAGE)
    return value


def _join(device: Any, args: argparse.Namespace) -> None:
    try:
        device.start()
    except OSError as exc:
        raise CommandError(
            f"cannot join group {args.group!r}: {exc}",
            EXIT_UNREACHABLE,
            "is --network right for this machine?",
        ) from None


def cmd_cluster_ls(args: argparse.Namespace, ctx: _Context) -> int:
    """List the live devices of a group."""
    wait = _positive(args.wait, "--wait")

    async def listen() -> list[Any]:
        device = _device(args, ctx)
        _join(device, args)
        try:
            await asyncio.sleep(wait)  # beacons come at their own pace: listen for a while
            deadline = time.monotonic() + ctx.query_timeout
            while not all(peer.has_catalog for peer in device.peers()):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return list(device.peers())
        finally:
            device.stop()

    peers = asyncio.run(listen())
    if args.json:
        _print_json(
            [
                {
                    "name": peer.name,
                    "address": peer.address,
                    "port": peer.port,
                    "uid": peer.uid,
                    "subscriptions": list(peer.subscriptions),
                    "requests": list(peer.requests),
                    "receivers": list(peer.receivers),
                }
                for peer in peers
            ]
        )
        return EXIT_OK
    if not peers:
        ctx.err.print(_shown(f"no devices heard in group {args.group!r} on {args.network}"))
        return EXIT_OK
    table = Table(box=box.SIMPLE, show_edge=False)
    for column in ("device", "address", "subscriptions", "requests", "receives"):
        table.add_column(column)
    for peer in peers:
        table.add_row(
            _shown(peer.name),
            _shown(f"{peer.address}:{peer.port}"),
            _shown(", ".join(peer.subscriptions) or "-"),
            _shown(", ".join(peer.requests) or "-"),
            _shown(", ".join(peer.receivers) or "-"),
        )
    ctx.out.print(table)
    return EXIT_OK


def cmd_cluster_echo(args: argparse.Namespace, ctx: _Context) -> int:
    """Print the events of a group that match a pattern."""
    pattern = args.pattern if "/" in args.pattern else f"*/{args.pattern}"
    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1", EXIT_USAGE)

    async def echo() -> None:
        device = _device(args, ctx)
        done = asyncio.Event()
        remaining = [args.count]

        def show(event: str, data: Any) -> None:
            if done.is_set():
                return
            if args.json:
                record = {"time": time.time(), "event": event, "data": data}
                sys.stdout.write(json.dumps(record, default=_jsonable) + "\n")
                sys.stdout.flush()
            else:
                ctx.out.print(_shown(f"{event} {json.dumps(data, default=_jsonable)}"))
            if remaining[0] is not None:
                remaining[0] -= 1
                if remaining[0] <= 0:
                    done.set()

        device.on(pattern, show)
        _join(device, args)
        ctx.err.print(_shown(f"echoing {pattern} in group {args.group}; Ctrl-C to stop"))
        try:
            await done.wait()
        finally:
            device.stop()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how echo ends
        asyncio.run(echo())
    return EXIT_OK


def cmd_cluster_request(args: argparse.Namespace, ctx: _Context) -> int:
    """Call a request endpoint of one device of a group."""
    from labwire.cluster import UnknownPeer

    wait = _positive(args.wait, "--wait")
    positional, keywords = _parse_call_arguments(args.args)

    async def call() -> Any:
        device = _device(args, ctx)
        _join(device, args)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    device.member.try_peer(args.dest)
                    break
                except UnknownPeer:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.02)
            return await device.request(args.dest, args.endpoint, *positional, **keywords)
        finally:
            device.stop()

    what = f"{args.dest}/{args.endpoint}"
    try:
        result = asyncio.run(call())
    except UnknownPeer as exc:
        raise CommandError(
            str(exc), EXIT_NOT_FOUND, "`labwire cluster ls GROUP` lists the live devices"
        ) from None
    except NotFound as exc:
        raise CommandError(exc.remote_message, EXIT_NOT_FOUND) from None
    except RemoteError as exc:
        raise CommandError(f"{what} raised {exc}", EXIT_ERROR) from None
    except (CallTimeout, Unavailable) as exc:
        raise CommandError(str(exc), EXIT_UNREACHABLE) from None
    except TypeError as exc:
        raise CommandError(f"arguments cannot be sent: {exc}", EXIT_USAGE) from None
    _print_json(result)
    return EXIT_OK
