"""Shell completion for ``labwire``: commands, options, device names, methods and properties.

``labwire completion bash`` (or ``zsh``, ``fish``) prints the script that hooks the shell up;
``eval "$(labwire completion bash)"`` in ``~/.bashrc`` turns it on. When the shell asks, the
command line is parsed by argcomplete, and the values that depend on the lab are asked of it:
device names of the registry (``--registry``, ``LABWIRE_REGISTRY``), and a device's methods,
properties or signals from its inventory. Each question waits half a second at most, and a
registry or device that does not answer simply offers nothing.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from typing import Any

from labwire.cli.common import CommandFactory

#: How long completion waits for a registry or a device, in seconds.
_PATIENCE = 0.5

_SHELLS = ("bash", "zsh", "fish", "tcsh", "powershell")


def add_commands(command: CommandFactory) -> None:
    """Add ``labwire completion SHELL`` to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "completion",
        "print the script that gives a shell completion for labwire",
        'eval "$(labwire completion bash)"   # in ~/.bashrc',
    )
    sub.add_argument("shell", choices=_SHELLS, help="the shell")
    sub.set_defaults(handler=_cmd_completion)


def _cmd_completion(args: argparse.Namespace, ctx: Any) -> int:
    import sys

    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode(["labwire"], shell=args.shell))
    return 0


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when this run is one; else nothing."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    for action in _actions(parser):
        completer = _COMPLETERS.get(action.dest)
        if completer is not None:
            action.completer = completer  # type: ignore[attr-defined]
    argcomplete.autocomplete(parser)


def _actions(parser: argparse.ArgumentParser) -> Iterable[argparse.Action]:
    """Every argument of ``parser`` and of its subcommands, depth first."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)


def _device_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    from labwire.cli.common import CommandError, _context
    from labwire.errors import LabwireError
    from labwire.registry import RegistryClient

    try:
        ctx = _context(parsed_args)
        with RegistryClient(ctx.registry_url, settings=ctx.settings, timeout=_PATIENCE) as registry:
            return [device.name for device in registry.list_devices()]
    except (LabwireError, CommandError, OSError):
        return []


def _inventory_names(key: str) -> Callable[..., list[str]]:
    """A completer offering the ``key`` names (methods, properties, signals) of the device."""

    def names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
        from labwire.cli.common import CommandError, _context, _open_client
        from labwire.errors import LabwireError

        try:
            parsed_args.timeout = _PATIENCE
            ctx = _context(parsed_args)
            client = _open_client(ctx, parsed_args.device)
        except (LabwireError, CommandError, OSError, AttributeError):
            return []
        try:
            inventory = client.inventory()
        finally:
            client.close()
        if key == "methods":
            return [*inventory["json_methods"], *inventory["buffer_methods"]]
        return list(inventory[key])

    return names


_COMPLETERS: dict[str, Callable[..., list[str]]] = {
    "device": _device_names,
    "method": _inventory_names("methods"),
    "property": _inventory_names("properties"),
    "signals": _inventory_names("signals"),
}
