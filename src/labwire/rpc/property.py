"""RPCProperty: a property that RPC clients may read and write, with change notification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labwire.rpc.signal import RPCSignal

__all__ = ["RPCProperty"]


def _changed(old: Any, new: Any) -> bool:
    try:
        return bool(old != new)
    except (TypeError, ValueError):  # e.g. numpy arrays compare element-wise
        return old is not new


class RPCProperty(property):
    """A property exposed over RPC; only these (never plain attributes) are remotely reachable.

    Args:
        fget: Getter, receives the instance.
        fset: Setter, receives the instance and the new value.
        fdel: Deleter.
        doc: Docstring (defaults to the getter's).
        notify: Signal announcing a change of value. With ``auto_notify`` it is emitted by the
            property; otherwise the setter emits it itself.
        auto_notify: Emit ``notify`` with the new value after a set that changed the value
            (old and new read through the getter).

    The notifier survives ``@prop.setter``/``getter``/``deleter``. ``RPCProperty`` may also be
    used as a decorator factory: ``@RPCProperty(notify=modeChanged, auto_notify=True)``.
    """

    def __init__(
        self,
        fget: Callable[[Any], Any] | None = None,
        fset: Callable[[Any, Any], None] | None = None,
        fdel: Callable[[Any], None] | None = None,
        doc: str | None = None,
        notify: RPCSignal | None = None,
        auto_notify: bool = False,
    ) -> None:
        super().__init__(fget, fset, fdel, doc)
        # A property subclass with a class docstring would otherwise show that docstring.
        self.__doc__ = doc if doc is not None else getattr(fget, "__doc__", None)
        self._notifier = notify
        self._auto_notify = auto_notify

    @property
    def notify(self) -> RPCSignal | None:
        """The change signal given at construction (None when there is none)."""
        return self._notifier

    @property
    def auto_notify(self) -> bool:
        """Whether the property emits its notifier itself after a changing set."""
        return self._auto_notify

    def __call__(self, fget: Callable[[Any], Any]) -> RPCProperty:
        """Use ``RPCProperty(notify=...)`` as a decorator: take ``fget`` as the getter."""
        if self.fget is not None:
            raise TypeError("RPCProperty object is not callable (it already has a getter)")
        return self.getter(fget)

    def _copy(self, **parts: Any) -> RPCProperty:
        values: dict[str, Any] = {"fget": self.fget, "fset": self.fset, "fdel": self.fdel}
        values.update(parts)
        doc = self.__doc__ if self.__doc__ != (self.fget.__doc__ if self.fget else None) else None
        return type(self)(
            values["fget"],
            values["fset"],
            values["fdel"],
            doc,
            notify=self._notifier,
            auto_notify=self._auto_notify,
        )

    def getter(self, fget: Callable[[Any], Any]) -> RPCProperty:
        """Return a copy of this property with another getter (keeps the notifier)."""
        return self._copy(fget=fget)

    def setter(self, fset: Callable[[Any, Any], None]) -> RPCProperty:
        """Return a copy of this property with another setter (keeps the notifier)."""
        return self._copy(fset=fset)

    def deleter(self, fdel: Callable[[Any], None]) -> RPCProperty:
        """Return a copy of this property with another deleter (keeps the notifier)."""
        return self._copy(fdel=fdel)

    def notifier_of(self, obj: Any) -> RPCSignal | None:
        """The notifier as bound to ``obj`` (each instance has its own signal)."""
        if self._notifier is None:
            return None
        return self._notifier.__get__(obj, type(obj))

    def __set__(self, obj: Any, value: Any) -> None:
        """Set the value; with ``auto_notify``, emit the notifier if the value changed."""
        if self.fset is None:
            raise AttributeError("property has no setter")
        if not (self._auto_notify and self._notifier is not None and self.fget is not None):
            self.fset(obj, value)
            return
        old = self.fget(obj)
        self.fset(obj, value)
        new = self.fget(obj)
        if _changed(old, new):
            notifier = self.notifier_of(obj)
            if notifier is not None:
                notifier.emit(new)
