"""The ``labwire rigs`` command group, and ``labwire sim rig``.

* ``labwire rigs push URI... MESSAGE [ARG ...]``: send one experiment message to every rig and
  print one row per rig (reply, remote error or timeout). A rig is ``NAME=URI`` or a URI;
  ``udp://HOST[:PORT]`` or a bare host speaks the deployed UDP protocol, ``tcp://...`` or a
  registry name labwire's transport. Arguments are JSON values (or plain strings), as the
  message takes them: ``EXPSTART 2024-05-01_1_mouse``, ``EXPINFO CONNECTED '{"a": 1}'``.
  Exit code 0 when every rig replied, 1 otherwise.
* ``labwire sim rig NAME [--bind URI]``: serve a simulated camera-PC rig on both links.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from labwire.cli.common import CommandFactory

if TYPE_CHECKING:
    from labwire.cli.common import _Context
    from labwire.rigs import RigResults


#: Seconds each rig has to reply when --timeout is not given.
_DEFAULT_TIMEOUT = 5.0


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    from labwire.cli.common import _add_common, _example, _Formatter

    sub = command(
        "rigs",
        "coordinate auxiliary rigs: send experiment messages, collect every rig's reply",
        "labwire rigs push left=udp://10.0.0.5 right=tcp://10.0.0.6:7000 EXPINFO CONNECTED",
    )
    actions = sub.add_subparsers(dest="rigs_command", metavar="ACTION")
    actions.required = True
    push = actions.add_parser(
        "push",
        help="send one message to every rig and print a table of their replies",
        description="Send one experiment message (EXPINIT, EXPSTART, EXPEND, EXPCLEANUP, "
        "EXPINTERRUPT, EXPSTATUS, EXPINFO, ALYX, or its code) to every rig. A rig is NAME=URI "
        "or URI: udp://HOST[:PORT] or a bare host for the deployed UDP protocol, tcp://... or "
        "a registry name for labwire's transport. ARGs are JSON (or plain text).",
        epilog=_example(
            "labwire rigs push udp://127.0.0.1:11001 cam-2 EXPINIT",
            "labwire rigs push cam-1 cam-2 EXPSTART 2024-05-01_1_mouse --sequential",
        ),
        formatter_class=_Formatter,
        usage="labwire rigs push [options] RIG [RIG ...] MESSAGE [ARG ...]",
    )
    push.add_argument(
        "words", nargs="+", metavar="RIG... MESSAGE ARG...", help="rigs, message, arguments"
    )
    push.add_argument(
        "--sequential",
        action="store_true",
        help="one rig after the other (reverse order for EXPEND, EXPINTERRUPT, EXPCLEANUP)",
    )
    push.add_argument("--json", action="store_true", help="print JSON")
    _add_common(push)
    for action in push._actions:
        if action.dest == "timeout":
            action.help = f"seconds each rig has to reply (default {_DEFAULT_TIMEOUT:g})"
    push.set_defaults(handler=cmd_push)


def _split_words(words: Sequence[str]) -> tuple[dict[str, str], str, list[str]]:
    from labwire.cli.common import EXIT_USAGE, CommandError
    from labwire.wire.rigs import ExpMessage

    names = set(ExpMessage.__members__)
    for index, word in enumerate(words):
        if word.strip().upper() in names or (word.isdigit() and index > 0):
            rigs, message, args = words[:index], word, list(words[index + 1 :])
            break
    else:
        raise CommandError(
            "no experiment message given (EXPINIT, EXPSTART, EXPEND, EXPCLEANUP, EXPINTERRUPT, "
            "EXPSTATUS, EXPINFO or ALYX)",
            EXIT_USAGE,
        )
    if not rigs:
        raise CommandError("give at least one rig (NAME=URI or URI) before the message", EXIT_USAGE)
    clients: dict[str, str] = {}
    for rig in rigs:
        name, sep, uri = rig.partition("=")
        if not sep:
            name, uri = rig, rig
        if not name or not uri:
            raise CommandError(f"bad rig {rig!r}: use NAME=URI or URI", EXIT_USAGE)
        if name in clients:
            raise CommandError(f"rig {name!r} is given twice", EXIT_USAGE)
        clients[name] = uri
    return clients, message, args


def cmd_push(args: argparse.Namespace, ctx: _Context) -> int:
    """Send one message to every rig and print each one's outcome."""
    from labwire.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CommandError, _parse_value
    from labwire.rigs import Auxiliaries

    clients, message, words = _split_words(args.words)
    values = [_parse_value(word) for word in words]
    timeout = ctx.timeout if ctx.timeout is not None else _DEFAULT_TIMEOUT
    with Auxiliaries(
        clients, timeout=timeout, settings=ctx.settings, registry_url=ctx.registry_url
    ) as rigs:
        try:
            results = rigs.push_results(message, *values, concurrent=not args.sequential)
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if args.json:
        from labwire.cli.common import _print_json

        _print_json(_as_records(results, clients))
    else:
        ctx.out.print(_table(results, clients))
    return EXIT_OK if results.ok else EXIT_ERROR


