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
import ast
import contextlib
import datetime
import inspect
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from labwire.config import Settings, default_settings
from labwire.errors import (
    AuthenticationError,
    CallTimeout,
    ConfigurationError,
    EndpointError,
    LabwireError,
    NotFound,
    PermissionDenied,
    RegistryError,
    RemoteError,
    SecurityConfigError,
    TransportError,
    Unavailable,
)

if TYPE_CHECKING:
    from labwire.registry import DeviceInfo
    from labwire.rpc import RPCClient, RPCServer

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

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4
EXIT_DENIED = 5
EXIT_INTERRUPTED = 130

#: Where ``--secure`` and ``labwire keys new`` keep keys unless told otherwise.
DEFAULT_KEYS_DIR = Path("~/.config/labwire/keys")

_log = logging.getLogger(__name__)

_REGISTRY_HINT = (
    "start one with `labwire registry`, or point to yours with --registry URL "
    "(or the LABWIRE_REGISTRY variable)"
)


class CommandError(Exception):
    """A command failed in a way the user should read; carries the exit code.

    Args:
        message: What went wrong.
        code: The exit code.
        hint: What to try next ("" for none).
    """

    def __init__(self, message: str, code: int = EXIT_ERROR, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


# ----------------------------------------------------------------------------- context


@dataclass
class _Context:
    """What every command needs: settings, the registry URL, the consoles."""

    settings: Settings
    registry_url: str
    timeout: float | None
    out: Console
    err: Console

    @property
    def query_timeout(self) -> float:
        return self.timeout if self.timeout is not None else 2.0

    @property
    def client_timeout_ms(self) -> int:
        return int(self.query_timeout * 1000)

    @property
    def security_banner(self) -> str:
        """Whether this process's sockets are secured, as banners and summaries say it."""
        return "secured (CurveZMQ)" if self.settings.security is not None else "not secured"


def _context(args: argparse.Namespace) -> _Context:
    settings = default_settings()
    secure = getattr(args, "secure", None)
    if secure is not None:
        from labwire.transport.security import Security

        # Keys are made on first use in the default folder and by the demo; a folder named
        # on the command line must exist, so a typo is not taken for a new lab.
        create = secure == str(DEFAULT_KEYS_DIR) or args.command == "demo"
        security = Security.from_folder(Path(secure).expanduser(), create=create)
        settings = settings.replace(security=security)
    registry = getattr(args, "registry", None)
    registry_url = registry if isinstance(registry, str) and registry else settings.registry_url
    from labwire.transport import parse_endpoint

    parse_endpoint(registry_url)
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not timeout > 0:
        raise CommandError("--timeout must be a positive number of seconds", EXIT_USAGE)
    return _Context(
        settings=settings,
        registry_url=registry_url,
        timeout=timeout,
        out=Console(highlight=False, soft_wrap=True),
        err=Console(stderr=True, highlight=False, soft_wrap=True),
    )


# ----------------------------------------------------------------------------- helpers


def _shown(text: object, *, lines: bool = False) -> Text:
    """Text from the network (or any text) as it is to appear on a terminal.

    Never read as markup, and control or format characters (escape sequences, bidirectional
    overrides, NUL) are shown as Python escapes instead of being sent to the terminal.

    Args:
        text: What to show (``str()`` of it).
        lines: Keep line breaks (docstrings) instead of showing them as escapes.
    """
    plain = str(text)
    if not plain.isprintable():
        plain = "".join(
            char
            if char.isprintable() or (lines and char == "\n")
            else char.encode("unicode_escape").decode("ascii")
            for char in plain
        )
    return Text(plain)


def _print_json(value: Any) -> None:
    """Write ``value`` as JSON on stdout (indented on a terminal, one line otherwise)."""
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(value, indent=indent, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": memoryview(value).nbytes}
    if isinstance(value, Path):
        return str(value)
    return repr(value)


#: Python's spellings of JSON's constants, which users type for true, false and null.
_PYTHON_LITERALS = {"True": True, "False": False, "None": None}


def _refuse_constant(name: str) -> NoReturn:
    raise CommandError(
        f"{name} cannot be sent: JSON has no NaN or Infinity", EXIT_USAGE, "give a finite number"
    )


def _is_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_finite(item) for item in value)
    if isinstance(value, dict):
        return all(_is_finite(item) for item in value.values())
    return True


def _parse_value(text: str) -> Any:
    """A value typed on the command line.

    JSON (``12``, ``true``, ``[1, 2]``, ``{"a": 1}``); ``True``, ``False`` and ``None`` as
    Python spells them; any other text is a string (``VIDEO``).

    Raises:
        CommandError: NaN, Infinity, a number too large for JSON, or text that starts like a
            JSON array or object but is not valid JSON (exit 2).
    """
    if text in _PYTHON_LITERALS:
        return _PYTHON_LITERALS[text]
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        if text.lstrip()[:1] in ("{", "[", '"'):
            raise CommandError(f"{text!r} is not valid JSON: {exc}", EXIT_USAGE) from None
        return text
    if not _is_finite(value):
        raise CommandError(
            f"{text!r} is too large for a JSON number", EXIT_USAGE, "give a finite number"
        )
    return value


_KEYWORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)


