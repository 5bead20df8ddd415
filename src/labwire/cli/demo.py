"""The ``labwire demo`` command: a whole simulated plant-imaging scan."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from labwire.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    CommandFactory,
    _add_common,
    _Context,
    _human_bytes,
    _print_json,
    _shown,
)
from labwire.errors import (
    RemoteError,
)


def cmd_demo(args: argparse.Namespace, ctx: _Context) -> int:
    """Run the simulated scan."""
    try:
        from labwire.sim.demo import Demo
    except ImportError as exc:
        raise CommandError(
            f"the demo needs numpy and Pillow ({exc})",
            EXIT_USAGE,
            "install them with: pip install 'labwire[sim]' (or run `make demo`)",
        ) from None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    if args.positions < 1:
        raise CommandError("--positions must be at least 1", EXIT_USAGE)
    secure = None if args.secure is None else Path(args.secure).expanduser()
    err = ctx.err
    finished = False
    stop_dashboard: Callable[[], None] | None = None
    demo = Demo(
        positions=args.positions,
        output=args.out,
        secure=secure,
        encoding=args.encoding,
        lores=args.lores,
    )
    try:
        with err.status("starting a registry, a camera and a stage (separate processes)..."):
            demo.start()
        err.print(
            _shown(
                f"registry at {demo.lab.registry_url}; found "
                + ", ".join(f"{d.name} ({d.address})" for d in demo.devices)
            )
        )
        if args.dashboard:
            from labwire.cli.dashboard import start_in_background

            stop_dashboard = start_in_background(ctx, demo.lab.registry_url, args.dashboard)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        ) as progress:
            task = progress.add_task("scanning", total=args.positions)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = demo.run(on_progress=update)
        finished = True
        if args.json:
            _print_json(
                {
                    "registry": report.registry_url,
                    "devices": [device.to_json() for device in report.devices],
                    "output": str(report.output),
                    "secure": ctx.settings.security is not None,
                    **report.summary,
                }
            )
        else:
            _demo_summary(ctx, report)
        if args.keep_running:
            registry = demo.lab.registry_url
            err.print(
                f"\nthe devices keep running. Try, in another terminal:\n"
                f"  labwire ls --registry {registry}\n"
                f"  labwire info camera --registry {registry}\n"
                f"  labwire watch stage --registry {registry}\n"
                f"  labwire call stage move_to 100 200 50 --registry {registry}\n"
                "Ctrl-C stops everything.",
                markup=False,
            )
            threading.Event().wait()
    except KeyboardInterrupt:
        if demo.scanning:
            err.print(
                "interrupted: the scan was cancelled on the controller and the stage stopped "
                "where it was; stopping the demo",
                markup=False,
            )
        else:
            err.print("interrupted: stopping the demo", markup=False)
    except RemoteError as exc:
        raise CommandError(f"the scan failed: {exc}", EXIT_ERROR) from None
    finally:
        if stop_dashboard is not None:
            stop_dashboard()
        demo.close()
    return EXIT_OK if finished else EXIT_INTERRUPTED


def _demo_summary(ctx: _Context, report: Any) -> None:
    summary = report.summary
    latency = summary["latency_ms"]
    table = Table(box=box.ROUNDED, title="labwire demo", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    devices = ", ".join(d.name for d in report.devices)
    table.add_row("devices found", _shown(f"{len(report.devices)} ({devices})"))
    table.add_row("images saved", f"{summary['images']} in {report.output}")
    table.add_row("bytes moved", _human_bytes(summary["bytes"]))
    table.add_row("images per second", f"{summary['images_per_second']:.1f}")
    if latency["median"] is not None:
        table.add_row("get_image latency median", f"{latency['median']:.1f} ms")
        table.add_row("get_image latency p99", f"{latency['p99']:.1f} ms")
    table.add_row("scan time", f"{summary['elapsed_s']:.2f} s")
    table.add_row("metadata", summary["metadata"])
    table.add_row("security", ctx.security_banner)
    ctx.out.print(table)


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "demo",
        "run a simulated plant-imaging scan: registry, camera and stage in separate processes",
        "labwire demo --positions 12 --out scan",
    )
    sub.add_argument("--positions", type=int, default=36, metavar="N", help="images (default 36)")
    sub.add_argument("--out", default="demo-output", metavar="DIR", help="output folder")
    sub.add_argument("--keep-running", action="store_true", help="keep the devices up afterwards")
    sub.add_argument("--encoding", choices=("png", "jpeg", "raw"), default="png")
    sub.add_argument("--lores", action="store_true", help="half-resolution images")
    sub.add_argument("--json", action="store_true", help="print the summary as JSON")
    sub.add_argument(
        "--dashboard",
        nargs="?",
        const="127.0.0.1:8765",
        metavar="HOST:PORT",
        help="serve the live web dashboard during the scan (default 127.0.0.1:8765)",
    )
    _add_common(sub, registry=False)
    sub.set_defaults(handler=cmd_demo)
