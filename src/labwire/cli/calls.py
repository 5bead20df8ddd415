"""The commands that call a device: ``info``, ``call``, ``ops``, ``cancel``, ``ping``, ``stop``.

``call`` shows a long-running operation's progress and cancels it on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from labwire.cli.common import (
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CommandError,
    CommandFactory,
    _add_common,
    _check_arguments,
    _check_name,
    _Context,
    _device_label,
    _human_bytes,
    _jsonable,
    _open_client,
    _parse_call_arguments,
    _print_json,
    _remote_failure,
    _shown,
)
from labwire.errors import (
    CallTimeout,
    LabwireError,
    RemoteError,
    Unavailable,
)


def cmd_info(args: argparse.Namespace, ctx: _Context) -> int:
    """Show what a device exposes."""
    client = _open_client(ctx, args.device)
    try:
        inventory = client.inventory()
        details = inventory.get("details") or {}
        try:
            values: dict[str, Any] = client.get_properties()
            value_error = ""
        except RemoteError as exc:
            values, value_error = {}, str(exc)
        methods = _method_rows(inventory, details)
        writable = set(details.get("writable") or [])
        docs = details.get("property_docs") or {}
        properties = {
            name: {
                "value": values.get(name),
                "writable": name in writable if details else None,
                "doc": docs.get(name, ""),
            }
            for name in inventory["properties"]
        }
        types = details.get("signal_types") or {}
        signals = {name: list(types.get(name, [])) for name in inventory["signals"]}
        label = _device_label(client, args.device)
        if args.json:
            _print_json(
                {
                    "name": inventory["name"],
                    "url": client.url,
                    "labwire": client.is_labwire_server,
                    "methods": methods,
                    "properties": properties,
                    "signals": signals,
                }
            )
            return EXIT_OK
        kind = "labwire server" if client.is_labwire_server else "deployed server"
        ctx.out.print(
            Text.assemble((_shown(label).plain, "bold"), _shown(f"  {client.url}  ({kind})"))
        )
        table = Table(box=box.SIMPLE_HEAD, title="methods", title_justify="left")
        for column in ("method", "kind", "timeout", "signature", "description"):
            table.add_column(column)
        for name, method in methods.items():
            timeout = method["timeout_ms"]
            table.add_row(
                _shown(name),
                _shown(method["kind"]),
                "none" if timeout is None else f"{timeout} ms",
                _shown(method["signature"]),
                _shown(method["doc"], lines=True),
            )
        ctx.out.print(table)
        table = Table(box=box.SIMPLE_HEAD, title="properties", title_justify="left")
        for column in ("property", "value", "access", "description"):
            table.add_column(column)
        for name, prop in properties.items():
            access = {True: "read/write", False: "read-only", None: "?"}[prop["writable"]]
            value = json.dumps(prop["value"], default=_jsonable)
            table.add_row(_shown(name), _shown(value), access, _shown(prop["doc"], lines=True))
        ctx.out.print(table)
        if value_error:
            ctx.err.print(_shown(f"could not read the property values: {value_error}"))
        table = Table(box=box.SIMPLE_HEAD, title="signals", title_justify="left")
        table.add_column("signal")
        table.add_column("arguments")
        for name, arg_types in signals.items():
            table.add_row(_shown(name), _shown(", ".join(arg_types)))
        ctx.out.print(table)
        return EXIT_OK
    finally:
        client.close()


def _method_rows(inventory: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    described = details.get("methods") or {}
    rows: dict[str, Any] = {}
    for kind in ("json", "buffer"):
        for name, timeout in inventory[f"{kind}_methods"].items():
            info = described.get(name) or {}
            rows[name] = {
                "kind": kind,
                "timeout_ms": timeout,
                "signature": info.get("signature", "(...)"),
                "doc": info.get("doc", ""),
            }
    return dict(sorted(rows.items()))


def cmd_call(args: argparse.Namespace, ctx: _Context) -> int:
    """Call a method."""
    call_args, call_kwargs = _parse_call_arguments(args.args)
    client = _open_client(ctx, args.device)
    try:
        inventory = client.inventory()
        buffer_methods = inventory["buffer_methods"]
        methods = [*inventory["json_methods"], *buffer_methods]
        label = _device_label(client, args.device)
        _check_name("method", args.method, methods, label)
        signature = _method_rows(inventory, inventory.get("details") or {})[args.method][
            "signature"
        ]
        problem = _check_arguments(signature, call_args, call_kwargs)
        if problem is not None:
            raise CommandError(
                f"{label}.{args.method}{signature}: {problem}",
                EXIT_USAGE,
                f"see `labwire info {args.device}`",
            )
        timeout_ms = None if args.timeout is None else int(args.timeout * 1000)
        override = (
            client.override_timeout(timeout_ms)
            if args.timeout is not None
            else contextlib.nullcontext()
        )
        operations = (inventory.get("details") or {}).get("operations") or {}
        if args.method in operations and client.is_labwire_server:
            deadline = args.timeout if args.timeout is not None else _DEFAULT_DEADLINE
            value = _run_operation(
                ctx, client, label, args.method, call_args, call_kwargs, deadline
            )
            _print_json(value)
            return EXIT_OK
        with override:
            result = client.call(args.method, *call_args, **call_kwargs)
        from labwire.rpc import NoResult

        if isinstance(result, NoResult):
            raise _remote_failure(f"{label}.{args.method}()", result)
        if args.method not in buffer_methods:
            _print_json(result)
            return EXIT_OK
        buffer, info = result
        size, path = _save_buffer(buffer, info, args.out, f"{_safe(label)}_{args.method}")
        if args.out == "-":
            sys.stderr.write(json.dumps(info, default=_jsonable) + "\n")
        else:
            _print_json(info)
            ctx.err.print(_shown(f"saved {_human_bytes(size)} to {path}"))
        return EXIT_OK
    finally:
        client.close()


#: Passed as an operation's deadline to mean "the method's declared one".
_DEFAULT_DEADLINE: Any = object()


def _run_operation(
    ctx: _Context,
    client: Any,
    label: str,
    method: str,
    call_args: list[Any],
    call_kwargs: dict[str, Any],
    deadline: Any,
) -> Any:
    """Run an operation with a progress bar; Ctrl-C cancels it on the device."""
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from labwire.rpc import OperationCancelled

    options: dict[str, Any] = {} if deadline is _DEFAULT_DEADLINE else {"deadline": deadline}
    with Progress(
        TextColumn("{task.fields[what]}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}", markup=False),
        console=ctx.err,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=None, what=f"{label}.{method}", note="")

        def show(update: Any) -> None:
            total = None if update.fraction is None else 1.0
            progress.update(
                task, total=total, completed=update.fraction or 0.0, note=update.message
            )

        # Ctrl-C while the operation starts waits until its id is known, to cancel it; from
        # then on it interrupts the wait. One handler throughout: Python runs a signal's
        # handler when the main thread next can, so one swapped in between could miss it.
        interrupted: list[int] = []
        started: list[Any] = []

        def on_interrupt(number: int, _: Any) -> None:
            interrupted.append(number)
            if started:
                raise KeyboardInterrupt

        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread:
            previous = signal.signal(signal.SIGINT, on_interrupt)
        try:
            handle = client.start_operation(
                method, *call_args, on_progress=show, **options, **call_kwargs
            )
            try:
                started.append(handle)
                if interrupted:
                    raise KeyboardInterrupt
                return handle.result()
            except KeyboardInterrupt:
                progress.stop()
                ctx.err.print(
                    _shown(f"interrupted: cancelling {label}.{method} (operation {handle.id})...")
                )
                handle.cancel("interrupted (Ctrl-C)")
                with contextlib.suppress(LabwireError):
                    handle.result(10.0)
                state = handle.info.state
                ctx.err.print(_shown(f"cancelled on the device: {label}.{method} is {state}"))
                raise
            except OperationCancelled as exc:
                if handle.info.cause == "deadline" and deadline is not _DEFAULT_DEADLINE:
                    raise CallTimeout(
                        f"no reply from {label} to the call of {method}() within "
                        f"{deadline * 1000:.0f} ms: the device cancelled it then"
                    ) from None
                raise CommandError(f"{label}.{method}() was cancelled: {exc}", EXIT_ERROR) from None
            except RemoteError as exc:
                raise CommandError(f"{label}.{method}() failed: {exc}", EXIT_ERROR) from None
            finally:
                handle.close()
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)


def cmd_ops(args: argparse.Namespace, ctx: _Context) -> int:
    """List a device's operations."""
    import msgspec

    client = _open_client(ctx, args.device)
    try:
        operations = client.operations()
        if args.json:
            _print_json([msgspec.to_builtins(op) for op in operations])
            return EXIT_OK
        label = _device_label(client, args.device)
        if not operations:
            ctx.err.print(_shown(f"no operations on {label}"))
            return EXIT_OK
        table = Table(box=box.SIMPLE_HEAD, title=_shown(f"operations on {label}"))
        for column in ("id", "method", "state", "progress", "elapsed", "left"):
            table.add_column(column, no_wrap=True)
        table.add_column("message")
        for op in operations:
            done = "" if op.fraction is None else f"{op.fraction:.0%}"
            left = "" if op.remaining is None else f"{op.remaining:.1f} s"
            message = op.error or op.message
            table.add_row(
                _shown(op.id), _shown(op.method), _shown(str(op.state)), done,
                f"{op.elapsed:.1f} s", left, _shown(message),
            )  # fmt: skip
        ctx.out.print(table)
        return EXIT_OK
    finally:
        client.close()


