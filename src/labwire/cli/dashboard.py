"""The ``labwire dashboard`` command, and the dashboard ``labwire demo --dashboard`` starts.

* ``labwire dashboard [--registry URL] [--bind HOST:PORT]``: serve the live web page of the
  registry's devices until Ctrl-C. It prints the page's address on standard output. Bound to
  an address other than loopback, the address carries a random access token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labwire.cli.common import CommandFactory

if TYPE_CHECKING:
    from labwire.cli.common import _Context


_INSTALL_HINT = "install it with: pip install 'labwire[web]'"


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    from labwire.cli.common import _add_common

    sub = command(
        "dashboard",
        "serve a live web page of the registry's devices: methods, properties, signals",
        "labwire dashboard --registry tcp://10.0.0.2:5555",
        "labwire dashboard --bind 0.0.0.0:8765   # other hosts: prints an address with a token",
    )
    sub.add_argument(
        "--bind",
        metavar="HOST:PORT",
        default=None,
        help="where the page is served (default 127.0.0.1:8765; port 0 picks a free one); "
        "any address but loopback requires the token printed at start-up",
    )
    _add_common(sub)
    sub.set_defaults(handler=cmd_dashboard)


def _web() -> Any:
    from labwire.cli.common import EXIT_USAGE, CommandError

    try:
        import labwire.web
    except ImportError as exc:
        raise CommandError(
            f"the dashboard needs aiohttp ({exc})", EXIT_USAGE, _INSTALL_HINT
        ) from None
    return labwire.web


def _bind(text: str | None) -> tuple[str, int]:
    from labwire.cli.common import EXIT_USAGE, CommandError

    web = _web()
    try:
        host, port = web.parse_bind(text or web.DEFAULT_BIND)
    except ValueError as exc:
        raise CommandError(f"--bind: {exc}", EXIT_USAGE) from None
    return host, port


def _cannot_bind(text: str, exc: OSError) -> Exception:
    from labwire.cli.common import EXIT_ERROR, CommandError

    return CommandError(
        f"cannot serve the dashboard on {text}: {exc.strerror or exc}",
        EXIT_ERROR,
        "choose another address with --bind HOST:PORT (port 0 picks a free one)",
    )


def cmd_dashboard(args: argparse.Namespace, ctx: _Context) -> int:
    """Serve the dashboard until Ctrl-C."""
    from labwire.cli.common import EXIT_OK

    web = _web()
    host, port = _bind(args.bind)
    dashboard = web.Dashboard(
        ctx.registry_url,
        host=host,
        port=port,
        settings=ctx.settings,
        timeout=ctx.query_timeout,
    )

    async def serve() -> None:
        try:
            url = await dashboard.start()
        except OSError as exc:
            raise _cannot_bind(f"{host}:{port}", exc) from None
        try:
            ctx.out.print(url, markup=False)
            ctx.err.print(
                f"dashboard of the registry at {ctx.registry_url}, {ctx.security_banner}; "
                + ("anyone with this address can use the devices; " if dashboard.token else "")
                + "Ctrl-C to stop",
                markup=False,
            )
            await _until_stopped()
        finally:
            await dashboard.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return EXIT_OK


async def _until_stopped() -> None:
    """Wait for SIGINT or SIGTERM, taken by the event loop itself where it can.

    A KeyboardInterrupt raised from a signal handler can land anywhere, even in a callback
    whose exceptions Python ignores (a weak reference's), and then the process never stops.
    Where the loop cannot take signals (Windows), the KeyboardInterrupt still ends the wait.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    taken = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):
            continue
        taken.append(signum)
    try:
        await stop.wait()
    finally:
        for signum in taken:
            loop.remove_signal_handler(signum)


def start_in_background(ctx: _Context, registry_url: str, bind: str) -> Callable[[], None]:
    """Serve the dashboard of ``registry_url`` from a thread; print its address.

    Args:
        ctx: The command's context (settings, consoles).
        registry_url: The registry to show.
        bind: ``HOST:PORT`` to serve on.

    Returns:
        A function that stops the dashboard.
    """
    web = _web()
    host, port = _bind(bind)
    try:
        board = web.DashboardThread(
            registry_url, host=host, port=port, settings=ctx.settings, timeout=ctx.query_timeout
        )
    except OSError as exc:
        raise _cannot_bind(bind, exc) from None
    ctx.err.print(f"dashboard at {board.url}", markup=False)
    stop: Callable[[], None] = board.close
    return stop
