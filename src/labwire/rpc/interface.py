"""What an interface or device class exposes: methods, properties and signals.

Both sides read classes the same way: public names only (``_x`` never), walking the whole MRO
(interfaces may inherit from interfaces, plain classes or ABCs, several levels deep).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labwire.rpc.property import RPCProperty
from labwire.rpc.signal import RPCSignal

__all__ = ["Exposed", "RemoteMethod", "scan_class"]

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
