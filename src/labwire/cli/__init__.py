"""The ``labwire`` command line: run a registry, find devices, call them, watch them, run a demo.

Commands (``labwire COMMAND --help`` shows each one's options and an example)::

    labwire registry [--bind URL]                 run a device registry until Ctrl-C
    labwire ls                                    list the registered devices
    labwire info DEVICE                           methods, properties (with values), signals
    labwire call DEVICE METHOD [ARG...]           call a method (JSON arguments, name=value
                                                  for keywords); buffers are saved (--out)
    labwire ops DEVICE                            a device's running operations
    labwire cancel DEVICE ID                      cancel an operation on the device
    labwire ping DEVICE                           round trips, and the labwire version serving it
    labwire stop DEVICE                           ask a device's server to shut down
    labwire get DEVICE [PROPERTY]                 read one property (or all of them)
    labwire set DEVICE PROPERTY VALUE             write a property
    labwire watch DEVICE [SIGNAL...]              print a device's signals as they come
    labwire watch --registry [URL]                print registry changes as they come
    labwire sim camera|stage|controller|rig       serve a simulated device and register it
    labwire keys new NAME [--dir DIR]             make a CurveZMQ keypair
    labwire keys show PATH                        print the public key of a key file
    labwire demo [--positions N] [--out DIR]      run a whole simulated scan
    labwire rigs push RIG... MESSAGE [ARG...]     send an experiment message to rigs
                                                  (labwire.cli.rigs)
    labwire cluster ls|echo|request GROUP ...     look at a peer group (labwire.cli.cluster)
    labwire broker signals|queue|streamer         run a broker (labwire.cli.brokers)
    labwire dashboard [--bind HOST:PORT]          the live web dashboard (labwire.cli.dashboard)
    labwire completion bash|zsh|fish              shell completion (labwire.cli.completion)

Each command group is a module of this package that adds its commands to the parser
(``add_commands``): :mod:`~labwire.cli.registry` (registry, ls, watch --registry),
:mod:`~labwire.cli.calls` (info, call, ops, cancel, ping, stop), :mod:`~labwire.cli.properties`
(get, set), :mod:`~labwire.cli.watch`, :mod:`~labwire.cli.sim`, :mod:`~labwire.cli.keys`,
:mod:`~labwire.cli.demo` and the groups named above; :mod:`~labwire.cli.common` holds what they
share (exit codes, the command context, value parsing, printing).

DEVICE is a registry name (looked up in the registry given by ``--registry``, default
``LABWIRE_REGISTRY`` or ``tcp://127.0.0.1:5555``) or a direct URL such as
``tcp://10.0.0.7:5000``. Values (``call`` arguments, ``set`` values) are JSON; text that is not
valid JSON is taken as a string, so ``labwire set camera mode VIDEO`` works. Results are printed
as JSON on standard output; messages and errors go to standard error.

Exit codes, for scripts:

====  =================================================================================
0     success (also: a long-running command stopped with Ctrl-C or SIGTERM)
1     the operation failed: the remote method raised, a property could not be set,
      the scan failed, a file could not be written
2     usage error: bad arguments, bad URL, bad JSON, bad LABWIRE_* setting
3     not found: no such device in the registry, no such method, property or signal
4     unreachable: the registry or the device did not answer in time
5     security: authentication refused, permission denied, unsafe or missing key file
130   interrupted (Ctrl-C) before the command finished its work
====  =================================================================================
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from rich.console import Console
from rich.text import Text

from labwire.cli.common import (
    DEFAULT_KEYS_DIR,
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CommandError,
    _context,
    _example,
    _Formatter,
    _shown,
)
from labwire.errors import (
    AuthenticationError,
    CallTimeout,
    ConfigurationError,
    LabwireError,
    NotFound,
    PermissionDenied,
    SecurityConfigError,
    TransportError,
    Unavailable,
)

__all__ = [
    "DEFAULT_KEYS_DIR",
    "EXIT_DENIED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CommandError",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``labwire`` command."""
    parser = argparse.ArgumentParser(
        prog="labwire",
        description="Put laboratory and robot hardware on the network: run a registry, find "
        "devices, call them, watch them.",
        epilog=_example("labwire registry &", "labwire sim camera &", "labwire info camera")
        + "\n\nexit codes: 0 ok, 1 operation failed, 2 usage, 3 not found, 4 unreachable,"
        "\n5 security, 130 interrupted",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"labwire {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def command(name: str, help_text: str, example: str, *more: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_example(example, *more),
            formatter_class=_Formatter,
        )
        return sub

    from labwire.cli import (
        brokers,
        calls,
        cluster,
        completion,
        dashboard,
        demo,
        keys,
        properties,
        registry,
        rigs,
        sim,
        watch,
    )

    for group in (
        registry,
        calls,
        properties,
        watch,
        sim,
        keys,
        demo,
        rigs,
        cluster,
        brokers,
        dashboard,
        completion,
    ):
        group.add_commands(command)
    return parser


def _version() -> str:
    from labwire import __version__

    return __version__


# ----------------------------------------------------------------------------- main


def _raise_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def _setup_logging(verbosity: int) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=level, format="%(name)s: %(message)s", handlers=[handler])


def _explain(exc: BaseException) -> tuple[int, str, str]:
    """Exit code, message and hint for an error that reached the top."""
    if isinstance(exc, CommandError):
        return exc.code, str(exc), exc.hint
    if isinstance(exc, AuthenticationError | PermissionDenied | SecurityConfigError):
        return EXIT_DENIED, str(exc), "check the keys (`labwire keys show`) and --secure"
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND, str(exc), ""
    if isinstance(exc, Unavailable | CallTimeout | TransportError):
        return EXIT_UNREACHABLE, str(exc), ""
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE, str(exc), ""
    return EXIT_ERROR, str(exc) or type(exc).__name__, ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``labwire`` command; returns the exit code (see the module docs).

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    from labwire.cli.completion import complete

    complete(parser)  # a shell asking for completions is answered, and the run ends there
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    _setup_logging(getattr(args, "verbose", 0))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        ctx = _context(args)
        code: int = args.handler(args, ctx)
        return code
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return EXIT_INTERRUPTED
    except (LabwireError, CommandError, OSError) as exc:
        code, message, hint = _explain(exc)
        err.print(Text.assemble(("error:", "bold red"), " ", _shown(message, lines=True)))
        if hint:
            err.print(Text.assemble(("hint:", "dim"), " ", _shown(hint)))
        return code
