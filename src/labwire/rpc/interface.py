"""What an interface or device class exposes: methods, properties and signals.

Both sides read classes the same way: public names only (``_x`` never), walking the whole MRO
(interfaces may inherit from interfaces, plain classes or ABCs, several levels deep). A server
class declares its methods with the decorators here, which
:class:`~labwire.rpc.RPCServer` offers as its static methods.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from labwire.rpc.operations import Operation, OperationSpec, operation_method
from labwire.rpc.property import RPCProperty
from labwire.rpc.signal import RPCSignal

__all__ = [
    "Exposed",
    "RemoteMethod",
    "implement_remotely",
    "register_method_buffer",
    "register_method_json",
    "register_operation",
    "scan_class",
]

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")
R = TypeVar("R")
P = ParamSpec("P")

_KIND = "__labwire_rpc_kind__"
_TIMEOUT = "__labwire_rpc_timeout__"


@dataclass(frozen=True, slots=True)
class RemoteMethod:
    """A method a server exports.

    Attributes:
        name: Method name.
        kind: ``"json"`` or ``"buffer"``.
        timeout_ms: How long clients wait by default (None: forever).
        function: The undecorated function.
    """

    name: str
    kind: str
    timeout_ms: int | None
    function: Callable[..., Any]

    @property
    def signature(self) -> str:
        """The call signature without ``self``, e.g. ``"(x, y, z=0)"``."""
        try:
            sig = inspect.signature(self.function, eval_str=True)
        except (NameError, TypeError, ValueError, SyntaxError):
            try:
                sig = inspect.signature(self.function)
            except (TypeError, ValueError):
                return "(...)"
        params = list(sig.parameters.values())[1:]
        return str(sig.replace(parameters=params))

    @property
    def doc(self) -> str:
        """The first paragraph of the method's docstring."""
        text = inspect.getdoc(self.function) or ""
        return text.split("\n\n", 1)[0]


def mark_method(function: Callable[..., Any], kind: str, timeout: int | None) -> None:
    """Mark ``function`` as an exported method of ``kind`` with a default ``timeout``."""
    if timeout is not None and (
        not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0
    ):
        raise ValueError(f"timeout must be None or a non-negative int of ms, got {timeout!r}")
    setattr(function, _KIND, kind)
    setattr(function, _TIMEOUT, timeout)


@dataclass(slots=True)
class Exposed:
    """The remote surface of a class.

    Attributes:
        methods: Exported methods by name (server classes only).
        functions: Every public function by name (interfaces: what clients proxy).
        properties: RPC properties by name (plain properties are never exposed).
        plain_properties: Public plain properties (clients proxy these too, read through RPC
            only if the server declares them as RPCProperty).
        signals: Signals by name.
    """

    methods: dict[str, RemoteMethod] = field(default_factory=dict)
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    properties: dict[str, RPCProperty] = field(default_factory=dict)
    plain_properties: dict[str, property] = field(default_factory=dict)
    signals: dict[str, RPCSignal] = field(default_factory=dict)


def scan_class(cls: type, stop_at: tuple[type, ...] = ()) -> Exposed:
    """List what ``cls`` exposes, most-derived definitions winning.

    Args:
        cls: The class to read.
        stop_at: Base classes whose own members are ignored (the labwire base classes).
    """
    exposed = Exposed()
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or klass in stop_at:
            continue
        for name, attribute in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(attribute, RPCSignal):
                exposed.signals[name] = attribute
            elif isinstance(attribute, RPCProperty):
                exposed.properties[name] = attribute
            elif isinstance(attribute, property):
                exposed.plain_properties[name] = attribute
            elif inspect.isfunction(attribute):
                exposed.functions[name] = attribute
                kind = getattr(attribute, _KIND, None)
                if kind is not None:
                    exposed.methods[name] = RemoteMethod(
                        name, kind, getattr(attribute, _TIMEOUT, None), attribute
                    )
    return exposed