def _as_records(results: RigResults, clients: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "rig": name,
            "uri": clients[name],
            "message": result.message.name,
            "outcome": result.outcome,
            "reply": result.data,
            "error": None if result.error is None else str(result.error),
            "ms": round(result.elapsed * 1000, 1),
        }
        for name, result in results.items()
    ]


def _table(results: RigResults, clients: dict[str, str]) -> Table:
    import json

    from rich import box

    from labwire.cli.common import _shown

    table = Table(box=box.SIMPLE, title=f"{results.message.name} to {len(results)} rig(s)")
    for column in ("rig", "uri", "outcome", "reply / error", "ms"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    styles = {"reply": "green", "error": "red", "timeout": "yellow", "unavailable": "yellow"}
    for name, result in results.items():
        reply = json.dumps(result.data) if result.ok else str(result.error)
        table.add_row(
            _shown(name),
            _shown(clients[name]),
            Text(result.outcome, style=styles[result.outcome]),
            _shown(reply),
            f"{result.elapsed * 1000:.1f}",
        )
    return table


def cmd_sim_rig(args: argparse.Namespace, ctx: _Context) -> int:
    """Serve a simulated camera-PC rig on the deployed UDP protocol and labwire's transport."""
    from labwire.cli.common import (
        EXIT_OK,
        EXIT_USAGE,
        CommandError,
        _LinePrinter,
        _registry_unreachable,
        _stop_on_eof,
    )
    from labwire.errors import CallTimeout, ConfigurationError, EndpointError, Unavailable
    from labwire.sim.rig import SimRig
    from labwire.wire.rigs import parse_rig_uri

    name = args.rig_name or args.name or "rig"
    bind = args.bind
    try:
        if bind.startswith(("tcp://", "ipc://")):
            host = bind[6:].rpartition(":")[0] if bind.startswith("tcp://") else "127.0.0.1"
            host = "0.0.0.0" if host == "*" else host or "127.0.0.1"
            udp, url = f"udp://{host}:0", bind
        else:
            address = parse_rig_uri(bind if "://" in bind else f"udp://{bind}", for_bind=True)
            if address.link != "udp":
                raise EndpointError(f"--bind must be udp://HOST:PORT or tcp://HOST:PORT: {bind}")
            udp, url = address.url, f"tcp://{address.host}:0"
        rig = SimRig(name, udp=udp, url=url, settings=ctx.settings)
        rig.start()
    except (EndpointError, ConfigurationError) as exc:
        raise CommandError(f"cannot serve rig {name!r} on {bind}: {exc}", EXIT_USAGE) from None
    try:
        registry: str | None = None
        if not args.no_register:
            try:
                rig.register(ctx.registry_url, overwrite=args.overwrite, timeout=ctx.query_timeout)
            except (Unavailable, CallTimeout) as exc:
                raise _registry_unreachable(ctx, exc) from None
            registry = ctx.registry_url
        stopped = threading.Event()
        if args.stop_on_eof:
            _stop_on_eof(stopped.set)
        ready = {
            "event": "ready",
            "role": "rig",
            "name": rig.name,
            "endpoint": rig.endpoint,
            "udp": rig.udp_endpoint,
            "registry": registry,
            "pid": os.getpid(),
        }
        where = f"registered as {rig.name!r} at {registry}" if registry else "not registered"
        _LinePrinter(ctx, args.json, None).emit(
            ready,
            f"simulated rig {rig.name!r} on {rig.udp_endpoint} and {rig.endpoint}, {where}; "
            "Ctrl-C to stop",
        )
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        rig.close()
    return EXIT_OK
