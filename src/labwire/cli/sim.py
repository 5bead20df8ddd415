"""The ``labwire sim`` command: serve a simulated device and register it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labwire.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    CommandFactory,
    _add_common,
    _Context,
    _LinePrinter,
    _registry_unreachable,
    _stop_on_eof,
)
from labwire.errors import (
    CallTimeout,
    EndpointError,
    RegistryError,
    Unavailable,
)

if TYPE_CHECKING:
    from labwire.rpc import RPCServer


def cmd_sim(args: argparse.Namespace, ctx: _Context) -> int:
    """Serve a simulated device until Ctrl-C."""
    if args.kind == "rig":
        from labwire.cli.rigs import cmd_sim_rig

        return cmd_sim_rig(args, ctx)
    try:
        from labwire import sim
    except ImportError as exc:  # numpy or Pillow missing
        raise CommandError(
            f"the simulated devices need numpy and Pillow ({exc})",
            EXIT_USAGE,
            "install them with: pip install 'labwire[sim]'",
        ) from None
    from labwire.transport import parse_endpoint

    parse_endpoint(args.bind, for_bind=True)
    closers: list[Callable[[], None]] = []
    server: RPCServer
    options: dict[str, Any] = {"settings": ctx.settings}
    try:
        if args.kind == "camera":
            pose = None
            if args.stage:
                stage_pose = sim.StagePosition(args.stage, ctx.registry_url, settings=ctx.settings)
                closers.append(stage_pose.close)
                pose = stage_pose
            camera = sim.SimCamera(
                None,
                args.bind,
                args.alive_timeout,
                pose=pose,
                resolution=args.resolution,
                **options,
            )
            if args.encoding:
                camera.encoding = args.encoding
            server = camera
        elif args.kind == "stage":
            server = sim.SimStage(None, args.bind, args.alive_timeout, speed=args.speed, **options)
        else:
            server = sim.SimController(
                None,
                args.bind,
                args.alive_timeout,
                camera=args.camera,
                stage=args.stage or "stage",
                registry_url=ctx.registry_url,
                **options,
            )
    except EndpointError as exc:
        for close in closers:
            close()
        raise CommandError(f"cannot listen on {args.bind}: {exc}", EXIT_ERROR) from None
    except ValueError as exc:
        for close in closers:
            close()
        raise CommandError(str(exc), EXIT_USAGE) from None
    name = args.name or args.kind
    try:
        server.start()
        registry: str | None = None
        if not args.no_register:
            try:
                name = server.register_to_registry(
                    args.kind,
                    name,
                    ctx.registry_url,
                    overwrite=args.overwrite,
                    timeout=ctx.timeout if ctx.timeout is not None else 5.0,
                )
            except (Unavailable, CallTimeout) as exc:
                raise _registry_unreachable(ctx, exc) from None
            except RegistryError as exc:
                if "reach" in str(exc) or "answer" in str(exc):
                    raise _registry_unreachable(ctx, exc) from None
                raise
            registry = ctx.registry_url
        if args.stop_on_eof:
            _stop_on_eof(server.stop_server)
        endpoint = server.advertised_endpoint()
        ready = {
            "event": "ready",
            "role": args.kind,
            "name": name,
            "endpoint": endpoint,
            "bound": server.endpoint,
            "registry": registry,
            "secure": ctx.settings.security is not None,
            "pid": os.getpid(),
        }
        where = f"registered as {name!r} at {registry}" if registry else "not registered"
        _LinePrinter(ctx, args.json, None).emit(
            ready,
            f"simulated {args.kind} serving on {endpoint}, {where}, {ctx.security_banner}; "
            "Ctrl-C to stop",
        )
        server.wait_stopped()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        for close in closers:
            close()
    return EXIT_OK


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "sim",
        "serve a simulated device and register it",
        "labwire sim stage --name stage",
        "labwire sim camera --stage stage",
        "labwire sim rig camera-left --bind udp://0.0.0.0:11001",
    )
    sub.add_argument("kind", choices=("camera", "stage", "controller", "rig"), help="which device")
    sub.add_argument("rig_name", nargs="?", metavar="NAME", help="rig: the rig's name")
    sub.add_argument("--name", help="name to register (default: the kind)")
    sub.add_argument(
        "--bind",
        default="tcp://127.0.0.1:0",
        metavar="URL",
        help="where to listen (default %(default)s)",
    )
    sub.add_argument("--no-register", action="store_true", help="do not register")
    sub.add_argument("--overwrite", action="store_true", help="take the name over if taken")
    sub.add_argument(
        "--alive-timeout", type=int, default=10, metavar="S", help="registry lease (default 10 s)"
    )
    sub.add_argument(
        "--stage", metavar="DEVICE", help="camera: the stage it rides on; controller: the stage"
    )
    sub.add_argument("--camera", default="camera", metavar="DEVICE", help="controller: the camera")
    sub.add_argument("--speed", type=float, default=1000.0, help="stage: speed in mm/s")
    sub.add_argument("--resolution", default="640x480", help="camera: WIDTHxHEIGHT")
    sub.add_argument("--encoding", choices=("png", "jpeg", "raw"), help="camera: image encoding")
    sub.add_argument("--json", action="store_true", help="print a JSON line when ready")
    sub.add_argument("--stop-on-eof", action="store_true", help="stop when stdin closes")
    _add_common(sub)
    sub.set_defaults(handler=cmd_sim)