def implement_remotely(client_cls: type, interface: type, client_base: type) -> None:
    """Give ``client_cls`` a proxy for every public method and property of ``interface``.

    A method proxy has the method's signature, checks the arguments against it, and calls
    ``self._invoke(name, args, kwargs)``; a property proxy calls ``self._get_property(name)``
    and ``self._set_property(name, value)``. Members of ``client_base`` are not proxied.
    """
    exposed = scan_class(interface, (client_base,))
    for name, function in exposed.functions.items():
        setattr(client_cls, name, _method_proxy(name, function))
    for name, prop in {**exposed.plain_properties, **exposed.properties}.items():
        setattr(client_cls, name, _property_proxy(name, prop.__doc__))
    # The proxies implement every abstract method of the interface.
    setattr(client_cls, "__abstractmethods__", frozenset())  # noqa: B010


def _method_proxy(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(function)
    params = list(signature.parameters.values())[1:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    simple = len(positional) == len(params)
    least = sum(1 for p in positional if p.default is p.empty)
    most = len(positional)

    @functools.wraps(function)
    def proxy(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Positional calls to plain signatures are checked by count; the rest by bind().
        if kwargs or not simple or not least <= len(args) <= most:
            try:
                signature.bind(self, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{name}(): {exc}") from None
        return self._invoke(name, args, kwargs)

    proxy.__isabstractmethod__ = False  # type: ignore[attr-defined]
    return proxy


def _property_proxy(name: str, doc: str | None) -> property:
    def getter(self: Any) -> Any:
        return self._get_property(name)

    def setter(self: Any, value: Any) -> None:
        self._set_property(name, value)

    return property(getter, setter, None, doc)


# ---------------------------------------------------------------------- declaration


def _exporting(kind: str, timeout: int | None) -> Callable[[F], F]:
    """A decorator that marks a method as exported, of ``kind``, with a default timeout."""

    def decorator(function: F) -> F:
        mark_method(function, kind, timeout)
        return function

    return decorator


def register_method_json(timeout: int | None = 10000) -> Callable[[F], F]:
    """Export a method whose arguments and result travel as JSON.

    Send basic types and containers (int, float, str, bool, list, tuple, dict). labwire
    clients may also pass and receive bytes, memoryviews and numpy arrays, which travel
    as raw frames.

    Args:
        timeout: How long (ms) a client waits for the method by default; None: forever.
    """
    return _exporting("json", timeout)


def register_method_buffer(timeout: int | None = 10000) -> Callable[[F], F]:
    """Export a method that returns ``(buffer, info)``: a bytes-like object and a dict.

    The buffer travels as a raw frame without copies; ``info`` as JSON. Arguments are
    JSON (plus buffers, from labwire clients).

    Args:
        timeout: How long (ms) a client waits for the method by default; None: forever.
    """
    return _exporting("buffer", timeout)


def register_operation(
    timeout: int | None = None, on_disconnect: str = "finish", lease: float = 3.0
) -> Callable[[Callable[Concatenate[S, Operation, P], R]], Callable[Concatenate[S, P], R]]:
    """Export a long-running method as an operation: progress, cancel and a deadline.

    The handler's first argument after ``self`` is an
    :class:`~labwire.rpc.operations.Operation`: report progress with
    ``operation.report(fraction, message)`` (which raises
    :class:`~labwire.rpc.operations.OperationCancelled` once cancelled), look at
    ``operation.cancelled``, and register cleanup with ``operation.on_cancel(callback)``.
    Clients start it with ``start_operation()`` and watch, cancel or reattach to it; a
    plain call (any client, deployed ones too) still returns its result, and the handler is
    cancelled once that call's deadline passes. Arguments and result travel as with
    :meth:`register_method_json`.

    Args:
        timeout: The default deadline in ms (for plain calls, how long clients wait); None:
            no limit.
        on_disconnect: ``"finish"``: run to the end when the client that watches it
            vanishes; ``"cancel"``: cancel it once nobody polled it for ``lease`` seconds.
        lease: Seconds without a poll after which the watching client counts as gone.
    """

    def decorator(
        function: Callable[Concatenate[S, Operation, P], R],
    ) -> Callable[Concatenate[S, P], R]:
        spec = OperationSpec(function, timeout, on_disconnect, lease)
        method = operation_method(function, spec)
        mark_method(method, "json", timeout)
        return method

    return decorator
