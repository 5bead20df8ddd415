"""The ``labwire get`` and ``labwire set`` commands: read and write a device's properties."""

from __future__ import annotations

import argparse
import json

from labwire.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    CommandError,
    CommandFactory,
    _add_common,
    _check_name,
    _Context,
    _device_label,
    _jsonable,
    _open_client,
    _parse_value,
    _print_json,
)
from labwire.errors import (
    PermissionDenied,
    RemoteError,
)


def cmd_get(args: argparse.Namespace, ctx: _Context) -> int:
    """Read one property, or all."""
    client = _open_client(ctx, args.device)
    try:
        label = _device_label(client, args.device)
        properties = client.inventory()["properties"]
        if args.property is None:
            _print_json(client.get_properties())
            return EXIT_OK
        _check_name("property", args.property, properties, label)
        _print_json(client.get_property(args.property))
        return EXIT_OK
    finally:
        client.close()


def cmd_set(args: argparse.Namespace, ctx: _Context) -> int:
    """Write a property; prints the value read back."""
    value = _parse_value(args.value)
    client = _open_client(ctx, args.device)
    try:
        label = _device_label(client, args.device)
        _check_name("property", args.property, client.inventory()["properties"], label)
        try:
            client.set_property(args.property, value)
        except RemoteError as exc:
            if isinstance(exc, PermissionDenied):
                raise
            raise CommandError(
                f"cannot set {label}.{args.property} to {json.dumps(value, default=_jsonable)}: "
                f"{exc}",
                EXIT_ERROR,
            ) from None
        _print_json(client.get_property(args.property))
        return EXIT_OK
    finally:
        client.close()


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "get", "read a property (all of them without PROPERTY)", "labwire get stage position"
    )
    sub.add_argument("device", metavar="DEVICE", help="registry name or URL")
    sub.add_argument("property", metavar="PROPERTY", nargs="?", help="property name")
    _add_common(sub)
    sub.set_defaults(handler=cmd_get)

    sub = command(
        "set",
        "write a property (VALUE is JSON, or a plain string)",
        "labwire set camera mode VIDEO",
    )
    sub.add_argument("device", metavar="DEVICE", help="registry name or URL")
    sub.add_argument("property", metavar="PROPERTY", help="property name")
    sub.add_argument("value", metavar="VALUE", help="new value")
    _add_common(sub)
    sub.set_defaults(handler=cmd_set)
