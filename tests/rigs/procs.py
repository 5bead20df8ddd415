"""Rig processes for the tests: a labwire rig, a deployed (iblutil) rig, a deployed coordinator.

Each prints one JSON line when ready and serves until killed or stdin closes.

    python -m tests.rigs.procs rig NAME [--udp URI] [--url URI] [--delay S]
    python -m tests.rigs.procs deployed-rig NAME --port P
    python -m tests.rigs.procs deployed-coordinator NAME=URI...
    python -m tests.rigs.procs coordinator NAME=URI...   (lines of "MESSAGE [JSON ARGS]" on stdin)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
from typing import Any


def _print(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _exit_on_eof() -> None:
    def watch() -> None:
        while os.read(sys.stdin.fileno(), 4096):
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def labwire_rig(args: argparse.Namespace) -> None:
    from labwire.sim.rig import SimRig

    rig = SimRig(args.name, udp=args.udp, url=args.url, delay=args.delay).start()
    _print({"event": "ready", "udp": rig.udp_endpoint, "url": rig.endpoint, "pid": os.getpid()})
    _exit_on_eof()
    threading.Event().wait()


async def _deployed_rig(name: str, port: int, host: str) -> None:
    from iblutil.io.net import app, base

    log = logging.getLogger(name)
    com = await app.EchoProtocol.server(f"udp://{host}:{port}", name=name, log=log)
    status = {"value": base.ExpStatus.CONNECTED}
    tasks: set[asyncio.Task[Any]] = set()

    def reply(coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_init(data: Any, addr: Any) -> None:
        status["value"] = base.ExpStatus.INITIALIZED
        reply(com.init(status["value"], addr=addr))

    def on_start(data: Any, addr: Any) -> None:
        status["value"] = base.ExpStatus.RUNNING
        reply(com.start(data[0], status["value"], addr=addr))

    def on_stop(data: Any, addr: Any) -> None:
        status["value"] = base.ExpStatus.STOPPED
        reply(com.stop(status["value"], addr=addr))

    def on_cleanup(data: Any, addr: Any) -> None:
        status["value"] = base.ExpStatus.CONNECTED
        reply(com.cleanup(status["value"], addr=addr))

    def on_info(data: Any, addr: Any) -> None:
        reply(com.info(status["value"], {"name": name, "deployed": True}, addr=addr))

    def on_status(data: Any, addr: Any) -> None:
        reply(com.status(status["value"], addr=addr))

    def on_alyx(data: Any, addr: Any) -> None:
        raise ValueError("no Alyx token here")

    com.assign_callback("EXPINIT", on_init)
    com.assign_callback("EXPSTART", on_start)
    com.assign_callback("EXPEND", on_stop)
    com.assign_callback("EXPCLEANUP", on_cleanup)
    com.assign_callback("EXPINFO", on_info)
    com.assign_callback("EXPSTATUS", on_status)
    com.assign_callback("ALYX", on_alyx)
    _print({"event": "ready", "udp": f"udp://{host}:{com._socket.getsockname()[1]}"})
    _exit_on_eof()
    await asyncio.Event().wait()


async def _deployed_coordinator(clients: dict[str, str]) -> None:
    from iblutil.io.net import app, base

    rigs = [
        await app.EchoProtocol.client(uri, name, log=logging.getLogger(name))
        for name, uri in clients.items()
    ]
    services = app.Services(rigs, timeout=5)
    steps = [
        ("info", services.info(base.ExpStatus.CONNECTED, {"subject": "mouse"})),
        ("init", services.init({"exp": 1})),
        ("start", services.start("2024-01-01_1_mouse")),
        ("status", services.status(base.ExpStatus.RUNNING)),
        ("stop", services.stop()),
        ("cleanup", services.cleanup()),
    ]
    for label, step in steps:
        try:
            _print({"step": label, "responses": await step})
        except Exception as exc:
            _print({"step": label, "error": f"{type(exc).__name__}: {exc}"})
    services.close()


def coordinator(args: argparse.Namespace) -> None:
    from labwire.rigs import Auxiliaries

    clients = dict(item.split("=", 1) for item in args.clients)
    with Auxiliaries(clients, timeout=args.timeout) as rigs:
        _print({"event": "ready"})
        for line in sys.stdin:
            message, *values = line.split(maxsplit=1)
            arguments = json.loads(values[0]) if values else []
            results = rigs.push_results(message, *arguments)
            _print({n: [r.outcome, r.data] for n, r in results.items()})


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    parser = argparse.ArgumentParser()
    roles = parser.add_subparsers(dest="role", required=True)
    rig = roles.add_parser("rig")
    rig.add_argument("name")
    rig.add_argument("--udp", default="udp://127.0.0.1:0")
    rig.add_argument("--url", default="tcp://127.0.0.1:0")
    rig.add_argument("--delay", type=float, default=0.0)
    deployed = roles.add_parser("deployed-rig")
    deployed.add_argument("name")
    deployed.add_argument("--port", type=int, required=True)
    deployed.add_argument("--host", default="127.0.0.1")
    boss = roles.add_parser("deployed-coordinator")
    boss.add_argument("clients", nargs="+")
    ours = roles.add_parser("coordinator")
    ours.add_argument("clients", nargs="+")
    ours.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    if args.role == "rig":
        labwire_rig(args)
    elif args.role == "deployed-rig":
        asyncio.run(_deployed_rig(args.name, args.port, args.host))
    elif args.role == "deployed-coordinator":
        asyncio.run(_deployed_coordinator(dict(c.split("=", 1) for c in args.clients)))
    else:
        coordinator(args)


if __name__ == "__main__":
    main()