def _parse_call_arguments(items: Sequence[str]) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for item in items:
        match = _KEYWORD.fullmatch(item)
        if match:
            kwargs[match.group(1)] = _parse_value(match.group(2))
        else:
            args.append(_parse_value(item))
    return args, kwargs


_PARAMETER_KINDS = inspect.Parameter


def _check_arguments(signature: str, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """Why ``args`` and ``kwargs`` do not fit a method's ``signature`` text, or None.

    The text is the device's own description, e.g. ``(x: float, y: float = 0) -> float``; it
    is only parsed, never run. A signature that cannot be read (a deployed server has none)
    lets everything through, for the device to judge.
    """
    try:
        tree = ast.parse(f"def method{signature}: ...")
    except (SyntaxError, ValueError, RecursionError):
        return None
    function = tree.body[0]
    if not isinstance(function, ast.FunctionDef):
        return None
    spec = function.args
    positional = [*spec.posonlyargs, *spec.args]
    first_default = len(positional) - len(spec.defaults)
    required = inspect.Parameter.empty
    parameters = [
        inspect.Parameter(
            argument.arg,
            _PARAMETER_KINDS.POSITIONAL_ONLY
            if index < len(spec.posonlyargs)
            else _PARAMETER_KINDS.POSITIONAL_OR_KEYWORD,
            default=required if index < first_default else None,
        )
        for index, argument in enumerate(positional)
    ]
    if spec.vararg is not None:
        parameters.append(inspect.Parameter(spec.vararg.arg, _PARAMETER_KINDS.VAR_POSITIONAL))
    parameters.extend(
        inspect.Parameter(
            argument.arg,
            _PARAMETER_KINDS.KEYWORD_ONLY,
            default=required if default is None else None,
        )
        for argument, default in zip(spec.kwonlyargs, spec.kw_defaults, strict=True)
    )
    if spec.kwarg is not None:
        parameters.append(inspect.Parameter(spec.kwarg.arg, _PARAMETER_KINDS.VAR_KEYWORD))
    try:
        inspect.Signature(parameters).bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    except ValueError:  # parameters the device described in an order Python refuses
        return None
    return None


def _human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def _clock(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%H:%M:%S.%f")[:-3]


def _age(timestamp: float) -> str:
    seconds = max(0.0, time.time() - timestamp)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _lookup(ctx: _Context, name: str) -> DeviceInfo:
    from labwire.registry import RegistryClient

    try:
        with RegistryClient(
            ctx.registry_url, settings=ctx.settings, timeout=ctx.query_timeout
        ) as registry:
            return registry.lookup(name)
    except NotFound:
        raise CommandError(
            f"no device named {name!r} in the registry at {ctx.registry_url}",
            EXIT_NOT_FOUND,
            "`labwire ls` lists the registered devices; a device can also be given by URL",
        ) from None
    except Unavailable as exc:
        raise _registry_unreachable(ctx, exc) from None


def _needs_security(ctx: _Context, url: str, what: str) -> CommandError | None:
    """The error to give when ``url`` did not answer because it requires security."""
    if ctx.settings.security is not None:
        return None
    from labwire.transport import default_context
    from labwire.transport.security import plain_handshake_refused

    if not plain_handshake_refused(default_context(), url):
        return None
    return CommandError(
        f"{what} at {url} requires security (CurveZMQ): it dropped this command's unsecured "
        "connection",
        EXIT_DENIED,
        "turn security on with --secure DIR (the lab's key folder), or the LABWIRE_SECRET_KEY "
        "and LABWIRE_SERVER_KEY variables",
    )


def _registry_unreachable(ctx: _Context, exc: Exception) -> CommandError:
    refusal = _needs_security(ctx, ctx.registry_url, "the registry")
    if refusal is not None:
        return refusal
    return CommandError(
        f"the registry at {ctx.registry_url} did not answer within {ctx.query_timeout:g} s ({exc})",
        EXIT_UNREACHABLE,
        f"is a registry running there? {_REGISTRY_HINT}",
    )


def _open_client(
    ctx: _Context, device: str, client_class: type[RPCClient] | None = None
) -> RPCClient:
    """An RPC client for DEVICE (a registry name or a URL), with clear errors."""
    from labwire.registry import NameResolver
    from labwire.rpc import RPCClient
    from labwire.sim.connect import is_url

    cls = client_class or RPCClient
    resolver: NameResolver | None = None
    if is_url(device):
        url, label = device, device
    else:
        info = _lookup(ctx, device)
        url, label = info.address, f"{device!r} ({info.address})"
        from labwire.transport import Transport

        resolver = NameResolver(
            device,
            ctx.registry_url,
            context=Transport(None, ctx.settings),
            timeout=ctx.query_timeout,
        )
    try:
        return cls(None, url, ctx.client_timeout_ms, settings=ctx.settings, resolve=resolver)
    except CallTimeout:
        raise _needs_security(ctx, url, "the device") or CommandError(
            f"device {label} did not answer within {ctx.query_timeout:g} s",
            EXIT_UNREACHABLE,
            "is the device running and reachable from here? "
            "(a stale registry entry disappears when its lease expires)",
        ) from None
    except Unavailable as exc:
        raise _needs_security(ctx, url, "the device") or CommandError(
            f"device {label} did not answer within {ctx.query_timeout:g} s ({exc})",
            EXIT_UNREACHABLE,
            "is the device running and reachable from here? "
            "(a stale registry entry disappears when its lease expires)",
        ) from None


def _device_label(client: RPCClient, device: str) -> str:
    return client.name or device


_PLURALS = {"property": "properties"}


def _check_name(kind: str, name: str, available: Sequence[str], device: str) -> None:
    if name not in available:
        choices = ", ".join(sorted(available)) or "none"
        raise CommandError(
            f"{device} has no {kind} named {name!r}",
            EXIT_NOT_FOUND,
            f"its {_PLURALS.get(kind, kind + 's')}: {choices} (see `labwire info {device}`)",
        )


def _remote_failure(what: str, failure: Any) -> CommandError:
    """A CommandError for a NoResult."""
    kind = f"{failure.error_type}: " if failure.error_type else ""
    code = EXIT_NOT_FOUND if failure.code == "not_found" else EXIT_ERROR
    if failure.code == "denied":
        code = EXIT_DENIED
    if failure.code == "expired":  # answered, but too late to run: not "unreachable"
        return CommandError(
            f"{what} did not run: the device was still busy when the call's deadline passed",
            EXIT_ERROR,
            "give the call more time with --timeout SECONDS",
        )
    error = CommandError(f"{what} failed: {kind}{failure.error}", code)
    if failure.traceback:
        _log.info("remote traceback:\n%s", failure.traceback)
    return error


def _stop_on_eof(stop: Callable[[], object]) -> None:
    """Call ``stop`` when standard input closes (the parent process went away)."""

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while os.read(sys.stdin.fileno(), 4096):
                pass
        _log.info("standard input closed; stopping")
        stop()

    threading.Thread(target=watch, name="labwire-stdin-watch", daemon=True).start()


class _LinePrinter:
    """Prints one line per event from any thread, as JSON or as text."""

    def __init__(self, ctx: _Context, as_json: bool, count: int | None) -> None:
        self.ctx = ctx
        self.as_json = as_json
        self.remaining = count
        self.done = threading.Event()
        self._lock = threading.Lock()

    def emit(self, record: dict[str, Any], text: str) -> None:
        with self._lock:
            if self.done.is_set():
                return
            if self.as_json:
                sys.stdout.write(json.dumps(record, default=_jsonable) + "\n")
                sys.stdout.flush()
            else:
                self.ctx.out.print(_shown(text))
            if self.remaining is not None:
                self.remaining -= 1
                if self.remaining <= 0:
                    self.done.set()


# ----------------------------------------------------------------------------- commands


def cmd_registry(args: argparse.Namespace, ctx: _Context) -> int:
    """Run a device registry until Ctrl-C."""
    from labwire.registry import DeviceRegistry
    from labwire.transport import parse_endpoint

    bind = args.bind or ctx.registry_url
    endpoint = parse_endpoint(bind, for_bind=True)
    if not endpoint.is_tcp:
        raise CommandError(f"the registry listens on TCP; got {bind}", EXIT_USAGE)
    try:
        registry = DeviceRegistry(
            None,
            endpoint.host,
            str(endpoint.port or 0),
            settings=ctx.settings,
            heartbeat_interval=args.heartbeat,
        )
    except EndpointError as exc:
        raise CommandError(
            f"cannot listen on {bind}: {exc}",
            EXIT_ERROR,
            "is another registry running there? choose another port with --bind",
        ) from None
    printer = _LinePrinter(ctx, args.json, None)

    def announce(kind: str) -> Callable[[str, str, str], None]:
        def callback(name: str, device_type: str, address: str) -> None:
            record = {"event": kind, "name": name, "type": device_type, "address": address}
            printer.emit(
                record, f"{_clock(time.time())}  {kind:<7} {name} ({device_type}) {address}"
            )

        return callback

    registry.add_new_device_callback(announce("added"))
    registry.add_device_removed_callback(announce("removed"))
    try:
        registry.start()
        if args.stop_on_eof:
            _stop_on_eof(registry.stop)
        ready = {
            "event": "ready",
            "role": "registry",
            "url": registry.url,
            "endpoint": registry.endpoint,
            "event_endpoint": registry.event_endpoint,
            "secure": ctx.settings.security is not None,
            "pid": os.getpid(),
        }
        printer.emit(
            ready,
            f"registry listening on {registry.endpoint} (clients here use {registry.url}), "
            f"{ctx.security_banner}; Ctrl-C to stop",
        )
        registry.join()
    except KeyboardInterrupt:
        pass
    finally:
        registry.stop()
    return EXIT_OK


def cmd_ls(args: argparse.Namespace, ctx: _Context) -> int:
    """List the registered devices."""
    from labwire.registry import RegistryClient

    try:
        with RegistryClient(
            ctx.registry_url, settings=ctx.settings, timeout=ctx.query_timeout
        ) as registry:
            devices = registry.list_devices(args.type)
    except Unavailable as exc:
        raise _registry_unreachable(ctx, exc) from None
    if args.json:
        _print_json([device.to_json() for device in devices])
        return EXIT_OK
    if not devices:
        what = f"devices of type {args.type!r}" if args.type else "devices"
        ctx.err.print(_shown(f"no {what} registered at {ctx.registry_url}"))
        return EXIT_OK
    table = Table(box=box.SIMPLE_HEAD, title=f"devices at {ctx.registry_url}")
    for column in ("name", "type", "address", "registered", "last seen"):
        table.add_column(column, no_wrap=column != "address")
    for device in devices:
        table.add_row(
            _shown(device.name),
            _shown(device.device_type),
            _shown(device.address),
            _age(device.registered_since) + " ago",
            _age(device.last_seen) + " ago",
        )
    ctx.out.print(table)
    return EXIT_OK


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

        # Ctrl-C while the operation starts waits until its id is known, to cancel it.
        interrupted: list[int] = []
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread:
            previous = signal.signal(signal.SIGINT, lambda number, _: interrupted.append(number))
        try:
            handle = client.start_operation(
                method, *call_args, on_progress=show, **options, **call_kwargs
            )
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)
        try:
            try:
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


def cmd_watch(args: argparse.Namespace, ctx: _Context) -> int:
    """Print signals or registry events as they come."""
    if args.device is None:
        if args.registry is None:
            raise CommandError(
                "give a DEVICE to watch its signals, or --registry to watch the registry",
                EXIT_USAGE,
            )
        return _watch_registry(args, ctx)
    return _watch_device(args, ctx)


def _watch_registry(args: argparse.Namespace, ctx: _Context) -> int:
    from labwire.registry import RegistryClient, WatchEventKind

    printer = _LinePrinter(ctx, args.json, args.count)
    try:
        with RegistryClient(
            ctx.registry_url, settings=ctx.settings, timeout=ctx.query_timeout
        ) as registry:
            watch = registry.watch()
    except Unavailable as exc:
        raise _registry_unreachable(ctx, exc) from None
    ctx.err.print(_shown(f"watching the registry at {ctx.registry_url}; Ctrl-C to stop"))
    try:
        while not printer.done.is_set():
            event = watch.next_event()
            if event is None:
                continue
            now = time.time()
            record: dict[str, Any] = {"time": now, "event": str(event.kind), "seq": event.seq}
            if event.kind == WatchEventKind.SNAPSHOT:
                record["devices"] = [device.to_json() for device in event.devices]
                names = ", ".join(device.name for device in event.devices) or "none"
                text = f"{_clock(now)}  snapshot {len(event.devices)} devices: {names}"
            elif event.device is not None:
                device = event.device
                record.update(
                    name=device.name,
                    type=device.device_type,
                    address=device.address,
                    reason=event.reason,
                )
                reason = f" ({event.reason})" if event.reason else ""
                text = (
                    f"{_clock(now)}  {event.kind!s:<8} {device.name} ({device.device_type}) "
                    f"{device.address}{reason}"
                )
            else:
                text = f"{_clock(now)}  {event.kind!s} (the registry stopped answering)"
            printer.emit(record, text)
    except KeyboardInterrupt:
        pass
    finally:
        watch.close()
    return EXIT_OK


_CLIENT_ATTRIBUTES = {"context", "url", "timeout", "name", "own_address", "peer_address"}


def _watch_device(args: argparse.Namespace, ctx: _Context) -> int:
    from labwire.rpc import RPCClient, RPCSignal

    probe = _open_client(ctx, args.device)
    try:
        label = _device_label(probe, args.device)
        available = probe.inventory()["signals"]
    finally:
        probe.close()
    names = list(args.signals) or list(available)
    for name in names:
        _check_name("signal", name, available, label)
    usable = [
        n
        for n in names
        if n.isidentifier() and not hasattr(RPCClient, n) and n not in _CLIENT_ATTRIBUTES
    ]
    for name in sorted(set(names) - set(usable)):
        ctx.err.print(_shown(f"cannot watch signal {name!r}: its name clashes with the client"))
    if not usable:
        raise CommandError(f"{label} has no signals to watch", EXIT_NOT_FOUND)
    watcher_class = type("SignalWatcher", (RPCClient,), {n: RPCSignal() for n in usable})
    printer = _LinePrinter(ctx, args.json, args.count)
    client = _open_client(ctx, args.device, watcher_class)
    try:
        for name in usable:
            signal_object: RPCSignal = getattr(client, name)
            signal_object.connect(_signal_slot(printer, label, name))
        ctx.err.print(
            _shown(f"watching {', '.join(usable)} of {label} ({client.url}); Ctrl-C to stop")
        )
        printer.done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return EXIT_OK


def _signal_slot(printer: _LinePrinter, label: str, name: str) -> Callable[..., None]:
    def slot(*values: Any) -> None:
        now = time.time()
        record = {"time": now, "device": label, "signal": name, "args": list(values)}
        shown = ", ".join(json.dumps(v, default=_jsonable) for v in values)
        printer.emit(record, f"{_clock(now)}  {label}  {name}  {shown}")

    return slot


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


def cmd_keys(args: argparse.Namespace, ctx: _Context) -> int:
    """Make or show CurveZMQ keys."""
    from labwire.transport.security import generate_keypair, public_key_of

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


# ----------------------------------------------------------------------------- parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _example(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _add_registry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        metavar="URL",
        help="registry URL (default: $LABWIRE_REGISTRY or tcp://127.0.0.1:5555)",
    )


