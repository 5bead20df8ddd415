"""The ``labwire keys`` command: make or show CurveZMQ keys."""

from __future__ import annotations

import argparse
from pathlib import Path

from labwire.cli.common import (
    DEFAULT_KEYS_DIR,
    EXIT_ERROR,
    EXIT_OK,
    CommandError,
    CommandFactory,
    _Context,
    _example,
    _Formatter,
    _print_json,
)
from labwire.errors import (
    SecurityConfigError,
)


def cmd_keys(args: argparse.Namespace, ctx: _Context) -> int:
    """Make or show CurveZMQ keys."""
    from labwire.security import generate_keypair, public_key_of

    if args.keys_command == "new":
        try:
            public_path, secret_path = generate_keypair(Path(args.dir).expanduser(), args.name)
        except SecurityConfigError as exc:  # a bad name or an existing file: not a refusal
            raise CommandError(str(exc), EXIT_ERROR) from None
        key = public_key_of(public_path)
        if args.json:
            _print_json({"public": str(public_path), "secret": str(secret_path), "key": key})
        else:
            ctx.out.print(f"public key  {key}", markup=False)
            ctx.out.print(f"public file {public_path}  (share it)", markup=False)
            ctx.out.print(f"secret file {secret_path}  (mode 0600; never share it)", markup=False)
        return EXIT_OK
    try:
        key = public_key_of(Path(args.path))
    except SecurityConfigError as exc:
        raise CommandError(str(exc), EXIT_ERROR, "give a .key or .key_secret file") from None
    if args.json:
        _print_json({"path": args.path, "key": key})
    else:
        ctx.out.print(key, markup=False)
    return EXIT_OK


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "keys", "make or show CurveZMQ keys", "labwire keys new rig-3 --dir ~/.config/labwire/keys"
    )
    keys = sub.add_subparsers(dest="keys_command", metavar="ACTION")
    keys.required = True
    new = keys.add_parser(
        "new",
        help="write NAME.key (public) and NAME.key_secret (secret, mode 0600)",
        epilog=_example("labwire keys new camera-pi --dir keys"),
        formatter_class=_Formatter,
    )
    new.add_argument("name", metavar="NAME")
    new.add_argument("--dir", default=str(DEFAULT_KEYS_DIR), help="folder (default %(default)s)")
    new.add_argument("--json", action="store_true", help="print JSON")
    show = keys.add_parser(
        "show",
        help="print the public key of a key file (public or secret)",
        epilog=_example("labwire keys show keys/camera-pi.key"),
        formatter_class=_Formatter,
    )
    show.add_argument("path", metavar="PATH")
    show.add_argument("--json", action="store_true", help="print JSON")
    for action in (new, show):
        action.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub.set_defaults(handler=cmd_keys)
