"""RPCSignal: a small publish-subscribe signal that also works as a per-instance descriptor.

Declared on a class (``modeChanged = RPCSignal(str)``), a signal gives every instance its own
copy on first access, so two devices of one class in one process never share slots or
emissions. Used standalone (``sig = RPCSignal(int)``) it behaves as a plain object.

An RPC server attaches a publisher hook to its instance signals (every emission is published
once on the network); an RPC client attaches a watcher hook (so it subscribes to a signal only
while it has slots). Neither hook is part of the public API.
"""

from __future__ import annotations

import logging
import threading
import types
import typing
import weakref
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin

__all__ = ["RPCSignal", "coerce_to_generic", "is_instance_of_generic"]

_log = logging.getLogger(__name__)

Slot = Callable[..., Any] | weakref.WeakMethod[Any]


def is_instance_of_generic(value: Any, expected: Any) -> bool:
    """Whether ``value`` matches ``expected``, which may be a generic alias.

    Supports plain classes, ``Any``, ``None``, unions/``Optional``, ``Literal``, ``list[T]``,
    ``set[T]``, ``tuple[T, ...]``, ``tuple[A, B]``, ``dict[K, V]``, and a tuple of any of these
    (as :func:`isinstance` takes): ``value`` matches when it matches one of them.
    """
    if isinstance(expected, tuple):
        return any(is_instance_of_generic(value, option) for option in expected)
    if expected is Any or expected is object:
        return True
    if expected is None or expected is type(None):
        return value is None
    origin = get_origin(expected)
    if origin is None:
        return isinstance(expected, type) and isinstance(value, expected)
    args = get_args(expected)
    if origin in (Union, types.UnionType):
        return any(is_instance_of_generic(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if not isinstance(origin, type) or not isinstance(value, origin):
        return False
    container: Any = value
    if not args:
        return True
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return all(is_instance_of_generic(item, args[0]) for item in container)
        return len(container) == len(args) and all(
            is_instance_of_generic(item, arg) for item, arg in zip(container, args, strict=True)
        )
    if origin is dict:
        key_type, value_type = args
        return all(
            is_instance_of_generic(k, key_type) and is_instance_of_generic(v, value_type)
            for k, v in container.items()
        )
    if origin in (list, set, frozenset):
        return all(is_instance_of_generic(item, args[0]) for item in container)
    return True


def coerce_to_generic(value: Any, expected: Any) -> Any:
    """Convert ``value`` to ``expected`` (e.g. a JSON list to ``tuple[int, int]``).

    ``expected`` may also be a tuple of types (the first one that converts wins). Text is never
    split into a container: ``coerce_to_generic("123", list[int])`` raises.

    Raises:
        TypeError: ``value`` cannot be converted.
    """
    if is_instance_of_generic(value, expected):
        return value
    origin = get_origin(expected)
    args = get_args(expected)
    if isinstance(expected, tuple):
        origin, args = Union, expected
    if origin in (tuple, list, set, frozenset, dict) and isinstance(value, str | bytes):
        raise TypeError(f"cannot convert {value!r} to {expected!r}: text is not a container")
    try:
        if origin in (Union, types.UnionType):
            for arg in args:
                try:
                    return coerce_to_generic(value, arg)
                except TypeError:
                    continue
            raise TypeError(f"{value!r} matches none of {args}")
        if origin is tuple:
            items = list(value)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(coerce_to_generic(item, args[0]) for item in items)
            if len(items) != len(args):
                raise TypeError(f"expected {len(args)} items, got {len(items)}")
            return tuple(coerce_to_generic(i, a) for i, a in zip(items, args, strict=True))
        if origin in (list, set, frozenset):
            item_type = args[0] if args else Any
            return origin(coerce_to_generic(item, item_type) for item in value)
        if origin is dict:
            key_type, value_type = args if args else (Any, Any)
            return {
                coerce_to_generic(k, key_type): coerce_to_generic(v, value_type)
                for k, v in dict(value).items()
            }
        if origin is None and isinstance(expected, type):
            return expected(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot convert {value!r} to {expected!r}: {exc}") from None
    raise TypeError(f"cannot convert {value!r} to {expected!r}")


class RPCSignal:
    """Lightweight publish-subscribe signal.

    Slots are called in the order they were connected. A slot may be any callable (kept by a
    strong reference) or a :class:`weakref.WeakMethod` (skipped once its object is gone).

    Args:
        *arg_types: Types of the emitted arguments (classes or generic aliases such as
            ``list[int]``); kept for documentation and for :meth:`validate_args`.

    Attributes:
        arg_types: The argument types given at construction.
        connections: The connected slots, in connection order.

    Example:
        >>> def listener(x, y): print(f"Received: {x}, {y}")
        >>> signal = RPCSignal(int, str)
        >>> signal.connect(listener)
        >>> signal.emit(10, "hello")
        Received: 10, hello
    """

    def __init__(self, *arg_types: Any) -> None:
        self.arg_types: tuple[Any, ...] = arg_types
        self.connections: list[Slot] = []
        self.name = ""
        self._lock = threading.Lock()
        self._publisher: Callable[[str, tuple[Any, ...]], None] | None = None
        self._watcher: Callable[[RPCSignal], None] | None = None

    @property
    def args(self) -> tuple[Any, ...]:
        """Alias of :attr:`arg_types`."""
        return self.arg_types

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> RPCSignal:
        if obj is None or not self.name:
            return self
        namespace = getattr(obj, "__dict__", None)
        if namespace is None:
            return self
        bound = namespace.get(self.name)
        if not isinstance(bound, RPCSignal):
            fresh = RPCSignal(*self.arg_types)
            fresh.name = self.name
            bound = namespace.setdefault(self.name, fresh)
        return bound if isinstance(bound, RPCSignal) else self

    def __repr__(self) -> str:
        types_text = ", ".join(getattr(t, "__name__", repr(t)) for t in self.arg_types)
        return f"<RPCSignal {self.name or '?'}({types_text}) with {len(self.connections)} slots>"

    def connect(self, conn: Slot) -> None:
        """Connect a callable (or a :class:`weakref.WeakMethod`) to the signal.

        Connecting the same slot twice has no effect.

        Raises:
            TypeError: ``conn`` is neither callable nor a WeakMethod.
        """
        if not (callable(conn) or isinstance(conn, weakref.WeakMethod)):
            raise TypeError(f"cannot connect {conn!r}: it is not callable")
        with self._lock:
            if conn in self.connections:
                return
            self.connections.append(conn)
        if self._watcher is not None:
            self._watcher(self)

    def disconnect(self, conn: Slot | None = None) -> None:
        """Remove one slot, or every slot when ``conn`` is None.

        Raises:
            ValueError: ``conn`` is not connected.
        """
        with self._lock:
            if conn is None:
                self.connections.clear()
            else:
                try:
                    self.connections.remove(conn)
                except ValueError:
                    raise ValueError(f"{conn!r} is not connected to this signal") from None
        if self._watcher is not None:
            self._watcher(self)

    def _live_slots(self) -> list[Callable[..., Any]]:
        # tuple() of a list is one atomic step for the interpreter: no lock needed to read.
        live: list[Callable[..., Any]] = []
        for slot in tuple(self.connections):
            if isinstance(slot, weakref.WeakMethod):
                target = slot()
                if target is not None:
                    live.append(target)
            else:
                live.append(slot)
        return live

    def emit(self, *args: Any) -> None:
        """Call every connected slot with ``args``; on a server, also publish the emission.

        An exception raised by a slot propagates to the caller of ``emit`` (the emission is
        published before local slots run).
        """
        if self._publisher is not None:
            self._publisher(self.name, args)
        if self.connections:  # a server's signal seldom has local slots: spare the list
            for slot in self._live_slots():
                slot(*args)

    def dispatch(self, *args: Any) -> int:
        """Call every slot like :meth:`emit`, but log and skip slots that raise.

        Used for emissions received from the network, where one faulty slot must not stop
        delivery to the others.

        Returns:
            The number of slots that raised.
        """
        failures = 0
        for slot in self._live_slots():
            try:
                slot(*args)
            except Exception:
                failures += 1
                _log.exception("slot %r of signal %r raised", slot, self.name)
        return failures

    def validate_args(self, *args: Any, coerce: bool = False) -> tuple[Any, ...]:
        """Check ``args`` against :attr:`arg_types`, optionally converting them.

        Args:
            *args: The arguments to check.
            coerce: Convert mismatching arguments to the expected types where possible.

        Returns:
            The (possibly converted) arguments.

        Raises:
            RuntimeError: The number of arguments differs from the number of types.
            TypeError: An argument does not match and cannot be (or may not be) converted.
        """
        if len(args) != len(self.arg_types):
            raise RuntimeError(
                f"signal {self.name or '?'} takes {len(self.arg_types)} arguments, got {len(args)}"
            )
        result = []
        for position, (value, expected) in enumerate(zip(args, self.arg_types, strict=True)):
            if is_instance_of_generic(value, expected):
                result.append(value)
            elif coerce:
                result.append(coerce_to_generic(value, expected))
            else:
                raise TypeError(
                    f"argument {position} of signal {self.name or '?'} should be "
                    f"{expected!r}, got {type(value).__name__}"
                )
        return tuple(result)