def _add_common(parser: argparse.ArgumentParser, *, registry: bool = True) -> None:
    if registry:
        _add_registry(parser)
    parser.add_argument(
        "--secure",
        metavar="DIR",
        nargs="?",
        const=str(DEFAULT_KEYS_DIR),
        help="CurveZMQ security with the lab's keys in DIR (default "
        f"{DEFAULT_KEYS_DIR}, made on first use; another DIR must exist: "
        "`labwire keys new labwire --dir DIR` starts one)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds to wait for the registry and for the device to answer (default 2); for "
        "`call`, the whole call's deadline instead of the method's own",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")


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

    sub = command(
        "registry",
        "run a device registry until Ctrl-C",
        "labwire registry --bind tcp://*:5555",
    )
    sub.add_argument("--bind", metavar="URL", help="where to listen (default: the --registry URL)")
    sub.add_argument(
        "--heartbeat", type=float, default=1.0, metavar="S", help="event heartbeat interval"
    )
    sub.add_argument("--json", action="store_true", help="print JSON lines")
    sub.add_argument("--stop-on-eof", action="store_true", help="stop when stdin closes")
    _add_common(sub)
    sub.set_defaults(handler=cmd_registry)

    sub = command("ls", "list the registered devices", "labwire ls --registry tcp://10.0.0.2:5555")
    sub.add_argument("--type", metavar="TYPE", help="only devices of this type")
    sub.add_argument("--json", action="store_true", help="print JSON")
    _add_common(sub)
    sub.set_defaults(handler=cmd_ls)

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

    sub = command(
        "watch",
        "print a device's signals, or the registry's changes, one per line",
        "labwire watch stage positionChanged motionDone",
        "labwire watch --registry --json",
    )
    sub.add_argument("device", metavar="DEVICE", nargs="?", help="registry name or URL")
    sub.add_argument("signals", metavar="SIGNAL", nargs="*", help="signals (default: all)")
    sub.add_argument(
        "--registry",
        metavar="URL",
        nargs="?",
        const="",
        help="without DEVICE: watch this registry (default URL: $LABWIRE_REGISTRY); "
        "with DEVICE: the registry to look it up in",
    )
    sub.add_argument("--json", action="store_true", help="print JSON lines")
    sub.add_argument("--count", type=int, metavar="N", help="stop after N events")
    _add_common(sub, registry=False)
    sub.set_defaults(handler=cmd_watch)

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

    from labwire.cli import brokers, cluster, completion, dashboard, rigs  # groups of their own

    for group in (rigs, cluster, brokers, dashboard, completion):
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
