"""What every ``labwire`` command shares.

Exit codes, the command context, value parsing, device lookup and connection, printing, and
the parser's common options.
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
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.text import Text

from labwire.config import Settings, default_settings
from labwire.errors import (
    CallTimeout,
    NotFound,
    Unavailable,
)

if TYPE_CHECKING:
    from labwire.registry import DeviceInfo
    from labwire.rpc import RPCClient

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
        from labwire.security import Security

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


CommandFactory = Callable[..., argparse.ArgumentParser]


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