def cmd_cancel(args: argparse.Namespace, ctx: _Context) -> int:
    """Cancel a device's operation."""
    from labwire.rpc import OperationLost

    client = _open_client(ctx, args.device)
    try:
        label = _device_label(client, args.device)
        try:
            info = client.cancel_operation(args.id, "cancelled from the command line")
        except OperationLost as exc:
            raise CommandError(f"{label}: {exc}", EXIT_NOT_FOUND, "see `labwire ops`") from None
        ctx.err.print(_shown(f"{label}: operation {info.id} ({info.method}) is {info.state}"))
        return EXIT_OK
    finally:
        client.close()


_EXTENSIONS = {"png": "png", "jpeg": "jpg", "jpg": "jpg"}


def _save_buffer(buffer: Any, info: Any, out: str | None, stem: str) -> tuple[int, str]:
    """Write a buffer result to ``out`` ('-': stdout; None: STEM.EXT here); (bytes, where)."""
    is_array = hasattr(buffer, "dtype") and hasattr(buffer, "shape")  # numpy, saved as .npy
    if out == "-":
        data = memoryview(buffer.tobytes() if is_array else buffer)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return data.nbytes, "-"
    image_format = str(info.get("format", "")).lower() if isinstance(info, dict) else ""
    extension = "npy" if is_array else _EXTENSIONS.get(image_format, "bin")
    path = Path(out) if out else Path(f"{stem}.{extension}")
    try:
        if is_array:
            import numpy as np

            with open(path, "wb") as stream:
                np.save(stream, buffer, allow_pickle=False)
            return int(buffer.nbytes), str(path)
        view = memoryview(buffer)
        path.write_bytes(view)
        return view.nbytes, str(path)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}", EXIT_ERROR) from None


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "device"


def cmd_ping(args: argparse.Namespace, ctx: _Context) -> int:
    """Round trips to a device, and what serves it."""
    if args.count < 1:
        raise CommandError("--count must be at least 1", EXIT_USAGE)
    client = _open_client(ctx, args.device)
    try:
        label = _device_label(client, args.device)
        details = client.inventory().get("details") or {}
        version = str(details.get("labwire_version", "")) if client.is_labwire_server else ""
        server = f"labwire {version}".strip() if client.is_labwire_server else "deployed server"
        times_ms = []
        for _ in range(args.count):
            try:
                times_ms.append(client.ping() * 1000.0)
            except CallTimeout:
                raise CommandError(
                    f"{label} stopped answering after {len(times_ms)} round trips",
                    EXIT_UNREACHABLE,
                ) from None
        if args.json:
            _print_json(
                {"device": label, "url": client.url, "server": server, "round_trips_ms": times_ms}
            )
        else:
            median = sorted(times_ms)[len(times_ms) // 2]
            ctx.out.print(
                _shown(
                    f"{label} ({client.url}), {server}: {len(times_ms)} round trips, median "
                    f"{median:.2f} ms, min {min(times_ms):.2f} ms, max {max(times_ms):.2f} ms"
                )
            )
        return EXIT_OK
    finally:
        client.close()


def cmd_stop(args: argparse.Namespace, ctx: _Context) -> int:
    """Ask a device's server to shut down (with security on: an admin key only)."""
    client = _open_client(ctx, args.device)
    try:
        label = _device_label(client, args.device)
        if client.stop_server():
            if args.json:
                _print_json({"device": label, "url": client.url, "stopped": True})
            else:
                ctx.err.print(_shown(f"{label} ({client.url}) acknowledged and is stopping"))
            return EXIT_OK
        try:
            client.ping()
        except (CallTimeout, Unavailable):
            raise CommandError(
                f"{label} did not answer the stop request", EXIT_UNREACHABLE
            ) from None
        raise CommandError(
            f"{label} refused to stop",
            EXIT_DENIED,
            "with security on, stopping a server needs an admin key (LABWIRE_ADMIN_KEYS on the "
            "device)",
        )
    finally:
        client.close()


def add_commands(command: CommandFactory) -> None:
    """Add this group's commands to the ``labwire`` parser.

    Args:
        command: ``command(name, help, example, *more)`` makes one subcommand's parser.
    """
    sub = command(
        "info",
        "show a device's methods (timeouts, docs), properties (values) and signals",
        "labwire info camera",
    )
    sub.add_argument("device", metavar="DEVICE", help="registry name or URL (tcp://HOST:PORT)")
    sub.add_argument("--json", action="store_true", help="print JSON")
    _add_common(sub)
    sub.set_defaults(handler=cmd_info)

    sub = command(
        "call",
        "call a method; arguments are JSON (name=value for keywords); buffers go to a file",
        "labwire call stage move_to 100 200 50",
        "labwire call camera get_image lores=true --out preview.png",
    )
    sub.add_argument("device", metavar="DEVICE", help="registry name or URL")
    sub.add_argument("method", metavar="METHOD", help="method name")
    sub.add_argument("args", metavar="ARG", nargs="*", help="JSON value, or name=JSON")
    sub.add_argument("--out", metavar="FILE", help="where to save a buffer result ('-': stdout)")
    _add_common(sub)
    sub.set_defaults(handler=cmd_call)

    sub = command(
        "ops",
        "list a device's long-running operations (running and recently ended)",
        "labwire ops stage",
    )
    sub.add_argument("device", metavar="DEVICE", help="registry name or URL")
    sub.add_argument("--json", action="store_true", help="print JSON")
    _add_common(sub)
    sub.set_defaults(handler=cmd_ops)

    sub = command(
        "cancel", "cancel a device's operation by id (see `labwire ops`)", "labwire cancel stage ID"
    )
    sub.add_argument("device", metavar="DEVICE", help="registry name or URL")
    sub.add_argument("id", metavar="ID", help="operation id")
    _add_common(sub)
    sub.set_defaults(handler=cmd_cancel)

    sub = command(
        "ping", "round trips to a device, and the labwire version serving it", "labwire ping stage"
    )
    sub.add_argument("device", metavar="DEVICE", help="registry name or URL")
    sub.add_argument("--count", type=int, default=5, metavar="N", help="round trips (default 5)")
    sub.add_argument("--json", action="store_true", help="print JSON")
    _add_common(sub)
    sub.set_defaults(handler=cmd_ping)

    sub = command(
        "stop",
        "ask a device's server to shut down (with security on: admin keys only)",
        "labwire stop camera",
    )
    sub.add_argument("device", metavar="DEVICE", help="registry name or URL")
    sub.add_argument("--json", action="store_true", help="print JSON")
    _add_common(sub)
    sub.set_defaults(handler=cmd_stop)
